//! Quarantined records: what was wrong, where it was, and the raw object it came from.

use crate::frame::{FrameBuilder, Row};
use mobiflux_model::schema::QUARANTINE;
use polars::prelude::DataFrame;

#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    /// Raw-zone key of the payload the record came from.
    pub source_object: String,
    /// Where in the payload: a JSON pointer (`/data/stations/3`) or `line N[, column M]`.
    pub position: String,
    pub field: Option<String>,
    pub value: Option<String>,
    pub reason: String,
}

/// Longest value text kept in quarantine; longer values are cut (the raw object keeps them whole).
const MAX_VALUE_CHARS: usize = 500;

pub fn short_value(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > MAX_VALUE_CHARS {
        let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        s
    }
}

pub fn to_frame(records: &[Quarantined], run_id: &str, pipeline: &str, partner: &str) -> DataFrame {
    let mut b = FrameBuilder::new(&QUARANTINE);
    for q in records {
        let mut r = Row::new(&QUARANTINE);
        r.set("run_id", run_id)
            .set("pipeline", pipeline)
            .set("partner", partner)
            .set("source_object", q.source_object.as_str())
            .set("position", q.position.as_str())
            .set("field", q.field.clone())
            .set("value", q.value.clone())
            .set("reason", q.reason.as_str());
        b.push(r).expect("quarantine rows are complete");
    }
    b.finish()
}
