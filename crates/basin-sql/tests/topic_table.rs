//! Topics as tables against a real broker (Basin's, in-process, spoken to
//! through the Kafka protocol): insert rows as JSON records, read them back
//! with their Kafka metadata, and load a topic into the lake.

mod support;

use basin_broker::{Broker, BrokerConfig};
use basin_sql::{Engine, Output};
use support::csv_of;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_tables_read_and_write_through_kafka() {
    let broker_dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: broker_dir.path().to_path_buf(),
        default_partitions: 3,
        ..Default::default()
    };
    let broker = Broker::bind(config).await.unwrap();
    let addr = broker.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(broker.serve(async {
        let _ = stopped.await;
    }));

    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    let ddl = format!(
        "CREATE EXTERNAL TABLE rides (id BIGINT, zone VARCHAR, fare DOUBLE) STORED AS TOPIC LOCATION 'rides' OPTIONS ('format' 'json', 'brokers' '{addr}')"
    );
    engine.execute(&ddl).await.unwrap();
    let inserted = engine
        .execute("INSERT INTO rides (id, zone, fare) VALUES (1, 'JFK', 70.0), (2, 'LGA', 30.5), (3, NULL, 12.25)")
        .await
        .unwrap();
    assert!(matches!(&inserted[0], Output::Message(m) if m.starts_with("3 rows")));

    let rows = csv_of(&engine, "SELECT id, zone, fare FROM rides ORDER BY id").await;
    assert_eq!(rows, "id,zone,fare\n1,JFK,70.0\n2,LGA,30.5\n3,,12.25\n");
    let meta = csv_of(
        &engine,
        "SELECT count(*) AS n, count(DISTINCT concat(_partition, ':', _offset)) AS offsets, min(_partition) >= 0 AS ok, count(_timestamp) AS ts FROM rides",
    )
    .await;
    assert_eq!(meta, "n,offsets,ok,ts\n3,3,true,3\n");

    // The definition persists, and a topic loads into the lake (ELT).
    drop(engine);
    let engine = Engine::open(data.path()).await.unwrap();
    engine
        .execute("CREATE TABLE lake.rides AS SELECT id, zone, fare FROM rides")
        .await
        .unwrap();
    assert_eq!(
        csv_of(&engine, "SELECT sum(fare) AS s FROM lake.rides").await,
        "s\n112.75\n"
    );

    let missing = format!(
        "CREATE EXTERNAL TABLE nothing (id BIGINT) STORED AS TOPIC LOCATION 'no-such-topic' OPTIONS ('brokers' '{addr}')"
    );
    engine.execute(&missing).await.unwrap();
    let err = engine.execute("SELECT * FROM nothing").await;
    let err = match err {
        Err(e) => e.to_string(),
        Ok(mut outs) => match outs.pop() {
            Some(Output::Rows(df)) => df
                .collect()
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        },
    };
    assert!(err.contains("no-such-topic"), "{err}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
