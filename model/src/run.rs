//! Run identities. A run id is a UUIDv7: unique, sortable by start time, and it carries the
//! start date, so the raw-zone manifest of any run can be found from its id alone.

use chrono::{DateTime, TimeZone, Utc};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(uuid::Uuid);

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a run id (expected a UUIDv7 such as 01936f6e-8f2a-7c3d-9e4f-0a1b2c3d4e5f)")]
pub struct BadRunId(String);

impl RunId {
    /// A new run id stamped with the current time.
    pub fn new() -> Self {
        RunId(uuid::Uuid::now_v7())
    }

    /// When the run started (millisecond precision, from the UUIDv7 timestamp).
    pub fn started_at(&self) -> DateTime<Utc> {
        let (secs, nanos) = self
            .0
            .get_timestamp()
            .map(|t| t.to_unix())
            .unwrap_or((0, 0));
        Utc.timestamp_opt(secs as i64, nanos)
            .single()
            .unwrap_or_default()
    }

    /// The day partition (`YYYY-MM-DD`) of the run, used by raw-zone manifest keys.
    pub fn date(&self) -> String {
        self.started_at().format("%Y-%m-%d").to_string()
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for RunId {
    type Err = BadRunId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match uuid::Uuid::parse_str(s.trim()) {
            Ok(u) if u.get_version_num() == 7 => Ok(RunId(u)),
            _ => Err(BadRunId(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_round_trips_and_carries_its_date() {
        let id = RunId::new();
        let parsed: RunId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert_eq!(id.date(), Utc::now().format("%Y-%m-%d").to_string());
    }

    #[test]
    fn rejects_non_v7_ids() {
        let err = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
            .parse::<RunId>()
            .unwrap_err();
        assert!(err.to_string().contains("is not a run id"));
    }
}
