//! The Arrow schema of the TLC yellow-taxi trip files, with the column
//! types of the real Parquet files (2024 edition), and [`TripBatchBuilder`],
//! which turns [`Trip`]s into record batches of that schema.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::trip::Trip;
use crate::error::Result;

/// Column names in file order.
pub const COLUMNS: [&str; 19] = [
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
    "airport_fee",
];

/// The yellow-taxi schema: int32 ids, microsecond timestamps without zone,
/// int64 counts and codes, float64 money; the null-block columns nullable.
pub fn taxi_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(build_schema).clone()
}

fn build_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let f64_col = |name: &str| Field::new(name, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        Field::new("VendorID", DataType::Int32, false),
        Field::new("tpep_pickup_datetime", ts.clone(), false),
        Field::new("tpep_dropoff_datetime", ts, false),
        Field::new("passenger_count", DataType::Int64, true),
        f64_col("trip_distance"),
        Field::new("RatecodeID", DataType::Int64, true),
        Field::new("store_and_fwd_flag", DataType::Utf8, true),
        Field::new("PULocationID", DataType::Int32, false),
        Field::new("DOLocationID", DataType::Int32, false),
        Field::new("payment_type", DataType::Int64, false),
        f64_col("fare_amount"),
        f64_col("extra"),
        f64_col("mta_tax"),
        f64_col("tip_amount"),
        f64_col("tolls_amount"),
        f64_col("improvement_surcharge"),
        f64_col("total_amount"),
        Field::new("congestion_surcharge", DataType::Float64, true),
        Field::new("airport_fee", DataType::Float64, true),
    ]))
}

/// Column builders for one batch of trips.
#[derive(Debug)]
pub struct TripBatchBuilder {
    vendor: Int32Builder,
    pickup: TimestampMicrosecondBuilder,
    dropoff: TimestampMicrosecondBuilder,
    passengers: Int64Builder,
    distance: Float64Builder,
    ratecode: Int64Builder,
    store_and_fwd: StringBuilder,
    pu: Int32Builder,
    do_: Int32Builder,
    payment: Int64Builder,
    money: [Float64Builder; 7],
    congestion: Float64Builder,
    airport_fee: Float64Builder,
    len: usize,
}

impl TripBatchBuilder {
    /// Builders with room for `capacity` rows.
    pub fn with_capacity(capacity: usize) -> TripBatchBuilder {
        let f = || Float64Builder::with_capacity(capacity);
        TripBatchBuilder {
            vendor: Int32Builder::with_capacity(capacity),
            pickup: TimestampMicrosecondBuilder::with_capacity(capacity),
            dropoff: TimestampMicrosecondBuilder::with_capacity(capacity),
            passengers: Int64Builder::with_capacity(capacity),
            distance: f(),
            ratecode: Int64Builder::with_capacity(capacity),
            store_and_fwd: StringBuilder::with_capacity(capacity, capacity),
            pu: Int32Builder::with_capacity(capacity),
            do_: Int32Builder::with_capacity(capacity),
            payment: Int64Builder::with_capacity(capacity),
            money: std::array::from_fn(|_| f()),
            congestion: f(),
            airport_fee: f(),
            len: 0,
        }
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no rows are pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append one trip.
    pub fn push(&mut self, t: &Trip) {
        self.vendor.append_value(t.vendor_id);
        self.pickup.append_value(t.tpep_pickup_datetime);
        self.dropoff.append_value(t.tpep_dropoff_datetime);
        self.passengers.append_option(t.passenger_count);
        self.distance.append_value(t.trip_distance);
        self.ratecode.append_option(t.ratecode_id);
        self.store_and_fwd.append_option(t.store_and_fwd_flag);
        self.pu.append_value(t.pu_location_id);
        self.do_.append_value(t.do_location_id);
        self.payment.append_value(t.payment_type);
        let money = [
            t.fare_amount,
            t.extra,
            t.mta_tax,
            t.tip_amount,
            t.tolls_amount,
            t.improvement_surcharge,
            t.total_amount,
        ];
        for (builder, value) in self.money.iter_mut().zip(money) {
            builder.append_value(value);
        }
        self.congestion.append_option(t.congestion_surcharge);
        self.airport_fee.append_option(t.airport_fee);
        self.len += 1;
    }

    /// Take the pending rows as a record batch (the builders start empty again).
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.vendor.finish()),
            Arc::new(self.pickup.finish()),
            Arc::new(self.dropoff.finish()),
            Arc::new(self.passengers.finish()),
            Arc::new(self.distance.finish()),
            Arc::new(self.ratecode.finish()),
            Arc::new(self.store_and_fwd.finish()),
            Arc::new(self.pu.finish()),
            Arc::new(self.do_.finish()),
            Arc::new(self.payment.finish()),
        ];
        columns.extend(
            self.money
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.congestion.finish()));
        columns.push(Arc::new(self.airport_fee.finish()));
        self.len = 0;
        Ok(RecordBatch::try_new(taxi_schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_columns() {
        let schema = taxi_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, COLUMNS);
        assert_eq!(
            schema.field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert!(schema.field_with_name("airport_fee").unwrap().is_nullable());
    }
}
