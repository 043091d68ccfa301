//! The curated zone: the unified tables as Parquet beside the raw zone, laid out for any
//! engine (DuckDB, Spark, Trino, Athena) with Hive partitions:
//! `curated/{table}/date=YYYY-MM-DD/partner={partner}/part-{run_id}-{n}.parquet`.
//! The `date` and `partner` columns live in the path, not in the files.
//!
//! What a run writes, so that the zone counts what the warehouse holds:
//! - snapshot tables: the rows it loaded, under the UTC date of their `observed_at`, except
//!   snapshots the warehouse already held before the load (a feed polled twice within its
//!   `ttl`, a replay): each snapshot is in the zone once, as in the warehouse;
//! - reference tables (stations, charge points, …): the versions it loaded, under the date
//!   of the run, when the load inserted or changed any of their rows; the latest version of
//!   each key is the warehouse's row, so the number of distinct keys is the warehouse's row
//!   count.
//!
//! Parts are written to a local folder during the load and uploaded only after the
//! warehouse commits ([`Curated::parts`]); a load that rolls back leaves nothing. Part
//! names derive from the run id, so a replay of a run writes the same keys again.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use chrono::NaiveDate;
use mobiflux_model::{TableKind, TableSchema};
use polars::prelude::*;

use crate::LoadError;
use crate::cells::{self, Cell};

/// One Parquet file of the run, ready to upload.
#[derive(Debug, Clone)]
pub struct Part {
    pub table: &'static str,
    /// A reference table's part (versions), not a snapshot's.
    pub reference: bool,
    pub key: String,
    pub file: PathBuf,
    pub rows: usize,
}

/// The run's curated parts, spilled to a local folder until the load commits.
#[derive(Debug)]
pub struct Curated {
    dir: PathBuf,
    run_id: String,
    /// The UTC date of the run: the partition of reference tables.
    run_day: NaiveDate,
    parts: Vec<Part>,
}

/// A partition value as Hive writes it: characters outside `[A-Za-z0-9._-]` percent-encoded.
pub fn hive_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Curated {
    pub fn new(run_id: &str, run_day: NaiveDate) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("mobiflux-curated-{run_id}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Curated {
            dir,
            run_id: run_id.to_string(),
            run_day,
            parts: Vec::new(),
        })
    }

    /// Writes a loaded frame's rows as parts; `stale` are the snapshot times the warehouse
    /// held before (their rows are left out).
    pub fn add(
        &mut self,
        schema: &'static TableSchema,
        df: &DataFrame,
        stale: &HashSet<i64>,
    ) -> Result<(), LoadError> {
        let bad = |message: String| LoadError::BadFrame {
            table: schema.name,
            message,
        };
        let cols = cells::columns(schema, df)?;
        let at = |name: &str| schema.columns.iter().position(|c| c.name == name);
        let partner = &cols[at("partner").ok_or_else(|| bad("no partner column".into()))?];
        let observed = match schema.kind {
            TableKind::Snapshot => at("observed_at").map(|i| &cols[i]),
            _ => None,
        };
        let mut groups: BTreeMap<(NaiveDate, &str), Vec<IdxSize>> = BTreeMap::new();
        for i in 0..df.height() {
            let day = match observed.map(|c| c.get(i)) {
                Some(Cell::Ts(t)) if stale.contains(&t) => continue,
                Some(Cell::Ts(t)) => chrono::DateTime::from_timestamp_micros(t)
                    .map(|d| d.date_naive())
                    .unwrap_or(self.run_day),
                _ => self.run_day,
            };
            let p = match partner.get(i) {
                Cell::Text(p) => p,
                _ => "",
            };
            groups.entry((day, p)).or_default().push(i as IdxSize);
        }
        for ((day, p), rows) in groups {
            let n = rows.len();
            let idx = IdxCa::from_vec("idx".into(), rows);
            let mut part = df
                .take(&idx)
                .map_err(|e| bad(format!("curated part: {e}")))?;
            let _ = part.drop_in_place("partner");
            let file = self.dir.join(format!("{}.parquet", self.parts.len()));
            // Buffered: the writer's metadata goes out a few bytes at a time.
            let mut out = std::fs::File::create(&file)
                .map(|f| std::io::BufWriter::with_capacity(1 << 16, f))
                .map_err(|e| bad(format!("curated part {}: {e}", file.display())))?;
            // Snappy, every engine reads it and it costs little CPU; one thread: parts are
            // small and many (a run's snapshot per partner and day).
            ParquetWriter::new(&mut out)
                .with_compression(ParquetCompression::Snappy)
                .set_parallel(false)
                .finish(&mut part)
                .map_err(|e| bad(format!("curated part: {e}")))?;
            std::io::Write::flush(&mut out)
                .map_err(|e| bad(format!("curated part {}: {e}", file.display())))?;
            let key = format!(
                "curated/{}/date={}/partner={}/part-{}-{:04}.parquet",
                schema.name,
                day.format("%Y-%m-%d"),
                hive_value(p),
                self.run_id,
                self.parts.len()
            );
            self.parts.push(Part {
                table: schema.name,
                reference: schema.kind != TableKind::Snapshot,
                key,
                file,
                rows: n,
            });
        }
        Ok(())
    }

    /// The parts written, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The parts worth uploading once the load committed: a reference table's versions only
    /// when the load inserted or changed rows of it (`changed`, from [`crate::LoadStats`]);
    /// a feed loaded again unchanged adds nothing.
    pub fn to_upload(&self, changed: &[(&'static str, u64)]) -> Vec<&Part> {
        self.parts
            .iter()
            .filter(|p| !p.reference || changed.iter().any(|(t, n)| *t == p.table && *n > 0))
            .collect()
    }
}

impl Drop for Curated {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_are_escaped_like_hive() {
        assert_eq!(hive_value("velo-city_2.0"), "velo-city_2.0");
        assert_eq!(hive_value("a/b c=é"), "a%2Fb%20c%3D%C3%A9");
    }
}
