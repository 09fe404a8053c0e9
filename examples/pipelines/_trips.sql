-- The taxi trips topic that `basin gen taxi --topic trips` fills, with
-- event time = pickup time; the watermark trails it by 10 s.
CREATE EXTERNAL TABLE trips (
    "VendorID" INT, tpep_pickup_datetime TIMESTAMP, tpep_dropoff_datetime TIMESTAMP,
    passenger_count BIGINT, trip_distance DOUBLE, "RatecodeID" BIGINT, store_and_fwd_flag VARCHAR,
    "PULocationID" INT, "DOLocationID" INT, payment_type BIGINT, fare_amount DOUBLE, extra DOUBLE,
    mta_tax DOUBLE, tip_amount DOUBLE, tolls_amount DOUBLE, improvement_surcharge DOUBLE,
    total_amount DOUBLE, congestion_surcharge DOUBLE, airport_fee DOUBLE,
    WATERMARK FOR tpep_pickup_datetime AS tpep_pickup_datetime - INTERVAL '10' SECOND)
STORED AS TOPIC LOCATION 'trips';
