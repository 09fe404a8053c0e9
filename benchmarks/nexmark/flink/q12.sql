-- Nexmark q12: bids per bidder in 10 s windows of processing time, as in
-- Flink's Nexmark (a view adds the PROCTIME() attribute to the bids).
-- Windows depend on when rows are read, so rows out are not compared.
CREATE TEMPORARY VIEW bid_proc AS SELECT *, PROCTIME() AS p_time FROM bid;
SELECT bidder, count(*) AS bid_count, window_start, window_end
FROM TABLE(TUMBLE(TABLE bid_proc, DESCRIPTOR(p_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
