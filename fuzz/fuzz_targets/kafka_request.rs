//! cargo-fuzz target: arbitrary bytes to the broker's
//! `basin_broker::codec::decode_request`, which must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    basin_fuzz::kafka_request::run(data);
});
