-- Nexmark sources: the topics `basin gen nexmark --topics` fills.
-- Event time is date_time; the watermark trails it by 4 s (as in Flink's Nexmark).
CREATE EXTERNAL TABLE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR,
    city VARCHAR, state VARCHAR, date_time TIMESTAMP, extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
STORED AS TOPIC LOCATION 'person';
CREATE EXTERNAL TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT,
    reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
STORED AS TOPIC LOCATION 'auction';
CREATE EXTERNAL TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    date_time TIMESTAMP, extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
STORED AS TOPIC LOCATION 'bid';
