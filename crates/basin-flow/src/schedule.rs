//! Schedules: a cron expression in a time zone (croner, chrono-tz). A run
//! covers one data interval, from one cron tick to the next, and starts when
//! the interval ends. Without catchup only the latest finished interval
//! runs; with it (and for backfills) every interval from the start.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::error::{FlowError, Result};

/// A cron schedule in a time zone, from an optional start.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub expression: String,
    cron: Cron,
    pub tz: Tz,
    pub start: Option<DateTime<Utc>>,
}

/// `[start, end)` of one run's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Schedule {
    /// Errors start with the field they concern (`schedule`, `timezone`,
    /// `start`).
    pub fn new(expression: &str, timezone: &str, start: Option<&str>) -> Result<Schedule> {
        let cron = Cron::new(expression)
            .parse()
            .map_err(|e| FlowError::Schedule(format!("schedule '{expression}': {e}")))?;
        let tz: Tz = timezone.parse().map_err(|_| {
            FlowError::Schedule(format!(
                "timezone '{timezone}' is not an IANA time zone name"
            ))
        })?;
        let start = start
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| {
                        FlowError::Schedule(format!(
                            "start '{s}' is not an RFC 3339 time like 2026-01-01T00:00:00Z: {e}"
                        ))
                    })
            })
            .transpose()?;
        Ok(Schedule {
            expression: expression.to_string(),
            cron,
            tz,
            start,
        })
    }

    /// The first tick strictly after `t`.
    pub fn next_tick(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.tz.from_utc_datetime(&t.naive_utc());
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The interval starting at the first tick at or after `t`.
    fn interval_from(&self, t: DateTime<Utc>) -> Option<Interval> {
        let local = self.tz.from_utc_datetime(&t.naive_utc());
        let start = self
            .cron
            .find_next_occurrence(&local, true)
            .ok()?
            .with_timezone(&Utc);
        Some(Interval {
            start,
            end: self.next_tick(start)?,
        })
    }

    /// Every interval that starts at or after `from` and ends by `to`.
    pub fn intervals(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
        let mut out = Vec::new();
        let Some(mut next) = self.interval_from(from) else {
            return out;
        };
        // Each interval starts where the last ended (a tick moved by a
        // daylight-saving change is still a tick).
        while next.end <= to {
            out.push(next);
            let Some(end) = self.next_tick(next.end) else {
                break;
            };
            next = Interval {
                start: next.end,
                end,
            };
        }
        out
    }

    /// The runs due at `now` after the last scheduled interval ended at
    /// `last_end` (if any): every interval since then with catchup, else
    /// only the latest finished one.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        last_end: Option<DateTime<Utc>>,
        catchup: bool,
    ) -> Vec<Interval> {
        let from = last_end
            .or(self.start)
            .unwrap_or(now - chrono::Duration::days(366));
        let all = self.intervals(from, now);
        if catchup || all.is_empty() {
            return all;
        }
        all[all.len() - 1..].to_vec()
    }

    /// The interval a manual run at `t` covers: the latest one ending by `t`.
    pub fn latest_ending_by(&self, t: DateTime<Utc>) -> Option<Interval> {
        let from = t - chrono::Duration::days(366);
        self.intervals(from, t).pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn intervals_run_between_ticks_in_the_time_zone() {
        let daily = Schedule::new("0 2 * * *", "Europe/Berlin", None).unwrap();
        let got = daily.intervals(at("2026-03-27T00:00:00Z"), at("2026-03-31T00:00:00Z"));
        let starts: Vec<String> = got.iter().map(|i| i.start.to_rfc3339()).collect();
        // 02:00 in Berlin: 01:00 UTC in winter; on 29 March 02:00 does not exist.
        assert_eq!(starts[0], "2026-03-27T01:00:00+00:00");
        assert!(starts.len() >= 2, "{starts:?}");
        assert!(got.windows(2).all(|w| w[0].end == w[1].start), "{got:?}");
    }

    #[test]
    fn catchup_runs_every_missed_interval_else_only_the_latest() {
        let hourly = Schedule::new("0 * * * *", "UTC", Some("2026-01-01T00:00:00Z")).unwrap();
        let now = at("2026-01-01T05:30:00Z");
        let all = hourly.due(now, None, true);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].start, at("2026-01-01T00:00:00Z"));
        assert_eq!(all[4].end, at("2026-01-01T05:00:00Z"));
        let latest = hourly.due(now, None, false);
        assert_eq!(latest, vec![all[4]]);
        assert!(hourly
            .due(now, Some(at("2026-01-01T05:00:00Z")), true)
            .is_empty());
        assert!(Schedule::new("0 * * * *", "Mars/Olympus", None).is_err());
    }
}
