//! Pipelines against a real broker (Basin's, in-process, through the Kafka
//! protocol): the same SQL file run in stream mode (bounded, with
//! checkpoints) and in batch mode gives the same rows, and both equal an
//! answer computed here from the events themselves.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use basin_broker::{Broker, BrokerConfig};
use basin_sql::{Engine, Output};
use std::sync::atomic::Ordering;

use basin_stream::pipeline::{Mode, Pipeline, RunOptions, RunSummary};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A bid: auction, price, event time (ms since the epoch).
#[derive(Debug, Clone, Copy)]
struct Bid {
    auction: i64,
    price: i64,
    time: i64,
}

const BASE: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Bids 100 ms apart with up to 2 s of disorder (less than the watermark delay).
fn bids(n: usize) -> Vec<Bid> {
    let mut state = 42u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    (0..n)
        .map(|i| Bid {
            auction: (next() % 7) as i64,
            price: 1 + (next() % 1000) as i64,
            time: BASE + 60_000 + i as i64 * 100 - (next() % 2000) as i64,
        })
        .collect()
}

fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let t = chrono_like(secs);
    format!("{t}.{:03}", ms.rem_euclid(1000))
}

/// `YYYY-MM-DD HH:MM:SS` of seconds since the epoch (UTC), days from 2026-01-01.
fn chrono_like(secs: i64) -> String {
    let base = BASE / 1000;
    let d = secs - base;
    assert!(
        (0..86_400 * 28).contains(&d),
        "test times stay in January 2026"
    );
    let (day, rest) = (d / 86_400, d % 86_400);
    format!(
        "2026-01-{:02} {:02}:{:02}:{:02}",
        day + 1,
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

async fn start_broker(dir: &Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        default_partitions: 3,
        ..Default::default()
    };
    let broker = Broker::bind(config).await.unwrap();
    let addr = broker.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(broker.serve(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn produce(brokers: &str, topic: &str, bids: &[Bid]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for b in bids {
        let value = format!(
            r#"{{"auction": {}, "price": {}, "date_time": "{}"}}"#,
            b.auction,
            b.price,
            timestamp(b.time)
        );
        let key = b.auction.to_string();
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        pending.push(producer.send_result(record).unwrap());
    }
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
}

fn pipeline_sql(brokers: &str, window: &str) -> String {
    pipeline_on("bids", brokers, window)
}

fn pipeline_on(topic: &str, brokers: &str, window: &str) -> String {
    format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '3' SECOND)
         STORED AS TOPIC LOCATION '{topic}' OPTIONS ('brokers' '{brokers}');
         CREATE TABLE IF NOT EXISTS lake.per_auction (auction BIGINT, window_start TIMESTAMP, window_end TIMESTAMP, bids BIGINT, total BIGINT, highest BIGINT);
         -- bids per auction and window
         INSERT INTO lake.per_auction
         SELECT auction, window_start, window_end, count(*), sum(price), max(price)
         FROM TABLE({window})
         WHERE price > 10
         GROUP BY auction, window_start, window_end;"
    )
}

fn options(dir: &Path, mode: Mode, parallelism: usize) -> RunOptions {
    RunOptions {
        mode,
        data_dir: dir.to_path_buf(),
        name: "per_auction".into(),
        parallelism,
        checkpoint_interval: Duration::from_millis(200),
        bounded: true,
        reset: false,
        discard: false,
        stop: Default::default(),
        state_ttl: None,
        group: None,
    }
}

async fn run(sql: &str, options: &RunOptions) -> RunSummary {
    let pipeline = Pipeline::open(sql, options).await.unwrap();
    pipeline.run(options).await.unwrap()
}

/// Rows of a query as text lines, sorted.
async fn rows(dir: &Path, sql: &str) -> Vec<String> {
    let engine = Engine::open(dir).await.unwrap();
    let mut out = Vec::new();
    for output in engine.execute(sql).await.unwrap() {
        let Output::Rows(df) = output else { continue };
        for batch in df.collect().await.unwrap() {
            let options = FormatOptions::default();
            let formatters: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            for r in 0..batch.num_rows() {
                let line: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
                out.push(line.join(","));
            }
        }
    }
    out.sort();
    out
}

/// What the tumbling-window query must give, computed directly.
fn expected_tumble(bids: &[Bid], size: i64) -> Vec<String> {
    expected_hop(bids, size, size)
}

/// What the hopping-window query must give, computed directly.
fn expected_hop(bids: &[Bid], slide: i64, size: i64) -> Vec<String> {
    let mut groups: BTreeMap<(i64, i64), (i64, i64, i64)> = BTreeMap::new();
    for b in bids.iter().filter(|b| b.price > 10) {
        let last = b.time - b.time.rem_euclid(slide);
        let mut start = last;
        while start - slide > b.time - size {
            start -= slide;
        }
        while start <= last {
            let g = groups.entry((b.auction, start)).or_insert((0, 0, 0));
            *g = (g.0 + 1, g.1 + b.price, g.2.max(b.price));
            start += slide;
        }
    }
    let mut out: Vec<String> = groups
        .iter()
        .map(|((a, s), (n, t, m))| {
            let iso = |ms: i64| timestamp(ms)[..19].replace(' ', "T");
            format!("{a},{},{},{n},{t},{m}", iso(*s), iso(s + size))
        })
        .collect();
    out.sort();
    out
}

/// Equal row sets, reporting only the first difference.
fn assert_same(what: &str, got: &[String], want: &[String]) {
    let diff = got.iter().zip(want).find(|(g, w)| g != w);
    assert!(
        diff.is_none(),
        "{what}: first difference {diff:?} (got {}, want {})",
        got.len(),
        want.len()
    );
    assert_eq!(got.len(), want.len(), "{what}: row counts differ");
}

const QUERY: &str =
    "SELECT auction, window_start, window_end, bids, total, highest FROM lake.per_auction";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tumbling_windows_stream_equals_batch_equals_expected() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let events = bids(3000);
    produce(&brokers, "bids", &events).await;
    let sql = pipeline_sql(
        &brokers,
        "TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)",
    );
    let expected = expected_tumble(&events, 10_000);

    let stream_dir = tempfile::tempdir().unwrap();
    run(&sql, &options(stream_dir.path(), Mode::Stream, 1)).await;
    assert_same("stream", &rows(stream_dir.path(), QUERY).await, &expected);

    let batch_dir = tempfile::tempdir().unwrap();
    run(&sql, &options(batch_dir.path(), Mode::Batch, 1)).await;
    assert_same("batch", &rows(batch_dir.path(), QUERY).await, &expected);

    // Two parallel subtasks (3 partitions, keys hashed over 2 keyed tasks).
    let parallel_dir = tempfile::tempdir().unwrap();
    run(&sql, &options(parallel_dir.path(), Mode::Stream, 2)).await;
    assert_same(
        "parallel",
        &rows(parallel_dir.path(), QUERY).await,
        &expected,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hopping_windows_stream_equals_batch_equals_expected() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let events = bids(2000);
    produce(&brokers, "hops", &events).await;
    // Stream mode aggregates per slice (the gcd of slide and size: 2 s, 1 s).
    for (slide, size) in [(2, 6), (2, 5)] {
        let window = format!(
            "HOP(TABLE bids, DESCRIPTOR(date_time), INTERVAL '{slide}' SECOND, INTERVAL '{size}' SECOND)"
        );
        let sql = pipeline_on("hops", &brokers, &window);
        let expected = expected_hop(&events, slide * 1000, size * 1000);
        let stream_dir = tempfile::tempdir().unwrap();
        let summary = run(&sql, &options(stream_dir.path(), Mode::Stream, 2)).await;
        assert_same("stream", &rows(stream_dir.path(), QUERY).await, &expected);
        // One row per bid leaves the source (its slice), not one per window.
        let source = &summary.jobs[0].stats.stages[0];
        let kept = events.iter().filter(|b| b.price > 10).count() as u64;
        assert_eq!(
            source.rows_out.load(Ordering::Relaxed),
            kept,
            "{}",
            source.name
        );
        let batch_dir = tempfile::tempdir().unwrap();
        run(&sql, &options(batch_dir.path(), Mode::Batch, 1)).await;
        assert_same("batch", &rows(batch_dir.path(), QUERY).await, &expected);
    }
}

/// Rows far behind the watermark are dropped and counted in stream mode;
/// batch mode, which sees all the data at once, keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_rows_are_dropped_and_counted() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    // One key: every row in one partition, so the order is the topic's.
    let mut on_time = bids(10_000);
    on_time.iter_mut().for_each(|b| b.auction = 1);
    let late: Vec<Bid> = (0..25)
        .map(|i| Bid {
            auction: 1,
            price: 500 + i,
            time: on_time[0].time + i * 10,
        })
        .collect();
    let all: Vec<Bid> = on_time.iter().chain(&late).copied().collect();
    produce(&brokers, "late", &all).await;
    let window = "TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)";
    let sql = pipeline_on("late", &brokers, window);

    let stream_dir = tempfile::tempdir().unwrap();
    let summary = run(&sql, &options(stream_dir.path(), Mode::Stream, 1)).await;
    let stats = &summary.jobs[0].stats;
    assert_eq!(stats.late_rows.load(Ordering::Relaxed), late.len() as u64);
    let expected = expected_tumble(&on_time, 10_000);
    assert_same("stream", &rows(stream_dir.path(), QUERY).await, &expected);

    let batch_dir = tempfile::tempdir().unwrap();
    run(&sql, &options(batch_dir.path(), Mode::Batch, 1)).await;
    let expected = expected_tumble(&all, 10_000);
    assert_same("batch", &rows(batch_dir.path(), QUERY).await, &expected);
}

/// `GROUP BY` without a window into a keyed topic: an upsert stream whose
/// latest record per key is the group's current row, kept across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updating_aggregate_upserts_by_key_across_restarts() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let events = bids(3000);
    let (first, second) = events.split_at(2000);
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP)
           STORED AS TOPIC LOCATION 'upd' OPTIONS ('brokers' '{brokers}');
         CREATE EXTERNAL TABLE totals (auction BIGINT, bids BIGINT, total BIGINT)
           STORED AS TOPIC LOCATION 'totals' OPTIONS ('brokers' '{brokers}', 'key' 'auction');
         INSERT INTO totals (auction, bids, total) SELECT auction, count(*), sum(price) FROM bids GROUP BY auction;"
    );
    let dir = tempfile::tempdir().unwrap();
    produce(&brokers, "upd", first).await;
    run(&sql, &options(dir.path(), Mode::Stream, 2)).await;
    let after_first = latest_totals(dir.path(), &brokers).await;
    assert_eq!(after_first.0, totals_of(first));
    produce(&brokers, "upd", second).await;
    run(&sql, &options(dir.path(), Mode::Stream, 2)).await;
    let (latest, records) = latest_totals(dir.path(), &brokers).await;
    assert_eq!(latest, totals_of(&events));
    assert!(
        records > latest.len(),
        "the second run re-emitted the groups it changed"
    );
}

fn totals_of(bids: &[Bid]) -> BTreeMap<i64, (i64, i64)> {
    let mut out: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for b in bids {
        let t = out.entry(b.auction).or_default();
        *t = (t.0 + 1, t.1 + b.price);
    }
    out
}

/// The latest record per key of the `totals` topic, and how many records it has.
async fn latest_totals(dir: &Path, brokers: &str) -> (BTreeMap<i64, (i64, i64)>, usize) {
    let engine = Engine::open(dir).await.unwrap();
    let ddl = format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS totals_read (auction BIGINT, bids BIGINT, total BIGINT)
         STORED AS TOPIC LOCATION 'totals' OPTIONS ('brokers' '{brokers}')"
    );
    engine.execute(&ddl).await.unwrap();
    let lines = rows(
        dir,
        "SELECT _partition, _offset, _key, auction, bids, total FROM totals_read",
    )
    .await;
    let mut by_position: Vec<Vec<i64>> = lines
        .iter()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    by_position.sort();
    let mut latest = BTreeMap::new();
    for r in &by_position {
        assert_eq!(r[2], r[3], "records are keyed by auction");
        latest.insert(r[3], (r[4], r[5]));
    }
    (latest, by_position.len())
}

/// What the session query must give: per auction, sessions of bids less
/// than `gap` apart (over all bids), counting the bids over 10 in each.
fn expected_sessions(bids: &[Bid], gap: i64) -> Vec<String> {
    let mut by_key: BTreeMap<i64, Vec<(i64, bool)>> = BTreeMap::new();
    for b in bids {
        by_key
            .entry(b.auction)
            .or_default()
            .push((b.time, b.price > 10));
    }
    let iso = |ms: i64| timestamp(ms).replace(' ', "T").replace(".000", "");
    let mut out = Vec::new();
    for (auction, mut times) in by_key {
        times.sort();
        let mut i = 0;
        while i < times.len() {
            let (start, mut end, mut n) = (times[i].0, times[i].0 + gap, 1);
            while i + n < times.len() && times[i + n].0 < end {
                end = end.max(times[i + n].0 + gap);
                n += 1;
            }
            let counted = times[i..i + n].iter().filter(|t| t.1).count();
            if counted > 0 {
                out.push(format!("{auction},{},{},{counted}", iso(start), iso(end)));
            }
            i += n;
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_windows_stream_equals_batch_equals_expected() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    // Sparse bids (one per auction every ~7 s on average), so sessions split.
    let mut events = bids(1500);
    events.iter_mut().for_each(|b| b.auction = b.price % 70);
    produce(&brokers, "sessions", &events).await;
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '3' SECOND)
         STORED AS TOPIC LOCATION 'sessions' OPTIONS ('brokers' '{brokers}');
         CREATE TABLE IF NOT EXISTS lake.sessions (auction BIGINT, window_start TIMESTAMP, window_end TIMESTAMP, bids BIGINT);
         INSERT INTO lake.sessions
         SELECT auction, window_start, window_end, count(*)
         FROM TABLE(SESSION(TABLE bids PARTITION BY auction, DESCRIPTOR(date_time), INTERVAL '5' SECOND))
         WHERE price > 10
         GROUP BY auction, window_start, window_end;"
    );
    let query = "SELECT auction, window_start, window_end, bids FROM lake.sessions";
    let expected = expected_sessions(&events, 5_000);
    assert!(expected.len() > 100, "the data makes many sessions");
    let stream_dir = tempfile::tempdir().unwrap();
    run(&sql, &options(stream_dir.path(), Mode::Stream, 2)).await;
    assert_same("stream", &rows(stream_dir.path(), query).await, &expected);
    let batch_dir = tempfile::tempdir().unwrap();
    run(&sql, &options(batch_dir.path(), Mode::Batch, 1)).await;
    assert_same("batch", &rows(batch_dir.path(), query).await, &expected);
}

/// ROW_NUMBER top-N and de-duplication (two jobs of one pipeline).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn row_number_top_n_and_dedup_stream_equals_batch_equals_expected() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let mut events = bids(3000);
    // Distinct prices, so ranks have no ties.
    events
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| b.price = (i as i64 * 7919) % 100_000 + 11);
    produce(&brokers, "ranked", &events).await;
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP)
           STORED AS TOPIC LOCATION 'ranked' OPTIONS ('brokers' '{brokers}');
         CREATE TABLE IF NOT EXISTS lake.top3 (auction BIGINT, price BIGINT, rn BIGINT);
         CREATE TABLE IF NOT EXISTS lake.latest (auction BIGINT, price BIGINT);
         INSERT INTO lake.top3 SELECT auction, price, rn FROM (
           SELECT auction, price, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bids
         ) WHERE rn <= 3;
         INSERT INTO lake.latest SELECT auction, price FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY date_time DESC, price) AS rn FROM bids
         ) WHERE rn = 1;"
    );
    let mut by_auction: BTreeMap<i64, Vec<&Bid>> = BTreeMap::new();
    for b in &events {
        by_auction.entry(b.auction).or_default().push(b);
    }
    let mut top3 = Vec::new();
    let mut latest = Vec::new();
    for (a, list) in &mut by_auction {
        list.sort_by_key(|b| -b.price);
        for (i, b) in list.iter().take(3).enumerate() {
            top3.push(format!("{a},{},{}", b.price, i + 1));
        }
        let last = list.iter().max_by_key(|b| (b.time, -b.price)).unwrap();
        latest.push(format!("{a},{}", last.price));
    }
    top3.sort();
    latest.sort();
    for mode in [Mode::Stream, Mode::Batch] {
        let dir = tempfile::tempdir().unwrap();
        run(&sql, &options(dir.path(), mode, 2)).await;
        let what = format!("{mode:?}");
        let got = rows(dir.path(), "SELECT auction, price, rn FROM lake.top3").await;
        assert_same(&what, &got, &top3);
        let got = rows(dir.path(), "SELECT auction, price FROM lake.latest").await;
        assert_same(&what, &got, &latest);
    }
}

/// A lookup join of a stream against a lake table (a bounded input read
/// once); restarted with more events, it neither loses the lake rows nor
/// reads them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookup_join_against_a_lake_table_across_restarts() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute("CREATE TABLE lake.names AS SELECT * FROM (VALUES (0, 'zero'), (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five')) AS t(id, name)")
        .await
        .unwrap();
    drop(engine);
    let events = bids(1200);
    let (first, second) = events.split_at(700);
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP)
           STORED AS TOPIC LOCATION 'lookup' OPTIONS ('brokers' '{brokers}');
         CREATE TABLE IF NOT EXISTS lake.named (name VARCHAR, price BIGINT, date_time TIMESTAMP);
         INSERT INTO lake.named SELECT n.name, b.price, b.date_time FROM bids b JOIN lake.names n ON b.auction = n.id;"
    );
    let names = ["zero", "one", "two", "three", "four", "five"];
    let expected: Vec<String> = {
        let mut out: Vec<String> = events
            .iter()
            .filter(|b| b.auction < 6)
            .map(|b| {
                format!(
                    "{},{},{}",
                    names[b.auction as usize],
                    b.price,
                    timestamp(b.time).replace(' ', "T")
                )
            })
            .collect();
        out.sort();
        out
    };
    produce(&brokers, "lookup", first).await;
    run(&sql, &options(dir.path(), Mode::Stream, 2)).await;
    produce(&brokers, "lookup", second).await;
    run(&sql, &options(dir.path(), Mode::Stream, 2)).await;
    let got = rows(dir.path(), "SELECT name, price, date_time FROM lake.named").await;
    let normalize = |v: Vec<String>| -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().map(|r| r.replace(".000", "")).collect();
        v.sort();
        v
    };
    assert_same("stream", &normalize(got), &normalize(expected.clone()));
    let batch_dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(batch_dir.path()).await.unwrap();
    engine
        .execute("CREATE TABLE lake.names AS SELECT * FROM (VALUES (0, 'zero'), (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five')) AS t(id, name)")
        .await
        .unwrap();
    drop(engine);
    run(&sql, &options(batch_dir.path(), Mode::Batch, 1)).await;
    let got = rows(
        batch_dir.path(),
        "SELECT name, price, date_time FROM lake.named",
    )
    .await;
    assert_same("batch", &normalize(got), &normalize(expected));
}

/// With a state TTL, an updating GROUP BY forgets a group not updated for
/// longer than the TTL (event time): its next row starts a new count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_ttl_forgets_idle_groups_of_an_updating_aggregate() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let bid = |auction, price, secs: i64| Bid {
        auction,
        price,
        time: BASE + secs * 1000,
    };
    // Auction 7 bids twice, then 200 s of other auctions, then 7 again.
    let mut events = vec![bid(7, 10, 0), bid(7, 20, 1)];
    events.extend((0..20_000).map(|i| bid(1 + i % 5, 1, 2 + i / 100)));
    events.push(bid(7, 40, 202));
    // One key, one partition: the rows arrive in this order.
    produce_in_order(&brokers, "ttl", &events).await;
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
           STORED AS TOPIC LOCATION 'ttl' OPTIONS ('brokers' '{brokers}');
         CREATE EXTERNAL TABLE totals (auction BIGINT, bids BIGINT, total BIGINT)
           STORED AS TOPIC LOCATION 'totals' OPTIONS ('brokers' '{brokers}', 'key' 'auction');
         INSERT INTO totals (auction, bids, total) SELECT auction, count(*), sum(price) FROM bids GROUP BY auction;"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), Mode::Stream, 1);
    opts.state_ttl = Some(Duration::from_secs(10));
    run(&sql, &opts).await;
    let (latest, _) = latest_totals(dir.path(), &brokers).await;
    assert_eq!(latest[&7], (1, 40), "auction 7 starts over after the TTL");
    assert_eq!(latest[&1], totals_of(&events)[&1], "busy groups are kept");

    let dir = tempfile::tempdir().unwrap();
    run(&sql, &options(dir.path(), Mode::Stream, 1)).await;
    let (latest, _) = latest_totals(dir.path(), &brokers).await;
    assert_eq!(latest[&7], (3, 70), "without a TTL every group is kept");
}

/// Produce `bids` into one partition of `topic`, in order.
async fn produce_in_order(brokers: &str, topic: &str, bids: &[Bid]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for b in bids {
        let value = format!(
            r#"{{"auction": {}, "price": {}, "date_time": "{}"}}"#,
            b.auction,
            b.price,
            timestamp(b.time)
        );
        let record = FutureRecord::to(topic).key("all").payload(&value);
        pending.push(producer.send_result(record).unwrap());
    }
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
}

/// An interval join of a stream with itself: each bid with the bids of
/// its auction up to 1 s after it. The join drops rows the watermark has
/// put out of reach; the result is the same in both modes and as computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interval_join_stream_equals_batch_equals_expected() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let events = bids(3000);
    produce(&brokers, "ij", &events).await;
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '3' SECOND)
           STORED AS TOPIC LOCATION 'ij' OPTIONS ('brokers' '{brokers}');
         CREATE TABLE IF NOT EXISTS lake.pairs (auction BIGINT, first BIGINT, second BIGINT);
         INSERT INTO lake.pairs
         SELECT a.auction, a.price, b.price FROM bids a JOIN bids b
           ON a.auction = b.auction
          AND b.date_time > a.date_time AND b.date_time <= a.date_time + INTERVAL '1' SECOND;"
    );
    let mut expected = Vec::new();
    for a in &events {
        for b in &events {
            let gap = b.time - a.time;
            if a.auction == b.auction && gap > 0 && gap <= 1000 {
                expected.push(format!("{},{},{}", a.auction, a.price, b.price));
            }
        }
    }
    expected.sort();
    let query = "SELECT auction, first, second FROM lake.pairs";
    for parallelism in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let summary = run(&sql, &options(dir.path(), Mode::Stream, parallelism)).await;
        assert_same("stream", &rows(dir.path(), query).await, &expected);
        let stats = &summary.jobs[0].stats;
        assert_eq!(stats.late_rows.load(Ordering::Relaxed), 0);
        let names: Vec<&str> = stats.stages.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"interval join"), "{names:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    run(&sql, &options(dir.path(), Mode::Batch, 1)).await;
    assert_same("batch", &rows(dir.path(), query).await, &expected);
}

/// With `'late.rows'`, rows whose windows have closed go to a side lake
/// table (by column name, `_offset` included) instead of being dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_rows_go_to_a_side_table() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let mut on_time = bids(10_000);
    on_time.iter_mut().for_each(|b| b.auction = 1);
    let late: Vec<Bid> = (0..25)
        .map(|i| Bid {
            auction: 1,
            price: 500 + i,
            time: on_time[0].time + i * 10,
        })
        .collect();
    let all: Vec<Bid> = on_time.iter().chain(&late).copied().collect();
    produce(&brokers, "late_side", &all).await;
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS lake.late_bids (auction BIGINT, price BIGINT, date_time TIMESTAMP, _offset BIGINT);
         CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '3' SECOND)
         STORED AS TOPIC LOCATION 'late_side' OPTIONS ('brokers' '{brokers}', 'late.rows' 'lake.late_bids');
         CREATE TABLE IF NOT EXISTS lake.per_auction (auction BIGINT, window_start TIMESTAMP, window_end TIMESTAMP, bids BIGINT, total BIGINT, highest BIGINT);
         INSERT INTO lake.per_auction
         SELECT auction, window_start, window_end, count(*), sum(price), max(price)
         FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
         WHERE price > 10
         GROUP BY auction, window_start, window_end;"
    );
    let dir = tempfile::tempdir().unwrap();
    let summary = run(&sql, &options(dir.path(), Mode::Stream, 1)).await;
    let stats = &summary.jobs[0].stats;
    assert_eq!(stats.late_rows.load(Ordering::Relaxed), late.len() as u64);
    let expected = expected_tumble(&on_time, 10_000);
    assert_same("stream", &rows(dir.path(), QUERY).await, &expected);
    let side = rows(dir.path(), "SELECT price, _offset FROM lake.late_bids").await;
    let mut want: Vec<String> = late
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{},{}", b.price, on_time.len() + i))
        .collect();
    want.sort();
    assert_same("side table", &side, &want);
}

/// Per 10 s window, the auctions with the most bids (over 10), computed directly.
fn expected_hot(bids: &[Bid]) -> Vec<String> {
    let mut counts: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for b in bids.iter().filter(|b| b.price > 10) {
        *counts
            .entry((b.time - b.time.rem_euclid(10_000), b.auction))
            .or_default() += 1;
    }
    let mut most: BTreeMap<i64, i64> = BTreeMap::new();
    for ((w, _), n) in &counts {
        let m = most.entry(*w).or_default();
        *m = (*m).max(*n);
    }
    let mut out: Vec<String> = counts
        .iter()
        .filter(|((w, _), n)| most[w] == **n)
        .map(|((w, a), n)| format!("{a},{},{n}", timestamp(*w)[..19].replace(' ', "T")))
        .collect();
    out.sort();
    out
}

/// The same windowed aggregate on both sides of a join (as Nexmark q5
/// does) runs once: the source and the aggregate are shared, each side
/// keeps its own projection, and the rows equal the direct answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_subqueries_share_one_scan_and_aggregate() {
    let broker_dir = tempfile::tempdir().unwrap();
    let (brokers, _stop) = start_broker(broker_dir.path()).await;
    let events = bids(3000);
    produce(&brokers, "bids", &events).await;
    let counts = "SELECT auction, count(*) AS num, window_start AS ws
        FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
        WHERE price > 10 GROUP BY auction, window_start, window_end";
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '3' SECOND)
         STORED AS TOPIC LOCATION 'bids' OPTIONS ('brokers' '{brokers}');
         CREATE TABLE IF NOT EXISTS lake.hot (auction BIGINT, ws TIMESTAMP, num BIGINT);
         INSERT INTO lake.hot
         SELECT c.auction, c.ws, c.num
         FROM ({counts}) AS c
         JOIN (SELECT max(m.num) AS most, m.ws FROM ({counts}) AS m GROUP BY m.ws) AS x
         ON c.ws = x.ws AND c.num >= x.most;"
    );
    let expected = expected_hot(&events);
    assert!(expected.len() > 20, "too few windows to mean anything");
    let query = "SELECT auction, ws, num FROM lake.hot";
    for parallelism in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let summary = run(&sql, &options(dir.path(), Mode::Stream, parallelism)).await;
        let stats = &summary.jobs[0].stats;
        assert_eq!(
            stats.rows_in.load(Ordering::Relaxed),
            events.len() as u64,
            "the bids were not read once"
        );
        let names: Vec<&str> = stats.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names.iter().filter(|n| **n == "aggregate").count(),
            2,
            "{names:?}"
        );
        assert_same("stream", &rows(dir.path(), query).await, &expected);
    }
    let batch_dir = tempfile::tempdir().unwrap();
    run(&sql, &options(batch_dir.path(), Mode::Batch, 1)).await;
    assert_same("batch", &rows(batch_dir.path(), query).await, &expected);
}
