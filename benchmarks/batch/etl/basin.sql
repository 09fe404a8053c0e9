-- Taxi ETL on Basin (DataFusion SQL). Keep in step with duckdb.sql and spark.sql:
-- the three differ only where the dialects do (marked "dialect:").
-- Placeholders: none. `trips` is an external table over the generated Parquet
-- files, registered once before timing (bench_batch.py).
-- Mixed-case source columns need double quotes in DataFusion (dialect:).

-- step: clean
-- Drop the dirty rows, fill the missing values, derive the features, and write
-- the result as a lake table (Parquet, zstd level 1).
CREATE OR REPLACE TABLE lake.trips_clean AS
SELECT
    "VendorID" AS vendor_id,
    tpep_pickup_datetime AS pickup_at,
    tpep_dropoff_datetime AS dropoff_at,
    CASE WHEN passenger_count IS NULL OR passenger_count = 0 THEN 1 ELSE passenger_count END
        AS passenger_count,
    trip_distance,
    COALESCE("RatecodeID", 99) AS ratecode_id,
    COALESCE(store_and_fwd_flag, 'N') AS store_and_fwd_flag,
    "PULocationID" AS pu_location_id,
    "DOLocationID" AS do_location_id,
    payment_type,
    fare_amount,
    extra,
    mta_tax,
    tip_amount,
    tolls_amount,
    improvement_surcharge,
    total_amount,
    COALESCE(congestion_surcharge, 0.0) AS congestion_surcharge,
    COALESCE(airport_fee, 0.0) AS airport_fee,
    CAST(tpep_pickup_datetime AS DATE) AS pickup_date,
    CAST(date_part('hour', tpep_pickup_datetime) AS INT) AS pickup_hour,
    -- 0 = Sunday .. 6 = Saturday
    CAST(date_part('dow', tpep_pickup_datetime) AS INT) AS pickup_weekday,
    duration_s / 60.0 AS duration_min,
    trip_distance / (duration_s / 3600.0) AS speed_mph,
    tip_amount / fare_amount * 100.0 AS tip_pct,
    concat(CAST("PULocationID" AS STRING), '-', CAST("DOLocationID" AS STRING)) AS zone_pair
FROM (
    SELECT
        *,
        -- dialect: seconds between two timestamps
        date_part('epoch', tpep_dropoff_datetime) - date_part('epoch', tpep_pickup_datetime)
            AS duration_s
    FROM trips
) AS t
WHERE tpep_pickup_datetime IS NOT NULL
    AND tpep_dropoff_datetime IS NOT NULL
    -- no zero, negative or longer-than-6-hours trips
    AND duration_s > 0 AND duration_s <= 21600
    -- no zero or absurd distances, no faster than 100 mph
    AND trip_distance > 0 AND trip_distance <= 200
    AND trip_distance * 3600.0 <= 100.0 * duration_s
    -- no negative, zero or absurd fares
    AND fare_amount > 0 AND fare_amount <= 1000 AND total_amount > 0
    -- known taxi zones only (264 and 265 are "unknown" / "outside NYC")
    AND "PULocationID" BETWEEN 1 AND 263
    AND "DOLocationID" BETWEEN 1 AND 263;

-- step: aggregate
-- Per pickup zone and hour of day, from the cleaned table.
CREATE OR REPLACE TABLE lake.zone_hour AS
SELECT
    pu_location_id,
    pickup_hour,
    count(*) AS trips,
    sum(passenger_count) AS passengers,
    count(DISTINCT zone_pair) AS zone_pairs,
    avg(CASE WHEN pickup_weekday IN (0, 6) THEN 1 ELSE 0 END) AS weekend_share,
    avg(trip_distance) AS avg_distance_mi,
    avg(duration_min) AS avg_duration_min,
    avg(speed_mph) AS avg_speed_mph,
    avg(fare_amount) AS avg_fare,
    avg(tip_pct) AS avg_tip_pct,
    sum(total_amount) AS revenue
FROM lake.trips_clean
GROUP BY pu_location_id, pickup_hour
ORDER BY pu_location_id, pickup_hour;
