-- Nexmark q11: user sessions — bids per bidder per session (10 s gap).
SELECT bidder, count(*) AS bid_count, window_start AS start_time, window_end AS end_time
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
