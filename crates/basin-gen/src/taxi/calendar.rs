//! When trips happen: hour-of-day profiles per kind of day (morning and
//! evening peaks, a 3–5 am trough, busy Friday and Saturday nights),
//! day-of-week totals, and [`Schedule`], which spreads a fixed number of
//! pickups over a time span in chronological order with bounded memory.
//!
//! Times are microseconds since 1970-01-01 of NYC local wall-clock time,
//! as in the TLC files (timestamps without a time zone).

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::sample::normal;

/// Microseconds per second.
pub const SECOND: i64 = 1_000_000;
/// Microseconds per minute.
pub const MINUTE: i64 = 60 * SECOND;
/// Microseconds per hour.
pub const HOUR: i64 = 60 * MINUTE;
/// Microseconds per day.
pub const DAY: i64 = 24 * HOUR;

/// Hour-of-day pickup weights, Monday to Thursday: a morning peak at 8–9,
/// the daily maximum at 6 pm, and a trough at 3–5 am.
pub const HOURS_WEEKDAY: [f64; 24] = [
    1.9, 1.0, 0.6, 0.4, 0.35, 0.5, 1.4, 3.4, 5.0, 5.1, 4.5, 4.4, 4.7, 4.8, 5.2, 5.4, 5.6, 6.5, 7.0,
    6.4, 5.7, 5.7, 5.3, 3.9,
];

/// Friday: a weekday that stays busy late into the night.
pub const HOURS_FRIDAY: [f64; 24] = [
    2.1, 1.1, 0.7, 0.45, 0.4, 0.5, 1.3, 3.1, 4.6, 4.8, 4.4, 4.3, 4.6, 4.7, 5.1, 5.3, 5.5, 6.3, 6.9,
    6.6, 6.1, 6.4, 6.6, 5.9,
];

/// Saturday: Friday night spills past 3 am, a late morning, a busy night.
pub const HOURS_SATURDAY: [f64; 24] = [
    4.8, 3.8, 2.8, 1.9, 1.0, 0.6, 0.6, 0.9, 1.6, 2.6, 3.8, 4.8, 5.4, 5.7, 5.9, 6.0, 5.9, 6.1, 6.4,
    6.1, 5.6, 5.7, 6.1, 5.9,
];

/// Sunday: Saturday night's tail, then a calm evening.
pub const HOURS_SUNDAY: [f64; 24] = [
    5.6, 4.5, 3.3, 2.2, 1.2, 0.7, 0.6, 0.9, 1.6, 2.6, 3.9, 4.9, 5.5, 5.8, 5.9, 6.0, 5.9, 5.9, 5.8,
    5.4, 4.9, 4.4, 3.7, 2.7,
];

/// Relative number of trips per day of week, Monday first.
pub const DAY_OF_WEEK_WEIGHTS: [f64; 7] = [0.88, 0.97, 1.02, 1.07, 1.06, 1.04, 0.91];

/// Day-to-day variation (weather, events): each day's volume is scaled by
/// `exp(DAY_NOISE_SIGMA * z)`, `z` standard normal.
pub const DAY_NOISE_SIGMA: f64 = 0.05;

/// Day of the week of a timestamp, 0 = Monday (1970-01-01 was a Thursday).
pub fn weekday(micros: i64) -> usize {
    (micros.div_euclid(DAY) + 3).rem_euclid(7) as usize
}

/// Hour of the day, 0..24.
pub fn hour(micros: i64) -> usize {
    (micros.rem_euclid(DAY) / HOUR) as usize
}

/// Whether a timestamp falls on Monday to Friday.
pub fn is_weekday(micros: i64) -> bool {
    weekday(micros) < 5
}

/// The hour-of-day profile of a day of the week.
pub fn hour_profile(weekday: usize) -> &'static [f64; 24] {
    match weekday {
        4 => &HOURS_FRIDAY,
        5 => &HOURS_SATURDAY,
        6 => &HOURS_SUNDAY,
        _ => &HOURS_WEEKDAY,
    }
}

/// Relative pickup intensity for the hour containing `micros` (before day noise).
pub fn intensity(micros: i64) -> f64 {
    let day = weekday(micros);
    let profile = hour_profile(day);
    let sum: f64 = profile.iter().sum();
    DAY_OF_WEEK_WEIGHTS[day] * profile[hour(micros)] / sum
}

/// [`intensity`] with the hour shares precomputed, for the per-minute loop.
#[derive(Debug, Clone)]
struct Intensities {
    /// `[weekday][hour]` → day weight × hour share.
    table: [[f64; 24]; 7],
}

impl Intensities {
    fn new() -> Intensities {
        let mut table = [[0.0; 24]; 7];
        for (day, row) in table.iter_mut().enumerate() {
            let profile = hour_profile(day);
            let sum: f64 = profile.iter().sum();
            for (h, cell) in row.iter_mut().enumerate() {
                *cell = DAY_OF_WEEK_WEIGHTS[day] * profile[h] / sum;
            }
        }
        Intensities { table }
    }

    fn at(&self, micros: i64) -> f64 {
        self.table[weekday(micros)][hour(micros)]
    }
}

/// Chronological pickup times: `rows` pickups spread over `minutes` minutes
/// from `start`, each minute getting its share of the demand curve (by
/// cumulative rounding, so the total is exact), seconds uniform within it.
#[derive(Debug)]
pub struct Schedule {
    start: i64,
    minutes: u64,
    rows: u64,
    total_weight: f64,
    day_factors: Vec<f64>,
    intensities: Intensities,
    minute: u64,
    cumulative: f64,
    assigned: u64,
    pending: Vec<i64>,
    rng: ChaCha8Rng,
}

impl Schedule {
    /// A schedule of `rows` pickups over `days` days from `start` (micros).
    pub fn new(rows: u64, start: i64, days: u32, seed: u64) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5c4e_d01e_7a11_0001);
        let day_factors = (0..days)
            .map(|_| (DAY_NOISE_SIGMA * normal(&mut rng)).exp())
            .collect();
        let mut schedule = Schedule {
            start,
            minutes: u64::from(days) * 24 * 60,
            rows,
            total_weight: 0.0,
            day_factors,
            intensities: Intensities::new(),
            minute: 0,
            cumulative: 0.0,
            assigned: 0,
            pending: Vec::new(),
            rng,
        };
        schedule.total_weight = (0..schedule.minutes).map(|m| schedule.weight(m)).sum();
        schedule
    }

    /// The demand weight of minute `m` of the span.
    fn weight(&self, m: u64) -> f64 {
        let day = (m / (24 * 60)) as usize;
        self.day_factors[day] * self.intensities.at(self.minute_start(m))
    }

    fn minute_start(&self, m: u64) -> i64 {
        self.start + m as i64 * MINUTE
    }

    /// Fill `pending` (reversed, so `pop` yields ascending times) with the
    /// next non-empty minute's pickups; false when the span is done.
    fn refill(&mut self) -> bool {
        while self.pending.is_empty() && self.minute < self.minutes {
            let m = self.minute;
            self.minute += 1;
            self.cumulative += self.weight(m);
            let target = if self.minute == self.minutes {
                self.rows
            } else {
                let share = self.cumulative / self.total_weight;
                ((self.rows as f64 * share).round() as u64).min(self.rows)
            };
            let count = target.saturating_sub(self.assigned);
            self.assigned += count;
            let base = self.minute_start(m);
            let rng = &mut self.rng;
            self.pending
                .extend((0..count).map(|_| base + rng.random_range(0..60) * SECOND));
            self.pending.sort_unstable_by(|a, b| b.cmp(a));
        }
        !self.pending.is_empty()
    }
}

impl Iterator for Schedule {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        if self.pending.is_empty() && !self.refill() {
            return None;
        }
        self.pending.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00, a Monday.
    const JAN_1_2024: i64 = 1_704_067_200 * SECOND;

    #[test]
    fn weekdays_and_hours() {
        assert_eq!(weekday(0), 3);
        assert_eq!(weekday(JAN_1_2024), 0);
        assert_eq!(weekday(JAN_1_2024 + 5 * DAY), 5);
        assert_eq!(hour(JAN_1_2024 + 18 * HOUR + 59 * MINUTE), 18);
        assert!(!is_weekday(JAN_1_2024 + 6 * DAY));
    }

    #[test]
    fn schedule_is_exact_sorted_and_in_span() {
        let times: Vec<i64> = Schedule::new(10_007, JAN_1_2024, 3, 9).collect();
        assert_eq!(times.len(), 10_007);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[0] >= JAN_1_2024 && times[10_006] < JAN_1_2024 + 3 * DAY);
        assert!(times.iter().all(|t| t % SECOND == 0));
    }

    #[test]
    fn few_rows_still_exact() {
        assert_eq!(Schedule::new(3, JAN_1_2024, 31, 1).count(), 3);
        assert_eq!(Schedule::new(0, JAN_1_2024, 1, 1).count(), 0);
    }
}
