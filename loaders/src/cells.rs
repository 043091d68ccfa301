//! Reading frame cells by schema type, for the statement builders of both databases.

use mobiflux_model::{ColType, TableSchema};
use polars::prelude::*;

use crate::LoadError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
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

/// A frame column: its one array when it has a single chunk (as every frame built by the
/// transforms does), read directly; otherwise through the chunked array.
pub struct Col<'a, T: PolarsDataType> {
    all: &'a ChunkedArray<T>,
    one: Option<&'a T::Array>,
}

impl<'a, T: PolarsDataType> Col<'a, T> {
    fn new(all: &'a ChunkedArray<T>) -> Self {
        Col {
            all,
            one: (all.chunks().len() == 1).then(|| all.downcast_as_array()),
        }
    }

    /// The column's one array, when it has a single chunk.
    pub fn single(&self) -> Option<&'a T::Array> {
        self.one
    }
}

/// Whether no value of a text array holds a NUL byte (one scan of its buffers and of the
/// short values kept inline), so a writer that must refuse NUL need not look at each value.
pub fn nul_free(a: &<StringType as PolarsDataType>::Array) -> bool {
    a.data_buffers()
        .iter()
        .all(|b| memchr::memchr(0, b).is_none())
        && a.views()
            .iter()
            .all(|v| v.get_inlined_slice().is_none_or(|s| !s.contains(&0)))
}

/// A value of a primitive array, `None` when null.
macro_rules! primitive {
    ($a:expr, $i:expr) => {
        $a.validity()
            .is_none_or(|v| v.get_bit($i))
            .then(|| $a.value($i))
    };
}

pub enum ColRef<'a> {
    Text(Col<'a, StringType>),
    Int(Col<'a, Int64Type>),
    Float(Col<'a, Float64Type>),
    Bool(Col<'a, BooleanType>),
    Ts(Col<'a, Int64Type>),
    Date(Col<'a, Int32Type>),
}

impl ColRef<'_> {
    #[inline]
    pub fn get(&self, i: usize) -> Cell<'_> {
        let cell = match self {
            ColRef::Text(c) => match c.one {
                Some(a) => a.get(i),
                None => c.all.get(i),
            }
            .map(Cell::Text),
            ColRef::Int(c) => match c.one {
                Some(a) => primitive!(a, i),
                None => c.all.get(i),
            }
            .map(Cell::Int),
            ColRef::Float(c) => match c.one {
                Some(a) => primitive!(a, i),
                None => c.all.get(i),
            }
            .map(Cell::Float),
            ColRef::Bool(c) => match c.one {
                Some(a) => a.get(i),
                None => c.all.get(i),
            }
            .map(Cell::Bool),
            ColRef::Ts(c) => match c.one {
                Some(a) => primitive!(a, i),
                None => c.all.get(i),
            }
            .map(Cell::Ts),
            ColRef::Date(c) => match c.one {
                Some(a) => primitive!(a, i),
                None => c.all.get(i),
            }
            .map(Cell::Date),
        };
        cell.unwrap_or(Cell::Null)
    }
}

/// `YYYY-MM-DD` of a day count, as both warehouses store and dump dates.
pub fn date_text(days: i32) -> String {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    (epoch + chrono::Duration::days(days as i64))
        .format("%Y-%m-%d")
        .to_string()
}

/// The frame's columns in schema order, checked for presence and type.
pub fn columns<'a>(
    schema: &'static TableSchema,
    df: &'a DataFrame,
) -> Result<Vec<ColRef<'a>>, LoadError> {
    let bad = |message: String| LoadError::BadFrame {
        table: schema.name,
        message,
    };
    schema
        .columns
        .iter()
        .map(|c| {
            let col = df
                .column(c.name)
                .map_err(|_| bad(format!("column {} is missing", c.name)))?;
            let typed = match c.ty {
                ColType::Text => col.str().map(|a| ColRef::Text(Col::new(a))),
                ColType::Int => col.i64().map(|a| ColRef::Int(Col::new(a))),
                ColType::Float => col.f64().map(|a| ColRef::Float(Col::new(a))),
                ColType::Bool => col.bool().map(|a| ColRef::Bool(Col::new(a))),
                ColType::Timestamp => col.datetime().map(|d| ColRef::Ts(Col::new(d.physical()))),
                ColType::Date => col.date().map(|d| ColRef::Date(Col::new(d.physical()))),
            };
            typed.map_err(|e| bad(format!("column {}: {e}", c.name)))
        })
        .collect()
}
