//! Schema-validated delimited files to a unified table, chunk by chunk.
//!
//! A [`Mapping`] says, as data, which unified column comes from which Table Schema field
//! and how ([`Conv`]); it is resolved to column positions once per file, so the per-row
//! work is a walk over two small arrays. Rows that break the schema, or whose natural id
//! repeats within the file, are quarantined with their line; every `chunk_rows` rows a
//! chunk of frames and quarantine records goes to the caller, so memory does not grow
//! with the file.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Read;

use chrono::{DateTime, NaiveTime, Utc};
use mobiflux_model::TableSchema;

use crate::frame::{FrameBuilder, ValueRef, days_since_epoch};
use crate::tableschema::{Cell, Schema, Validator, Violation};
use crate::text::{Records, TextOptions};
use crate::{Context, Output, Quarantined, TransformError};

/// How a unified column is computed from a schema field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conv {
    /// The cast value as it is (text, number, boolean, date, datetime).
    Same,
    /// Longitude of a geopoint.
    Lon,
    /// Latitude of a geopoint.
    Lat,
    /// A date as the UTC instant starting it (for `valid_from`).
    DayStart,
    /// A whole number written as text, or null when it is not one (`"N/A"`).
    IntOrNull,
}

/// One unified column and where it comes from; `None` as source means the file's fetch time.
#[derive(Debug, Clone, Copy)]
pub struct ColumnMap {
    pub column: &'static str,
    pub source: Option<&'static str>,
    pub conv: Conv,
}

pub const fn from(column: &'static str, source: &'static str) -> ColumnMap {
    ColumnMap {
        column,
        source: Some(source),
        conv: Conv::Same,
    }
}

pub const fn conv(column: &'static str, source: &'static str, conv: Conv) -> ColumnMap {
    ColumnMap {
        column,
        source: Some(source),
        conv,
    }
}

pub const fn fetched_at(column: &'static str) -> ColumnMap {
    ColumnMap {
        column,
        source: None,
        conv: Conv::Same,
    }
}

/// A format's knowledge: its Table Schema, its target table, its mapping.
pub struct Mapping {
    pub target: &'static TableSchema,
    /// The unified column holding the natural id (checked for repeats in a file).
    pub id_column: &'static str,
    pub columns: &'static [ColumnMap],
}

struct Resolved {
    /// (unified column position, schema field position or None for the fetch time, conversion)
    steps: Vec<(usize, Option<usize>, Conv)>,
}

fn resolve(m: &Mapping, schema: &Schema) -> Result<Resolved, String> {
    let unified = |name: &str| {
        m.target
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| format!("table {} has no column {name}", m.target.name))
    };
    let mut steps = Vec::with_capacity(m.columns.len());
    for c in m.columns {
        let field =
            match c.source {
                Some(f) => Some(schema.fields.iter().position(|x| x.name == f).ok_or_else(
                    || {
                        format!(
                            "the table schema has no field {f} (needed for {})",
                            c.column
                        )
                    },
                )?),
                None => None,
            };
        steps.push((unified(c.column)?, field, c.conv));
    }
    Ok(Resolved { steps })
}

/// Turns a file's rows into rows of a unified table; one implementation per kind of source
/// (a published Table Schema with its mapping, a definition's declarative mapping).
pub trait RowMap: Sync {
    fn target(&self) -> &'static TableSchema;
    /// Binds to a file's header; on mismatch, what was expected and what was found.
    fn bind<'m>(&'m self, header: &[String]) -> Result<Box<dyn BoundRow + 'm>, (String, String)>;
}

/// A [`RowMap`] bound to the columns of one file.
pub trait BoundRow {
    /// Fills `out` (target schema order; `partner` and `run_id` are already set) from a
    /// row's fields, or returns every rule the row breaks.
    fn map<'a>(
        &mut self,
        fields: &[&'a str],
        fetched_us: i64,
        out: &mut [Prepared<'a>],
    ) -> Result<(), Vec<Violation>>;
}

/// A validator of a Table Schema bound to a file's header, or what was expected and found.
fn bind_validator<'m>(
    schema: &'m Schema,
    header: &[String],
) -> Result<Validator<'m>, (String, String)> {
    Validator::new(schema, header).map_err(|found| {
        (
            format!(
                "the columns of table schema {}",
                schema.name.as_deref().unwrap_or("given")
            ),
            found,
        )
    })
}

/// A published Table Schema and the mapping of its fields to a unified table.
pub struct SchemaMap<'s> {
    pub schema: &'s Schema,
    pub mapping: &'static Mapping,
}

struct BoundSchema<'m> {
    validator: Validator<'m>,
    plan: Resolved,
    target: &'static TableSchema,
}

impl RowMap for SchemaMap<'_> {
    fn target(&self) -> &'static TableSchema {
        self.mapping.target
    }

    fn bind<'m>(&'m self, header: &[String]) -> Result<Box<dyn BoundRow + 'm>, (String, String)> {
        let validator = bind_validator(self.schema, header)?;
        let plan = resolve(self.mapping, self.schema).map_err(|found| {
            (
                format!(
                    "a table schema that the {} mapping can read",
                    self.mapping.target.name
                ),
                found,
            )
        })?;
        Ok(Box::new(BoundSchema {
            validator,
            plan,
            target: self.mapping.target,
        }))
    }
}

impl BoundRow for BoundSchema<'_> {
    fn map<'a>(
        &mut self,
        fields: &[&'a str],
        fetched_us: i64,
        out: &mut [Prepared<'a>],
    ) -> Result<(), Vec<Violation>> {
        let mut cells = Vec::with_capacity(fields.len());
        self.validator.row_into(fields, &mut cells)?;
        for &(at, field, conv) in &self.plan.steps {
            out[at] = match field {
                Some(f) => value(&cells[f], conv).map_err(|rule| {
                    vec![Violation {
                        field: self.target.columns[at].name.to_string(),
                        value: String::new(),
                        rule,
                    }]
                })?,
                None => Prepared::Ref(ValueRef::Ts(fetched_us)),
            };
        }
        Ok(())
    }
}

/// A published Table Schema enforced ahead of another row mapping (a `csv` definition with
/// both `schema` and `[columns]`): a row breaking the schema is quarantined with the
/// schema's rules, even on fields the mapping does not use; a valid row is mapped by
/// `inner`.
pub struct Checked<'s> {
    pub schema: &'s Schema,
    pub inner: &'s dyn RowMap,
}

struct BoundChecked<'m> {
    validator: Validator<'m>,
    inner: Box<dyn BoundRow + 'm>,
}

impl RowMap for Checked<'_> {
    fn target(&self) -> &'static TableSchema {
        self.inner.target()
    }

    fn bind<'m>(&'m self, header: &[String]) -> Result<Box<dyn BoundRow + 'm>, (String, String)> {
        let validator = bind_validator(self.schema, header)?;
        Ok(Box::new(BoundChecked {
            validator,
            inner: self.inner.bind(header)?,
        }))
    }
}

impl BoundRow for BoundChecked<'_> {
    fn map<'a>(
        &mut self,
        fields: &[&'a str],
        fetched_us: i64,
        out: &mut [Prepared<'a>],
    ) -> Result<(), Vec<Violation>> {
        let mut cells = Vec::with_capacity(fields.len());
        self.validator.row_into(fields, &mut cells)?;
        self.inner.map(fields, fetched_us, out)
    }
}

/// A computed value: borrowed from the record, or made (rare: times and points as text).
pub enum Prepared<'a> {
    Ref(ValueRef<'a>),
    Owned(String),
}

fn value<'a>(cell: &Cell<'a>, conv: Conv) -> Result<Prepared<'a>, String> {
    use Prepared::{Owned, Ref};
    Ok(match (conv, cell) {
        (_, Cell::Null) => Ref(ValueRef::Null),
        (Conv::Lon, Cell::Point { lon, .. }) => Ref(ValueRef::Float(*lon)),
        (Conv::Lat, Cell::Point { lat, .. }) => Ref(ValueRef::Float(*lat)),
        (Conv::DayStart, Cell::Date(d)) => Ref(ValueRef::Ts(
            d.and_time(NaiveTime::MIN).and_utc().timestamp_micros(),
        )),
        (Conv::IntOrNull, c) => match c
            .as_str()
            .map(str::trim)
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(n) => Ref(ValueRef::Int(n)),
            None => match c {
                Cell::Int(n) => Ref(ValueRef::Int(*n)),
                _ => Ref(ValueRef::Null),
            },
        },
        (Conv::Same, Cell::Str(s) | Cell::Json(s)) => Ref(ValueRef::Text(s)),
        (Conv::Same, Cell::Int(n)) => Ref(ValueRef::Int(*n)),
        (Conv::Same, Cell::Num(x)) => Ref(ValueRef::Float(*x)),
        (Conv::Same, Cell::Bool(b)) => Ref(ValueRef::Bool(*b)),
        (Conv::Same, Cell::Date(d)) => Ref(ValueRef::Date(days_since_epoch(*d))),
        (Conv::Same, Cell::Datetime(t)) => Ref(ValueRef::Ts(t.timestamp_micros())),
        (Conv::Same, Cell::Time(t)) => Owned(t.to_string()),
        (Conv::Same, Cell::Point { lon, lat }) => Owned(format!("POINT ({lon} {lat})")),
        (c, other) => return Err(format!("cannot apply {c:?} to {other:?}")),
    })
}

/// A 64-bit fingerprint of a row's natural key (SipHash).
fn hash_key(values: &[ValueRef], at: &[usize]) -> u64 {
    let mut a = std::hash::DefaultHasher::new();
    for &i in at {
        let part: (u8, i64, &str) = match values[i] {
            ValueRef::Text(s) => (1, 0, s),
            ValueRef::Int(n) | ValueRef::Ts(n) => (2, n, ""),
            ValueRef::Date(d) => (3, d as i64, ""),
            ValueRef::Float(f) => (4, f.to_bits() as i64, ""),
            ValueRef::Bool(x) => (5, x as i64, ""),
            ValueRef::Null => (0, 0, ""),
        };
        part.hash(&mut a);
    }
    a.finish()
}

/// Natural keys met so far in a run, as 64-bit fingerprints (about 9 bytes a row, so a
/// 5-million-row file needs some 75 MB), shared by the files of one run so the run never
/// carries the same key twice. Two different keys share a fingerprint with a probability
/// below one in a million for 5 million rows; such a row is quarantined as a duplicate
/// with its values, not lost.
pub type RunKeys = HashSet<u64, std::hash::BuildHasherDefault<IdentityHasher>>;

/// The fingerprints are already hashes: the set uses them as they are.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | *b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// What a file gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileStats {
    pub rows: u64,
    pub quarantined_rows: u64,
}

/// Where mapped rows go: checked against the table, refused when their key repeats in the
/// run, quarantined with their position when anything is wrong, handed on in chunks.
/// Shared by every row source (delimited files, scraped pages).
pub struct RowSink<'e> {
    target: &'static TableSchema,
    source_object: String,
    partner_at: usize,
    run_id_at: usize,
    key_at: Vec<usize>,
    key_name: String,
    chunk_rows: usize,
    builder: FrameBuilder,
    quarantine: Vec<Quarantined>,
    pub stats: FileStats,
    emit: &'e mut dyn FnMut(Output) -> Result<(), String>,
}

impl<'e> RowSink<'e> {
    pub fn new(
        target: &'static TableSchema,
        source_object: &str,
        chunk_rows: usize,
        emit: &'e mut dyn FnMut(Output) -> Result<(), String>,
    ) -> Self {
        let at = |name: &str| {
            target
                .columns
                .iter()
                .position(|c| c.name == name)
                .expect("every table has it")
        };
        RowSink {
            target,
            source_object: source_object.to_string(),
            partner_at: at("partner"),
            run_id_at: at("run_id"),
            // The natural key without `partner`: a repeat within a run is refused.
            key_at: target
                .key
                .iter()
                .filter(|k| **k != "partner")
                .map(|k| at(k))
                .collect(),
            key_name: target
                .key
                .iter()
                .filter(|k| **k != "partner")
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            chunk_rows,
            builder: FrameBuilder::with_capacity(target, chunk_rows),
            quarantine: Vec::new(),
            stats: FileStats::default(),
            emit,
        }
    }

    /// A row of the target's width with `partner` and `run_id` set.
    pub fn blank<'a>(&self, ctx: &Context<'a>) -> Vec<Prepared<'a>> {
        let mut row: Vec<Prepared> = Vec::with_capacity(self.target.columns.len());
        row.resize_with(self.target.columns.len(), || Prepared::Ref(ValueRef::Null));
        row[self.partner_at] = Prepared::Ref(ValueRef::Text(ctx.partner));
        row[self.run_id_at] = Prepared::Ref(ValueRef::Text(ctx.run_id));
        row
    }

    fn reject(&mut self, position: String, field: String, value: String, reason: String) {
        self.quarantine.push(Quarantined {
            source_object: self.source_object.clone(),
            position,
            field: (!field.is_empty()).then_some(field),
            value: Some(value),
            reason,
        });
    }

    /// Takes a mapped row, or the rules it broke. `position` and `shown` (the source row as
    /// text) are only computed for a row that goes to quarantine.
    pub fn accept(
        &mut self,
        position: impl Fn() -> String,
        mapped: Result<Vec<Prepared>, Vec<Violation>>,
        seen: &mut RunKeys,
        shown: impl FnOnce() -> String,
    ) -> Result<(), TransformError> {
        match mapped {
            Err(violations) => {
                self.stats.quarantined_rows += 1;
                for v in violations {
                    self.reject(position(), v.field, v.value, v.rule);
                }
            }
            Ok(prepared) => {
                let values: Vec<ValueRef> = prepared
                    .iter()
                    .map(|p| match p {
                        Prepared::Ref(r) => *r,
                        Prepared::Owned(s) => ValueRef::Text(s),
                    })
                    .collect();
                let mut failed = self
                    .builder
                    .check_refs(&values)
                    .err()
                    .map(|e| (e.field.to_string(), e.reason));
                if failed.is_none() && !seen.insert(hash_key(&values, &self.key_at)) {
                    failed = Some((
                        self.key_name.clone(),
                        format!("duplicate {} in this run", self.key_name),
                    ));
                }
                match failed {
                    Some((field, reason)) => {
                        self.stats.quarantined_rows += 1;
                        let value: String = shown().chars().take(500).collect();
                        self.reject(position(), field, value, reason);
                    }
                    None => {
                        self.builder.push_checked(&values);
                        self.stats.rows += 1;
                    }
                }
            }
        }
        if self.builder.len() >= self.chunk_rows || self.quarantine.len() >= self.chunk_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransformError> {
        let full = std::mem::replace(
            &mut self.builder,
            FrameBuilder::with_capacity(self.target, self.chunk_rows),
        );
        let out = Output {
            tables: vec![(self.target, full.finish())],
            quarantine: std::mem::take(&mut self.quarantine),
        };
        (self.emit)(out).map_err(TransformError::Stopped)
    }

    /// Hands on what is left; returns what the source gave.
    pub fn finish(mut self) -> Result<FileStats, TransformError> {
        if !self.builder.is_empty() || !self.quarantine.is_empty() {
            self.flush()?;
        }
        Ok(self.stats)
    }
}

/// Reads one file through a row mapping, handing chunks to `emit`.
/// `emit` returning an error stops the reading (the consumer failed) with that message.
#[allow(clippy::too_many_arguments)]
pub fn read(
    ctx: &Context,
    input: Box<dyn Read + Send>,
    source_object: &str,
    fetched: DateTime<Utc>,
    map: &dyn RowMap,
    text: &TextOptions,
    chunk_rows: usize,
    seen: &mut RunKeys,
    emit: &mut dyn FnMut(Output) -> Result<(), String>,
) -> Result<FileStats, TransformError> {
    let mut records = Records::open(input, source_object, text)?;
    let mut bound =
        map.bind(records.header())
            .map_err(|(expected, found)| TransformError::BadFile {
                source_object: source_object.to_string(),
                expected,
                found,
            })?;
    let fetched_us = fetched.timestamp_micros();
    let mut sink = RowSink::new(map.target(), source_object, chunk_rows, emit);
    let mut rec = csv::ByteRecord::new();
    while records.next(&mut rec)? {
        let line = records.line_of(&rec);
        let fields = records.fields(&rec)?;
        let mut row = sink.blank(ctx);
        let mapped = bound.map(&fields, fetched_us, &mut row).map(|()| row);
        sink.accept(
            || format!("line {line}"),
            mapped,
            seen,
            || fields.join(&(text.delimiter as char).to_string()),
        )?;
    }
    sink.finish()
}

#[cfg(test)]
mod tests;
