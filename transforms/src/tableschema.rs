//! Frictionless Table Schema, enforced as published (schema.data.gouv.fr schemas such as
//! IRVE and BNLS): field types and formats, `required`, `pattern`, `enum`, `minimum`/
//! `maximum`, `minLength`/`maxLength`, `unique`, `primaryKey`, `missingValues`,
//! `trueValues`/`falseValues`, `decimalChar`/`groupChar`/`bareNumber`.
//!
//! Patterns are anchored, as the specification (XML Schema regular expressions) requires.
//! Uniqueness is checked over the whole file with 128-bit hashes of the values, so memory
//! grows by 16 bytes per row only for fields that declare it.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use regex::Regex;
use serde_json::Value;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
    Date,
    Datetime,
    Time,
    Year,
    Geopoint,
    Object,
    Array,
    Any,
}

/// A cast value; text borrows from the record it was read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    Num(f64),
    Bool(bool),
    Date(NaiveDate),
    Datetime(DateTime<Utc>),
    Time(NaiveTime),
    Point { lon: f64, lat: f64 },
    Json(&'a str),
}

impl<'a> Cell<'a> {
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Cell::Str(s) | Cell::Json(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub format: Option<String>,
    pub required: bool,
    pub unique: bool,
    pattern: Option<(String, Regex)>,
    enum_values: Option<Vec<String>>,
    minimum: Option<Value>,
    maximum: Option<Value>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    /// `trueValues`/`falseValues` when the schema gives them (else the standard's defaults).
    true_values: Option<Vec<String>>,
    false_values: Option<Vec<String>>,
    decimal_char: char,
    group_char: Option<char>,
    bare_number: bool,
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub name: Option<String>,
    pub fields: Vec<Field>,
    pub primary_key: Vec<String>,
    pub missing_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("table schema {source_name}: {message}")]
pub struct SchemaError {
    pub source_name: String,
    pub message: String,
}

/// One broken rule: the field, the value and the rule as the schema states it.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub field: String,
    pub value: String,
    pub rule: String,
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    })
}

impl Schema {
    /// Reads a `schema.json` (`source_name` is how errors refer to it).
    pub fn from_json(bytes: &[u8], source_name: &str) -> Result<Schema, SchemaError> {
        let err = |message: String| SchemaError {
            source_name: source_name.to_string(),
            message,
        };
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| err(format!("not JSON: {e}")))?;
        let fields_json = doc
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| err("no \"fields\" list".into()))?;
        let mut fields = Vec::new();
        for (i, f) in fields_json.iter().enumerate() {
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("fields[{i}] has no name")))?
                .to_string();
            let ty = match f.get("type").and_then(Value::as_str).unwrap_or("string") {
                "string" => FieldType::String,
                "integer" => FieldType::Integer,
                "number" => FieldType::Number,
                "boolean" => FieldType::Boolean,
                "date" => FieldType::Date,
                "datetime" => FieldType::Datetime,
                "time" => FieldType::Time,
                "year" => FieldType::Year,
                "geopoint" => FieldType::Geopoint,
                "object" | "geojson" => FieldType::Object,
                "array" => FieldType::Array,
                "any" | "duration" | "yearmonth" => FieldType::Any,
                other => return Err(err(format!("field {name}: unknown type {other:?}"))),
            };
            let c = f.get("constraints").cloned().unwrap_or(Value::Null);
            let pattern = match c.get("pattern").and_then(Value::as_str) {
                Some(p) => {
                    let re = Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| err(format!("field {name}: pattern {p:?}: {e}")))?;
                    Some((p.to_string(), re))
                }
                None => None,
            };
            let len = |k: &str| c.get(k).and_then(Value::as_u64).map(|n| n as usize);
            fields.push(Field {
                ty,
                format: f.get("format").and_then(Value::as_str).map(str::to_string),
                required: c.get("required").and_then(Value::as_bool).unwrap_or(false),
                unique: c.get("unique").and_then(Value::as_bool).unwrap_or(false),
                pattern,
                enum_values: strings(c.get("enum")),
                minimum: c.get("minimum").cloned(),
                maximum: c.get("maximum").cloned(),
                min_length: len("minLength"),
                max_length: len("maxLength"),
                true_values: strings(f.get("trueValues")),
                false_values: strings(f.get("falseValues")),
                decimal_char: f
                    .get("decimalChar")
                    .and_then(Value::as_str)
                    .and_then(|s| s.chars().next())
                    .unwrap_or('.'),
                group_char: f
                    .get("groupChar")
                    .and_then(Value::as_str)
                    .and_then(|s| s.chars().next()),
                bare_number: f.get("bareNumber").and_then(Value::as_bool).unwrap_or(true),
                name,
            });
        }
        let primary_key = match doc.get("primaryKey") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(v) => strings(Some(v)).unwrap_or_default(),
            None => Vec::new(),
        };
        for k in &primary_key {
            if !fields.iter().any(|f| &f.name == k) {
                return Err(err(format!("primaryKey names {k:?}, which is not a field")));
            }
        }
        Ok(Schema {
            name: doc.get("name").and_then(Value::as_str).map(str::to_string),
            fields,
            primary_key,
            missing_values: strings(doc.get("missingValues"))
                .unwrap_or_else(|| vec![String::new()]),
        })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Validates the rows of one file against a schema.
pub struct Validator<'s> {
    schema: &'s Schema,
    /// Column index of each schema field in the file.
    columns: Vec<usize>,
    width: usize,
    unique_seen: Vec<Option<HashSet<u64>>>,
    key_seen: Option<HashSet<u64>>,
    key_columns: Vec<usize>,
}

/// At most five names, each at most 40 characters, then how many more.
fn short_list(names: &[&str]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(5)
        .map(|n| {
            let cut: String = n.chars().take(40).collect();
            if cut.len() < n.len() {
                format!("{cut:?}…")
            } else {
                format!("{cut:?}")
            }
        })
        .collect();
    let more = names.len().saturating_sub(5);
    if more > 0 {
        format!("[{}, and {more} more]", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}

fn fingerprint(parts: &[&str]) -> u64 {
    let mut a = std::hash::DefaultHasher::new();
    for p in parts {
        p.hash(&mut a);
    }
    a.finish()
}

impl<'s> Validator<'s> {
    /// Matches the file's header to the schema: every field must be there and no other
    /// column (order is free). Otherwise the error names what is missing and what is extra.
    pub fn new(schema: &'s Schema, header: &[String]) -> Result<Self, String> {
        let missing: Vec<&str> = schema
            .fields
            .iter()
            .filter(|f| !header.iter().any(|h| h == &f.name))
            .map(|f| f.name.as_str())
            .collect();
        let extra: Vec<&str> = header
            .iter()
            .filter(|h| schema.field(h).is_none())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("missing {}", short_list(&missing)));
            }
            if !extra.is_empty() {
                parts.push(format!("unexpected {}", short_list(&extra)));
            }
            return Err(format!(
                "the header does not match the table schema{}: {} (found {} columns; is the delimiter right?)",
                schema
                    .name
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default(),
                parts.join("; "),
                header.len()
            ));
        }
        let columns: Vec<usize> = schema
            .fields
            .iter()
            .map(|f| {
                header
                    .iter()
                    .position(|h| h == &f.name)
                    .expect("checked above")
            })
            .collect();
        let key_columns = schema
            .primary_key
            .iter()
            .map(|k| {
                schema
                    .fields
                    .iter()
                    .position(|f| &f.name == k)
                    .expect("checked at load")
            })
            .collect();
        Ok(Validator {
            schema,
            columns,
            width: header.len(),
            unique_seen: schema
                .fields
                .iter()
                .map(|f| f.unique.then(HashSet::new))
                .collect(),
            key_seen: (!schema.primary_key.is_empty()).then(HashSet::new),
            key_columns,
        })
    }

    /// Casts a row (fields in file order) into schema order; all broken rules are returned.
    pub fn row<'a>(&mut self, raw: &[&'a str]) -> Result<Vec<Cell<'a>>, Vec<Violation>> {
        let mut out = Vec::with_capacity(self.schema.fields.len());
        self.row_into(raw, &mut out).map(|()| out)
    }

    /// Like [`Validator::row`], into a caller's buffer (cleared first).
    pub fn row_into<'a>(
        &mut self,
        raw: &[&'a str],
        out: &mut Vec<Cell<'a>>,
    ) -> Result<(), Vec<Violation>> {
        out.clear();
        let mut bad = Vec::new();
        if raw.len() != self.width {
            bad.push(Violation {
                field: String::new(),
                value: raw.join("|").chars().take(200).collect(),
                rule: format!(
                    "row has {} fields, the header has {}",
                    raw.len(),
                    self.width
                ),
            });
            return Err(bad);
        }
        for (f, &col) in self.schema.fields.iter().zip(&self.columns) {
            let v = raw[col];
            match self.cell(f, v) {
                Ok(c) => out.push(c),
                Err(rule) => {
                    bad.push(Violation {
                        field: f.name.clone(),
                        value: v.to_string(),
                        rule,
                    });
                    out.push(Cell::Null);
                }
            }
        }
        if bad.is_empty() {
            for (i, f) in self.schema.fields.iter().enumerate() {
                let v = raw[self.columns[i]];
                if let Some(seen) = &mut self.unique_seen[i]
                    && !matches!(out[i], Cell::Null)
                    && !seen.insert(fingerprint(&[v]))
                {
                    bad.push(Violation {
                        field: f.name.clone(),
                        value: v.to_string(),
                        rule: "unique".into(),
                    });
                }
            }
            if let Some(seen) = &mut self.key_seen {
                let parts: Vec<&str> = self
                    .key_columns
                    .iter()
                    .map(|&i| raw[self.columns[i]])
                    .collect();
                if !seen.insert(fingerprint(&parts)) {
                    bad.push(Violation {
                        field: self.schema.primary_key.join(","),
                        value: parts.join(","),
                        rule: format!(
                            "primaryKey ({}) is unique",
                            self.schema.primary_key.join(", ")
                        ),
                    });
                }
            }
        }
        if bad.is_empty() { Ok(()) } else { Err(bad) }
    }

    fn cell<'a>(&self, f: &Field, v: &'a str) -> Result<Cell<'a>, String> {
        if self.schema.missing_values.iter().any(|m| m == v) {
            return if f.required || self.schema.primary_key.contains(&f.name) {
                Err("required".into())
            } else {
                Ok(Cell::Null)
            };
        }
        let cell = cast(f, v).ok_or_else(|| match &f.format {
            Some(fmt) if fmt != "default" => format!("type {} (format {fmt})", type_name(f.ty)),
            _ => format!("type {}", type_name(f.ty)),
        })?;
        if let Some((p, re)) = &f.pattern
            && !re.is_match(v)
        {
            return Err(format!("pattern {p}"));
        }
        if let Some(values) = &f.enum_values {
            let ok = match &cell {
                Cell::Str(s) => values.iter().any(|e| e == s),
                _ => values.iter().any(|e| cast(f, e).as_ref() == Some(&cell)),
            };
            if !ok {
                return Err(format!("enum {values:?}"));
            }
        }
        if f.min_length.is_some() || f.max_length.is_some() {
            let n = v.chars().count();
            if let Some(min) = f.min_length
                && n < min
            {
                return Err(format!("minLength {min}"));
            }
            if let Some(max) = f.max_length
                && n > max
            {
                return Err(format!("maxLength {max}"));
            }
        }
        for (bound, is_min) in [(&f.minimum, true), (&f.maximum, false)] {
            let Some(b) = bound else { continue };
            let limit = match b {
                Value::String(s) => cast(f, s),
                Value::Number(x) => match cell {
                    Cell::Int(_) => x
                        .as_i64()
                        .map(Cell::Int)
                        .or_else(|| x.as_f64().map(Cell::Num)),
                    _ => x.as_f64().map(Cell::Num),
                },
                _ => None,
            };
            let Some(limit) = limit else { continue };
            let ord = compare(&cell, &limit);
            let broken = match ord {
                Some(o) if is_min => o == std::cmp::Ordering::Less,
                Some(o) => o == std::cmp::Ordering::Greater,
                None => false,
            };
            if broken {
                let shown = match b {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                return Err(format!(
                    "{} {shown}",
                    if is_min { "minimum" } else { "maximum" }
                ));
            }
        }
        Ok(cell)
    }
}

fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "string",
        FieldType::Integer => "integer",
        FieldType::Number => "number",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
        FieldType::Datetime => "datetime",
        FieldType::Time => "time",
        FieldType::Year => "year",
        FieldType::Geopoint => "geopoint",
        FieldType::Object => "object",
        FieldType::Array => "array",
        FieldType::Any => "any",
    }
}

fn compare(a: &Cell, b: &Cell) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Cell::Int(x), Cell::Int(y)) => Some(x.cmp(y)),
        (Cell::Int(x), Cell::Num(y)) => (*x as f64).partial_cmp(y),
        (Cell::Num(x), Cell::Num(y)) => x.partial_cmp(y),
        (Cell::Num(x), Cell::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Cell::Date(x), Cell::Date(y)) => Some(x.cmp(y)),
        (Cell::Datetime(x), Cell::Datetime(y)) => Some(x.cmp(y)),
        (Cell::Time(x), Cell::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Strips what `bareNumber: false` allows around a number, and group characters; borrows
/// when there is nothing to rewrite (the common case).
fn number_text<'a>(f: &Field, v: &'a str) -> std::borrow::Cow<'a, str> {
    let mut s = v.trim();
    if !f.bare_number {
        s = s.trim_matches(|c: char| {
            !(c.is_ascii_digit() || c == '-' || c == '+' || c == f.decimal_char)
        });
    }
    let grouped = f.group_char.is_some_and(|g| s.contains(g));
    if !grouped && f.decimal_char == '.' {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out: String = match f.group_char {
        Some(g) => s.chars().filter(|c| *c != g).collect(),
        None => s.to_string(),
    };
    if f.decimal_char != '.' {
        out = out.replace(f.decimal_char, ".");
    }
    std::borrow::Cow::Owned(out)
}

fn parse_datetime(v: &str, format: Option<&str>) -> Option<DateTime<Utc>> {
    match format {
        Some(fmt) if fmt.contains('%') => DateTime::parse_from_str(v, fmt)
            .map(|d| d.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(v, fmt)
                    .ok()
                    .map(|n| n.and_utc())
            }),
        _ => DateTime::parse_from_rfc3339(v)
            .ok()
            .or_else(|| DateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%z").ok())
            .or_else(|| DateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
            .map(|d| d.with_timezone(&Utc))
            .or_else(|| {
                NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|n| n.and_utc())
            })
            .or_else(|| {
                if format == Some("any") {
                    NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f")
                        .ok()
                        .map(|n| n.and_utc())
                } else {
                    None
                }
            }),
    }
}

/// `[lon, lat]` without a JSON parser's allocations.
fn point_array(v: &str) -> Option<(f64, f64)> {
    let inner = v.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (a, b) = inner.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// `YYYY-MM-DD`, read digit by digit (no format string to interpret on every value).
fn iso_date(v: &str) -> Option<NaiveDate> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32)
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

fn cast<'a>(f: &Field, v: &'a str) -> Option<Cell<'a>> {
    let fmt = f.format.as_deref();
    match f.ty {
        FieldType::String => {
            let ok = match fmt {
                Some("email") => {
                    let mut parts = v.splitn(2, '@');
                    let (local, domain) = (parts.next()?, parts.next()?);
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !v.contains(char::is_whitespace)
                }
                Some("uri") => v.split_once(':').is_some_and(|(scheme, rest)| {
                    !scheme.is_empty()
                        && scheme
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                        && !rest.is_empty()
                        && !v.contains(char::is_whitespace)
                }),
                Some("uuid") => v.len() == 36 && v.chars().filter(|c| *c == '-').count() == 4,
                _ => true,
            };
            ok.then_some(Cell::Str(v))
        }
        FieldType::Integer | FieldType::Year => {
            number_text(f, v).parse::<i64>().ok().map(Cell::Int)
        }
        FieldType::Number => {
            let t = number_text(f, v);
            match &*t {
                "NaN" | "INF" | "-INF" => None,
                _ => t
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(Cell::Num),
            }
        }
        FieldType::Boolean => {
            let is_true = match &f.true_values {
                Some(values) => values.iter().any(|t| t == v),
                None => matches!(v, "true" | "True" | "TRUE" | "1"),
            };
            let is_false = || match &f.false_values {
                Some(values) => values.iter().any(|t| t == v),
                None => matches!(v, "false" | "False" | "FALSE" | "0"),
            };
            if is_true {
                Some(Cell::Bool(true))
            } else if is_false() {
                Some(Cell::Bool(false))
            } else {
                None
            }
        }
        FieldType::Date => match fmt {
            // The usual ISO pattern read directly; what it refuses is tried by chrono, which
            // is more lenient (`2024-1-5`).
            Some("%Y-%m-%d") => {
                iso_date(v).or_else(|| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
            }
            Some(p) if p.contains('%') => NaiveDate::parse_from_str(v, p).ok(),
            Some("any") => NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .or_else(|_| NaiveDate::parse_from_str(v, "%d/%m/%Y"))
                .ok(),
            _ => iso_date(v),
        }
        .map(Cell::Date),
        FieldType::Datetime => parse_datetime(v, fmt).map(Cell::Datetime),
        FieldType::Time => match fmt {
            Some(p) if p.contains('%') => NaiveTime::parse_from_str(v, p).ok(),
            _ => NaiveTime::parse_from_str(v, "%H:%M:%S").ok(),
        }
        .map(Cell::Time),
        FieldType::Geopoint => {
            let (lon, lat) = match fmt {
                Some("array") => point_array(v)?,
                Some("object") => {
                    let o: Value = serde_json::from_str(v).ok()?;
                    (o.get("lon")?.as_f64()?, o.get("lat")?.as_f64()?)
                }
                _ => {
                    let (a, b) = v.split_once(',')?;
                    (a.trim().parse().ok()?, b.trim().parse().ok()?)
                }
            };
            ((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat))
                .then_some(Cell::Point { lon, lat })
        }
        FieldType::Object => serde_json::from_str::<Value>(v)
            .ok()
            .filter(Value::is_object)
            .map(|_| Cell::Json(v)),
        FieldType::Array => serde_json::from_str::<Value>(v)
            .ok()
            .filter(Value::is_array)
            .map(|_| Cell::Json(v)),
        FieldType::Any => Some(Cell::Str(v)),
    }
}
