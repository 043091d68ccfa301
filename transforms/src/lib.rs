//! mobiflux transforms: raw payloads to the unified tables of DESIGN.md §5, as polars frames.
//!
//! Pure: bytes in, frames out, no I/O. One module per source format, each exposing
//! `transform(&Context, &[Payload]) -> Result<Output, TransformError>`. A record that
//! breaks its format's rules is quarantined with its reason and position and the rest
//! loads; a payload that is not the expected kind of file at all fails the transform.

pub mod bnls;
pub mod covoiturage;
pub mod fixed;
pub mod frame;
pub mod gbfs;
pub mod html;
pub mod irve;
mod json;
pub mod jsonmap;
pub mod logs;
pub mod mapped;
pub mod quarantine;
mod records;
pub mod tableschema;
pub mod tabular;
pub mod text;
pub mod tomp;

use chrono::{DateTime, Utc};
use mobiflux_model::TableSchema;
use polars::prelude::DataFrame;
pub use quarantine::Quarantined;

/// One raw object, as landed by an extractor.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// The resource name within the feed (`station_status`, `vehicle_status`, …).
    pub resource: &'a str,
    /// Raw-zone key of the object, quoted in quarantine rows and errors.
    pub source_object: &'a str,
    pub bytes: &'a [u8],
    pub fetched_at: DateTime<Utc>,
}

/// The resources of a feed format that describe what changes rarely, each with the table
/// it feeds: a payload of one whose content equals the last one loaded for its pipeline need
/// not be transformed and loaded again.
pub fn reference_resources(format: &str) -> &'static [(&'static str, &'static str)] {
    match format {
        "gbfs" => gbfs::REFERENCE,
        _ => &[],
    }
}

/// Whether a format's transform reads a resource's payload when the `known` resources (see
/// [`reference_resources`]) are left out: a payload it does not read need not be read back
/// from the raw zone.
pub fn reads(format: &str, resource: &str, known: &[&str]) -> bool {
    match format {
        "gbfs" => gbfs::reads(resource, known),
        _ => true,
    }
}

/// Who the rows belong to.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub pipeline: &'a str,
    pub partner: &'a str,
    pub run_id: &'a str,
    /// Preferred language for localized strings; the feed's own language otherwise.
    pub language: Option<&'a str>,
}

/// Unified frames (each following its schema) plus the quarantined records.
#[derive(Debug, Default)]
pub struct Output {
    pub tables: Vec<(&'static TableSchema, DataFrame)>,
    pub quarantine: Vec<Quarantined>,
}

impl Output {
    pub fn table(&self, name: &str) -> Option<&DataFrame> {
        self.tables
            .iter()
            .find(|(s, _)| s.name == name)
            .map(|(_, df)| df)
    }

    pub fn rows(&self) -> usize {
        self.tables.iter().map(|(_, df)| df.height()).sum()
    }

    /// One frame per table out of a run's chunks (tables, then quarantine, in order).
    pub fn stack(chunks: &[Output]) -> polars::error::PolarsResult<Output> {
        let mut out = Output::default();
        for chunk in chunks {
            for (schema, df) in &chunk.tables {
                match out.tables.iter_mut().find(|(s, _)| s.name == schema.name) {
                    Some((_, all)) => {
                        all.vstack_mut(df)?;
                    }
                    None => out.tables.push((schema, df.clone())),
                }
            }
            out.quarantine.extend(chunk.quarantine.iter().cloned());
        }
        Ok(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The payload is not the kind of file the format expects.
    #[error("{source_object}: expected {expected}; {found}")]
    BadFile {
        source_object: String,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Text(#[from] text::TextError),
    /// The consumer of the chunks failed; its message.
    #[error("{0}")]
    Stopped(String),
}
