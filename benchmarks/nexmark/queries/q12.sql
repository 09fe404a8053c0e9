-- Nexmark q12: bids per bidder in 10 s windows of processing time (the
-- time Basin reads each bid), as Flink's Nexmark does it. Results depend
-- on when rows are read, so they are not compared between runs or modes.
CREATE EXTERNAL TABLE bid_proc (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    date_time TIMESTAMP, extra VARCHAR, p_time AS PROCTIME())
STORED AS TOPIC LOCATION 'bid';
SELECT bidder, count(*) AS bid_count, window_start, window_end
FROM TABLE(TUMBLE(TABLE bid_proc, DESCRIPTOR(p_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
