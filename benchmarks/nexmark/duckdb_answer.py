#!/usr/bin/env python3
"""DuckDB's answer to a Nexmark query over `basin gen nexmark --out DIR`
files, as JSON lines (the reference the tests compare Basin against).

usage: duckdb_answer.py QUERY.sql EVENTS_DIR
"""
import datetime
import decimal
import json
import sys

import duckdb

COLUMNS = {
    "person": "id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, "
              "state VARCHAR, date_time TIMESTAMP, extra VARCHAR",
    "auction": "id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, "
               "date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR",
    "bid": "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, "
           "date_time TIMESTAMP, extra VARCHAR",
}


def columns_struct(spec):
    parts = [c.strip().split(" ", 1) for c in spec.split(",")]
    return "{" + ", ".join(f"'{n}': '{t}'" for n, t in parts) + "}"


def value(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


def main():
    query_file, events = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    for table, spec in COLUMNS.items():
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_json('{events}/{table}.jsonl', "
            f"format='newline_delimited', columns={columns_struct(spec)}, timestampformat='%Y-%m-%d %H:%M:%S.%g')"
        )
    con.execute("CREATE MACRO count_char(s, c) AS length(s) - length(replace(s, c, ''))")
    sql = open(query_file).read()
    result = con.execute(sql)
    names = [d[0] for d in result.description]
    out = sys.stdout
    for row in result.fetchall():
        out.write(json.dumps({n: value(v) for n, v in zip(names, row)}) + "\n")


if __name__ == "__main__":
    main()
