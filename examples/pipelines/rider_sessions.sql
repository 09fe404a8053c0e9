-- Busy spells per pickup zone: trips less than 2 minutes apart form a session.
CREATE TABLE IF NOT EXISTS lake.zone_sessions (
    zone INT, session_start TIMESTAMP, session_end TIMESTAMP, trips BIGINT, fares DOUBLE);

INSERT INTO lake.zone_sessions
SELECT "PULocationID", window_start, window_end, count(*), sum(fare_amount)
FROM TABLE(SESSION(TABLE trips PARTITION BY "PULocationID", DESCRIPTOR(tpep_pickup_datetime), INTERVAL '2' MINUTE))
GROUP BY "PULocationID", window_start, window_end;
