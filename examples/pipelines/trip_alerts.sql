-- Real-time alerts: trips whose speed is impossible or whose fare is far
-- above what the distance explains.
CREATE TABLE IF NOT EXISTS lake.trip_alerts (
    pickup TIMESTAMP, zone INT, distance DOUBLE, minutes DOUBLE, fare DOUBLE, reason VARCHAR);

INSERT INTO lake.trip_alerts
SELECT tpep_pickup_datetime, "PULocationID", trip_distance, minutes, fare_amount,
       CASE WHEN minutes > 0 AND trip_distance / (minutes / 60.0) > 80 THEN 'impossible speed'
            ELSE 'fare far above distance' END
FROM (SELECT *, (extract(epoch FROM tpep_dropoff_datetime) - extract(epoch FROM tpep_pickup_datetime)) / 60.0 AS minutes
      FROM trips)
WHERE (minutes > 0 AND trip_distance / (minutes / 60.0) > 80)
   OR fare_amount > 20 + 8 * trip_distance;
