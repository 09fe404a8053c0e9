//! Keyed tables: a pipeline writes an updating GROUP BY into a compacted
//! topic (`'key'` + `'compact' 'true'`); `basin up`'s HTTP API answers the
//! latest row per key and follows new records; a batch scan of the table
//! gives one row per key.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::run_basin;

const LIMIT: Duration = Duration::from_secs(120);
const ZONES: i64 = 7;
const RIDES: i64 = 700;

/// GET `path`: (status, JSON body).
fn get(http: &str, path: &str) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("http response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {body}"));
    (status, body)
}

const PIPELINE: &str = "
CREATE EXTERNAL TABLE rides (zone BIGINT, fare BIGINT) STORED AS TOPIC LOCATION 'rides';
CREATE EXTERNAL TABLE zone_totals (zone BIGINT, trips BIGINT, fare BIGINT)
    STORED AS TOPIC LOCATION 'zone-totals' OPTIONS ('key' 'zone', 'compact' 'true');
INSERT INTO zone_totals SELECT zone, count(*), sum(fare) FROM rides GROUP BY zone;
";

/// (trips, fare sum) of `zone` in the produced rides.
fn expected(zone: i64) -> (i64, i64) {
    let fares: Vec<i64> = (0..RIDES).filter(|i| i % ZONES == zone).collect();
    (fares.len() as i64, fares.iter().sum())
}

fn sql(brokers: &str, data: &str, statement: &str) -> String {
    let out = run_basin(
        brokers,
        &["sql", "--data-dir", data, "--format", "csv", statement],
        None,
        LIMIT,
    );
    assert!(out.success, "{statement}: {}", out.stderr);
    out.stdout
}

#[test]
fn keyed_table_served_over_http_and_scanned_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = common::start_node(&data);
    let (brokers, http) = (node.kafka.clone(), node.http.clone());
    let basin = |args: &[&str], stdin: Option<String>| run_basin(&brokers, args, stdin, LIMIT);
    assert!(basin(&["topic", "create", "rides", "--partitions", "3"], None).success);
    let rides: String = (0..RIDES)
        .map(|i| format!("{{\"zone\":{},\"fare\":{i}}}\n", i % ZONES))
        .collect();
    assert!(basin(&["produce", "rides"], Some(rides)).success);

    let file = dir.path().join("totals.sql");
    std::fs::write(&file, PIPELINE).unwrap();
    let jobs = dir.path().join("jobs");
    let run = ["pipeline", "run", file.to_str().unwrap(), "--bounded"];
    let out = basin(
        &[&run[..], &["--data-dir", jobs.to_str().unwrap()]].concat(),
        None,
    );
    assert!(out.success, "{}", out.stderr);

    // The sink created its topic compacted.
    let described = basin(&["topic", "describe", "zone-totals"], None);
    assert!(
        described.stdout.contains("cleanup.policy") && described.stdout.contains("compact"),
        "{}",
        described.stdout
    );

    // Every key's latest row over HTTP.
    for zone in 0..ZONES {
        let (status, body) = get(&http, &format!("/api/keyed/zone-totals/{zone}"));
        assert_eq!(status, 200, "{body}");
        let (trips, fare) = expected(zone);
        assert_eq!(body["row"]["trips"], trips, "{body}");
        assert_eq!(body["row"]["fare"], fare, "{body}");
        assert_eq!(body["key"], zone.to_string());
    }
    let (status, body) = get(&http, "/api/keyed/zone-totals?limit=3");
    assert_eq!(status, 200);
    assert_eq!(body["keys"], ZONES, "{body}");
    assert_eq!(body["rows"].as_array().unwrap().len(), 3, "{body}");

    // Clear errors for a missing key, a topic that is not keyed, no topic.
    let (status, body) = get(&http, "/api/keyed/zone-totals/99");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("'99'"), "{body}");
    let (status, body) = get(&http, "/api/keyed/rides/1");
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a keyed table"),
        "{body}"
    );
    let (status, body) = get(&http, "/api/keyed/no-such-topic/1");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no topic"),
        "{body}"
    );

    // A batch scan gives the latest row per key, though the topic holds
    // every update the job made.
    let d = data.to_str().unwrap();
    let keyed = "CREATE EXTERNAL TABLE zt (zone BIGINT, trips BIGINT, fare BIGINT) STORED AS TOPIC LOCATION 'zone-totals' OPTIONS ('key' 'zone', 'compact' 'true')";
    let log = "CREATE EXTERNAL TABLE zt_log (zone BIGINT, trips BIGINT, fare BIGINT) STORED AS TOPIC LOCATION 'zone-totals'";
    sql(&brokers, d, keyed);
    sql(&brokers, d, log);
    let rows = sql(
        &brokers,
        d,
        "SELECT zone, trips, fare FROM zt ORDER BY zone",
    );
    let want: String = (0..ZONES)
        .map(|z| format!("{z},{},{}\n", expected(z).0, expected(z).1))
        .collect();
    assert_eq!(
        rows.lines().skip(1).collect::<Vec<_>>().join("\n") + "\n",
        want
    );
    let records = sql(&brokers, d, "SELECT count(*) FROM zt_log");
    let records: i64 = records.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(records >= ZONES, "{records}");

    // The view follows records written after it loaded.
    let update = "{\"zone\":3,\"trips\":1000,\"fare\":1}\n".to_string();
    assert!(
        basin(
            &["produce", "zone-totals", "--key-field", "zone"],
            Some(update)
        )
        .success
    );
    let start = Instant::now();
    loop {
        let (_, body) = get(&http, "/api/keyed/zone-totals/3");
        if body["row"]["trips"] == 1000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no update: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A lookup join against the keyed table, the same in both modes.
    for mode in ["stream", "batch"] {
        let joined = lookup_join(dir.path(), &brokers, d, mode);
        let want: String = (0..ZONES)
            .map(|z| {
                let trips = if z == 3 { 1000 } else { expected(z).0 };
                format!("{z},{},{trips}\n", expected(z).0)
            })
            .collect();
        assert_eq!(joined, want, "{mode}");
    }
    drop(node);
}

/// Rides joined with their zone's row of the keyed table, run in `mode`:
/// per zone, the rides joined and the `trips` they saw, as CSV lines.
fn lookup_join(dir: &std::path::Path, brokers: &str, data: &str, mode: &str) -> String {
    let out_topic = format!("enriched-{mode}");
    let file = dir.join(format!("enrich-{mode}.sql"));
    let pipeline = format!(
        "CREATE EXTERNAL TABLE rides (zone BIGINT, fare BIGINT) STORED AS TOPIC LOCATION 'rides';
         CREATE EXTERNAL TABLE zone_totals (zone BIGINT, trips BIGINT, fare BIGINT)
             STORED AS TOPIC LOCATION 'zone-totals' OPTIONS ('key' 'zone', 'compact' 'true');
         CREATE EXTERNAL TABLE enriched (zone BIGINT, fare BIGINT, trips BIGINT)
             STORED AS TOPIC LOCATION '{out_topic}';
         INSERT INTO enriched SELECT r.zone, r.fare, t.trips
             FROM rides r JOIN zone_totals t ON r.zone = t.zone;"
    );
    std::fs::write(&file, pipeline).unwrap();
    let jobs = dir.join(format!("jobs-{mode}"));
    let run = [
        "pipeline",
        "run",
        file.to_str().unwrap(),
        "--mode",
        mode,
        "--bounded",
        "--data-dir",
        jobs.to_str().unwrap(),
    ];
    let run = if mode == "batch" {
        [&run[..5], &run[6..]].concat()
    } else {
        run.to_vec()
    };
    let out = run_basin(brokers, &run, None, LIMIT);
    assert!(out.success, "{mode}: {}", out.stderr);
    let table = format!("read_{mode}");
    sql(
        brokers,
        data,
        &format!("CREATE EXTERNAL TABLE {table} (zone BIGINT, fare BIGINT, trips BIGINT) STORED AS TOPIC LOCATION '{out_topic}'"),
    );
    let rows = sql(
        brokers,
        data,
        &format!("SELECT zone, count(*), max(trips) FROM {table} GROUP BY zone ORDER BY zone"),
    );
    rows.lines().skip(1).map(|l| format!("{l}\n")).collect()
}

/// A keyed sink refuses an existing topic that is not compacted.
#[test]
fn keyed_sink_refuses_a_topic_that_is_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start_node(&dir.path().join("data"));
    let brokers = node.kafka.clone();
    let basin = |args: &[&str], stdin: Option<String>| run_basin(&brokers, args, stdin, LIMIT);
    assert!(basin(&["topic", "create", "rides"], None).success);
    assert!(basin(&["topic", "create", "zone-totals"], None).success);
    assert!(
        basin(
            &["produce", "rides"],
            Some("{\"zone\":1,\"fare\":2}\n".into())
        )
        .success
    );
    let file = dir.path().join("totals.sql");
    std::fs::write(&file, PIPELINE).unwrap();
    let jobs = dir.path().join("jobs");
    let out = basin(
        &[
            "pipeline",
            "run",
            file.to_str().unwrap(),
            "--bounded",
            "--data-dir",
            jobs.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.success);
    assert!(
        out.stderr.contains("zone-totals") && out.stderr.contains("cleanup.policy=delete"),
        "{}",
        out.stderr
    );
    drop(node);
}
