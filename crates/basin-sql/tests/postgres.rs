//! PostgreSQL tables against a real server (see `support`): read with
//! filters pushed into PostgreSQL, every mapped type, writes checked through
//! PostgreSQL's own client, atomic inserts, and clear errors.

mod support;

use basin_sql::{Engine, Output};
use support::{csv_of, fresh_schema, pg_client, pg_url};

async fn setup(ddl: &str) -> (tokio_postgres::Client, String, String) {
    let url = pg_url();
    let client = pg_client(&url).await;
    let schema = fresh_schema(&client).await;
    client
        .batch_execute(&ddl.replace("S.", &format!("{schema}.")))
        .await
        .unwrap();
    (client, url, schema)
}

const TRIPS: &str = "
    CREATE TABLE S.trips (id int8 PRIMARY KEY, zone text, fare numeric(10,2), tip float8,
                          shared bool, day date, at timestamp, at_tz timestamptz, note varchar(20));
    INSERT INTO S.trips VALUES
      (1, 'JFK', 70.00, 10.5, true, '2024-01-01', '2024-01-01 08:15:00', '2024-01-01 08:15:00+02', ''),
      (2, 'LGA', 30.50, NULL, false, '2024-01-02', '2024-01-02 17:30:00.25', NULL, NULL),
      (3, 'JFK', 52.25, 8.0, NULL, NULL, NULL, '2024-01-03 00:00:00+00', 'a,\"b\"');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_every_mapped_type_and_pushes_filters_down() {
    let (_client, url, schema) = setup(TRIPS).await;
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    engine
        .execute(&format!(
            "CREATE EXTERNAL TABLE trips STORED AS POSTGRES LOCATION '{url}' OPTIONS ('table' '{schema}.trips')"
        ))
        .await
        .unwrap();
    let all = csv_of(&engine, "SELECT * FROM trips ORDER BY id").await;
    assert_eq!(
        all,
        "id,zone,fare,tip,shared,day,at,at_tz,note\n\
         1,JFK,70.00,10.5,true,2024-01-01,2024-01-01T08:15:00,2024-01-01T06:15:00Z,\n\
         2,LGA,30.50,,false,2024-01-02,2024-01-02T17:30:00.250,,\n\
         3,JFK,52.25,8.0,,,,2024-01-03T00:00:00Z,\"a,\"\"b\"\"\"\n"
    );
    // An empty string stays an empty string, NULL stays NULL.
    let notes = "SELECT id, note IS NULL AS null_note FROM trips WHERE note = '' OR note IS NULL ORDER BY id";
    assert_eq!(
        csv_of(&engine, notes).await,
        "id,null_note\n1,false\n2,true\n"
    );
    let types = csv_of(
        &engine,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'trips' ORDER BY ordinal_position",
    )
    .await;
    assert!(types.contains("fare,\"Decimal128(10, 2)\""), "{types}");
    assert!(
        types.contains("at_tz,\"Timestamp(µs, \"\"UTC\"\")\""),
        "{types}"
    );

    // Filters PostgreSQL understands the same way go into its query ...
    let query = "SELECT id, fare FROM trips WHERE zone = 'JFK' AND fare > 60 ORDER BY id";
    assert_eq!(csv_of(&engine, query).await, "id,fare\n1,70.00\n");
    let plan = csv_of(&engine, &format!("EXPLAIN {query}")).await;
    assert!(
        plan.contains("PostgresScan: SELECT \"\"id\"\"::int8, \"\"fare\"\"::numeric(10,2) FROM")
            && plan.contains("WHERE (\"\"zone\"\" = 'JFK') AND (\"\"fare\"\" > 60"),
        "{plan}"
    );
    assert!(
        !plan.contains("FilterExec"),
        "filter not pushed down:\n{plan}"
    );
    // ... and the others stay with Basin, with the same answer.
    let query = "SELECT id FROM trips WHERE id * 2 = 4 OR upper(zone) = 'NONE'";
    assert_eq!(csv_of(&engine, query).await, "id\n2\n");
    assert!(csv_of(&engine, &format!("EXPLAIN {query}"))
        .await
        .contains("FilterExec"));
    assert_eq!(
        csv_of(&engine, "SELECT count(*) AS n FROM trips").await,
        "n\n3\n"
    );

    // The definition lives in the catalog: a new session reads it again.
    drop(engine);
    let engine = Engine::open(data.path()).await.unwrap();
    let n = csv_of(
        &engine,
        "SELECT count(*) AS n FROM trips WHERE shared IS NULL",
    )
    .await;
    assert_eq!(n, "n\n1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_in_postgres_atomically() {
    let ddl = "CREATE TABLE S.fares (zone text NOT NULL, hour int4 CHECK (hour >= 0), total numeric(12,2), seen timestamp)";
    let (client, url, schema) = setup(ddl).await;
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    engine
        .execute(&format!(
            "CREATE EXTERNAL TABLE fares STORED AS POSTGRES LOCATION '{url}' OPTIONS ('table' '{schema}.fares')"
        ))
        .await
        .unwrap();
    let out = engine
        .execute(
            "INSERT INTO fares VALUES ('JFK', 8, 70.5, TIMESTAMP '2024-01-01 08:00:00'), ('LGA', NULL, NULL, NULL)",
        )
        .await
        .unwrap();
    assert!(matches!(&out[0], Output::Message(m) if m == "2 rows written"));
    let rows = client
        .query(
            &format!(
                "SELECT zone, hour, total::text, seen::text FROM {schema}.fares ORDER BY zone"
            ),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            let hour: Option<i32> = r.get(1);
            let (total, seen): (Option<String>, Option<String>) = (r.get(2), r.get(3));
            format!("{}|{hour:?}|{total:?}|{seen:?}", r.get::<_, String>(0))
        })
        .collect();
    assert_eq!(
        got,
        [
            "JFK|Some(8)|Some(\"70.50\")|Some(\"2024-01-01 08:00:00\")",
            "LGA|None|None|None"
        ]
    );

    // A row PostgreSQL refuses (CHECK) fails the whole insert: nothing lands.
    let err = engine
        .execute("INSERT INTO fares VALUES ('EWR', 1, 1.0, NULL), ('EWR', -2, 2.0, NULL)")
        .await
        .expect_err("a negative hour is refused");
    assert!(err.to_string().contains("fares_hour_check"), "{err}");
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {schema}.fares"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "a failed insert must leave no rows behind");

    // INSERT OVERWRITE replaces the contents in one transaction.
    engine
        .execute("INSERT OVERWRITE fares SELECT 'JFK', 9, 1.25, NULL")
        .await
        .unwrap();
    assert_eq!(
        csv_of(&engine, "SELECT zone, hour, total FROM fares").await,
        "zone,hour,total\nJFK,9,1.25\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_table_or_column() {
    let (_client, url, schema) = setup("CREATE TABLE S.zones (id int4, name text)").await;
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    let err = engine
        .execute(&format!(
            "CREATE EXTERNAL TABLE z (id INT, borough VARCHAR) STORED AS POSTGRES LOCATION '{url}' OPTIONS ('table' '{schema}.zones')"
        ))
        .await
        .expect_err("borough is not a column");
    let msg = err.to_string();
    assert!(
        msg.contains("column 'borough'") && msg.contains("id, name"),
        "{msg}"
    );
    let err = engine
        .execute(&format!(
            "CREATE EXTERNAL TABLE y STORED AS POSTGRES LOCATION '{url}' OPTIONS ('table' '{schema}.nope')"
        ))
        .await
        .expect_err("no such table");
    assert!(err.to_string().contains(&format!("{schema}.nope")), "{err}");
    let bad = "postgres://basin:secret@127.0.0.1:1/db";
    let err = engine
        .execute(&format!(
            "CREATE EXTERNAL TABLE x STORED AS POSTGRES LOCATION '{bad}'"
        ))
        .await
        .expect_err("nothing listens on port 1");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot connect") && msg.contains("basin@127.0.0.1:1"),
        "{msg}"
    );
    assert!(
        !msg.contains("secret"),
        "the password must not be shown: {msg}"
    );
}
