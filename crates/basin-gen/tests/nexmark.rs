//! The Nexmark generator: same configuration → same bytes; ranges and
//! strides split generation exactly; 1:3:46 proportions; dense ids and
//! references only to existing ids; event times exactly on the formula;
//! JSON lines that serde_json and Arrow's JSON reader both read.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use basin_gen::nexmark::{
    write_files, Event, EventCounts, EventKind, Generator, NexmarkConfig, DEFAULT_BASE_TIME_MICROS,
};

fn events(config: &NexmarkConfig, first: u64, count: u64) -> Vec<Event> {
    Generator::new(config.clone(), first, count)
        .unwrap()
        .collect()
}

fn bytes(config: &NexmarkConfig, count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events(config, 0, count) {
        event.write_json(&mut out);
        out.push(b'\n');
    }
    out
}

#[test]
fn same_config_same_bytes() {
    let config = NexmarkConfig::new(42);
    assert_eq!(bytes(&config, 20_000), bytes(&config, 20_000));
    let other = NexmarkConfig::new(43);
    assert_ne!(bytes(&config, 20_000), bytes(&other, 20_000));
}

#[test]
fn ranges_and_strides_split_exactly() {
    let config = NexmarkConfig::new(5);
    let whole = events(&config, 0, 10_000);
    for k in [0, 1, 49, 50, 3_333, 10_000] {
        let mut split = events(&config, 0, k);
        split.extend(events(&config, k, 10_000 - k));
        assert_eq!(split, whole, "split at {k}");
    }
    let workers = 3;
    let mut merged = vec![None; whole.len()];
    for worker in 0..workers {
        let count = (whole.len() as u64 - worker).div_ceil(workers);
        let mut gen = Generator::strided(config.clone(), worker, workers, count).unwrap();
        while let Some((n, event)) = gen.next_numbered() {
            assert!(
                merged[n as usize].replace(event).is_none(),
                "event {n} twice"
            );
        }
    }
    let merged: Vec<Event> = merged.into_iter().map(Option::unwrap).collect();
    assert_eq!(merged, whole);
}

#[test]
fn proportions_are_1_3_46() {
    let mut counts = EventCounts::default();
    for (n, event) in events(&NexmarkConfig::new(1), 0, 5_000).iter().enumerate() {
        counts.add(event.kind());
        let expected = match n % 50 {
            0 => EventKind::Person,
            1..=3 => EventKind::Auction,
            _ => EventKind::Bid,
        };
        assert_eq!(event.kind(), expected, "event {n}");
    }
    assert_eq!(
        (counts.person, counts.auction, counts.bid),
        (100, 300, 4_600)
    );
    assert_eq!(EventCounts::for_range(0, 5_000), counts);
}

/// Ids seen so far, to check references.
#[derive(Default)]
struct Seen {
    people: u64,
    auctions: u64,
    hot_bids: u64,
}

impl Seen {
    fn person_exists(&self, id: u64) -> bool {
        (1000..1000 + self.people).contains(&id)
    }

    fn auction_exists(&self, id: u64) -> bool {
        (1000..1000 + self.auctions).contains(&id)
    }

    fn check(&mut self, event: &Event) {
        match event {
            Event::Person(p) => {
                assert_eq!(p.id, 1000 + self.people, "dense person ids");
                self.people += 1;
            }
            Event::Auction(a) => {
                assert_eq!(a.id, 1000 + self.auctions, "dense auction ids");
                self.auctions += 1;
                assert!(self.person_exists(a.seller), "seller {}", a.seller);
                assert!((10..=14).contains(&a.category));
                assert!(a.reserve >= a.initial_bid && a.initial_bid >= 100);
                assert!(a.expires / 1000 > a.date_time / 1000);
            }
            Event::Bid(b) => {
                assert!(self.auction_exists(b.auction), "auction {}", b.auction);
                assert!(self.person_exists(b.bidder), "bidder {}", b.bidder);
                assert!((100..=100_000_000).contains(&b.price));
                let hot = (self.auctions - 1) / 100 * 100 + 1000;
                self.hot_bids += u64::from(b.auction == hot);
            }
        }
    }
}

#[test]
fn references_point_at_existing_ids() {
    let mut seen = Seen::default();
    for event in events(&NexmarkConfig::new(3), 0, 200_000) {
        seen.check(&event);
    }
    assert_eq!((seen.people, seen.auctions), (4_000, 12_000));
    // Half the bids go to the hot auction (plus random hits on it).
    let share = seen.hot_bids as f64 / 184_000.0;
    assert!((0.48..0.56).contains(&share), "hot share {share}");
}

#[test]
fn times_follow_the_formula() {
    let config = NexmarkConfig {
        base_time_micros: 1_700_000_000_123_000,
        event_rate: 7,
        ..NexmarkConfig::new(9)
    };
    let mut previous = i64::MIN;
    for (n, event) in events(&config, 1_000, 500).iter().enumerate() {
        let n = 1_000 + n as i64;
        assert_eq!(event.date_time(), 1_700_000_000_123_000 + n * 1_000_000 / 7);
        assert!(event.date_time() >= previous);
        previous = event.date_time();
    }
    let first = &events(&NexmarkConfig::new(1), 0, 1)[0];
    assert_eq!(first.date_time(), DEFAULT_BASE_TIME_MICROS);
    assert!(first
        .to_json()
        .contains(r#""date_time":"2026-01-01 00:00:00.000""#));
}

const PERSON: [&str; 8] = [
    "id",
    "name",
    "email_address",
    "credit_card",
    "city",
    "state",
    "date_time",
    "extra",
];
const AUCTION: [&str; 10] = [
    "id",
    "item_name",
    "description",
    "initial_bid",
    "reserve",
    "date_time",
    "expires",
    "seller",
    "category",
    "extra",
];
const BID: [&str; 7] = [
    "auction",
    "bidder",
    "price",
    "channel",
    "url",
    "date_time",
    "extra",
];

#[test]
fn json_lines_have_the_listed_fields() {
    let mut bid_bytes = 0;
    for event in events(&NexmarkConfig::new(11), 0, 5_000) {
        let line = event.to_json();
        let value: serde_json::Value = serde_json::from_str(&line).expect(&line);
        let fields: HashSet<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let expected: HashSet<&str> = match &event {
            Event::Person(_) => PERSON.into_iter().collect(),
            Event::Auction(_) => AUCTION.into_iter().collect(),
            Event::Bid(_) => BID.into_iter().collect(),
        };
        assert_eq!(fields, expected, "{line}");
        let time = value["date_time"].as_str().unwrap();
        assert_eq!(time.len(), 23, "{time}");
        assert_eq!(&time[..11], "2026-01-01 ");
        if let Event::Bid(b) = &event {
            assert_eq!(value["auction"], b.auction);
            assert_eq!(value["url"], b.url.as_str());
            bid_bytes += line.len();
        }
    }
    let average = bid_bytes / 4_600;
    assert!(
        (100..=200).contains(&average),
        "bids average {average} bytes"
    );
}

#[test]
fn arrow_reads_timestamps_as_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let config = NexmarkConfig::new(2);
    let generator = Generator::new(config.clone(), 0, 1_000).unwrap();
    let summary = write_files(generator, dir.path(), &mut |_| {}).unwrap();
    assert_eq!(summary.counts, EventCounts::for_range(0, 1_000));
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::UInt64, false),
        Field::new("date_time", ts, false),
    ]));
    let file = std::fs::File::open(dir.path().join("bid.jsonl")).unwrap();
    let reader = arrow::json::ReaderBuilder::new(schema)
        .build(std::io::BufReader::new(file))
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let times = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>();
    let auctions = batches[0].column(0).as_any().downcast_ref::<UInt64Array>();
    let bids: Vec<Event> = events(&config, 0, 1_000)
        .into_iter()
        .filter(|e| e.kind() == EventKind::Bid)
        .collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, bids.len());
    for (i, bid) in bids.iter().take(times.unwrap().len()).enumerate() {
        assert_eq!(times.unwrap().value(i), bid.timestamp_ms());
        assert_eq!(auctions.unwrap().value(i), bid.key());
    }
}
