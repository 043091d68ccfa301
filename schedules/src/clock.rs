//! When one pipeline runs: its cron ticks turned into decisions, with a controllable clock
//! (every function takes `now`), so DST, catch-up and no-overlap are tested without waiting.

use chrono::{DateTime, Duration, Utc};

use crate::Schedule;

/// What to do with ticks missed while the daemon was down (or busy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Run once for all of them (the latest), the default.
    Once,
    /// Run each of them, oldest first, at most this many.
    Each(usize),
    /// Run none of them; wait for the next tick.
    Skip,
}

/// What a pipeline does when the daemon wakes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run for these ticks (`scheduled_for`), oldest first.
    Run(Vec<DateTime<Utc>>),
    /// The previous run is still going: these ticks are skipped (and counted).
    Overlap(Vec<DateTime<Utc>>),
    /// Nothing due yet.
    Wait,
}

/// One pipeline's clock: the last tick it handled, its schedule, jitter and catch-up rule.
#[derive(Debug, Clone)]
pub struct PipelineClock {
    schedule: Schedule,
    /// Fixed offset after each tick (a share of the jitter drawn once from the pipeline's
    /// name), so pipelines on one schedule do not all start in the same millisecond.
    offset: Duration,
    catch_up: CatchUp,
    /// The last tick decided (run or skipped).
    last: DateTime<Utc>,
    /// Ticks missed and not run (catch-up) or skipped because of an overlap.
    pub missed: u64,
    pub overlapped: u64,
}

/// A stable offset in `[0, jitter)` from a name (FNV-1a), the same on every instance.
pub fn offset_for(name: &str, jitter: std::time::Duration) -> Duration {
    let ms = jitter.as_millis() as u64;
    if ms == 0 {
        return Duration::zero();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::milliseconds((h % ms) as i64)
}

impl PipelineClock {
    /// A clock whose first tick is the first one after `start`.
    pub fn new(
        schedule: Schedule,
        start: DateTime<Utc>,
        offset: Duration,
        catch_up: CatchUp,
    ) -> Self {
        PipelineClock {
            schedule,
            offset,
            catch_up,
            last: start,
            missed: 0,
            overlapped: 0,
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// When to wake next: the next tick after the last one handled, plus the offset.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.schedule.next_after(self.last).map(|t| t + self.offset)
    }

    /// The decision at `now`; `running` says whether the previous run is still going.
    pub fn decide(&mut self, now: DateTime<Utc>, running: bool) -> Decision {
        let mut due = Vec::new();
        let mut t = self.last;
        // Bounded: a daemon down for a year with a per-second schedule must not loop forever.
        while let Some(next) = self.schedule.next_after(t) {
            if next + self.offset > now || due.len() >= 100_000 {
                break;
            }
            due.push(next);
            t = next;
        }
        let Some(&latest) = due.last() else {
            return Decision::Wait;
        };
        self.last = latest;
        if running {
            self.overlapped += due.len() as u64;
            return Decision::Overlap(due);
        }
        let n = due.len();
        let run = match self.catch_up {
            CatchUp::Once => vec![latest],
            CatchUp::Each(max) => due.into_iter().take(max.max(1)).collect(),
            CatchUp::Skip => {
                // On time means: the latest tick is the one that just fell due.
                if self
                    .schedule
                    .next_after(latest)
                    .is_none_or(|n| n + self.offset > now)
                    && n == 1
                {
                    vec![latest]
                } else {
                    Vec::new()
                }
            }
        };
        self.missed += (n - run.len()) as u64;
        if run.is_empty() {
            Decision::Wait
        } else {
            Decision::Run(run)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, s).unwrap()
    }

    fn clock(expr: &str, start: DateTime<Utc>, catch_up: CatchUp) -> PipelineClock {
        PipelineClock::new(
            Schedule::parse(expr, "Europe/Paris").unwrap(),
            start,
            Duration::zero(),
            catch_up,
        )
    }

    #[test]
    fn a_tick_runs_once_when_due_and_not_before() {
        let mut c = clock("0 * * * * *", at(10, 0, 30), CatchUp::Once);
        assert_eq!(c.next_wake(), Some(at(10, 1, 0)));
        assert_eq!(c.decide(at(10, 0, 59), false), Decision::Wait);
        assert_eq!(
            c.decide(at(10, 1, 0), false),
            Decision::Run(vec![at(10, 1, 0)])
        );
        // Waking again within the same tick does nothing.
        assert_eq!(c.decide(at(10, 1, 0), false), Decision::Wait);
        assert_eq!(c.next_wake(), Some(at(10, 2, 0)));
    }

    #[test]
    fn missed_ticks_after_downtime_run_once_or_each_as_configured() {
        // Down from 10:00:30 to 10:05:10: five ticks missed.
        let mut once = clock("0 * * * * *", at(10, 0, 30), CatchUp::Once);
        assert_eq!(
            once.decide(at(10, 5, 10), false),
            Decision::Run(vec![at(10, 5, 0)])
        );
        assert_eq!(once.missed, 4);
        let mut each = clock("0 * * * * *", at(10, 0, 30), CatchUp::Each(3));
        assert_eq!(
            each.decide(at(10, 5, 10), false),
            Decision::Run(vec![at(10, 1, 0), at(10, 2, 0), at(10, 3, 0)])
        );
        assert_eq!(each.missed, 2);
        let mut skip = clock("0 * * * * *", at(10, 0, 30), CatchUp::Skip);
        assert_eq!(skip.decide(at(10, 5, 10), false), Decision::Wait);
        assert_eq!(skip.missed, 5);
        assert_eq!(
            skip.decide(at(10, 6, 0), false),
            Decision::Run(vec![at(10, 6, 0)])
        );
    }

    #[test]
    fn a_tick_that_finds_the_previous_run_going_is_skipped_and_counted() {
        let mut c = clock("*/10 * * * * *", at(10, 0, 0), CatchUp::Once);
        assert_eq!(
            c.decide(at(10, 0, 10), false),
            Decision::Run(vec![at(10, 0, 10)])
        );
        assert_eq!(
            c.decide(at(10, 0, 20), true),
            Decision::Overlap(vec![at(10, 0, 20)])
        );
        assert_eq!(
            c.decide(at(10, 0, 30), true),
            Decision::Overlap(vec![at(10, 0, 30)])
        );
        assert_eq!(c.overlapped, 2);
        assert_eq!(
            c.decide(at(10, 0, 40), false),
            Decision::Run(vec![at(10, 0, 40)])
        );
    }

    #[test]
    fn daily_ticks_follow_paris_time_across_both_dst_changes() {
        // 02:30 Paris does not exist on 2026-03-29 and happens twice on 2026-10-25.
        let mut c = clock(
            "0 30 2 * * *",
            Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap(),
            CatchUp::Once,
        );
        let mut ticks = Vec::new();
        let mut now = Utc::now();
        for _ in 0..3 {
            now = c.next_wake().unwrap();
            if let Decision::Run(t) = c.decide(now, false) {
                ticks.extend(t);
            }
        }
        // 2026-03-29 has no 02:30 in Paris: the tick fires when the clocks jump (03:00 CEST),
        // once; then 02:30 CEST is 00:30 UTC.
        assert_eq!(
            ticks,
            vec![
                Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 3, 30, 0, 30, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 3, 31, 0, 30, 0).unwrap(),
            ]
        );
        assert_eq!(now, ticks[2]);
        // Autumn: 02:30 happens at 00:30 and 01:30 UTC; the pipeline runs once that day.
        let start = Utc.with_ymd_and_hms(2026, 10, 24, 12, 0, 0).unwrap();
        let mut c = clock("0 30 2 * * *", start, CatchUp::Once);
        let end = Utc.with_ymd_and_hms(2026, 10, 26, 0, 0, 0).unwrap();
        let mut runs = Vec::new();
        while let Some(w) = c.next_wake().filter(|w| *w < end) {
            if let Decision::Run(t) = c.decide(w, false) {
                runs.extend(t);
            }
        }
        let on_the_25th: Vec<_> = runs
            .iter()
            .filter(|t| t.date_naive() == chrono::NaiveDate::from_ymd_opt(2026, 10, 25).unwrap())
            .collect();
        assert_eq!(on_the_25th.len(), 1, "{runs:?}");
    }

    #[test]
    fn jitter_is_a_stable_share_per_pipeline() {
        let j = std::time::Duration::from_secs(10);
        let a = offset_for("velo-lyon", j);
        assert_eq!(a, offset_for("velo-lyon", j));
        assert!(a >= Duration::zero() && a < Duration::seconds(10));
        assert_ne!(a, offset_for("velo-paris", j));
        assert_eq!(offset_for("x", std::time::Duration::ZERO), Duration::zero());
        let mut c = PipelineClock::new(
            Schedule::parse("0 * * * * *", "UTC").unwrap(),
            at(10, 0, 0),
            Duration::seconds(3),
            CatchUp::Once,
        );
        assert_eq!(c.next_wake(), Some(at(10, 1, 3)));
        assert_eq!(c.decide(at(10, 1, 2), false), Decision::Wait);
        assert_eq!(
            c.decide(at(10, 1, 3), false),
            Decision::Run(vec![at(10, 1, 0)])
        );
    }
}
