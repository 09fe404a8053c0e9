//! Shared test support: an in-process `basin_broker::Broker` on 127.0.0.1:0
//! with a temporary data directory, running on its own runtime thread so the
//! tests may block (as rdkafka calls do) without starving it; and a runner
//! for the built `basin` binary.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use basin_broker::{Broker, BrokerConfig};
use tempfile::TempDir;

/// A running broker; stopped and its data removed on drop.
pub struct TestBroker {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl TestBroker {
    /// Start a broker that creates topics only when asked to (CreateTopics).
    pub fn start() -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().join("data"),
            auto_create_topics: false,
            ..BrokerConfig::default()
        };
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || serve(config, addr_tx, stop_rx));
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("broker did not bind within 30 s");
        TestBroker {
            addr,
            shutdown: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `host:port` for `bootstrap.servers` / `--brokers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

fn serve(
    config: BrokerConfig,
    addr_tx: mpsc::Sender<SocketAddr>,
    stop_rx: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("broker runtime");
    runtime.block_on(async move {
        let broker = Broker::bind(config).await.expect("broker binds");
        addr_tx.send(broker.local_addr()).expect("test is waiting");
        let stop = async {
            let _ = stop_rx.await;
        };
        broker.serve(stop).await.expect("broker serves cleanly");
    });
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a finished `basin` run left behind.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run `basin ARGS` against `brokers`, feeding `stdin`; killed (and the
/// test failed) after `limit`.
pub fn run_basin(brokers: &str, args: &[&str], stdin: Option<String>, limit: Duration) -> Run {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(args)
        .env("BASIN_BROKERS", brokers)
        .env("BASIN_CONNECT_TIMEOUT_MS", "15000")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn basin");
    let mut input = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(stdin.unwrap_or_default().as_bytes());
    });
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = wait_for_exit(&mut child, limit, args);
    feeder.join().expect("stdin feeder");
    let run = Run {
        success: status.success(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    eprintln!("basin {args:?} -> {status}\n{}", run.stderr);
    run
}

/// Wait for `child` to exit; kill it and fail the test after `limit`.
pub fn wait_for_exit(child: &mut Child, limit: Duration, what: &[&str]) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("basin {what:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Read a pipe to the end on its own thread.
pub fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The test PostgreSQL server's URL (`BASIN_TEST_PG_URL`, set by the test
/// script), else one that `scripts/pg-test-server.sh` starts or reuses.
pub fn pg_url() -> String {
    if let Ok(url) = std::env::var("BASIN_TEST_PG_URL") {
        return url;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-server.sh");
    let out = std::process::Command::new("bash")
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

/// Run `sql` with psql against `url`; rows unaligned, comma-separated.
pub fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtF,", "-c", sql])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new, empty PostgreSQL schema with a unique name.
pub fn pg_schema(url: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("t_{}_{nanos}", std::process::id());
    psql(url, &format!("CREATE SCHEMA {name}"));
    name
}

/// `ms` after midnight of 2026-01-01, as a SQL timestamp literal.
pub fn clock(ms: i64) -> String {
    let s = ms / 1000;
    format!(
        "2026-01-01 {:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms % 1000
    )
}

/// A repeatable pseudo-random sequence from `seed` (a 64-bit LCG's high bits).
pub fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    }
}

/// The seed course's fare features over the trips in `parquet`, cleaned as
/// the course does (the generator keeps the real data's refunds,
/// zero-distance and runaway-meter rows), into `lake.features`.
pub fn fare_features_sql(parquet: &std::path::Path) -> String {
    format!(
        "CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '{}';
         CREATE TABLE lake.features AS
         SELECT tpep_pickup_datetime AS pickup_ts,
                trip_distance,
                (date_part('epoch', tpep_dropoff_datetime) - date_part('epoch', tpep_pickup_datetime)) / 60.0 AS duration_min,
                date_part('hour', tpep_pickup_datetime) AS pickup_hour,
                date_part('dow', tpep_pickup_datetime) AS pickup_weekday,
                \"PULocationID\" AS pu_zone, \"DOLocationID\" AS do_zone,
                passenger_count, \"RatecodeID\" AS rate_code,
                fare_amount
         FROM trips
         WHERE fare_amount BETWEEN 2.5 AND 250 AND trip_distance > 0 AND trip_distance < 100
           AND tpep_dropoff_datetime > tpep_pickup_datetime
           AND tpep_dropoff_datetime < tpep_pickup_datetime + INTERVAL '3 hours'",
        parquet.display()
    )
}

/// The features of `fare_features_sql`, in the order models take them.
pub const FARE_FEATURES: &str =
    "trip_distance, duration_min, pickup_hour, pickup_weekday, pu_zone, do_zone, passenger_count, rate_code";

/// `basin up` on a data dir with its broker and HTTP API on free ports;
/// killed on drop.
pub struct Node {
    pub child: Child,
    pub kafka: String,
    pub http: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `basin up` on `data`; its log lines go to the test's stderr.
pub fn start_node(data: &std::path::Path) -> Node {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["up", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("node: {line}");
            if let Some(rest) = line.strip_prefix("basin broker listening on ") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(("kafka", addr.to_string()));
            }
            if let Some(rest) = line.strip_prefix("basin http api on http://") {
                let _ = tx.send(("http", rest.trim().to_string()));
            }
        }
    });
    let (mut kafka, mut http) = (String::new(), String::new());
    while kafka.is_empty() || http.is_empty() {
        let (what, addr) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the node starts its broker and HTTP API");
        *(if what == "kafka" {
            &mut kafka
        } else {
            &mut http
        }) = addr;
    }
    Node { child, kafka, http }
}
