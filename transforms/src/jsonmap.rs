//! Proprietary JSON feeds by configuration (`format = "json"`): a record path picks the
//! records out of the document, and the declarative mapping of [`crate::mapped`] turns each
//! record into a unified row, its sources being paths inside the record.
//!
//! ```toml
//! format = "json"
//! table = "vehicles"
//! records = "data.fleet.*"          # `*`: every element of a list (or value of an object)
//! [columns]
//! vehicle_id = "id"
//! lat = "position.latitude"         # a path inside the record; `0` indexes a list
//! station_id = "^.station"          # `^.`: the record enclosing this one (one `*` up)
//! current_range_m = { from = "battery.range_km", scale = 1000 }
//! last_reported = { from = "updated", time = "%d/%m/%Y %H:%M", timezone = "Europe/Paris" }
//! is_disabled = { from = "broken", default = "false" }
//! ```
//!
//! Values are read as text (numbers as written, booleans `true`/`false`, objects and lists
//! as compact JSON; `null` or a missing path is no value) and converted like a CSV cell, so
//! one engine serves files, pages and JSON. A record that fails is quarantined with its
//! JSON-pointer position.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::mapped::{MappedTable, Source};
use crate::tabular::{FileStats, RowMap, RowSink, RunKeys};
use crate::{Context, Output, TransformError};

/// Checks a record path (for `validate`).
pub fn check_path(path: &str) -> Result<(), String> {
    if path.trim().is_empty() {
        return Err(
            "a record path names where the records are (\"*\" for a top-level list)".into(),
        );
    }
    if path.split('.').any(str::is_empty) {
        return Err(format!("{path:?} has an empty step"));
    }
    Ok(())
}

/// How many records a document holds at a record path: what ends page-number and offset
/// paging.
pub fn count(doc: &Value, records: &str) -> usize {
    let steps: Vec<&str> = records.split('.').collect();
    let mut walked = Walked::default();
    walk(doc, &steps, &[], String::new(), &mut walked);
    walked.found.len()
}

/// What a walk reached: the records, and whether a step of the path led nowhere (a key
/// that is not there), as opposed to lists that are merely empty.
#[derive(Default)]
struct Walked<'v> {
    found: Vec<Found<'v>>,
    missed: bool,
}

/// One record with the records enclosing it (innermost last) and its JSON pointer.
struct Found<'v> {
    chain: Vec<&'v Value>,
    pointer: String,
}

fn escape(step: &str) -> String {
    step.replace('~', "~0").replace('/', "~1")
}

/// Walks `steps` from `at`, collecting every record reached; `chain` holds the elements
/// each `*` went through.
fn walk<'v>(
    at: &'v Value,
    steps: &[&str],
    chain: &[&'v Value],
    pointer: String,
    out: &mut Walked<'v>,
) {
    let Some((step, rest)) = steps.split_first() else {
        let mut chain = chain.to_vec();
        if chain.last().is_none_or(|l| !std::ptr::eq(*l, at)) {
            chain.push(at);
        }
        out.found.push(Found { chain, pointer });
        return;
    };
    let mut each = |v: &'v Value, key: String| {
        let mut c = chain.to_vec();
        c.push(v);
        walk(v, rest, &c, format!("{pointer}/{key}"), out);
    };
    match (*step, at) {
        ("*", Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                each(v, i.to_string());
            }
        }
        ("*", Value::Object(map)) => {
            for (k, v) in map {
                each(v, escape(k));
            }
        }
        (name, Value::Object(map)) => match map.get(name) {
            Some(v) => walk(v, rest, chain, format!("{pointer}/{}", escape(name)), out),
            None => out.missed = true,
        },
        (index, Value::Array(items)) => {
            match index.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(v) => walk(v, rest, chain, format!("{pointer}/{index}"), out),
                None => out.missed = true,
            }
        }
        _ => out.missed = true,
    }
}

/// The text of a path inside a record (`^.` steps climb to enclosing records); `None` for
/// a missing path or `null`.
fn text_at(found: &Found, path: &str) -> Option<String> {
    let mut level = found.chain.len() - 1;
    let mut rest = path;
    while let Some(r) = rest.strip_prefix("^.") {
        level = level.checked_sub(1)?;
        rest = r;
    }
    let mut v = found.chain[level];
    for step in rest.split('.') {
        v = match v {
            Value::Object(m) => m.get(step)?,
            Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Maps the records of one stored JSON document into chunks of the mapping's table.
#[allow(clippy::too_many_arguments)]
pub fn read(
    ctx: &Context,
    bytes: &[u8],
    source_object: &str,
    fetched: DateTime<Utc>,
    records: &str,
    mapping: &MappedTable,
    seen: &mut RunKeys,
    emit: &mut dyn FnMut(Output) -> Result<(), String>,
) -> Result<FileStats, TransformError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        TransformError::BadFile {
            source_object: source_object.to_string(),
            expected: "a JSON document".into(),
            found: format!("{e} (starts with {head:?})"),
        }
    })?;
    let steps: Vec<&str> = records.split('.').collect();
    let mut walked = Walked::default();
    walk(&doc, &steps, &[], String::new(), &mut walked);
    let found = walked.found;
    // An empty list is a page with no records (the end of a paged answer); a path that
    // leads nowhere is a wrong path or a changed format.
    if found.is_empty() && walked.missed {
        return Err(TransformError::BadFile {
            source_object: source_object.to_string(),
            expected: format!("records at the path {records:?}"),
            found: "nothing there in this document".into(),
        });
    }
    // The mapping's sources are paths: they are its "header".
    let paths: Vec<String> = mapping
        .columns
        .iter()
        .filter_map(|c| match &c.source {
            Source::Column(p) => Some(p.clone()),
            Source::Constant(_) => None,
        })
        .collect();
    let mut bound = mapping
        .bind(&paths)
        .map_err(|(expected, found)| TransformError::BadFile {
            source_object: source_object.to_string(),
            expected,
            found,
        })?;
    let fetched_us = fetched.timestamp_micros();
    let mut sink = RowSink::new(mapping.target(), source_object, 25_000, emit);
    for f in &found {
        let texts: Vec<Option<String>> = paths.iter().map(|p| text_at(f, p)).collect();
        let fields: Vec<&str> = texts.iter().map(|t| t.as_deref().unwrap_or("")).collect();
        let mut row = sink.blank(ctx);
        let mapped = bound.map(&fields, fetched_us, &mut row).map(|()| row);
        sink.accept(
            || f.pointer.clone(),
            mapped,
            seen,
            || {
                paths
                    .iter()
                    .zip(&fields)
                    .map(|(p, v)| format!("{p}={v}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            },
        )?;
    }
    sink.finish()
}

#[cfg(test)]
mod tests;
