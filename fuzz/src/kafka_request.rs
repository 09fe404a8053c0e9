//! Body of the `kafka_request` fuzz target: arbitrary bytes handed to the
//! broker's request decoder must give a request or an error, never a panic.

/// Decode `data` as one request frame (without its length prefix).
pub fn run(data: &[u8]) {
    let _ = basin_broker::codec::decode_request(data);
}
