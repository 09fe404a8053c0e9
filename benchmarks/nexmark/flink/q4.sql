-- Nexmark q4: average closing price per category — the highest bid of each
-- auction while it was open, averaged per category (an updating aggregate
-- over a join, as in Flink's Nexmark).
SELECT Q.category, avg(Q.`final`) AS avg_final
FROM (SELECT max(B.price) AS `final`, A.category
      FROM auction AS A JOIN bid AS B
        ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
      GROUP BY A.id, A.category) AS Q
GROUP BY Q.category;
