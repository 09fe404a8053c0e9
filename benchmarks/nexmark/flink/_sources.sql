-- Nexmark sources for Flink: the JSON-lines files `basin gen nexmark --out DIR`
-- writes (the same events `basin gen nexmark --topics` produces), read with
-- the filesystem connector and the json format. ${DATA_DIR} is replaced by
-- the benchmark driver. Event time is date_time; the watermark trails it by
-- 4 s, as in benchmarks/nexmark/queries/_sources.sql and Flink's Nexmark.
CREATE TABLE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR,
    city VARCHAR, state VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA_DIR}/person.jsonl', 'format' = 'json');
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT,
    reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT,
    extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA_DIR}/auction.jsonl', 'format' = 'json');
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    date_time TIMESTAMP(3), extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA_DIR}/bid.jsonl', 'format' = 'json');
-- Nexmark q14's UDF, a Java scalar function in the benchmark's jar (java/).
CREATE TEMPORARY SYSTEM FUNCTION count_char AS 'basin.nexmark.CountChar' LANGUAGE JAVA;
