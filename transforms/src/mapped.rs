//! Declarative mapping: a definition says, in TOML, which unified column comes from which
//! source column and how (type, decimal comma, yes/no words, epoch or local times with a
//! timezone, WKT or (E)WKB geometry, a value map, a constant). No code per partner.
//!
//! ```toml
//! format = "csv"
//! table = "parking_occupancy"
//! nulls = ["", "N/A"]
//! [columns]
//! facility_id = "Name"
//! observed_at = { from = "Timestamp", time = "epoch_ms" }
//! status = { from = "OpeningState", map = { "Geöffnet" = "open", "Geschlossen" = "closed" } }
//! lat = { from = "GEOM", geometry = "lat" }
//! spaces_pmr = { value = "1" }
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use mobiflux_model::{ColType, TableKind, TableSchema};

use crate::frame::ValueRef;
use crate::tableschema::Violation;
use crate::tabular::{BoundRow, Prepared, RowMap};

#[cfg(test)]
mod tests;

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A column of the file, by its header name.
    Column(String),
    /// The same text on every row.
    Constant(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TimeSpec {
    EpochSeconds,
    EpochMillis,
    /// RFC 3339 / ISO 8601 with an offset.
    Rfc3339,
    /// A chrono format; times without an offset are in `tz`.
    Format {
        format: String,
        tz: Tz,
    },
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Convert {
    /// By the target column's type (text, whole number, number, boolean, date, time).
    Auto,
    /// A number with its locale, times `scale` (`1000` turns seconds into milliseconds).
    Number {
        decimal: char,
        group: Option<char>,
        scale: f64,
    },
    Bool {
        yes: Vec<String>,
        no: Vec<String>,
    },
    Time(TimeSpec),
    Date(String),
    /// Latitude or longitude of a WKT or (E)WKB-hex point, WGS84.
    Lat,
    Lon,
    /// Source text to unified text; a value not listed breaks the rule.
    Map(BTreeMap<String, String>),
}

#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub column: &'static str,
    pub source: Source,
    pub convert: Convert,
    /// Narrows the source text to the first capture group (or the whole match) of this
    /// pattern before converting; no match means no value.
    pub regex: Option<regex::Regex>,
    /// Text used (and converted) when the source has no value.
    pub default: Option<String>,
}

/// A definition's mapping of a file to one unified table.
#[derive(Debug, Clone)]
pub struct MappedTable {
    pub target: &'static TableSchema,
    pub columns: Vec<ColumnSpec>,
    /// Source texts read as "no value".
    pub nulls: Vec<String>,
}

pub const DEFAULT_YES: &[&str] = &[
    "true", "True", "TRUE", "1", "yes", "Yes", "ja", "Ja", "J", "oui", "Oui", "vrai", "y", "Y",
];
pub const DEFAULT_NO: &[&str] = &[
    "false", "False", "FALSE", "0", "no", "No", "nein", "Nein", "N", "non", "Non", "faux", "n",
];

impl MappedTable {
    /// Checks a mapping against its table: known columns, no column twice, every required
    /// column mapped (`valid_from`/`observed_at` default to the fetch time).
    pub fn check(&self) -> Result<(), String> {
        for (i, c) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|o| o.column == c.column) {
                return Err(format!("column {} is mapped twice", c.column));
            }
            if matches!(c.column, "partner" | "run_id") {
                return Err(format!("{} is set by mobiflux, not mapped", c.column));
            }
        }
        let missing: Vec<&str> = self
            .target
            .columns
            .iter()
            .filter(|c| {
                !c.nullable
                    && !matches!(c.name, "partner" | "run_id" | "valid_from" | "observed_at")
            })
            .filter(|c| !self.columns.iter().any(|m| m.column == c.name))
            .map(|c| c.name)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "table {} needs {missing:?} mapped",
                self.target.name
            ));
        }
        Ok(())
    }
}

struct Bound<'m> {
    table: &'m MappedTable,
    /// (target position, source column index or constant, conversion)
    steps: Vec<(usize, Result<usize, &'m str>, &'m ColumnSpec, &'m str)>,
    /// Target positions filled with the fetch time when not mapped.
    fetched_at: Vec<usize>,
}

impl RowMap for MappedTable {
    fn target(&self) -> &'static TableSchema {
        self.target
    }

    fn bind<'m>(&'m self, header: &[String]) -> Result<Box<dyn BoundRow + 'm>, (String, String)> {
        let mut steps = Vec::new();
        for c in &self.columns {
            let at = self
                .target
                .columns
                .iter()
                .position(|t| t.name == c.column)
                .expect("checked");
            let (src, name) = match &c.source {
                Source::Column(name) => match header.iter().position(|h| h == name) {
                    Some(i) => (Ok(i), name.as_str()),
                    None => {
                        let shown: Vec<&str> = header.iter().take(12).map(String::as_str).collect();
                        return Err((
                            format!("a column {name:?} (mapped to {})", c.column),
                            format!(
                                "the header has {shown:?}{}",
                                if header.len() > 12 { " …" } else { "" }
                            ),
                        ));
                    }
                },
                Source::Constant(v) => (Err(v.as_str()), c.column),
            };
            steps.push((at, src, c, name));
        }
        let time_col = match self.target.kind {
            TableKind::Static => Some("valid_from"),
            TableKind::Snapshot => Some("observed_at"),
            TableKind::PerRun => None,
        };
        let fetched_at = time_col
            .filter(|t| !self.columns.iter().any(|c| c.column == *t))
            .and_then(|t| self.target.columns.iter().position(|c| c.name == t))
            .into_iter()
            .collect();
        Ok(Box::new(Bound {
            table: self,
            steps,
            fetched_at,
        }))
    }
}

impl BoundRow for Bound<'_> {
    fn map<'a>(
        &mut self,
        fields: &[&'a str],
        fetched_us: i64,
        out: &mut [Prepared<'a>],
    ) -> Result<(), Vec<Violation>> {
        let mut bad = Vec::new();
        for &(at, src, spec, name) in &self.steps {
            let ty = self.table.target.columns[at].ty;
            let convert = &spec.convert;
            let result = match src {
                Ok(i) => {
                    let mut raw = fields.get(i).copied().unwrap_or("").trim();
                    if let Some(re) = &spec.regex {
                        raw = re
                            .captures(raw)
                            .and_then(|c| c.get(1).or(c.get(0)))
                            .map_or("", |m| m.as_str());
                    }
                    // No regex match, or a value the definition calls missing: no value,
                    // or the column's default.
                    let missing = (raw.is_empty() && spec.regex.is_some())
                        || self.table.nulls.iter().any(|n| n == raw);
                    match (missing, &spec.default) {
                        (true, Some(d)) => mapping_text(ty, convert, d),
                        (true, None) => Ok(Prepared::Ref(ValueRef::Null)),
                        (false, _) => {
                            convert_one(ty, convert, raw).map_err(|rule| (raw.to_string(), rule))
                        }
                    }
                }
                Err(constant) => mapping_text(ty, convert, constant),
            };
            match result {
                Ok(v) => out[at] = v,
                Err((value, rule)) => bad.push(Violation {
                    field: name.to_string(),
                    value,
                    rule,
                }),
            }
        }
        for &at in &self.fetched_at {
            out[at] = Prepared::Ref(ValueRef::Ts(fetched_us));
        }
        if bad.is_empty() { Ok(()) } else { Err(bad) }
    }
}

/// A text of the mapping itself (a constant, a default) converted and copied into the row
/// (it is rare and short).
fn mapping_text<'x>(
    ty: ColType,
    convert: &Convert,
    text: &str,
) -> Result<Prepared<'x>, (String, String)> {
    convert_one(ty, convert, text)
        .map(|p| match p {
            Prepared::Ref(ValueRef::Text(t)) => Prepared::Owned(t.to_string()),
            Prepared::Ref(v) => Prepared::Ref(detach(v)),
            Prepared::Owned(t) => Prepared::Owned(t),
        })
        .map_err(|rule| (text.to_string(), rule))
}

/// A non-text value owns nothing: it can take any lifetime.
fn detach<'x>(v: ValueRef<'_>) -> ValueRef<'x> {
    match v {
        ValueRef::Null | ValueRef::Text(_) => ValueRef::Null,
        ValueRef::Int(i) => ValueRef::Int(i),
        ValueRef::Float(f) => ValueRef::Float(f),
        ValueRef::Bool(b) => ValueRef::Bool(b),
        ValueRef::Ts(t) => ValueRef::Ts(t),
        ValueRef::Date(d) => ValueRef::Date(d),
    }
}

fn parse_number(s: &str, decimal: char, group: Option<char>) -> Option<f64> {
    let mut t: String = match group {
        Some(g) => s
            .chars()
            .filter(|c| *c != g && !c.is_whitespace())
            .collect(),
        None => s.chars().filter(|c| !c.is_whitespace()).collect(),
    };
    if decimal != '.' {
        t = t.replace(decimal, ".");
    }
    t.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn parse_time(s: &str, spec: &TimeSpec) -> Option<DateTime<Utc>> {
    match spec {
        TimeSpec::EpochSeconds => s
            .parse::<i64>()
            .ok()
            .and_then(|n| Utc.timestamp_opt(n, 0).single()),
        TimeSpec::EpochMillis => s
            .parse::<i64>()
            .ok()
            .and_then(|n| Utc.timestamp_millis_opt(n).single()),
        TimeSpec::Rfc3339 => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        TimeSpec::Format { format, tz } => DateTime::parse_from_str(s, format)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                let naive = NaiveDateTime::parse_from_str(s, format).ok().or_else(|| {
                    NaiveDate::parse_from_str(s, format)
                        .ok()
                        .map(|d| d.and_time(chrono::NaiveTime::MIN))
                })?;
                // A local time that DST makes ambiguous takes the earlier instant.
                tz.from_local_datetime(&naive)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
            }),
    }
}

/// A point's (lon, lat) from WKT (`POINT (x y)`, optionally `SRID=4326;`) or hex (E)WKB
/// (Point or the first point of a MultiPoint), which must be WGS84 when it names an SRID.
pub fn point(s: &str) -> Result<(f64, f64), String> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let wkt = upper.strip_prefix("SRID=4326;").unwrap_or(&upper);
    if let Some(rest) = wkt.strip_prefix("POINT") {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or("WKT POINT needs (x y)")?;
        let mut it = inner.split_whitespace().map(|v| v.parse::<f64>());
        return match (it.next(), it.next()) {
            (Some(Ok(x)), Some(Ok(y))) => Ok((x, y)),
            _ => Err("WKT POINT needs two numbers".into()),
        };
    }
    if t.len() >= 42 && t.len().is_multiple_of(2) && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes: Vec<u8> = (0..t.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap_or(0))
            .collect();
        return wkb_point(&bytes);
    }
    Err("expected a WKT POINT or hex (E)WKB".into())
}

/// Reads (E)WKB and ISO WKB: byte order per geometry, SRID flag, Z/M flags or 1000s codes.
struct Wkb<'b> {
    b: &'b [u8],
    pos: usize,
    le: bool,
}

impl Wkb<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let raw = self
            .b
            .get(self.pos..self.pos + N)
            .ok_or("WKB is cut short")?;
        self.pos += N;
        Ok(raw.try_into().expect("N bytes"))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let raw = self.take::<4>()?;
        Ok(if self.le {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        })
    }

    fn f64(&mut self) -> Result<f64, String> {
        let raw = self.take::<8>()?;
        Ok(if self.le {
            f64::from_le_bytes(raw)
        } else {
            f64::from_be_bytes(raw)
        })
    }

    /// A geometry header: its base type and how many ordinates a point has.
    fn header(&mut self) -> Result<(u32, usize), String> {
        self.le = match self.take::<1>()?[0] {
            1 => true,
            0 => false,
            other => return Err(format!("WKB byte order {other} is neither 0 nor 1")),
        };
        let ty = self.u32()?;
        if ty & 0x2000_0000 != 0 {
            let srid = self.u32()?;
            if srid != 4326 {
                return Err(format!("SRID {srid} is not WGS84 (4326)"));
            }
        }
        let (z, m) = (ty & 0x8000_0000 != 0, ty & 0x4000_0000 != 0);
        let code = ty & 0x0fff_ffff;
        let (base, iso) = (code % 1000, code / 1000);
        let extra = usize::from(z)
            + usize::from(m)
            + match iso {
                1 | 2 => 1,
                3 => 2,
                _ => 0,
            };
        Ok((base, 2 + extra))
    }
}

fn wkb_point(b: &[u8]) -> Result<(f64, f64), String> {
    let mut r = Wkb {
        b,
        pos: 0,
        le: true,
    };
    let (mut base, mut dims) = r.header()?;
    if base == 4 {
        if r.u32()? == 0 {
            return Err("the WKB MultiPoint is empty".into());
        }
        (base, dims) = r.header()?;
    }
    if base != 1 {
        return Err(format!("WKB geometry type {base} is not a point"));
    }
    let (x, y) = (r.f64()?, r.f64()?);
    for _ in 2..dims {
        r.f64()?;
    }
    Ok((x, y))
}

/// `x * scale`, dividing by the inverse when the scale is one over a whole number
/// (`0.01` turns 82 into 0.82 exactly, where multiplying gives 0.8200000000000001).
fn scaled(x: f64, scale: f64) -> f64 {
    let inverse = 1.0 / scale;
    if scale.abs() < 1.0 && (inverse - inverse.round()).abs() < 1e-9 {
        x / inverse.round()
    } else {
        x * scale
    }
}

fn convert_one<'a>(ty: ColType, convert: &Convert, s: &'a str) -> Result<Prepared<'a>, String> {
    use Prepared::Ref;
    let text = |s: &'a str| Ref(ValueRef::Text(s));
    Ok(match convert {
        // The mapped text, read by the column's type (a map can give booleans and numbers).
        Convert::Map(m) => match m.get(s) {
            Some(v) => return mapping_text(ty, &Convert::Auto, v).map_err(|(_, rule)| rule),
            None => {
                return Err(format!(
                    "value not in the map {:?}",
                    m.keys().collect::<Vec<_>>()
                ));
            }
        },
        Convert::Lat | Convert::Lon => {
            let (lon, lat) = match parse_number(s, '.', None) {
                Some(n) => (n, n),
                None => point(s)?,
            };
            let v = if matches!(convert, Convert::Lat) {
                lat
            } else {
                lon
            };
            let limit = if matches!(convert, Convert::Lat) {
                90.0
            } else {
                180.0
            };
            if !(-limit..=limit).contains(&v) {
                return Err(format!("{v} is outside ±{limit}"));
            }
            Ref(ValueRef::Float(v))
        }
        Convert::Time(spec) => {
            let t = parse_time(s, spec).ok_or_else(|| format!("time ({})", time_name(spec)))?;
            Ref(ValueRef::Ts(t.timestamp_micros()))
        }
        Convert::Date(fmt) => {
            let d = NaiveDate::parse_from_str(s, fmt).map_err(|_| format!("date ({fmt})"))?;
            Ref(ValueRef::Date(crate::frame::days_since_epoch(d)))
        }
        Convert::Bool { yes, no } => {
            if yes.iter().any(|y| y == s) {
                Ref(ValueRef::Bool(true))
            } else if no.iter().any(|n| n == s) {
                Ref(ValueRef::Bool(false))
            } else {
                return Err(format!("boolean ({} / {})", yes.join(","), no.join(",")));
            }
        }
        Convert::Number {
            decimal,
            group,
            scale,
        } => {
            let n = scaled(parse_number(s, *decimal, *group).ok_or("number")?, *scale);
            match ty {
                ColType::Int if n.fract() == 0.0 => Ref(ValueRef::Int(n as i64)),
                ColType::Int => return Err("whole number".into()),
                _ => Ref(ValueRef::Float(n)),
            }
        }
        Convert::Auto => match ty {
            ColType::Text => text(s),
            ColType::Int => {
                let n = parse_number(s, '.', None).ok_or("whole number")?;
                if n.fract() != 0.0 {
                    return Err("whole number".into());
                }
                Ref(ValueRef::Int(n as i64))
            }
            ColType::Float => Ref(ValueRef::Float(parse_number(s, '.', None).ok_or("number")?)),
            ColType::Bool => {
                let yes: Vec<String> = DEFAULT_YES.iter().map(|s| s.to_string()).collect();
                let no: Vec<String> = DEFAULT_NO.iter().map(|s| s.to_string()).collect();
                return convert_one(ty, &Convert::Bool { yes, no }, s);
            }
            ColType::Timestamp => return convert_one(ty, &Convert::Time(TimeSpec::Rfc3339), s),
            ColType::Date => return convert_one(ty, &Convert::Date("%Y-%m-%d".into()), s),
        },
    })
}

fn time_name(spec: &TimeSpec) -> String {
    match spec {
        TimeSpec::EpochSeconds => "epoch_s".into(),
        TimeSpec::EpochMillis => "epoch_ms".into(),
        TimeSpec::Rfc3339 => "rfc3339".into(),
        TimeSpec::Format { format, tz } => format!("{format} in {tz}"),
    }
}
