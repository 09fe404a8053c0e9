//! Nexmark, the online-auction streaming benchmark: people join, put items
//! up for auction and bid on them. Per 50 events: 1 [`Person`], 3
//! [`Auction`]s, 46 [`Bid`]s. Person and auction ids are dense from 1000;
//! auctions are sold by recent people and bids go to recent auctions from
//! recent people, skewed towards "hot" ones, as in the reference model
//! (Beam / Flink Nexmark), except that ids are never referred to before
//! they exist.
//!
//! Every event is a pure function of ([`NexmarkConfig`], event number):
//! event `n` happens at `base_time + n * 1_000_000 / event_rate` µs and
//! draws its fields from a random stream seeded by (seed, `n`), so any
//! range or stride of numbers can be generated on its own ([`Generator`])
//! and workers splitting the numbers together make exactly the events of
//! one generator. Events encode as one JSON object each ([`json`]).
//!
//! ```
//! use basin_gen::nexmark::{Event, Generator, NexmarkConfig};
//!
//! let events: Vec<Event> = Generator::new(NexmarkConfig::new(7), 0, 50).unwrap().collect();
//! assert_eq!(events.iter().filter(|e| matches!(e, Event::Bid(_))).count(), 46);
//! assert!(events[0].to_json().starts_with(r#"{"id":1000,"name":"#));
//! ```

mod config;
mod events;
pub mod files;
mod generator;
pub mod ids;
pub mod json;
mod model;
mod rng;

pub use config::{
    NexmarkConfig, DEFAULT_BASE_TIME_MICROS, DEFAULT_EVENT_RATE, DEFAULT_EXTRA_LEN, MAX_EXTRA_LEN,
};
pub use files::{write_files, NexmarkFiles};
pub use generator::Generator;
pub use ids::{
    kind_of, EventCounts, AUCTION_PROPORTION, BID_PROPORTION, FIRST_AUCTION_ID, FIRST_CATEGORY_ID,
    FIRST_PERSON_ID, NUM_CATEGORIES, PERSON_PROPORTION, TOTAL_PROPORTION,
};
pub use json::{format_timestamp, write_timestamp};
pub use model::{Auction, Bid, Event, EventKind, Person};
