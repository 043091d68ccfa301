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

pub enum ColRef<'a> {
    Text(&'a StringChunked),
    Int(&'a Int64Chunked),
    Float(&'a Float64Chunked),
    Bool(&'a BooleanChunked),
    Ts(&'a Int64Chunked),
    Date(&'a Int32Chunked),
}

impl ColRef<'_> {
    pub fn get(&self, i: usize) -> Cell<'_> {
        let cell = match self {
            ColRef::Text(c) => c.get(i).map(Cell::Text),
            ColRef::Int(c) => c.get(i).map(Cell::Int),
            ColRef::Float(c) => c.get(i).map(Cell::Float),
            ColRef::Bool(c) => c.get(i).map(Cell::Bool),
            ColRef::Ts(c) => c.get(i).map(Cell::Ts),
            ColRef::Date(c) => c.get(i).map(Cell::Date),
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
                ColType::Text => col.str().map(ColRef::Text),
                ColType::Int => col.i64().map(ColRef::Int),
                ColType::Float => col.f64().map(ColRef::Float),
                ColType::Bool => col.bool().map(ColRef::Bool),
                ColType::Timestamp => col.datetime().map(|d| ColRef::Ts(d.physical())),
                ColType::Date => col.date().map(|d| ColRef::Date(d.physical())),
            };
            typed.map_err(|e| bad(format!("column {}: {e}", c.name)))
        })
        .collect()
}
