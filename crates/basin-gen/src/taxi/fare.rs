//! The NYC yellow-taxi rate card in force since 19 December 2022, and the
//! charges of one trip under it: metered fare (or JFK flat fare / Newark /
//! out-of-city / negotiated), surcharges, taxes, airport fee and
//! congestion surcharge. Tips, tolls and noise are added by the sampler.

use super::calendar::{hour, is_weekday};
use super::zones::{self, JFK, LGA};
use crate::sample::cents;

/// Initial charge when the meter starts.
pub const INITIAL_CHARGE: f64 = 3.00;
/// Charged per unit: 1/5 mile at speed, or 60 seconds when slow or stopped.
pub const UNIT_CHARGE: f64 = 0.70;
/// Meter units per mile (one per 1/5 mile).
pub const UNITS_PER_MILE: f64 = 5.0;
/// Below this speed the meter charges by time instead of distance.
pub const SLOW_SPEED_MPH: f64 = 12.0;
/// Improvement surcharge on every trip.
pub const IMPROVEMENT_SURCHARGE: f64 = 1.00;
/// MTA state surcharge on trips ending in the MTA region (not New Jersey).
pub const MTA_TAX: f64 = 0.50;
/// Weekday rush-hour surcharge, 4 pm to 8 pm (metered trips).
pub const RUSH_SURCHARGE: f64 = 2.50;
/// Rush-hour surcharge on the JFK flat fare, weekdays 4 pm to 8 pm.
pub const JFK_RUSH_SURCHARGE: f64 = 5.00;
/// Overnight surcharge, 8 pm to 6 am (metered trips).
pub const OVERNIGHT_SURCHARGE: f64 = 1.00;
/// Flat fare between JFK and Manhattan, either way (RatecodeID 2).
pub const JFK_FLAT_FARE: f64 = 70.00;
/// Newark surcharge on top of the meter (RatecodeID 3), here kept in
/// `fare_amount` as the meter shows it.
pub const NEWARK_SURCHARGE: f64 = 20.00;
/// Beyond the city line (RatecodeID 4) the meter runs at double rate; about
/// half of such a trip is outside, so the whole meter is scaled by 1.5.
pub const OUT_OF_CITY_FACTOR: f64 = 1.5;
/// Airport fee on pickups at LaGuardia or JFK.
pub const AIRPORT_FEE: f64 = 1.75;
/// Congestion surcharge on trips touching Manhattan south of 96th Street.
pub const CONGESTION_SURCHARGE: f64 = 2.50;

/// RatecodeID: standard metered rate.
pub const RATE_STANDARD: i64 = 1;
/// RatecodeID: JFK flat fare.
pub const RATE_JFK: i64 = 2;
/// RatecodeID: Newark.
pub const RATE_NEWARK: i64 = 3;
/// RatecodeID: Nassau or Westchester.
pub const RATE_OUT_OF_CITY: i64 = 4;
/// RatecodeID: negotiated fare.
pub const RATE_NEGOTIATED: i64 = 5;
/// RatecodeID: unknown.
pub const RATE_UNKNOWN: i64 = 99;

/// The money columns of one trip (before tips, tolls and refunds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Charges {
    pub fare: f64,
    pub extra: f64,
    pub mta_tax: f64,
    pub improvement: f64,
    pub congestion: f64,
    pub airport_fee: f64,
}

/// What the fare depends on.
#[derive(Debug, Clone, Copy)]
pub struct FareInput {
    /// Miles, as recorded (two decimals).
    pub distance: f64,
    /// Trip duration in seconds.
    pub seconds: f64,
    /// Pickup time (micros of local time).
    pub pickup_time: i64,
    pub pickup_zone: i32,
    pub dropoff_zone: i32,
    pub ratecode: i64,
}

/// Meter units for a trip: the meter charges by distance while the cab
/// moves faster than 12 mph and by the minute while it is slower. The trip
/// is modelled as a slow share of its time (larger when the average speed
/// is low) spent crawling below 12 mph, and the rest at speed. Because slow
/// minutes cover less than 1/5 mile each, the units always lie between
/// `5 * miles` and `5 * miles + minutes`.
pub fn meter_units(distance: f64, seconds: f64) -> f64 {
    if distance <= 0.0 || seconds <= 0.0 {
        return (seconds.max(0.0) / 60.0).floor();
    }
    let hours = seconds / 3600.0;
    let speed = distance / hours;
    let slow_share = (1.2 - speed / 15.0).clamp(0.05, 0.95);
    let slow_speed = speed.min(6.0) * 0.6;
    let slow_hours = slow_share * hours;
    let slow_miles = slow_hours * slow_speed;
    let fast_miles = distance - slow_miles;
    (fast_miles * UNITS_PER_MILE + slow_hours * 60.0).floor()
}

/// The metered fare: initial charge plus units.
pub fn metered_fare(distance: f64, seconds: f64) -> f64 {
    cents(INITIAL_CHARGE + UNIT_CHARGE * meter_units(distance, seconds))
}

/// Whether the JFK flat fare applies to a zone pair.
pub fn is_jfk_manhattan(pickup: i32, dropoff: i32) -> bool {
    (pickup == JFK && zones::is_manhattan(dropoff))
        || (dropoff == JFK && zones::is_manhattan(pickup))
}

/// Rush (weekday 4–8 pm) and overnight (8 pm–6 am) surcharges for a metered trip.
pub fn time_surcharge(pickup_time: i64) -> f64 {
    let h = hour(pickup_time);
    if is_weekday(pickup_time) && (16..20).contains(&h) {
        RUSH_SURCHARGE
    } else if !(6..20).contains(&h) {
        OVERNIGHT_SURCHARGE
    } else {
        0.0
    }
}

/// Compute the fare and surcharges (no tip, tolls or noise).
pub fn charges(input: &FareInput) -> Charges {
    let mut c = Charges {
        improvement: IMPROVEMENT_SURCHARGE,
        mta_tax: MTA_TAX,
        ..Charges::default()
    };
    let meter = || metered_fare(input.distance, input.seconds);
    match input.ratecode {
        RATE_JFK => {
            c.fare = JFK_FLAT_FARE;
            let h = hour(input.pickup_time);
            if is_weekday(input.pickup_time) && (16..20).contains(&h) {
                c.extra = JFK_RUSH_SURCHARGE;
            }
        }
        RATE_NEWARK => {
            c.fare = cents(meter() + NEWARK_SURCHARGE);
            c.extra = time_surcharge(input.pickup_time);
            c.mta_tax = 0.0;
        }
        RATE_OUT_OF_CITY => {
            c.fare = cents(meter() * OUT_OF_CITY_FACTOR);
            c.extra = time_surcharge(input.pickup_time);
        }
        RATE_NEGOTIATED => {}
        _ => {
            c.fare = meter();
            c.extra = time_surcharge(input.pickup_time);
        }
    }
    if input.pickup_zone == JFK || input.pickup_zone == LGA {
        c.airport_fee = AIRPORT_FEE;
    }
    if zones::in_congestion_zone(input.pickup_zone) || zones::in_congestion_zone(input.dropoff_zone)
    {
        c.congestion = CONGESTION_SURCHARGE;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxi::calendar::{HOUR, SECOND};

    /// 2024-01-02 (a Tuesday) at midnight.
    const TUESDAY: i64 = 1_704_153_600 * SECOND;

    #[test]
    fn units_within_rate_card_bounds() {
        for &(miles, minutes) in &[
            (0.5, 4.0),
            (1.7, 12.0),
            (3.0, 30.0),
            (17.0, 35.0),
            (2.0, 3.0),
        ] {
            let units = meter_units(miles, minutes * 60.0);
            assert!(
                units >= (miles * 5.0).floor(),
                "{miles} mi {minutes} min: {units}"
            );
            assert!(
                units <= miles * 5.0 + minutes,
                "{miles} mi {minutes} min: {units}"
            );
        }
        assert_eq!(meter_units(0.0, 150.0), 2.0);
    }

    #[test]
    fn surcharges_by_time() {
        assert_eq!(time_surcharge(TUESDAY + 17 * HOUR), RUSH_SURCHARGE);
        assert_eq!(time_surcharge(TUESDAY + 2 * HOUR), OVERNIGHT_SURCHARGE);
        assert_eq!(time_surcharge(TUESDAY + 21 * HOUR), OVERNIGHT_SURCHARGE);
        assert_eq!(time_surcharge(TUESDAY + 10 * HOUR), 0.0);
        // Saturday 5 pm: no rush surcharge.
        assert_eq!(time_surcharge(TUESDAY + 4 * 24 * HOUR + 17 * HOUR), 0.0);
    }

    #[test]
    fn jfk_flat_fare() {
        let input = FareInput {
            distance: 17.0,
            seconds: 2400.0,
            pickup_time: TUESDAY + 17 * HOUR,
            pickup_zone: JFK,
            dropoff_zone: 161,
            ratecode: RATE_JFK,
        };
        let c = charges(&input);
        assert_eq!(c.fare, JFK_FLAT_FARE);
        assert_eq!(c.extra, JFK_RUSH_SURCHARGE);
        assert_eq!(c.airport_fee, AIRPORT_FEE);
        assert_eq!(c.congestion, CONGESTION_SURCHARGE);
        assert!(is_jfk_manhattan(JFK, 161) && is_jfk_manhattan(236, JFK));
        assert!(!is_jfk_manhattan(LGA, 161));
    }
}
