//! The SQL engine over a data dir: external tables persist, lake tables are
//! written atomically (optionally partitioned), and errors point at the SQL.

use std::path::Path;

use basin_sql::{write_output, Engine, Format, Output};

async fn rows_of(engine: &Engine, sql: &str) -> String {
    let mut outputs = engine.execute(sql).await.unwrap();
    let Some(Output::Rows(df)) = outputs.pop() else {
        panic!("{sql}: not a query")
    };
    let mut out = Vec::new();
    write_output(df, Format::Csv, None, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

async fn message_of(engine: &Engine, sql: &str) -> String {
    match engine.execute(sql).await.unwrap().pop() {
        Some(Output::Message(m)) => m,
        Some(Output::Rows(df)) => {
            let mut out = Vec::new();
            write_output(df, Format::Csv, None, &mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        }
        None => String::new(),
    }
}

fn write_csv(dir: &Path) -> String {
    let path = dir.join("trips.csv");
    std::fs::write(
        &path,
        "id,zone,fare\n1,JFK,70.0\n2,LGA,30.5\n3,JFK,52.0\n4,EWR,80.25\n",
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn external_tables_survive_a_new_session() {
    let data = tempfile::tempdir().unwrap();
    let csv = write_csv(data.path());
    {
        let engine = Engine::open(data.path()).await.unwrap();
        let ddl = format!(
            "CREATE EXTERNAL TABLE trips (id BIGINT, zone VARCHAR, fare DOUBLE) STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true')"
        );
        engine.execute(&ddl).await.unwrap();
    }
    let engine = Engine::open(data.path()).await.unwrap();
    let out = rows_of(
        &engine,
        "SELECT zone, count(*) AS n FROM trips GROUP BY zone ORDER BY zone",
    )
    .await;
    assert_eq!(out, "zone,n\nEWR,1\nJFK,2\nLGA,1\n");
    engine.execute("DROP TABLE trips").await.unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    assert!(
        engine.execute("SELECT * FROM trips").await.is_err(),
        "dropped table must stay dropped"
    );
}

#[tokio::test]
async fn lake_ctas_insert_and_partitions() {
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    let msg = message_of(
        &engine,
        "CREATE TABLE lake.fares PARTITIONED BY (zone) AS SELECT * FROM (VALUES (1, 'JFK', 70.0), (2, 'LGA', 30.5), (3, 'JFK', 52.0)) AS t(id, zone, fare)",
    )
    .await;
    assert!(msg.contains("3 rows"), "{msg}");
    let table_dir = data.path().join("lake/fares");
    assert!(table_dir.join("v1/zone=JFK").is_dir() && table_dir.join("v1/zone=LGA").is_dir());
    engine
        .execute("INSERT INTO lake.fares (id, zone, fare) VALUES (4, 'EWR', 80.25)")
        .await
        .unwrap();
    let out = rows_of(
        &engine,
        "SELECT zone, sum(fare) AS s FROM lake.fares GROUP BY zone ORDER BY zone",
    )
    .await;
    assert_eq!(out, "zone,s\nEWR,80.25\nJFK,122.0\nLGA,30.5\n");
    let err = engine
        .execute("CREATE TABLE lake.fares AS SELECT 1 AS x")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    engine
        .execute("CREATE OR REPLACE TABLE lake.fares AS SELECT 1 AS x")
        .await
        .unwrap();
    assert_eq!(rows_of(&engine, "SELECT * FROM lake.fares").await, "x\n1\n");
    let tables = rows_of(
        &engine,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'lake'",
    )
    .await;
    assert_eq!(tables, "table_name\nfares\n");
}

#[tokio::test]
async fn ctas_over_a_query_of_several_partitions_keeps_every_row() {
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    // A UNION ALL plans one output partition per input.
    let msg = message_of(
        &engine,
        "CREATE TABLE lake.u AS SELECT value FROM range(0, 50000) WHERE value % 2 = 0 \
         UNION ALL SELECT value FROM range(50000, 100000) WHERE value % 2 = 0",
    )
    .await;
    assert!(msg.contains("with 50000 rows"), "{msg}");
    let out = rows_of(&engine, "SELECT count(*) AS n, sum(value) AS s FROM lake.u").await;
    assert_eq!(out, "n,s\n50000,2499950000\n");
}

#[tokio::test]
async fn a_failed_write_leaves_the_table_as_it_was() {
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    engine
        .execute("CREATE TABLE lake.t AS SELECT * FROM (VALUES (1), (2)) AS v(x)")
        .await
        .unwrap();
    let failed = engine
        .execute("INSERT INTO lake.t SELECT CAST(x / (x - 2) AS INT) FROM lake.t")
        .await;
    assert!(failed.is_err(), "division by zero must fail the job");
    assert_eq!(
        rows_of(&engine, "SELECT x FROM lake.t ORDER BY x").await,
        "x\n1\n2\n"
    );
    let versions: Vec<_> = std::fs::read_dir(data.path().join("lake/t"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !versions.iter().any(|v| v == "v2"),
        "failed write left {versions:?}"
    );
    let failed_new = engine
        .execute("CREATE TABLE lake.u AS SELECT CAST(1 / 0 AS INT) AS y")
        .await;
    assert!(failed_new.is_err());
    assert!(
        engine.execute("SELECT * FROM lake.u").await.is_err(),
        "a failed CTAS creates nothing"
    );
}

#[tokio::test]
async fn a_killed_write_is_cleaned_up_on_open() {
    let data = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(data.path()).await.unwrap();
        engine
            .execute("CREATE TABLE lake.t AS SELECT 1 AS x")
            .await
            .unwrap();
    }
    // What a job killed after writing files but before committing leaves.
    let stale = data.path().join("lake/t/v2");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("part-dead-00001.parquet"), b"half a file").unwrap();
    let orphan = data.path().join("lake/never_committed/v1");
    std::fs::create_dir_all(&orphan).unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    let cleaned: Vec<String> = engine.leftovers().iter().map(|l| l.table.clone()).collect();
    assert_eq!(
        cleaned,
        vec!["never_committed".to_string(), "t".to_string()]
    );
    assert!(!stale.exists() && !orphan.exists());
    assert_eq!(rows_of(&engine, "SELECT x FROM lake.t").await, "x\n1\n");
}

#[tokio::test]
async fn errors_name_the_line_and_column() {
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    let parse = engine
        .execute("SELECT 1;\nSELEC 2")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(parse.contains("Line: 2, Column: 1"), "{parse}");
    let plan = engine
        .execute("SELECT nope\nFROM (VALUES (1)) AS t(x)")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        plan.contains("nope") && plan.contains("line 1, column 8"),
        "{plan}"
    );
}

#[tokio::test]
async fn output_formats() {
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    let sql = "SELECT * FROM (VALUES (1, 'a'), (2, NULL)) AS t(n, s) ORDER BY n";
    let run = |format| {
        let engine = &engine;
        async move {
            let Some(Output::Rows(df)) = engine.execute(sql).await.unwrap().pop() else {
                panic!()
            };
            let mut out = Vec::new();
            let rows = write_output(df, format, None, &mut out).await.unwrap();
            (rows, String::from_utf8(out).unwrap())
        }
    };
    let (rows, json) = run(Format::Json).await;
    assert_eq!(rows, 2);
    assert_eq!(json, "{\"n\":1,\"s\":\"a\"}\n{\"n\":2}\n");
    let (_, table) = run(Format::Table).await;
    assert!(table.contains("| n | s |"), "{table}");
    let file = data.path().join("out.parquet");
    let Some(Output::Rows(df)) = engine.execute(sql).await.unwrap().pop() else {
        panic!()
    };
    write_output(df, Format::Parquet, Some(&file), &mut Vec::new())
        .await
        .unwrap();
    let back = rows_of(
        &engine,
        &format!("SELECT count(*) AS c FROM '{}'", file.display()),
    )
    .await;
    assert_eq!(back, "c\n2\n");
}

#[tokio::test]
async fn catalog_keys_follow_sql_name_resolution() {
    let data = tempfile::tempdir().unwrap();
    let csv = write_csv(data.path());
    let json = data.path().join("t.json");
    std::fs::write(&json, "{\"id\":1}\n").unwrap();
    {
        let engine = Engine::open(data.path()).await.unwrap();
        let ddl = format!("CREATE EXTERNAL TABLE public.trips STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true')");
        engine.execute(&ddl).await.unwrap();
        let again = format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS trips STORED AS JSON LOCATION '{}'",
            json.display()
        );
        engine.execute(&again).await.unwrap();
    }
    let engine = Engine::open(data.path()).await.unwrap();
    assert_eq!(
        rows_of(&engine, "SELECT count(*) AS n FROM trips").await,
        "n\n4\n",
        "IF NOT EXISTS kept the first definition"
    );
    engine.execute("DROP TABLE TRIPS").await.unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    assert!(
        engine.execute("SELECT * FROM trips").await.is_err(),
        "DROP TABLE TRIPS dropped public.trips for good"
    );
}
