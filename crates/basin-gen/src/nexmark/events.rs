//! Drawing one event's fields: names and places from small tables, prices
//! log-uniform over $1 .. $1M, auction lengths scaled to the event rate,
//! bid channels (a few hot ones, many cold ones) with their URLs.

use super::config::NexmarkConfig;
use super::ids::{self, FIRST_AUCTION_ID, FIRST_CATEGORY_ID, FIRST_PERSON_ID, NUM_CATEGORIES};
use super::model::{Auction, Bid, Person};
use super::rng::{mix, EventRng};

const FIRST_NAMES: [&str; 16] = [
    "Ada", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kate",
    "Liam", "Maya", "Noor", "Omar", "Priya",
];
const LAST_NAMES: [&str; 15] = [
    "Abrams", "Bartels", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Ito", "Jones", "Khan",
    "Lopez", "Novak", "Okafor", "Smith", "Walton",
];
/// (city, state) pairs of the western US, as in the reference data.
const PLACES: [(&str, &str); 11] = [
    ("Phoenix", "AZ"),
    ("Tucson", "AZ"),
    ("Los Angeles", "CA"),
    ("San Francisco", "CA"),
    ("Boise", "ID"),
    ("Portland", "OR"),
    ("Bend", "OR"),
    ("Seattle", "WA"),
    ("Redmond", "WA"),
    ("Kent", "WA"),
    ("Cheyenne", "WY"),
];
/// The hot channels and their URLs.
const HOT_CHANNELS: [(&str, &str); 4] = [
    ("Google", "https://www.nexmark.com/ggl/item.htm?query=1"),
    ("Facebook", "https://www.nexmark.com/fb/item.htm?query=1"),
    ("Baidu", "https://www.nexmark.com/bd/item.htm?query=1"),
    ("Apple", "https://www.nexmark.com/apl/item.htm?query=1"),
];
/// 1 in this many bids comes from a cold channel; the rest from a hot one.
pub const HOT_CHANNEL_RATIO: u64 = 2;
/// Cold channels are `channel-0` .. `channel-9999`.
pub const COLD_CHANNELS: u64 = 10_000;
/// Auctions stay open about as long as it takes this many events to pass
/// (the events in which `IN_FLIGHT_AUCTIONS` new auctions appear).
const AUCTION_HORIZON_EVENTS: u64 =
    ids::IN_FLIGHT_AUCTIONS * ids::TOTAL_PROPORTION / ids::AUCTION_PROPORTION;

/// Person event `n` at time `t`.
pub fn person(config: &NexmarkConfig, n: u64, t: i64, rng: &mut EventRng) -> Person {
    let mut name = String::with_capacity(16);
    name.push_str(rng.pick(&FIRST_NAMES));
    name.push(' ');
    name.push_str(rng.pick(&LAST_NAMES));
    let mut email_address = String::with_capacity(16);
    rng.letters(7, &mut email_address);
    email_address.push('@');
    rng.letters(5, &mut email_address);
    email_address.push_str(".com");
    let (city, state) = rng.pick(&PLACES);
    Person {
        id: FIRST_PERSON_ID + ids::last_person(n),
        name,
        email_address,
        credit_card: credit_card(rng),
        city: city.to_string(),
        state: state.to_string(),
        date_time: t,
        extra: extra(config, rng),
    }
}

/// Auction event `n` at time `t`.
pub fn auction(config: &NexmarkConfig, n: u64, t: i64, rng: &mut EventRng) -> Auction {
    let id = FIRST_AUCTION_ID + ids::last_auction(n).unwrap_or(0);
    let seller = ids::seller(n, rng);
    let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES);
    let initial_bid = price(rng);
    let reserve = initial_bid + price(rng);
    let expires = t + auction_length(config, n, t, rng);
    Auction {
        id,
        item_name: words(rng, 5, 20),
        description: words(rng, 20, 60),
        initial_bid,
        reserve,
        date_time: t,
        expires,
        seller,
        category,
        extra: extra(config, rng),
    }
}

/// Bid event `n` at time `t`.
pub fn bid(config: &NexmarkConfig, n: u64, t: i64, rng: &mut EventRng) -> Bid {
    let auction = ids::bid_auction(n, rng);
    let bidder = ids::bidder(n, rng);
    let price = price(rng);
    let (channel, url) = channel(rng);
    Bid {
        auction,
        bidder,
        price,
        channel,
        url,
        date_time: t,
        extra: extra(config, rng),
    }
}

/// A price in cents, log-uniform over 100 (= $1) .. 100_000_000 (= $1M).
pub fn price(rng: &mut EventRng) -> u64 {
    (10f64.powf(rng.unit() * 6.0) * 100.0).round() as u64
}

/// Whole milliseconds (in microseconds), between 1 ms and twice the time
/// [`AUCTION_HORIZON_EVENTS`] take at the configured rate.
fn auction_length(config: &NexmarkConfig, n: u64, t: i64, rng: &mut EventRng) -> i64 {
    let later = config.event_time(n.saturating_add(AUCTION_HORIZON_EVENTS));
    let horizon_ms = ((later - t) / 1000).max(1) as u64;
    1000 * (1 + rng.below(2 * horizon_ms)) as i64
}

/// "dddd dddd dddd dddd".
fn credit_card(rng: &mut EventRng) -> String {
    let mut card = String::with_capacity(19);
    for group in 0..4 {
        if group > 0 {
            card.push(' ');
        }
        rng.digits(4, &mut card);
    }
    card
}

/// Lowercase words of 2..=8 letters, `min..=max` characters in all.
fn words(rng: &mut EventRng, min: u64, max: u64) -> String {
    let len = (min + rng.below(max - min + 1)) as usize;
    let mut text = String::with_capacity(len + 8);
    while text.len() < len {
        if !text.is_empty() {
            text.push(' ');
        }
        let word = 2 + rng.below(7) as usize;
        rng.letters(word, &mut text);
    }
    text.truncate(len);
    text.truncate(text.trim_end().len());
    text
}

/// `extra_len` random lowercase letters.
fn extra(config: &NexmarkConfig, rng: &mut EventRng) -> String {
    let mut text = String::with_capacity(config.extra_len);
    rng.letters(config.extra_len, &mut text);
    text
}

/// A hot channel, or `channel-K` with its fixed URL.
fn channel(rng: &mut EventRng) -> (String, String) {
    if rng.hot(HOT_CHANNEL_RATIO) {
        let (name, url) = rng.pick(&HOT_CHANNELS);
        return (name.to_string(), url.to_string());
    }
    let k = rng.below(COLD_CHANNELS);
    (format!("channel-{k}"), cold_url(k))
}

/// The URL of cold channel `k`: two path segments fixed by `k`.
fn cold_url(k: u64) -> String {
    let mut path = EventRng::for_event(mix(k), u64::MAX);
    let mut url = String::with_capacity(72);
    url.push_str("https://www.nexmark.com/");
    path.letters(3, &mut url);
    url.push('/');
    path.letters(4, &mut url);
    url.push_str("/item.htm?channel_id=");
    url.push_str(&k.to_string());
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_log_uniform() {
        let mut rng = EventRng::for_event(1, 1);
        let prices: Vec<u64> = (0..60_000).map(|_| price(&mut rng)).collect();
        assert!(prices.iter().all(|p| (100..=100_000_000).contains(p)));
        // Each decade holds about a sixth.
        let under_10_dollars = prices.iter().filter(|&&p| p < 1_000).count();
        assert!(
            (9_000..11_000).contains(&under_10_dollars),
            "{under_10_dollars}"
        );
    }

    #[test]
    fn words_fit_their_bounds() {
        let mut rng = EventRng::for_event(2, 2);
        for _ in 0..1_000 {
            let w = words(&mut rng, 5, 20);
            assert!((4..=20).contains(&w.len()), "{w:?}");
            assert!(!w.ends_with(' ') && !w.starts_with(' '));
        }
    }

    #[test]
    fn cold_urls_are_fixed_per_channel() {
        assert_eq!(cold_url(42), cold_url(42));
        assert_ne!(cold_url(42), cold_url(43));
        assert!(cold_url(42).ends_with("channel_id=42"));
    }
}
