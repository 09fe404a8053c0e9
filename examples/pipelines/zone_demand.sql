-- Real-time demand: trips and average fare per pickup zone per minute.
-- Run: basin pipeline run examples/pipelines/_trips.sql examples/pipelines/zone_demand.sql
CREATE TABLE IF NOT EXISTS lake.zone_demand (
    zone INT, minute TIMESTAMP, trips BIGINT, avg_fare DOUBLE, avg_distance DOUBLE);

INSERT INTO lake.zone_demand
SELECT "PULocationID", window_start, count(*), avg(fare_amount), avg(trip_distance)
FROM TABLE(TUMBLE(TABLE trips, DESCRIPTOR(tpep_pickup_datetime), INTERVAL '1' MINUTE))
GROUP BY "PULocationID", window_start, window_end;
