-- Nexmark q17: auction statistics per day — an updating aggregate (upserts
-- by auction and day). Flink's Nexmark keys the day with
-- DATE_FORMAT(dateTime, 'yyyy-MM-dd'); the cast is the same grouping.
SELECT auction, CAST(date_time AS DATE) AS `day`,
       count(*) AS total_bids,
       count(*) FILTER (WHERE price < 10000) AS rank1_bids,
       count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
       count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
       min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, sum(price) AS sum_price
FROM bid
GROUP BY auction, CAST(date_time AS DATE);
