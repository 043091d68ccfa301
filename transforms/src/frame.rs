//! Building polars frames that follow a unified table schema, row by row.
//!
//! Transforms read semi-structured payloads record by record, so they fill typed column
//! buffers and hand polars whole columns at the end; the result always has exactly the
//! schema's columns, in its order, with its types (timestamps as UTC microseconds).

use chrono::{DateTime, NaiveDate, Utc};
use mobiflux_model::{ColType, TableSchema};
use polars::prelude::*;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Ts(DateTime<Utc>),
    Date(NaiveDate),
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Self {
        Value::Ts(v)
    }
}
impl From<NaiveDate> for Value {
    fn from(v: NaiveDate) -> Self {
        Value::Date(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

/// One row under construction; columns not set stay null.
#[derive(Debug, Clone)]
pub struct Row {
    schema: &'static TableSchema,
    values: Vec<Value>,
}

impl Row {
    pub fn new(schema: &'static TableSchema) -> Self {
        Row {
            schema,
            values: vec![Value::Null; schema.columns.len()],
        }
    }

    /// Sets a column. An unknown column name is a programming error and panics.
    pub fn set(&mut self, column: &str, value: impl Into<Value>) -> &mut Self {
        let i = self
            .schema
            .columns
            .iter()
            .position(|c| c.name == column)
            .unwrap_or_else(|| panic!("table {} has no column {column}", self.schema.name));
        self.values[i] = value.into();
        self
    }

    /// Sets the column at a position of the schema (resolved once, for hot loops).
    pub fn set_at(&mut self, index: usize, value: Value) {
        self.values[index] = value;
    }

    pub fn value_at(&self, index: usize) -> &Value {
        &self.values[index]
    }

    pub fn get(&self, column: &str) -> Option<&Value> {
        let i = self.schema.columns.iter().position(|c| c.name == column)?;
        Some(&self.values[i])
    }
}

/// A value borrowed for appending: what the hot paths push without allocating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// UTC microseconds.
    Ts(i64),
    /// Days since 1970-01-01.
    Date(i32),
}

impl Value {
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Text(s) => ValueRef::Text(s),
            Value::Int(i) => ValueRef::Int(*i),
            Value::Float(f) => ValueRef::Float(*f),
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Ts(t) => ValueRef::Ts(t.timestamp_micros()),
            Value::Date(d) => ValueRef::Date(days_since_epoch(*d)),
        }
    }
}

/// Column builders of polars: strings go into shared buffers, not one allocation each.
enum Buf {
    Text(StringChunkedBuilder),
    Int(PrimitiveChunkedBuilder<Int64Type>),
    Float(PrimitiveChunkedBuilder<Float64Type>),
    Bool(BooleanChunkedBuilder),
    Ts(PrimitiveChunkedBuilder<Int64Type>),
    Date(PrimitiveChunkedBuilder<Int32Type>),
}

/// Why a row could not join its frame: the missing or mistyped column.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub field: &'static str,
    pub reason: String,
}

pub struct FrameBuilder {
    schema: &'static TableSchema,
    bufs: Vec<Buf>,
    len: usize,
}

const INITIAL_ROWS: usize = 1024;

impl FrameBuilder {
    pub fn new(schema: &'static TableSchema) -> Self {
        Self::with_capacity(schema, INITIAL_ROWS)
    }

    /// A builder sized for `rows` rows up front (chunked readers know their chunk size:
    /// no doubling, no fragments left behind).
    pub fn with_capacity(schema: &'static TableSchema, rows: usize) -> Self {
        let bufs = schema
            .columns
            .iter()
            .map(|c| {
                let name = PlSmallStr::from_static(c.name);
                match c.ty {
                    ColType::Text => Buf::Text(StringChunkedBuilder::new(name, rows)),
                    ColType::Int => Buf::Int(PrimitiveChunkedBuilder::new(name, rows)),
                    ColType::Float => Buf::Float(PrimitiveChunkedBuilder::new(name, rows)),
                    ColType::Bool => Buf::Bool(BooleanChunkedBuilder::new(name, rows)),
                    ColType::Timestamp => Buf::Ts(PrimitiveChunkedBuilder::new(name, rows)),
                    ColType::Date => Buf::Date(PrimitiveChunkedBuilder::new(name, rows)),
                }
            })
            .collect();
        FrameBuilder {
            schema,
            bufs,
            len: 0,
        }
    }

    pub fn schema(&self) -> &'static TableSchema {
        self.schema
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks values (in schema order) against the schema: required present, types right.
    pub fn check_refs(&self, values: &[ValueRef]) -> Result<(), RowError> {
        for (col, v) in self.schema.columns.iter().zip(values) {
            let ok = matches!(
                (col.ty, v),
                (_, ValueRef::Null)
                    | (ColType::Text, ValueRef::Text(_))
                    | (ColType::Int, ValueRef::Int(_))
                    | (ColType::Float, ValueRef::Float(_) | ValueRef::Int(_))
                    | (ColType::Bool, ValueRef::Bool(_))
                    | (ColType::Timestamp, ValueRef::Ts(_))
                    | (ColType::Date, ValueRef::Date(_))
            );
            if !ok {
                return Err(RowError {
                    field: col.name,
                    reason: format!("expected {:?}, got {v:?}", col.ty),
                });
            }
            if matches!(v, ValueRef::Null) && !col.nullable {
                return Err(RowError {
                    field: col.name,
                    reason: format!("required field {} is missing", col.name),
                });
            }
            if let ValueRef::Float(f) = v
                && !f.is_finite()
            {
                return Err(RowError {
                    field: col.name,
                    reason: format!("{} is not a finite number", col.name),
                });
            }
        }
        Ok(())
    }

    /// Checks a row without adding it.
    pub fn check(&self, row: &Row) -> Result<(), RowError> {
        let refs: Vec<ValueRef> = row.values.iter().map(Value::as_ref).collect();
        self.check_refs(&refs)
    }

    /// Adds values (in schema order) after checking them; failing values are not added.
    pub fn push_refs(&mut self, values: &[ValueRef]) -> Result<(), RowError> {
        self.check_refs(values)?;
        self.push_checked(values);
        Ok(())
    }

    /// Adds values that [`FrameBuilder::check_refs`] accepted (not checked again).
    pub fn push_checked(&mut self, values: &[ValueRef]) {
        assert_eq!(
            values.len(),
            self.bufs.len(),
            "one value per column of {}",
            self.schema.name
        );
        for (buf, v) in self.bufs.iter_mut().zip(values) {
            match (buf, *v) {
                (Buf::Text(b), ValueRef::Text(s)) => b.append_value(s),
                (Buf::Text(b), _) => b.append_null(),
                (Buf::Int(b), ValueRef::Int(i)) => b.append_value(i),
                (Buf::Int(b), _) => b.append_null(),
                (Buf::Float(b), ValueRef::Float(f)) => b.append_value(f),
                (Buf::Float(b), ValueRef::Int(i)) => b.append_value(i as f64),
                (Buf::Float(b), _) => b.append_null(),
                (Buf::Bool(b), ValueRef::Bool(x)) => b.append_value(x),
                (Buf::Bool(b), _) => b.append_null(),
                (Buf::Ts(b), ValueRef::Ts(t)) => b.append_value(t),
                (Buf::Ts(b), _) => b.append_null(),
                (Buf::Date(b), ValueRef::Date(d)) => b.append_value(d),
                (Buf::Date(b), _) => b.append_null(),
            }
        }
        self.len += 1;
    }

    /// Adds a row that [`FrameBuilder::check`] accepted (not checked again: a record is
    /// checked once, before its id is looked up among those seen).
    pub fn push_checked_row(&mut self, row: &Row) {
        assert!(std::ptr::eq(row.schema, self.schema) || row.schema == self.schema);
        let refs: Vec<ValueRef> = row.values.iter().map(Value::as_ref).collect();
        self.push_checked(&refs);
    }

    /// Adds a row after checking it; a failing row is not added.
    pub fn push(&mut self, row: Row) -> Result<(), RowError> {
        assert!(std::ptr::eq(row.schema, self.schema) || row.schema == self.schema);
        let refs: Vec<ValueRef> = row.values.iter().map(Value::as_ref).collect();
        self.push_refs(&refs)
    }

    pub fn finish(self) -> DataFrame {
        let columns: Vec<Column> = self
            .bufs
            .into_iter()
            .map(|buf| match buf {
                Buf::Text(b) => b.finish().into_series().into(),
                Buf::Int(b) => b.finish().into_series().into(),
                Buf::Float(b) => b.finish().into_series().into(),
                Buf::Bool(b) => b.finish().into_series().into(),
                Buf::Ts(b) => b
                    .finish()
                    .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                    .into_series()
                    .into(),
                Buf::Date(b) => b.finish().into_date().into_series().into(),
            })
            .collect();
        DataFrame::new(self.len, columns).expect("columns built to one length")
    }
}

/// Days since 1970-01-01 of a date.
pub fn days_since_epoch(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// An empty frame with the schema's columns and types.
pub fn empty(schema: &'static TableSchema) -> DataFrame {
    FrameBuilder::new(schema).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use mobiflux_model::schema::REGIONS;

    #[test]
    fn builds_typed_columns_and_rejects_missing_required_fields() {
        let mut b = FrameBuilder::new(&REGIONS);
        let mut r = Row::new(&REGIONS);
        r.set("partner", "p")
            .set("region_id", "r1")
            .set("name", "North")
            .set("valid_from", Utc.timestamp_opt(1_606_858_379, 0).unwrap())
            .set("run_id", "run");
        b.push(r).unwrap();
        let mut bad = Row::new(&REGIONS);
        bad.set("partner", "p").set("region_id", "r2");
        let err = b.push(bad).unwrap_err();
        assert_eq!(err.field, "name");
        let df = b.finish();
        assert_eq!(df.height(), 1);
        let ts = df.column("valid_from").unwrap().datetime().unwrap();
        assert_eq!(ts.physical().get(0), Some(1_606_858_379_000_000));
        assert_eq!(
            df.column("name").unwrap().str().unwrap().get(0),
            Some("North")
        );
    }
}
