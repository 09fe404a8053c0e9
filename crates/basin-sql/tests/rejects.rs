//! Bad input rows: rejected with file, line and reason into `lake._rejects`
//! up to the limit; past it the statement fails and writes nothing. Schema
//! mismatches (a CSV header, a Parquet table's declared columns, an INSERT's
//! query) name the column.

mod support;

use std::path::Path;

use basin_sql::{Engine, Output};
use support::csv_of;

const TRIPS: &str = "id,zone,fare,day
1,JFK,70.5,2024-01-01
2,LGA,abc,2024-01-01
3,EWR,12.0
,JFK,8.0,2024-01-02
5,JFK,9.25,2024-13-45
6,LGA,30.0,2024-01-03
";

async fn engine_with_trips(dir: &Path) -> Engine {
    let file = dir.join("trips.csv");
    std::fs::write(&file, TRIPS).unwrap();
    let engine = Engine::open(&dir.join("basin")).await.unwrap();
    engine
        .execute(&format!(
            "CREATE EXTERNAL TABLE trips (id BIGINT NOT NULL, zone VARCHAR, fare DOUBLE, day DATE) \
             STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            file.display()
        ))
        .await
        .unwrap();
    engine
}

fn lake_has(dir: &Path, table: &str) -> bool {
    dir.join("basin/lake")
        .join(table)
        .join("_table.json")
        .exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_fail_the_job_by_default_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_trips(dir.path()).await;
    let err = engine
        .execute("CREATE TABLE lake.trips AS SELECT * FROM trips")
        .await
        .expect_err("bad rows with --max-rejects 0");
    let msg = err.to_string();
    assert!(
        msg.contains("trips.csv line 3: column 'fare': cannot read 'abc' as Float64"),
        "{msg}"
    );
    assert!(msg.contains("--max-rejects"), "{msg}");
    assert!(
        !lake_has(dir.path(), "trips"),
        "a failed job must leave no table"
    );
    assert!(!lake_has(dir.path(), "_rejects"), "nor rejects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_go_to_the_rejects_table_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_trips(dir.path()).await;
    engine.set_max_rejects(4);
    let out = engine
        .execute("CREATE TABLE lake.trips AS SELECT * FROM trips")
        .await
        .unwrap();
    let Output::Message(message) = &out[0] else {
        panic!("a message")
    };
    assert!(
        message.starts_with(
            "created lake.trips with 2 rows; 4 bad input rows rejected: see lake._rejects"
        ),
        "{message}"
    );
    assert_eq!(
        csv_of(&engine, "SELECT id, fare FROM lake.trips ORDER BY id").await,
        "id,fare\n1,70.5\n6,30.0\n"
    );
    let rejects = csv_of(
        &engine,
        "SELECT table_name, regexp_replace(file, '.*/', '') AS file, line, reason, raw FROM lake._rejects ORDER BY line",
    )
    .await;
    assert_eq!(
        rejects,
        "table_name,file,line,reason,raw\n\
         trips,trips.csv,3,column 'fare': cannot read 'abc' as Float64,\"2,LGA,abc,2024-01-01\"\n\
         trips,trips.csv,4,\"expected 4 fields, found 3\",\"3,EWR,12.0\"\n\
         trips,trips.csv,5,column 'id' is empty but declared NOT NULL,\",JFK,8.0,2024-01-02\"\n\
         trips,trips.csv,6,column 'day': cannot read '2024-13-45' as Date32,\"5,JFK,9.25,2024-13-45\"\n"
    );

    // One limit below what the file needs: the job fails and adds nothing.
    engine.set_max_rejects(3);
    let err = engine
        .execute("INSERT INTO lake.trips SELECT * FROM trips")
        .await
        .expect_err("4 bad rows > 3");
    assert!(
        err.to_string().contains("more than 3 bad input rows"),
        "{err}"
    );
    let counts = "SELECT (SELECT count(*) FROM lake.trips) AS trips, (SELECT count(*) FROM lake._rejects) AS rejects";
    assert_eq!(csv_of(&engine, counts).await, "trips,rejects\n2,4\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_reject_malformed_records() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    std::fs::write(
        &file,
        "{\"id\": 1, \"user\": \"ada\", \"score\": 9.5}\n\
         {\"id\": 2, \"user\": \"bob\", \"score\": \n\
         [1, 2]\n\
         \n\
         {\"id\": \"x\", \"user\": \"cy\"}\n\
         {\"id\": 5, \"user\": {\"name\": \"dee\"}, \"score\": 1}\n\
         {\"id\": 6, \"score\": {\"v\": 1}}\n",
    )
    .unwrap();
    let engine = Engine::open(&dir.path().join("basin")).await.unwrap();
    engine.set_max_rejects(10);
    engine
        .execute(&format!(
            "CREATE EXTERNAL TABLE events (id BIGINT, user VARCHAR, score DOUBLE) STORED AS JSON LOCATION '{}'",
            file.display()
        ))
        .await
        .unwrap();
    let out = engine
        .execute("CREATE TABLE lake.events AS SELECT * FROM events")
        .await
        .unwrap();
    assert!(matches!(&out[0], Output::Message(m) if m.contains("with 2 rows; 4 bad input rows")));
    assert_eq!(
        csv_of(&engine, "SELECT * FROM lake.events ORDER BY id").await,
        "id,user,score\n1,ada,9.5\n5,\"{\"\"name\"\":\"\"dee\"\"}\",1.0\n"
    );
    let reasons = csv_of(
        &engine,
        "SELECT line, reason FROM lake._rejects ORDER BY line",
    )
    .await;
    let lines: Vec<&str> = reasons.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{reasons}");
    assert_eq!(
        lines[0],
        "2,invalid JSON at column 33: EOF while parsing a value"
    );
    assert_eq!(lines[1], "3,expected a JSON object");
    assert_eq!(lines[2], "5,column 'id': cannot read 'x' as Int64");
    assert!(
        lines[3].starts_with("7,\"column 'score': expected a Float64 value"),
        "{reasons}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_that_does_not_match_names_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zones.csv");
    std::fs::write(&file, "code,name,borough,opened\nJFK,Kennedy,Queens,1948\n").unwrap();
    let engine = Engine::open(&dir.path().join("basin")).await.unwrap();
    engine
        .execute(&format!(
            "CREATE EXTERNAL TABLE zones (code VARCHAR, name VARCHAR, borough VARCHAR) STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            file.display()
        ))
        .await
        .unwrap();
    let Some(Output::Rows(df)) = engine.execute("SELECT * FROM zones").await.unwrap().pop() else {
        panic!("rows")
    };
    let err = df
        .collect()
        .await
        .expect_err("four header columns, three table columns");
    let msg = err.to_string();
    assert!(
        msg.contains("schema mismatch in") && msg.contains("zones.csv"),
        "{msg}"
    );
    assert!(msg.contains("extra column 'opened'"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_mismatches_name_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&dir.path().join("basin")).await.unwrap();
    let file = dir.path().join("fares.parquet");
    engine
        .execute(&format!(
            "COPY (SELECT 1 AS id, 2.5 AS fare, 'JFK' AS zone) TO '{}' STORED AS PARQUET",
            file.display()
        ))
        .await
        .unwrap();
    let declare = |cols: &str| {
        format!(
            "CREATE EXTERNAL TABLE f ({cols}) STORED AS PARQUET LOCATION '{}'",
            file.display()
        )
    };
    let err = engine
        .execute(&declare("id BIGINT, fare INT"))
        .await
        .expect_err("fare holds doubles");
    assert!(
        err.to_string()
            .contains("column 'fare' of datafusion.public.f is declared Int32 but the files at"),
        "{err}"
    );
    let err = engine
        .execute(&declare("id BIGINT, tip DOUBLE"))
        .await
        .expect_err("no tip column");
    assert!(
        err.to_string()
            .contains("column 'tip' of datafusion.public.f is not in the files"),
        "{err}"
    );
    // A refused definition is not kept; a fitting one is.
    engine
        .execute(&declare("id BIGINT, zone VARCHAR"))
        .await
        .unwrap();
    assert_eq!(csv_of(&engine, "SELECT * FROM f").await, "id,zone\n1,JFK\n");

    engine
        .execute("CREATE TABLE lake.fares AS SELECT id, fare FROM f2")
        .await
        .expect_err("no table f2");
    engine
        .execute("CREATE TABLE lake.fares AS SELECT 1 AS id, 2.5 AS fare")
        .await
        .unwrap();
    let err = engine
        .execute("INSERT INTO lake.fares SELECT zone, 1.0 FROM f")
        .await
        .expect_err("text into a number column");
    assert!(
        err.to_string()
            .contains("column 'id' of lake.fares is Int64 but the query's column 1 (zone) is Utf8"),
        "{err}"
    );
    let err = engine
        .execute("INSERT INTO lake.fares SELECT 1")
        .await
        .expect_err("one column short");
    assert!(
        err.to_string().contains("but 2 are expected (id, fare)"),
        "{err}"
    );
    // CTAS columns are nullable, so NULLs insert fine.
    engine
        .execute("INSERT INTO lake.fares VALUES (2, NULL), (NULL, 1.5)")
        .await
        .unwrap();
    assert_eq!(
        csv_of(
            &engine,
            "SELECT count(*) AS n, count(id) AS ids FROM lake.fares"
        )
        .await,
        "n,ids\n3,2\n"
    );
}
