-- Real-time pricing: demand per zone over the last 10 minutes, every
-- minute, and a surge multiplier from it.
CREATE TABLE IF NOT EXISTS lake.surge (
    zone INT, window_end TIMESTAMP, trips BIGINT, multiplier DOUBLE);

INSERT INTO lake.surge
SELECT zone, window_end, trips,
       CASE WHEN trips >= 40 THEN 2.0 WHEN trips >= 20 THEN 1.5 WHEN trips >= 10 THEN 1.2 ELSE 1.0 END
FROM (SELECT "PULocationID" AS zone, window_end, count(*) AS trips
      FROM TABLE(HOP(TABLE trips, DESCRIPTOR(tpep_pickup_datetime), INTERVAL '1' MINUTE, INTERVAL '10' MINUTE))
      GROUP BY "PULocationID", window_start, window_end);
