//! Id arithmetic of the Nexmark model. Events come in epochs of
//! [`TOTAL_PROPORTION`] = 50: one person, then three auctions, then 46 bids,
//! so the kind of event `n` and the last person / auction id created up to
//! it follow from `n` alone. Bids and new auctions refer back to recent ids
//! with a "hot" skew; unlike the reference model there is no look-ahead, so
//! every id referred to exists at an earlier (or the same) event number.

use super::model::EventKind;
use super::rng::EventRng;

/// People per epoch.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions per epoch.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids per epoch.
pub const BID_PROPORTION: u64 = 46;
/// Events per epoch.
pub const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// The first person's id.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The first auction's id.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first category id; auctions use this and the next `NUM_CATEGORIES - 1`.
pub const FIRST_CATEGORY_ID: u64 = 10;
/// How many categories there are.
pub const NUM_CATEGORIES: u64 = 5;
/// Hot choices are the first id of the group of this many most recent ids.
pub const HOT_GROUP: u64 = 100;
/// 1 in this many bids goes to a random recent auction; the rest to the hot one.
pub const HOT_AUCTION_RATIO: u64 = 2;
/// 1 in this many bids comes from a random recent person; the rest from the hot one.
pub const HOT_BIDDER_RATIO: u64 = 4;
/// 1 in this many auctions is sold by a random recent person; the rest by the hot one.
pub const HOT_SELLER_RATIO: u64 = 4;
/// Bids on a random auction pick among this many most recent auctions (plus the newest).
pub const IN_FLIGHT_AUCTIONS: u64 = 100;
/// Random bidders and sellers are among this many most recent people.
pub const ACTIVE_PEOPLE: u64 = 1000;

/// Which kind event `n` is.
pub fn kind_of(n: u64) -> EventKind {
    let offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        EventKind::Person
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        EventKind::Auction
    } else {
        EventKind::Bid
    }
}

/// The 0-based index of the last person created at or before event `n`.
pub fn last_person(n: u64) -> u64 {
    let (epoch, offset) = (n / TOTAL_PROPORTION, n % TOTAL_PROPORTION);
    let in_epoch = if offset < PERSON_PROPORTION {
        offset
    } else {
        PERSON_PROPORTION - 1
    };
    epoch * PERSON_PROPORTION + in_epoch
}

/// The 0-based index of the last auction created at or before event `n`,
/// or `None` before the first auction.
pub fn last_auction(n: u64) -> Option<u64> {
    let (epoch, offset) = (n / TOTAL_PROPORTION, n % TOTAL_PROPORTION);
    if offset < PERSON_PROPORTION {
        (epoch * AUCTION_PROPORTION).checked_sub(1)
    } else {
        let in_epoch = (offset - PERSON_PROPORTION).min(AUCTION_PROPORTION - 1);
        Some(epoch * AUCTION_PROPORTION + in_epoch)
    }
}

/// The seller of auction event `n` (an id).
pub fn seller(n: u64, rng: &mut EventRng) -> u64 {
    FIRST_PERSON_ID + person_choice(n, HOT_SELLER_RATIO, rng)
}

/// The bidder of bid event `n` (an id).
pub fn bidder(n: u64, rng: &mut EventRng) -> u64 {
    FIRST_PERSON_ID + person_choice(n, HOT_BIDDER_RATIO, rng)
}

/// The auction bid on at bid event `n` (an id).
pub fn bid_auction(n: u64, rng: &mut EventRng) -> u64 {
    let last = last_auction(n).unwrap_or(0);
    let base0 = if rng.hot(HOT_AUCTION_RATIO) {
        last / HOT_GROUP * HOT_GROUP
    } else {
        let oldest = last.saturating_sub(IN_FLIGHT_AUCTIONS);
        oldest + rng.below(last - oldest + 1)
    };
    FIRST_AUCTION_ID + base0
}

/// A 0-based person index: the hot one, or a random active one.
fn person_choice(n: u64, hot_ratio: u64, rng: &mut EventRng) -> u64 {
    let last = last_person(n);
    if rng.hot(hot_ratio) {
        return last / HOT_GROUP * HOT_GROUP;
    }
    let people = last + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + rng.below(active)
}

/// How many events of each kind a range of event numbers holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub person: u64,
    pub auction: u64,
    pub bid: u64,
}

impl EventCounts {
    /// The counts of events `first..first + count`, by arithmetic.
    pub fn for_range(first: u64, count: u64) -> EventCounts {
        let below = |n: u64| EventCounts::before(n);
        let (a, b) = (below(first), below(first.saturating_add(count)));
        EventCounts {
            person: b.person - a.person,
            auction: b.auction - a.auction,
            bid: b.bid - a.bid,
        }
    }

    /// The counts of events `0..n`.
    fn before(n: u64) -> EventCounts {
        let (epochs, rest) = (n / TOTAL_PROPORTION, n % TOTAL_PROPORTION);
        let person = rest.min(PERSON_PROPORTION);
        let auction = (rest - person).min(AUCTION_PROPORTION);
        EventCounts {
            person: epochs * PERSON_PROPORTION + person,
            auction: epochs * AUCTION_PROPORTION + auction,
            bid: epochs * BID_PROPORTION + (rest - person - auction),
        }
    }

    /// Count one event of `kind`.
    pub fn add(&mut self, kind: EventKind) {
        match kind {
            EventKind::Person => self.person += 1,
            EventKind::Auction => self.auction += 1,
            EventKind::Bid => self.bid += 1,
        }
    }

    /// The count of `kind`.
    pub fn get(&self, kind: EventKind) -> u64 {
        match kind {
            EventKind::Person => self.person,
            EventKind::Auction => self.auction,
            EventKind::Bid => self.bid,
        }
    }

    /// All events.
    pub fn total(&self) -> u64 {
        self.person + self.auction + self.bid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_epoch() {
        let kinds: Vec<EventKind> = (0..50).map(kind_of).collect();
        assert_eq!(kinds[0], EventKind::Person);
        assert!(kinds[1..4].iter().all(|k| *k == EventKind::Auction));
        assert!(kinds[4..].iter().all(|k| *k == EventKind::Bid));
        assert_eq!(kind_of(100), EventKind::Person);
    }

    #[test]
    fn last_ids_count_what_came_before() {
        assert_eq!(last_person(0), 0);
        assert_eq!(last_person(49), 0);
        assert_eq!(last_person(50), 1);
        assert_eq!(last_auction(0), None);
        assert_eq!(last_auction(1), Some(0));
        assert_eq!(last_auction(3), Some(2));
        assert_eq!(last_auction(49), Some(2));
        assert_eq!(last_auction(50), Some(2));
        assert_eq!(last_auction(51), Some(3));
    }

    #[test]
    fn counts_by_arithmetic_match_counting() {
        for (first, count) in [(0, 5_000), (7, 123), (49, 2), (1_000, 0), (3, 97)] {
            let mut counted = EventCounts::default();
            (first..first + count).for_each(|n| counted.add(kind_of(n)));
            assert_eq!(EventCounts::for_range(first, count), counted);
        }
        let c = EventCounts::for_range(0, 5_000);
        assert_eq!((c.person, c.auction, c.bid), (100, 300, 4_600));
    }
}
