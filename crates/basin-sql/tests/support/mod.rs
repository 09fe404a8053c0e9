//! Shared by the integration tests: a query's answer as CSV text, and a
//! real PostgreSQL server with a fresh schema in it for each test.
//!
//! The server's URL comes from `BASIN_TEST_PG_URL` (the test script starts
//! one and sets it); without it, `scripts/pg-test-server.sh` starts or reuses
//! a local server and prints its URL.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use basin_sql::{write_output, Engine, Format, Output};
use tokio_postgres::{Client, NoTls};

/// The rows of the last statement of `sql`, as CSV with a header.
pub async fn csv_of(engine: &Engine, sql: &str) -> String {
    let Some(Output::Rows(df)) = engine.execute(sql).await.unwrap().pop() else {
        panic!("{sql}")
    };
    let mut out = Vec::new();
    write_output(df, Format::Csv, None, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

/// The test server's URL, starting it when needed.
pub fn pg_url() -> String {
    if let Ok(url) = std::env::var("BASIN_TEST_PG_URL") {
        return url;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-server.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A connected client; the connection runs on the current runtime.
pub async fn pg_client(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to test PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A new, empty schema with a unique name, so tests never see each other's tables.
pub async fn fresh_schema(client: &Client) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    name
}
