//! Lenient typed reads from JSON records, each failure an [`Issue`] that names the field,
//! the value and what was wrong, ready to become a quarantine row.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::quarantine::short_value;

#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub field: String,
    pub value: Option<String>,
    pub reason: String,
}

impl Issue {
    pub fn new(field: &str, value: Option<&Value>, reason: impl Into<String>) -> Self {
        Issue {
            field: field.to_string(),
            value: value.map(short_value),
            reason: reason.into(),
        }
    }
}

pub type Obj = Map<String, Value>;

fn present<'a>(o: &'a Obj, field: &str) -> Option<&'a Value> {
    o.get(field).filter(|v| !v.is_null())
}

/// An identifier: a non-empty string, or a number (published by some feeds) as its text.
pub fn id(o: &Obj, field: &str) -> Result<String, Issue> {
    match present(o, field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(v) => Err(Issue::new(
            field,
            Some(v),
            format!("{field} must be a non-empty string"),
        )),
        None => Err(Issue::new(
            field,
            None,
            format!("required field {field} is missing"),
        )),
    }
}

pub fn opt_id(o: &Obj, field: &str) -> Result<Option<String>, Issue> {
    match present(o, field) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(_) => id(o, field).map(Some),
    }
}

/// A plain string, or a GBFS 3.0 localized string array (`[{text, language}]`), picked by language.
pub fn text(o: &Obj, field: &str, lang: Option<&str>) -> Result<Option<String>, Issue> {
    match present(o, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => {
            let mut first = None;
            for it in items {
                let (Some(t), l) = (
                    it.get("text").and_then(Value::as_str),
                    it.get("language").and_then(Value::as_str),
                ) else {
                    return Err(Issue::new(
                        field,
                        o.get(field),
                        format!("{field} must be a string or a list of {{text, language}}"),
                    ));
                };
                if lang.is_some() && l == lang {
                    return Ok(Some(t.to_string()));
                }
                first.get_or_insert_with(|| t.to_string());
            }
            Ok(first)
        }
        Some(v) => Err(Issue::new(
            field,
            Some(v),
            format!("{field} must be a string"),
        )),
    }
}

pub fn req_text(o: &Obj, field: &str, lang: Option<&str>) -> Result<String, Issue> {
    text(o, field, lang)?
        .ok_or_else(|| Issue::new(field, None, format!("required field {field} is missing")))
}

/// A finite number; numeric strings are accepted.
pub fn opt_f64(o: &Obj, field: &str) -> Result<Option<f64>, Issue> {
    let v = match present(o, field) {
        None => return Ok(None),
        Some(v) => v,
    };
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match f {
        Some(f) if f.is_finite() => Ok(Some(f)),
        _ => Err(Issue::new(
            field,
            Some(v),
            format!("{field} must be a number"),
        )),
    }
}

pub fn req_f64(o: &Obj, field: &str) -> Result<f64, Issue> {
    opt_f64(o, field)?
        .ok_or_else(|| Issue::new(field, None, format!("required field {field} is missing")))
}

/// A non-negative whole number (counts, capacities); `3.0` is accepted as 3.
pub fn opt_count(o: &Obj, field: &str) -> Result<Option<i64>, Issue> {
    let v = match present(o, field) {
        None => return Ok(None),
        Some(v) => v,
    };
    let n = match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        _ => None,
    };
    match n {
        Some(n) if n >= 0 => Ok(Some(n)),
        Some(_) => Err(Issue::new(
            field,
            Some(v),
            format!("{field} must not be negative"),
        )),
        None => Err(Issue::new(
            field,
            Some(v),
            format!("{field} must be a whole number"),
        )),
    }
}

/// A boolean; GBFS 1.0's `0`/`1` are accepted.
pub fn opt_bool(o: &Obj, field: &str) -> Result<Option<bool>, Issue> {
    match present(o, field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
        Some(v) => Err(Issue::new(
            field,
            Some(v),
            format!("{field} must be true or false"),
        )),
    }
}

pub fn req_bool(o: &Obj, field: &str) -> Result<bool, Issue> {
    opt_bool(o, field)?
        .ok_or_else(|| Issue::new(field, None, format!("required field {field} is missing")))
}

/// A time: POSIX seconds (GBFS 1.x/2.x) or an RFC 3339 string (GBFS 3.0), converted to UTC.
/// Integers above 10^11 are read as milliseconds, a common publisher mistake.
pub fn time_value(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => time_of_secs(n.as_f64()?),
        Value::String(s) => time_of_str(s),
        _ => None,
    }
}

/// A time given as a JSON number: POSIX seconds, or milliseconds above 10^11.
pub fn time_of_secs(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let micros = if secs > 1e11 { secs * 1e3 } else { secs * 1e6 };
    Utc.timestamp_micros(micros.round() as i64).single()
}

/// A time given as a JSON string: RFC 3339, or POSIX seconds written as a string.
pub fn time_of_str(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    s.parse::<i64>().ok().and_then(|n| time_of_secs(n as f64))
}

pub fn opt_time(o: &Obj, field: &str) -> Result<Option<DateTime<Utc>>, Issue> {
    match present(o, field) {
        None => Ok(None),
        Some(v) => time_value(v).map(Some).ok_or_else(|| {
            Issue::new(
                field,
                Some(v),
                format!("{field} must be POSIX seconds or an RFC 3339 time"),
            )
        }),
    }
}

/// A list of strings as one comma-separated text (`["fr", "en"]` → `fr,en`), lowercased
/// when asked; `None` when the field is not a list.
pub fn joined(o: &Obj, field: &str, lowercase: bool) -> Option<String> {
    let items = present(o, field)?.as_array()?;
    Some(
        items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| {
                if lowercase {
                    s.to_lowercase()
                } else {
                    s.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Compact JSON text of a sub-document (rules, per-type counts, geometry).
pub fn opt_json(o: &Obj, field: &str) -> Option<String> {
    present(o, field).map(|v| v.to_string())
}

/// Latitude and longitude in WGS84 range; (0, 0) is refused as the usual "no position" mistake.
pub fn check_position(lat: f64, lon: f64) -> Result<(), Issue> {
    if !(-90.0..=90.0).contains(&lat) {
        return Err(Issue::new(
            "lat",
            Some(&Value::from(lat)),
            "lat must be between -90 and 90",
        ));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(Issue::new(
            "lon",
            Some(&Value::from(lon)),
            "lon must be between -180 and 180",
        ));
    }
    if lat == 0.0 && lon == 0.0 {
        return Err(Issue::new(
            "lat",
            Some(&Value::from(0.0)),
            "position (0, 0) is not a real position",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_localized_text_by_language() {
        let o = obj(
            json!({"name": [{"text": "Vélo", "language": "fr"}, {"text": "Bike", "language": "en"}]}),
        );
        assert_eq!(
            text(&o, "name", Some("en")).unwrap().as_deref(),
            Some("Bike")
        );
        assert_eq!(
            text(&o, "name", Some("de")).unwrap().as_deref(),
            Some("Vélo")
        );
        assert_eq!(text(&o, "name", None).unwrap().as_deref(), Some("Vélo"));
    }

    #[test]
    fn reads_both_time_encodings() {
        assert_eq!(
            time_value(&json!(1606727710)).unwrap().to_rfc3339(),
            "2020-11-30T09:15:10+00:00"
        );
        assert_eq!(
            time_value(&json!("2019-07-04T13:33:03.969Z"))
                .unwrap()
                .timestamp_millis(),
            1_562_247_183_969
        );
        assert_eq!(
            time_value(&json!("2024-04-18T09:37:59.000+02:00"))
                .unwrap()
                .to_rfc3339(),
            "2024-04-18T07:37:59+00:00"
        );
        assert_eq!(
            time_value(&json!(1606727710000i64)).unwrap().timestamp(),
            1606727710
        );
        assert!(time_value(&json!("yesterday")).is_none());
    }

    #[test]
    fn counts_must_be_whole_and_non_negative() {
        let o = obj(json!({"a": 3.0, "b": -1, "c": 2.5, "d": "x"}));
        assert_eq!(opt_count(&o, "a").unwrap(), Some(3));
        assert_eq!(
            opt_count(&o, "b").unwrap_err().reason,
            "b must not be negative"
        );
        assert_eq!(
            opt_count(&o, "c").unwrap_err().reason,
            "c must be a whole number"
        );
        assert_eq!(opt_count(&o, "d").unwrap_err().value.as_deref(), Some("x"));
    }
}
