//! mobiflux schedules: cron expressions with seconds, evaluated in a timezone.
//!
//! [`Schedule`] parses and computes ticks (used by `mobiflux validate` too); [`clock`] turns
//! ticks into decisions (catch-up, no overlap, jitter) on a controllable clock; [`daemon`]
//! runs every pipeline on its clock, claiming each tick in the warehouse first.

pub mod breaker;
pub mod clock;
pub mod daemon;
pub mod httpd;
pub mod metrics;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

pub const DEFAULT_TIMEZONE: &str = "Europe/Paris";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error(
        "{expr:?} is not a cron expression with seconds (sec min hour day month weekday): {message}"
    )]
    BadCron { expr: String, message: String },
    #[error("{0:?} is not an IANA timezone (such as Europe/Paris)")]
    BadTimezone(String),
}

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    expr: String,
}

impl Schedule {
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let tz: Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::BadTimezone(timezone.to_string()))?;
        let fields = expr.split_whitespace().count();
        if fields != 6 {
            return Err(ScheduleError::BadCron {
                expr: expr.to_string(),
                message: format!("expected 6 fields, found {fields}"),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::BadCron {
                expr: expr.to_string(),
                message: e.to_string(),
            })?;
        Ok(Schedule {
            cron,
            tz,
            expr: expr.to_string(),
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `t` (ticks fall on whole seconds).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::SubsecRound;
        self.cron
            .find_next_occurrence(&t.trunc_subsecs(0).with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc).trunc_subsecs(0))
    }
}

impl Schedule {
    /// The longest wait between two consecutive ticks over the 8 days after `from` (a week
    /// and a day: weekly patterns and a DST change are seen), looking at most at 100,000
    /// ticks. `None` when the expression never fires again.
    ///
    /// Memoized per expression and timezone within the hour of `from`: a folder of a
    /// thousand definitions on one schedule walks its ticks once, not a thousand times.
    pub fn longest_gap(&self, from: DateTime<Utc>) -> Option<chrono::Duration> {
        use std::collections::HashMap;
        use std::sync::Mutex;
        type Memo = (i64, HashMap<(String, Tz), Option<chrono::Duration>>);
        static MEMO: Mutex<Option<Memo>> = Mutex::new(None);
        let hour = from.timestamp().div_euclid(3600);
        let key = (self.expr.clone(), self.tz);
        {
            let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
            let (at, gaps) = memo.get_or_insert_with(|| (hour, HashMap::new()));
            if *at != hour {
                (*at, *gaps) = (hour, HashMap::new());
            }
            if let Some(hit) = gaps.get(&key) {
                return *hit;
            }
        }
        let gap = self.walk_longest_gap(from);
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, gaps)) = memo.as_mut()
            && *at == hour
        {
            gaps.insert(key, gap);
        }
        gap
    }

    fn walk_longest_gap(&self, from: DateTime<Utc>) -> Option<chrono::Duration> {
        let horizon = from + chrono::Duration::days(8);
        let mut t = self.next_after(from)?;
        let mut longest = chrono::Duration::zero();
        for _ in 0..100_000 {
            let Some(next) = self.next_after(t) else {
                break;
            };
            longest = longest.max(next - t);
            if next > horizon {
                break;
            }
            t = next;
        }
        (longest > chrono::Duration::zero()).then_some(longest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_minute_at_second_zero_in_paris() {
        let s = Schedule::parse("0 * * * * *", DEFAULT_TIMEZONE).unwrap();
        let t = Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 30).unwrap();
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap())
        );
    }

    #[test]
    fn ticks_fall_on_whole_seconds() {
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 30).unwrap()
            + chrono::Duration::milliseconds(203);
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 31).unwrap())
        );
    }

    #[test]
    fn daily_tick_follows_local_time_across_dst() {
        // 06:00 Paris is 05:00 UTC in winter and 04:00 UTC in summer (DST began 2026-03-29).
        let s = Schedule::parse("0 0 6 * * *", "Europe/Paris").unwrap();
        let before = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let d1 = s.next_after(before).unwrap();
        let d2 = s.next_after(d1).unwrap();
        assert_eq!(d1, Utc.with_ymd_and_hms(2026, 3, 29, 4, 0, 0).unwrap());
        assert_eq!(d2, Utc.with_ymd_and_hms(2026, 3, 30, 4, 0, 0).unwrap());
        let winter = s
            .next_after(Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap())
            .unwrap();
        assert_eq!(winter, Utc.with_ymd_and_hms(2026, 1, 10, 5, 0, 0).unwrap());
    }

    #[test]
    fn longest_gap_sees_nights_and_weekends() {
        let from = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        let every_2_min = Schedule::parse("0 */2 * * * *", "UTC").unwrap();
        assert_eq!(
            every_2_min.longest_gap(from),
            Some(chrono::Duration::seconds(120))
        );
        // Every 10 minutes from 06:00 to 22:50: the night is the longest wait.
        let daytime = Schedule::parse("0 */10 6-22 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            daytime.longest_gap(from),
            Some(chrono::Duration::minutes(7 * 60 + 10))
        );
        let weekdays = Schedule::parse("0 0 8 * * 1-5", "Europe/Paris").unwrap();
        assert_eq!(weekdays.longest_gap(from), Some(chrono::Duration::days(3)));
    }

    #[test]
    fn errors_say_what_is_expected() {
        let e = Schedule::parse("* * * * *", "Europe/Paris").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"* * * * *\" is not a cron expression with seconds (sec min hour day month weekday): expected 6 fields, found 5"
        );
        assert!(matches!(
            Schedule::parse("0 61 * * * *", "UTC"),
            Err(ScheduleError::BadCron { .. })
        ));
        assert_eq!(
            Schedule::parse("0 * * * * *", "Paris").unwrap_err(),
            ScheduleError::BadTimezone("Paris".into())
        );
    }
}
