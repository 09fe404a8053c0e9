//! The Nexmark event types: [`Person`], [`Auction`], [`Bid`], the [`Event`]
//! that holds one of them, and [`EventKind`] naming the three streams
//! (topic and file names). Times are microseconds since the Unix epoch (UTC).

/// A new user of the auction site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Dense id from [`FIRST_PERSON_ID`](super::FIRST_PERSON_ID).
    pub id: u64,
    /// "First Last".
    pub name: String,
    pub email_address: String,
    /// "dddd dddd dddd dddd".
    pub credit_card: String,
    pub city: String,
    /// Two-letter US state code.
    pub state: String,
    /// Event time, microseconds since the epoch.
    pub date_time: i64,
    /// Filler.
    pub extra: String,
}

/// An item put up for auction by a recent person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auction {
    /// Dense id from [`FIRST_AUCTION_ID`](super::FIRST_AUCTION_ID).
    pub id: u64,
    pub item_name: String,
    pub description: String,
    /// Cents.
    pub initial_bid: u64,
    /// Cents, at least `initial_bid`.
    pub reserve: u64,
    /// Event time, microseconds since the epoch.
    pub date_time: i64,
    /// When bidding closes, microseconds since the epoch (after `date_time`).
    pub expires: i64,
    /// The selling person's id.
    pub seller: u64,
    /// [`FIRST_CATEGORY_ID`](super::FIRST_CATEGORY_ID) and the next few.
    pub category: u64,
    /// Filler.
    pub extra: String,
}

/// A bid by a person on an auction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidding person's id.
    pub bidder: u64,
    /// Cents.
    pub price: u64,
    /// Where the bid came from ("Google", ..., or "channel-N").
    pub channel: String,
    pub url: String,
    /// Event time, microseconds since the epoch.
    pub date_time: i64,
    /// Filler.
    pub extra: String,
}

/// One Nexmark event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

/// The three event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Person,
    Auction,
    Bid,
}

impl EventKind {
    /// All kinds, in the order of their indexes.
    pub const ALL: [EventKind; 3] = [EventKind::Person, EventKind::Auction, EventKind::Bid];

    /// `person`, `auction` or `bid`: the topic name (after a prefix) and file stem.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Person => "person",
            EventKind::Auction => "auction",
            EventKind::Bid => "bid",
        }
    }

    /// 0, 1, 2: an index into per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// `person.jsonl`, `auction.jsonl` or `bid.jsonl`.
    pub fn file_name(self) -> String {
        format!("{}.jsonl", self.name())
    }
}

impl Event {
    /// Which stream the event belongs to.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Person(_) => EventKind::Person,
            Event::Auction(_) => EventKind::Auction,
            Event::Bid(_) => EventKind::Bid,
        }
    }

    /// The record key: the person id, the auction id, or a bid's auction id.
    pub fn key(&self) -> u64 {
        match self {
            Event::Person(p) => p.id,
            Event::Auction(a) => a.id,
            Event::Bid(b) => b.auction,
        }
    }

    /// Event time, microseconds since the epoch.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// Event time, whole milliseconds since the epoch (the record timestamp).
    pub fn timestamp_ms(&self) -> i64 {
        self.date_time().div_euclid(1000)
    }
}
