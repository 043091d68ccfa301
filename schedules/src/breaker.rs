//! A circuit breaker per MSP host: after `threshold` failed runs in a row the host's
//! pipelines fail fast (no request) for a cool-down, then one run probes the host
//! (half-open): success closes the circuit, failure opens it again for twice as long
//! (at most `max_cooldown`). Pure, with the time passed in, so it is tested without waiting.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: DateTime<Utc>,
        cooldown: Duration,
    },
    /// One probe run is going; the others still fail fast.
    HalfOpen {
        cooldown: Duration,
    },
}

/// The breaker's answer for a run about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// The run is the half-open probe.
    Probe,
    /// Fail fast: the circuit is open until then.
    Refused {
        until: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    pub threshold: u32,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
    pub state: State,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration, max_cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            max_cooldown,
            state: State::Closed { failures: 0 },
        }
    }

    pub fn admit(&mut self, now: DateTime<Utc>) -> Admit {
        match self.state {
            State::Closed { .. } => Admit::Go,
            State::Open { until, cooldown } if now >= until => {
                self.state = State::HalfOpen { cooldown };
                Admit::Probe
            }
            State::Open { until, .. } => Admit::Refused { until },
            State::HalfOpen { cooldown } => Admit::Refused {
                until: now + cooldown.min(Duration::seconds(1)),
            },
        }
    }

    /// Records the end of a run that was admitted.
    pub fn record(&mut self, ok: bool, now: DateTime<Utc>) {
        self.state = match (self.state, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 >= self.threshold => State::Open {
                until: now + self.cooldown,
                cooldown: self.cooldown,
            },
            (State::Closed { failures }, false) => State::Closed {
                failures: failures + 1,
            },
            (State::HalfOpen { cooldown } | State::Open { cooldown, .. }, false) => {
                let next = (cooldown * 2).min(self.max_cooldown);
                State::Open {
                    until: now + next,
                    cooldown: next,
                }
            }
        };
    }

    /// 0 closed, 1 half-open, 2 open (the metric's values).
    pub fn gauge(&self) -> u8 {
        match self.state {
            State::Closed { .. } => 0,
            State::HalfOpen { .. } => 1,
            State::Open { .. } => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap() + Duration::seconds(s)
    }

    #[test]
    fn opens_after_repeated_failures_fails_fast_then_probes() {
        let mut b = Breaker::new(3, Duration::seconds(30), Duration::seconds(300));
        for i in 0..2 {
            assert_eq!(b.admit(t(i)), Admit::Go);
            b.record(false, t(i));
        }
        assert_eq!(b.gauge(), 0, "two failures: still closed");
        assert_eq!(b.admit(t(2)), Admit::Go);
        b.record(false, t(2));
        assert_eq!(b.gauge(), 2);
        assert_eq!(b.admit(t(10)), Admit::Refused { until: t(32) });
        // Cool-down over: one probe, the others still refused.
        assert_eq!(b.admit(t(32)), Admit::Probe);
        assert!(matches!(b.admit(t(33)), Admit::Refused { .. }));
        // The probe fails: open for twice as long.
        b.record(false, t(34));
        assert_eq!(b.admit(t(40)), Admit::Refused { until: t(94) });
        assert_eq!(b.admit(t(94)), Admit::Probe);
        b.record(true, t(95));
        assert_eq!(b.gauge(), 0);
        assert_eq!(b.admit(t(96)), Admit::Go);
    }

    #[test]
    fn a_success_resets_the_count_and_the_cooldown_is_capped() {
        let mut b = Breaker::new(2, Duration::seconds(100), Duration::seconds(150));
        b.record(false, t(0));
        b.record(true, t(1));
        b.record(false, t(2));
        assert_eq!(b.gauge(), 0, "failures must follow each other");
        b.record(false, t(3));
        assert_eq!(b.admit(t(103)), Admit::Probe);
        b.record(false, t(103));
        assert_eq!(
            b.admit(t(104)),
            Admit::Refused { until: t(253) },
            "capped at 150 s"
        );
    }
}
