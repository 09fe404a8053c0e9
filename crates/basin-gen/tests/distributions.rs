//! Statistical checks on 200,000 generated trips (seed 2024): zone skew,
//! airport share, rate-code and payment mixes, the defects (null block,
//! refunds, zero and absurd values), rate-card consistency, tips, the
//! demand curve and trip lengths — each within a tolerance of its target.

use std::collections::HashMap;
use std::sync::OnceLock;

use basin_gen::taxi::calendar::{hour, HOUR};
use basin_gen::taxi::fare::{self, INITIAL_CHARGE, UNIT_CHARGE};
use basin_gen::taxi::zones::{self, EWR, JFK, LGA};
use basin_gen::taxi::{TaxiConfig, Trip};

const ROWS: usize = 200_000;

fn trips() -> &'static [Trip] {
    static TRIPS: OnceLock<Vec<Trip>> = OnceLock::new();
    TRIPS.get_or_init(|| {
        TaxiConfig::new(ROWS as u64, 2024)
            .trips()
            .expect("valid config")
            .collect()
    })
}

/// Share of all trips matching `f`.
fn share(f: impl Fn(&Trip) -> bool) -> f64 {
    trips().iter().filter(|t| f(t)).count() as f64 / ROWS as f64
}

fn assert_between(what: &str, value: f64, low: f64, high: f64) {
    assert!(
        (low..=high).contains(&value),
        "{what} = {value:.4}, expected {low}..={high}"
    );
}

#[test]
fn all_rows_in_pickup_order_within_january() {
    let t = trips();
    assert_eq!(t.len(), ROWS);
    assert!(t
        .windows(2)
        .all(|w| w[0].tpep_pickup_datetime <= w[1].tpep_pickup_datetime));
    let start = TaxiConfig::new(1, 1).start_micros();
    assert!(t.iter().all(|x| x.tpep_pickup_datetime >= start));
    assert!(t
        .iter()
        .all(|x| x.tpep_pickup_datetime < start + 31 * 24 * HOUR));
}

#[test]
fn airports_take_about_nine_percent_of_pickups() {
    assert_between(
        "airport pickups",
        share(|t| [JFK, LGA, EWR].contains(&t.pu_location_id)),
        0.075,
        0.10,
    );
    assert_between(
        "JFK pickups",
        share(|t| t.pu_location_id == JFK),
        0.045,
        0.06,
    );
    assert_between(
        "Manhattan pickups",
        share(|t| zones::is_manhattan(t.pu_location_id)),
        0.83,
        0.88,
    );
}

#[test]
fn top_pickup_zones_are_manhattan_or_airports() {
    let mut counts: HashMap<i32, usize> = HashMap::new();
    for t in trips() {
        *counts.entry(t.pu_location_id).or_default() += 1;
    }
    let mut ranked: Vec<(i32, usize)> = counts.into_iter().collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    for &(zone, _) in &ranked[..20] {
        assert!(
            zones::is_manhattan(zone) || zone == JFK || zone == LGA,
            "zone {zone} in top 20"
        );
    }
    let top = ranked[0].1 as f64 / ROWS as f64;
    assert_between("top zone share", top, 0.04, 0.065);
    let tenth = ranked[9].1 as f64 / ROWS as f64;
    assert_between("10th zone share", tenth, 0.02, 0.04);
    assert!(
        ranked.len() > 200,
        "only {} pickup zones used",
        ranked.len()
    );
}

#[test]
fn ratecode_mix() {
    assert_between("standard", share(|t| t.ratecode_id == Some(1)), 0.80, 0.87);
    assert_between("JFK", share(|t| t.ratecode_id == Some(2)), 0.028, 0.045);
    assert_between("Newark", share(|t| t.ratecode_id == Some(3)), 0.005, 0.013);
    for code in [4, 5, 99] {
        assert_between(
            &format!("code {code}"),
            share(|t| t.ratecode_id == Some(code)),
            0.0005,
            0.01,
        );
    }
}

#[test]
fn payment_mix() {
    assert_between("card", share(|t| t.payment_type == 1), 0.70, 0.76);
    assert_between("cash", share(|t| t.payment_type == 2), 0.12, 0.16);
    assert_between("no charge", share(|t| t.payment_type == 3), 0.005, 0.02);
    assert_between("dispute", share(|t| t.payment_type == 4), 0.015, 0.035);
}

#[test]
fn one_contiguous_null_block_of_ten_percent() {
    let null_rows: Vec<usize> = (0..ROWS)
        .filter(|&i| trips()[i].passenger_count.is_none())
        .collect();
    assert_between(
        "null block",
        null_rows.len() as f64 / ROWS as f64,
        0.099,
        0.101,
    );
    let (first, last) = (null_rows[0], null_rows[null_rows.len() - 1]);
    assert_eq!(
        last - first + 1,
        null_rows.len(),
        "the null rows are contiguous"
    );
    for t in &trips()[first..=last] {
        assert_eq!(t.ratecode_id, None);
        assert_eq!(t.store_and_fwd_flag, None);
        assert_eq!(t.congestion_surcharge, None);
        assert_eq!(t.airport_fee, None);
        assert_eq!(t.payment_type, 0);
    }
    assert!(trips().iter().filter(|t| t.payment_type == 0).count() == null_rows.len());
}

#[test]
fn refunds_zero_and_absurd_values() {
    assert_between(
        "negative fares",
        share(|t| t.fare_amount < 0.0),
        0.025,
        0.04,
    );
    let refund_sums_negative = trips()
        .iter()
        .filter(|t| t.fare_amount < 0.0)
        .all(|t| t.total_amount < 0.0 && t.improvement_surcharge < 0.0);
    assert!(refund_sums_negative, "refunds negate every amount");
    let zero = share(|t| t.trip_distance == 0.0 || t.duration_seconds() == 0);
    assert_between("zero distance or duration", zero, 0.007, 0.014);
    assert!(
        trips().iter().any(|t| t.trip_distance > 1_000.0),
        "an absurd distance"
    );
    assert!(
        trips().iter().any(|t| t.fare_amount.abs() > 1_000.0),
        "an absurd fare"
    );
    let backwards = trips().iter().filter(|t| t.duration_seconds() < 0).count();
    assert!(
        (1..=50).contains(&backwards),
        "{backwards} drop-offs before pickups"
    );
}

#[test]
fn total_is_the_sum_of_its_parts() {
    for t in trips() {
        assert!((t.total_amount - t.sum_of_parts()).abs() < 0.005, "{t:?}");
    }
}

/// A clean, standard-rate, positive row with a plausible distance.
fn clean_standard(t: &Trip) -> bool {
    t.ratecode_id == Some(1)
        && t.fare_amount > 0.0
        && t.fare_amount < 1_000.0
        && t.trip_distance > 0.0
        && t.trip_distance < 100.0
        && t.duration_seconds() > 0
}

#[test]
fn standard_fares_follow_the_rate_card() {
    let rows: Vec<&Trip> = trips().iter().filter(|t| clean_standard(t)).collect();
    assert!(rows.len() > 150_000);
    let consistent = rows
        .iter()
        .filter(|t| {
            let minutes = t.duration_seconds() as f64 / 60.0;
            let low = INITIAL_CHARGE + UNIT_CHARGE * (5.0 * t.trip_distance).floor();
            let high = INITIAL_CHARGE + UNIT_CHARGE * (5.0 * t.trip_distance + minutes);
            t.fare_amount >= low - 0.005 && t.fare_amount <= high + 0.005
        })
        .count();
    assert_between(
        "rate-card consistent",
        consistent as f64 / rows.len() as f64,
        0.97,
        1.0,
    );
    // Fares on the meter's grid: $3.00 plus a whole number of $0.70 units.
    let on_grid = rows
        .iter()
        .filter(|t| {
            let units = (t.fare_amount - INITIAL_CHARGE) / UNIT_CHARGE;
            (units - units.round()).abs() < 1e-6
        })
        .count();
    assert_between(
        "on the meter grid",
        on_grid as f64 / rows.len() as f64,
        0.97,
        1.0,
    );
}

#[test]
fn surcharges_follow_the_rules() {
    for t in trips().iter().filter(|t| t.fare_amount > 0.0) {
        let fee = t.airport_fee.unwrap_or(0.0);
        let at_airport = t.pu_location_id == JFK || t.pu_location_id == LGA;
        if t.airport_fee.is_some() {
            assert_eq!(fee > 0.0, at_airport, "{t:?}");
        }
        assert!([0.0, 1.0, 2.5, 5.0].contains(&t.extra), "{t:?}");
        if t.ratecode_id == Some(2) {
            assert_eq!(t.fare_amount, fare::JFK_FLAT_FARE);
        }
    }
}

#[test]
fn tips_only_on_cards_about_twenty_percent() {
    assert!(trips()
        .iter()
        .filter(|t| t.payment_type == 2)
        .all(|t| t.tip_amount == 0.0));
    let card: Vec<&Trip> = trips()
        .iter()
        .filter(|t| t.payment_type == 1 && t.fare_amount > 0.0 && t.fare_amount < 1_000.0)
        .collect();
    let tips: f64 = card.iter().map(|t| t.tip_amount).sum();
    let fares: f64 = card.iter().map(|t| t.fare_amount).sum();
    assert_between("tip / fare", tips / fares, 0.17, 0.23);
    let untipped = card.iter().filter(|t| t.tip_amount == 0.0).count() as f64 / card.len() as f64;
    assert_between("untipped card trips", untipped, 0.05, 0.15);
}

#[test]
fn evening_peak_dwarfs_the_small_hours() {
    let mut by_hour = [0usize; 24];
    for t in trips() {
        by_hour[hour(t.tpep_pickup_datetime)] += 1;
    }
    let peak = *by_hour.iter().max().unwrap_or(&0);
    assert!((17..=19).contains(&by_hour.iter().position(|&c| c == peak).unwrap_or(0)));
    assert!(by_hour[18] > 6 * by_hour[4], "{by_hour:?}");
    assert!(by_hour[8] > 3 * by_hour[5], "morning rise {by_hour:?}");
}

#[test]
fn heavy_tailed_distances_and_long_airport_runs() {
    let mut miles: Vec<f64> = trips()
        .iter()
        .map(|t| t.trip_distance)
        .filter(|&d| d > 0.0 && d < 500.0)
        .collect();
    miles.sort_by(f64::total_cmp);
    let median = miles[miles.len() / 2];
    let mean = miles.iter().sum::<f64>() / miles.len() as f64;
    assert_between("median miles", median, 1.5, 1.95);
    assert_between("mean miles", mean, 2.7, 3.7);
    let jfk: Vec<f64> = trips()
        .iter()
        .filter(|t| t.ratecode_id == Some(2) && t.trip_distance > 0.0 && t.trip_distance < 500.0)
        .map(|t| t.trip_distance)
        .collect();
    assert_between(
        "JFK-Manhattan mean miles",
        jfk.iter().sum::<f64>() / jfk.len() as f64,
        14.0,
        21.0,
    );
}

#[test]
fn rush_hour_is_slower() {
    let speed = |h: usize| {
        let (miles, secs) = trips()
            .iter()
            .filter(|t| {
                hour(t.tpep_pickup_datetime) == h
                    && t.trip_distance > 0.0
                    && t.trip_distance < 100.0
            })
            .filter(|t| t.duration_seconds() > 0)
            .fold((0.0, 0.0), |(m, s), t| {
                (m + t.trip_distance, s + t.duration_seconds() as f64)
            });
        miles / (secs / 3600.0)
    };
    assert!(
        speed(4) > 1.4 * speed(17),
        "4 am {} mph vs 5 pm {} mph",
        speed(4),
        speed(17)
    );
}
