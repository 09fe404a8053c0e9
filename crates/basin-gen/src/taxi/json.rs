//! JSON-lines encoding of trips for producing to a topic: one object per
//! trip, keys as the TLC column names, timestamps as ISO 8601 local time,
//! absent values as `null`.

use super::trip::Trip;
use crate::error::Result;

/// Append `trip` as one JSON object (no newline) to `out`.
pub fn write_json(trip: &Trip, out: &mut Vec<u8>) -> Result<()> {
    serde_json::to_writer(out, trip)?;
    Ok(())
}

/// `trip` as one JSON line (with the trailing newline).
pub fn json_line(trip: &Trip) -> Result<String> {
    let mut line = serde_json::to_string(trip)?;
    line.push('\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxi::calendar::SECOND;
    use crate::taxi::trip::{NullBlock, TripSampler};

    #[test]
    fn one_trip_as_json() {
        let mut sampler = TripSampler::new(3, NullBlock::NONE);
        let trip = sampler.sample(1_704_067_200 * SECOND + 75 * SECOND);
        let line = json_line(&trip).unwrap();
        assert!(line.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["tpep_pickup_datetime"], "2024-01-01T00:01:15");
        assert_eq!(value["PULocationID"], trip.pu_location_id);
        assert_eq!(value["total_amount"], trip.total_amount);
        assert_eq!(value.as_object().unwrap().len(), 19);
    }

    #[test]
    fn nulls_are_null() {
        let block = NullBlock {
            start: 0,
            len: 1,
            period: None,
        };
        let trip = TripSampler::new(3, block).sample(0);
        let value: serde_json::Value = serde_json::from_str(&json_line(&trip).unwrap()).unwrap();
        assert!(value["passenger_count"].is_null());
        assert!(value["airport_fee"].is_null());
        assert_eq!(value["payment_type"], 0);
    }
}
