-- Nexmark q7: highest bid — the bids with the highest price in each 10 s window.
SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) AS B
JOIN (SELECT max(price) AS maxprice, window_start, window_end
      FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
      GROUP BY window_start, window_end) AS B1
ON B.price = B1.maxprice AND B.window_start = B1.window_start AND B.window_end = B1.window_end;
