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

enum Buf {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Ts(Vec<Option<i64>>),
    /// Days since 1970-01-01.
    Date(Vec<Option<i32>>),
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

impl FrameBuilder {
    pub fn new(schema: &'static TableSchema) -> Self {
        let bufs = schema
            .columns
            .iter()
            .map(|c| match c.ty {
                ColType::Text => Buf::Text(Vec::new()),
                ColType::Int => Buf::Int(Vec::new()),
                ColType::Float => Buf::Float(Vec::new()),
                ColType::Bool => Buf::Bool(Vec::new()),
                ColType::Timestamp => Buf::Ts(Vec::new()),
                ColType::Date => Buf::Date(Vec::new()),
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

    /// Checks a row against the schema (required columns present, types right) without adding it.
    pub fn check(&self, row: &Row) -> Result<(), RowError> {
        for (col, v) in self.schema.columns.iter().zip(&row.values) {
            let ok = matches!(
                (col.ty, v),
                (_, Value::Null)
                    | (ColType::Text, Value::Text(_))
                    | (ColType::Int, Value::Int(_))
                    | (ColType::Float, Value::Float(_) | Value::Int(_))
                    | (ColType::Bool, Value::Bool(_))
                    | (ColType::Timestamp, Value::Ts(_))
                    | (ColType::Date, Value::Date(_))
            );
            if !ok {
                return Err(RowError {
                    field: col.name,
                    reason: format!("expected {:?}, got {v:?}", col.ty),
                });
            }
            if matches!(v, Value::Null) && !col.nullable {
                return Err(RowError {
                    field: col.name,
                    reason: format!("required field {} is missing", col.name),
                });
            }
            if let Value::Float(f) = v
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

    /// Adds a row after checking it; a failing row is not added.
    pub fn push(&mut self, row: Row) -> Result<(), RowError> {
        assert!(std::ptr::eq(row.schema, self.schema) || row.schema == self.schema);
        self.check(&row)?;
        for (buf, v) in self.bufs.iter_mut().zip(row.values) {
            match (buf, v) {
                (Buf::Text(b), Value::Text(s)) => b.push(Some(s)),
                (Buf::Text(b), _) => b.push(None),
                (Buf::Int(b), Value::Int(i)) => b.push(Some(i)),
                (Buf::Int(b), _) => b.push(None),
                (Buf::Float(b), Value::Float(f)) => b.push(Some(f)),
                (Buf::Float(b), Value::Int(i)) => b.push(Some(i as f64)),
                (Buf::Float(b), _) => b.push(None),
                (Buf::Bool(b), Value::Bool(x)) => b.push(Some(x)),
                (Buf::Bool(b), _) => b.push(None),
                (Buf::Ts(b), Value::Ts(t)) => b.push(Some(t.timestamp_micros())),
                (Buf::Ts(b), _) => b.push(None),
                (Buf::Date(b), Value::Date(d)) => b.push(Some(days_since_epoch(d))),
                (Buf::Date(b), _) => b.push(None),
            }
        }
        self.len += 1;
        Ok(())
    }

    pub fn finish(self) -> DataFrame {
        let columns: Vec<Column> = self
            .schema
            .columns
            .iter()
            .zip(self.bufs)
            .map(|(c, buf)| {
                let name = PlSmallStr::from_static(c.name);
                match buf {
                    Buf::Text(v) => Column::new(name, v),
                    Buf::Int(v) => Column::new(name, v),
                    Buf::Float(v) => Column::new(name, v),
                    Buf::Bool(v) => Column::new(name, v),
                    Buf::Ts(v) => Int64Chunked::from_iter_options(name, v.into_iter())
                        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                        .into_series()
                        .into(),
                    Buf::Date(v) => Int32Chunked::from_iter_options(name, v.into_iter())
                        .into_date()
                        .into_series()
                        .into(),
                }
            })
            .collect();
        DataFrame::new(self.len, columns).expect("columns built to one length")
    }
}

fn days_since_epoch(d: NaiveDate) -> i32 {
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
