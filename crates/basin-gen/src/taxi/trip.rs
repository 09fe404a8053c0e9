//! One yellow-taxi trip record ([`Trip`], the 19 TLC columns) and
//! [`TripSampler`], which draws a realistic trip for a given pickup time:
//! zones, rate code, distance, duration, passengers, payment, the rate-card
//! charges, tips and tolls — then the defects the real files have.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::{Serialize, Serializer};

use super::calendar::{hour, is_weekday, SECOND};
use super::fare::{self, FareInput};
use super::zones::{self, Area, DropoffTables, EWR, JFK, LGA, OUTSIDE_NYC};
use crate::sample::{cents, chance, lognormal, normal, Categorical};

/// One trip, column for column as in the TLC yellow-taxi Parquet files.
/// Timestamps are microseconds of local time; JSON shows them as ISO 8601.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    #[serde(rename = "VendorID")]
    pub vendor_id: i32,
    #[serde(serialize_with = "iso_time")]
    pub tpep_pickup_datetime: i64,
    #[serde(serialize_with = "iso_time")]
    pub tpep_dropoff_datetime: i64,
    pub passenger_count: Option<i64>,
    pub trip_distance: f64,
    #[serde(rename = "RatecodeID")]
    pub ratecode_id: Option<i64>,
    pub store_and_fwd_flag: Option<&'static str>,
    #[serde(rename = "PULocationID")]
    pub pu_location_id: i32,
    #[serde(rename = "DOLocationID")]
    pub do_location_id: i32,
    pub payment_type: i64,
    pub fare_amount: f64,
    pub extra: f64,
    pub mta_tax: f64,
    pub tip_amount: f64,
    pub tolls_amount: f64,
    pub improvement_surcharge: f64,
    pub total_amount: f64,
    pub congestion_surcharge: Option<f64>,
    pub airport_fee: Option<f64>,
}

impl Trip {
    /// The sum of the money columns (absent ones count as zero), in cents.
    pub fn sum_of_parts(&self) -> f64 {
        cents(
            self.fare_amount
                + self.extra
                + self.mta_tax
                + self.tip_amount
                + self.tolls_amount
                + self.improvement_surcharge
                + self.congestion_surcharge.unwrap_or(0.0)
                + self.airport_fee.unwrap_or(0.0),
        )
    }

    /// Trip duration in seconds (negative for the rare clock errors).
    pub fn duration_seconds(&self) -> i64 {
        (self.tpep_dropoff_datetime - self.tpep_pickup_datetime) / SECOND
    }

    fn negate_money(&mut self) {
        let neg = |v: &mut f64| *v = -*v;
        neg(&mut self.fare_amount);
        neg(&mut self.extra);
        neg(&mut self.mta_tax);
        neg(&mut self.tip_amount);
        neg(&mut self.tolls_amount);
        neg(&mut self.improvement_surcharge);
        self.congestion_surcharge = self.congestion_surcharge.map(|v| -v);
        self.airport_fee = self.airport_fee.map(|v| -v);
    }
}

/// `2024-01-01T08:15:00` (fractional seconds only when present).
fn iso_time<S: Serializer>(micros: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_iso(*micros))
}

/// Format microseconds of local time as an ISO 8601 date-time without zone.
pub fn format_iso(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
        None => micros.to_string(),
    }
}

/// Payment types: 0 = unknown (the null block), 1 = credit card, 2 = cash,
/// 3 = no charge, 4 = dispute.
pub const PAYMENT_MIX: [(i64, f64); 4] = [(1, 0.805), (2, 0.155), (3, 0.012), (4, 0.028)];
/// Passenger counts as the driver keys them in (0 happens).
pub const PASSENGER_MIX: [(i64, f64); 10] = [
    (0, 1.5),
    (1, 74.0),
    (2, 14.5),
    (3, 3.5),
    (4, 2.0),
    (5, 2.5),
    (6, 1.9),
    (7, 0.004),
    (8, 0.004),
    (9, 0.002),
];
/// Share of trips by vendor 1 (Creative Mobile); the rest are vendor 2 (Curb).
pub const VENDOR_1_SHARE: f64 = 0.25;
/// Vendor 1's meters store and forward this share of trips (flag "Y").
pub const STORE_AND_FORWARD_SHARE_VENDOR_1: f64 = 0.02;
/// Share of JFK–Manhattan trips keyed in at the flat fare (the rest metered).
pub const JFK_FLAT_SHARE: f64 = 0.95;
/// Share of other trips at a negotiated fare (RatecodeID 5).
pub const NEGOTIATED_SHARE: f64 = 0.006;
/// Share of other trips with an unknown rate code (99).
pub const UNKNOWN_RATE_SHARE: f64 = 0.004;

/// Share of card trips with no tip.
pub const NO_TIP_SHARE: f64 = 0.10;
/// Tip choices on the card screen (share of fare, weight); 0 stands for a
/// custom amount around 18% (sd 6%).
pub const TIP_CHOICES: [(f64, f64); 4] = [(0.20, 0.45), (0.25, 0.20), (0.30, 0.15), (0.0, 0.20)];

/// A bridge or tunnel toll with E-ZPass (Queens–Midtown, RFK, Verrazzano...).
pub const TOLL_CROSSING: f64 = 6.94;
/// Tolls on a trip to Newark (Hudson crossing and turnpike, approximate).
pub const TOLL_NEWARK: f64 = 17.63;

/// Share of rows in the contiguous block with missing passenger_count,
/// RatecodeID, store_and_fwd_flag, congestion_surcharge and airport_fee and
/// payment_type 0 (in the real files: trips from a meter without them).
pub const NULL_BLOCK_SHARE: f64 = 0.10;
/// For streams of unknown length: one null block of 10% every this many rows.
pub const NULL_BLOCK_PERIOD: u64 = 100_000;
/// Chance a trip is refunded (all amounts negated), by payment type:
/// mostly disputes and no-charge trips, giving about 3% of all rows.
pub const REFUND_BY_PAYMENT: [f64; 5] = [0.01, 0.0085, 0.0085, 0.45, 0.75];
/// Share of trips recorded with zero distance (GPS or meter glitch).
pub const ZERO_DISTANCE_SHARE: f64 = 0.008;
/// Share of trips whose drop-off time equals the pickup time.
pub const ZERO_DURATION_SHARE: f64 = 0.0025;
/// Share of trips with an absurd distance (1,000 to 300,000 miles).
pub const ABSURD_DISTANCE_SHARE: f64 = 3e-5;
/// Share of trips with an absurd fare ($1,000 to $5,000).
pub const ABSURD_FARE_SHARE: f64 = 2e-5;
/// Share of trips whose drop-off is recorded before the pickup.
pub const DROPOFF_BEFORE_PICKUP_SHARE: f64 = 5e-5;
/// Share of metered fares that differ from the meter (manual entry, glitches).
pub const FARE_NOISE_SHARE: f64 = 0.02;

/// Typical average speed (mph) by hour of day on weekdays: slowest in the
/// morning and evening rush hours, fastest before dawn.
pub const SPEED_BY_HOUR_MPH: [f64; 24] = [
    15.0, 17.0, 18.0, 19.0, 20.0, 19.0, 15.0, 11.0, 9.5, 9.5, 10.0, 10.0, 10.0, 10.0, 9.5, 9.0,
    8.8, 8.8, 9.3, 11.0, 12.0, 13.0, 13.5, 14.0,
];
/// Daytime traffic on weekends is this much faster.
pub const WEEKEND_SPEED_FACTOR: f64 = 1.15;
/// Spread of a trip's speed around the typical speed (lognormal sigma).
pub const SPEED_SIGMA: f64 = 0.25;

/// Which rows belong to the null block: rows `start..start + len`, or in
/// every `period` rows when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullBlock {
    pub start: u64,
    pub len: u64,
    pub period: Option<u64>,
}

impl NullBlock {
    /// No null rows.
    pub const NONE: NullBlock = NullBlock {
        start: 0,
        len: 0,
        period: None,
    };

    /// 10% of `rows`, at a position chosen by `seed`.
    pub fn for_rows(rows: u64, seed: u64) -> NullBlock {
        let len = (rows as f64 * NULL_BLOCK_SHARE).round() as u64;
        NullBlock {
            start: block_start(rows - len, seed),
            len,
            period: None,
        }
    }

    /// For unbounded streams: 10% of every [`NULL_BLOCK_PERIOD`] rows.
    pub fn periodic(seed: u64) -> NullBlock {
        let len = (NULL_BLOCK_PERIOD as f64 * NULL_BLOCK_SHARE) as u64;
        NullBlock {
            start: block_start(NULL_BLOCK_PERIOD - len, seed),
            len,
            period: Some(NULL_BLOCK_PERIOD),
        }
    }

    /// Whether row `index` (0-based) is in the block.
    pub fn contains(&self, index: u64) -> bool {
        let i = self.period.map_or(index, |p| index % p);
        i >= self.start && i - self.start < self.len
    }
}

fn block_start(max: u64, seed: u64) -> u64 {
    ChaCha8Rng::seed_from_u64(seed ^ 0x0b10_c4a1_1c0d_e5ee).random_range(0..=max)
}

/// Where a trip goes and at what rate.
#[derive(Debug, Clone, Copy)]
struct Route {
    pickup: i32,
    dropoff: i32,
    ratecode: i64,
}

/// Draws trips from a seeded ChaCha8 stream: same seed and same pickup
/// times give the same trips.
#[derive(Debug)]
pub struct TripSampler {
    rng: ChaCha8Rng,
    pickups: Categorical<i32>,
    dropoffs: DropoffTables,
    passengers: Categorical<i64>,
    payments: Categorical<i64>,
    tips: Categorical<f64>,
    null_block: NullBlock,
    index: u64,
}

impl TripSampler {
    /// A sampler for `seed`, with null rows where `null_block` says.
    pub fn new(seed: u64, null_block: NullBlock) -> TripSampler {
        TripSampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
            pickups: zones::pickup_table(),
            dropoffs: DropoffTables::new(),
            passengers: Categorical::new(PASSENGER_MIX),
            payments: Categorical::new(PAYMENT_MIX),
            tips: Categorical::new(TIP_CHOICES),
            null_block,
            index: 0,
        }
    }

    /// How many trips were drawn so far.
    pub fn count(&self) -> u64 {
        self.index
    }

    /// Draw the next trip, picked up at `pickup_time` (micros).
    pub fn sample(&mut self, pickup_time: i64) -> Trip {
        let null_row = self.null_block.contains(self.index);
        self.index += 1;
        let route = self.route();
        let distance = cents(self.distance(&route));
        let seconds = self.duration(distance, pickup_time);
        let mut trip = self.base_trip(&route, pickup_time, distance, seconds, null_row);
        self.money(&mut trip, &route, seconds as f64);
        self.defects(&mut trip, null_row);
        trip.total_amount = trip.sum_of_parts();
        trip
    }

    fn route(&mut self) -> Route {
        let pickup = self.pickups.sample(&mut self.rng);
        let dropoff = self.dropoffs.sample(&mut self.rng, pickup);
        let ratecode = self.ratecode(pickup, dropoff);
        Route {
            pickup,
            dropoff,
            ratecode,
        }
    }

    fn ratecode(&mut self, pickup: i32, dropoff: i32) -> i64 {
        let rng = &mut self.rng;
        if fare::is_jfk_manhattan(pickup, dropoff) {
            return if chance(rng, JFK_FLAT_SHARE) {
                fare::RATE_JFK
            } else {
                fare::RATE_STANDARD
            };
        }
        if pickup == EWR || dropoff == EWR {
            return fare::RATE_NEWARK;
        }
        if dropoff == OUTSIDE_NYC {
            return if chance(rng, 0.7) {
                fare::RATE_OUT_OF_CITY
            } else {
                fare::RATE_NEGOTIATED
            };
        }
        let u: f64 = rng.random();
        if u < NEGOTIATED_SHARE {
            fare::RATE_NEGOTIATED
        } else if u < NEGOTIATED_SHARE + UNKNOWN_RATE_SHARE {
            fare::RATE_UNKNOWN
        } else {
            fare::RATE_STANDARD
        }
    }

    /// Miles by kind of route: lognormal (median, sigma) per zone pair type.
    fn distance(&mut self, route: &Route) -> f64 {
        let (median, sigma) = distance_params(route.pickup, route.dropoff);
        lognormal(&mut self.rng, median, sigma).max(0.05)
    }

    /// Whole seconds from distance and a time-of-day speed, with noise.
    fn duration(&mut self, distance: f64, pickup_time: i64) -> i64 {
        let h = hour(pickup_time);
        let mut speed = SPEED_BY_HOUR_MPH[h];
        if !is_weekday(pickup_time) && (7..=20).contains(&h) {
            speed *= WEEKEND_SPEED_FACTOR;
        }
        let highway = 1.0 + 0.35 * (distance.max(2.0) / 2.0).ln();
        let speed =
            (speed * highway * (SPEED_SIGMA * normal(&mut self.rng)).exp()).clamp(2.0, 45.0);
        let overhead_minutes = self.rng.random_range(0.3..1.5);
        ((distance / speed * 60.0 + overhead_minutes) * 60.0).round() as i64
    }

    fn base_trip(
        &mut self,
        route: &Route,
        pickup: i64,
        distance: f64,
        seconds: i64,
        null_row: bool,
    ) -> Trip {
        let vendor_id = if chance(&mut self.rng, VENDOR_1_SHARE) {
            1
        } else {
            2
        };
        let forwarded = vendor_id == 1 && chance(&mut self.rng, STORE_AND_FORWARD_SHARE_VENDOR_1);
        let passengers = self.passengers.sample(&mut self.rng);
        let payment = self.payments.sample(&mut self.rng);
        Trip {
            vendor_id,
            tpep_pickup_datetime: pickup,
            tpep_dropoff_datetime: pickup + seconds * SECOND,
            passenger_count: Some(passengers),
            trip_distance: distance,
            ratecode_id: Some(route.ratecode),
            store_and_fwd_flag: Some(if forwarded { "Y" } else { "N" }),
            pu_location_id: route.pickup,
            do_location_id: route.dropoff,
            payment_type: if null_row { 0 } else { payment },
            fare_amount: 0.0,
            extra: 0.0,
            mta_tax: 0.0,
            tip_amount: 0.0,
            tolls_amount: 0.0,
            improvement_surcharge: 0.0,
            total_amount: 0.0,
            congestion_surcharge: None,
            airport_fee: None,
        }
    }

    /// Fare, surcharges, tip and tolls.
    fn money(&mut self, trip: &mut Trip, route: &Route, seconds: f64) {
        let c = fare::charges(&FareInput {
            distance: trip.trip_distance,
            seconds,
            pickup_time: trip.tpep_pickup_datetime,
            pickup_zone: route.pickup,
            dropoff_zone: route.dropoff,
            ratecode: route.ratecode,
        });
        trip.fare_amount = self.fare_with_noise(c.fare, route.ratecode);
        trip.extra = c.extra;
        trip.mta_tax = c.mta_tax;
        trip.improvement_surcharge = c.improvement;
        trip.congestion_surcharge = Some(c.congestion);
        trip.airport_fee = Some(c.airport_fee);
        trip.tip_amount = self.tip(trip.payment_type, trip.fare_amount);
        trip.tolls_amount = self.tolls(route);
    }

    fn fare_with_noise(&mut self, fare: f64, ratecode: i64) -> f64 {
        let rng = &mut self.rng;
        if ratecode == fare::RATE_NEGOTIATED {
            return lognormal(rng, 55.0, 0.5).round().max(5.0);
        }
        if ratecode != fare::RATE_JFK && chance(rng, FARE_NOISE_SHARE) {
            return cents((fare * (1.0 + 0.15 * normal(rng))).max(fare::INITIAL_CHARGE));
        }
        fare
    }

    /// Card tips (and card-like tips in the null block); none otherwise.
    fn tip(&mut self, payment: i64, fare: f64) -> f64 {
        let tips_like_card = payment == 1 || (payment == 0 && chance(&mut self.rng, 0.6));
        if !tips_like_card || chance(&mut self.rng, NO_TIP_SHARE) {
            return 0.0;
        }
        let mut share = self.tips.sample(&mut self.rng);
        if share == 0.0 {
            share = (0.18 + 0.06 * normal(&mut self.rng)).clamp(0.05, 0.5);
        }
        cents(fare * share)
    }

    fn tolls(&mut self, route: &Route) -> f64 {
        let (chance_of_toll, amount) = toll_params(route.pickup, route.dropoff);
        if chance(&mut self.rng, chance_of_toll) {
            amount
        } else {
            0.0
        }
    }

    /// Zero distances and durations, absurd values, clock errors, refunds
    /// and the null block.
    fn defects(&mut self, trip: &mut Trip, null_row: bool) {
        let rng = &mut self.rng;
        match pick_defect(rng.random()) {
            Some(Defect::ZeroDistance) => trip.trip_distance = 0.0,
            Some(Defect::ZeroDuration) => trip.tpep_dropoff_datetime = trip.tpep_pickup_datetime,
            Some(Defect::AbsurdDistance) => {
                trip.trip_distance = cents(rng.random_range(1_000.0..300_000.0));
            }
            Some(Defect::AbsurdFare) => {
                trip.fare_amount = cents(rng.random_range(1_000.0..5_000.0))
            }
            Some(Defect::DropoffBeforePickup) => {
                let minutes: i64 = rng.random_range(1..=90);
                trip.tpep_dropoff_datetime = trip.tpep_pickup_datetime - minutes * 60 * SECOND;
            }
            None => {}
        }
        let payment = trip.payment_type as usize;
        if chance(rng, REFUND_BY_PAYMENT[payment.min(4)]) {
            trip.negate_money();
        }
        if null_row {
            trip.passenger_count = None;
            trip.ratecode_id = None;
            trip.store_and_fwd_flag = None;
            trip.congestion_surcharge = None;
            trip.airport_fee = None;
        }
    }
}

/// Data-quality defects of single rows (at most one per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    ZeroDistance,
    ZeroDuration,
    AbsurdDistance,
    AbsurdFare,
    DropoffBeforePickup,
}

/// Each defect with its share of rows.
const DEFECTS: [(Defect, f64); 5] = [
    (Defect::ZeroDistance, ZERO_DISTANCE_SHARE),
    (Defect::ZeroDuration, ZERO_DURATION_SHARE),
    (Defect::AbsurdDistance, ABSURD_DISTANCE_SHARE),
    (Defect::AbsurdFare, ABSURD_FARE_SHARE),
    (Defect::DropoffBeforePickup, DROPOFF_BEFORE_PICKUP_SHARE),
];

/// The defect for a uniform draw `u` in [0, 1), if any.
fn pick_defect(u: f64) -> Option<Defect> {
    let mut edge = 0.0;
    for (defect, share) in DEFECTS {
        edge += share;
        if u < edge {
            return Some(defect);
        }
    }
    None
}

/// Lognormal (median miles, sigma) of a trip's distance by zone pair.
pub fn distance_params(pickup: i32, dropoff: i32) -> (f64, f64) {
    let (a, b) = (zones::area(pickup), zones::area(dropoff));
    let either = |z: i32| pickup == z || dropoff == z;
    let other_manhattan = a.is_manhattan() || b.is_manhattan();
    if pickup == dropoff && a != Area::Airport {
        (0.7, 0.55)
    } else if either(JFK) && either(LGA) {
        (11.5, 0.08)
    } else if either(JFK) {
        if other_manhattan {
            (17.5, 0.12)
        } else {
            (8.0, 0.45)
        }
    } else if either(LGA) {
        if other_manhattan {
            (9.8, 0.15)
        } else {
            (5.0, 0.5)
        }
    } else if either(EWR) {
        if other_manhattan {
            (17.5, 0.15)
        } else {
            (22.0, 0.3)
        }
    } else if either(OUTSIDE_NYC) {
        (22.0, 0.4)
    } else if a == Area::ManhattanCore && b == Area::ManhattanCore {
        (1.35, 0.55)
    } else if a.is_manhattan() && b.is_manhattan() {
        (3.0, 0.5)
    } else if other_manhattan {
        (4.3, 0.45)
    } else {
        (2.3, 0.7)
    }
}

/// (chance, amount) of a toll by zone pair: likely on airport runs from
/// Manhattan and to Newark, occasional elsewhere.
pub fn toll_params(pickup: i32, dropoff: i32) -> (f64, f64) {
    let (a, b) = (zones::area(pickup), zones::area(dropoff));
    let airport = a == Area::Airport || b == Area::Airport;
    let manhattan = a.is_manhattan() || b.is_manhattan();
    if a == Area::Newark || b == Area::Newark {
        (0.6, TOLL_NEWARK)
    } else if pickup == OUTSIDE_NYC || dropoff == OUTSIDE_NYC {
        (0.5, TOLL_CROSSING)
    } else if airport && manhattan {
        (0.45, TOLL_CROSSING)
    } else if airport {
        (0.10, TOLL_CROSSING)
    } else if a.is_manhattan() != b.is_manhattan() {
        (0.20, TOLL_CROSSING)
    } else if manhattan {
        (0.002, TOLL_CROSSING)
    } else {
        (0.05, TOLL_CROSSING)
    }
}
