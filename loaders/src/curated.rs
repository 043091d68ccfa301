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
//! Parts are kept in memory during the load (up to [`MEMORY_BUDGET`] per run, then spilled
//! to a local folder made for the run when first needed) and uploaded only after the
//! warehouse commits ([`Curated::parts`]); a load that rolls back leaves nothing. Part
//! names derive from the run id, so a replay of a run writes the same keys again.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use chrono::NaiveDate;
use mobiflux_model::{TableKind, TableSchema};
use polars::prelude::*;

use crate::LoadError;
use crate::cells::{self, Cell};

/// Bytes of Parquet a run keeps in memory before its parts go to a local folder: a feed's
/// run (a few small parts) never touches the disk twice; a file of millions of rows keeps
/// memory flat.
pub const MEMORY_BUDGET: usize = 8 << 20;

/// Parts under this many rows are written with plain strings and floats (see [`parquet`]).
const PLAIN_ROWS: usize = 4096;

/// Rows of reference frames a run holds back until the commit says whether they changed
/// (beyond, they are written as they come, like a file's chunks).
const PENDING_ROWS: usize = 100_000;

/// Where a part waits for the commit.
#[derive(Debug, Clone)]
pub enum Content {
    Memory(bytes::Bytes),
    File(PathBuf),
}

/// One Parquet file of the run, ready to upload.
#[derive(Debug, Clone)]
pub struct Part {
    pub table: &'static str,
    /// A reference table's part (versions), not a snapshot's.
    pub reference: bool,
    pub key: String,
    pub content: Content,
    pub rows: usize,
}

/// The run's curated parts, held until the load commits.
#[derive(Debug)]
pub struct Curated {
    /// The spill folder, once a part did not fit in [`MEMORY_BUDGET`].
    dir: Option<PathBuf>,
    in_memory: usize,
    /// [`MEMORY_BUDGET`] unless told otherwise.
    budget: usize,
    run_id: String,
    /// The UTC date of the run: the partition of reference tables.
    run_day: NaiveDate,
    parts: Vec<Part>,
    /// Reference frames waiting for the commit.
    pending: Vec<(&'static TableSchema, DataFrame)>,
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
    pub fn new(run_id: &str, run_day: NaiveDate) -> Self {
        Curated {
            dir: None,
            in_memory: 0,
            budget: MEMORY_BUDGET,
            run_id: run_id.to_string(),
            run_day,
            parts: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Another memory budget than [`MEMORY_BUDGET`] (0: every part goes to the folder).
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Keeps a written part in memory while the run's budget allows, else in the run's
    /// spill folder.
    fn keep(&mut self, bytes: Vec<u8>) -> std::io::Result<Content> {
        if self.in_memory + bytes.len() <= self.budget {
            self.in_memory += bytes.len();
            return Ok(Content::Memory(bytes.into()));
        }
        let dir = match &self.dir {
            Some(d) => d.clone(),
            None => {
                let d = std::env::temp_dir().join(format!("mobiflux-curated-{}", self.run_id));
                std::fs::create_dir_all(&d)?;
                self.dir = Some(d.clone());
                d
            }
        };
        let file = dir.join(format!("{}.parquet", self.parts.len()));
        std::fs::write(&file, bytes)?;
        Ok(Content::File(file))
    }

    /// Writes a loaded frame's rows as parts; `stale` are the snapshot times the warehouse
    /// held before (their rows are left out). A small reference frame waits for the commit
    /// instead (see [`Curated::finish`]): a feed whose stations did not change writes nothing.
    pub fn add(
        &mut self,
        schema: &'static TableSchema,
        df: &DataFrame,
        stale: &HashSet<i64>,
    ) -> Result<(), LoadError> {
        let pending: usize = self.pending.iter().map(|(_, d)| d.height()).sum();
        if schema.kind != TableKind::Snapshot && pending + df.height() <= PENDING_ROWS {
            // Columns are shared, not copied.
            self.pending.push((schema, df.clone()));
            return Ok(());
        }
        self.write(schema, df, stale)
    }

    /// The parts to upload once the load committed: every snapshot part, and a reference
    /// table's versions only when the load inserted or changed rows of it (`changed`, from
    /// [`crate::LoadStats`]); a feed loaded again unchanged adds nothing. Reference frames
    /// held back by [`Curated::add`] are written now, for the tables that changed.
    pub fn finish(&mut self, changed: &[(&'static str, u64)]) -> Result<Vec<&Part>, LoadError> {
        let changed_table = |t: &str| changed.iter().any(|(c, n)| *c == t && *n > 0);
        for (schema, df) in std::mem::take(&mut self.pending) {
            if changed_table(schema.name) {
                self.write(schema, &df, &HashSet::new())?;
            }
        }
        Ok(self
            .parts
            .iter()
            .filter(|p| !p.reference || changed_table(p.table))
            .collect())
    }

    fn write(
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
            // A feed's run is mostly one partner on one day: the frame is the part.
            let mut part = if n == df.height() {
                df.clone()
            } else {
                let idx = IdxCa::from_vec("idx".into(), rows);
                df.take(&idx)
                    .map_err(|e| bad(format!("curated part: {e}")))?
            };
            let _ = part.drop_in_place("partner");
            let out = parquet(&mut part).map_err(|e| bad(format!("curated part: {e}")))?;
            let content = self
                .keep(out)
                .map_err(|e| bad(format!("curated part (spill folder): {e}")))?;
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
                content,
                rows: n,
            });
        }
        Ok(())
    }

    /// The parts written, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }
}

/// A part as Parquet: Snappy (every engine reads it and it costs little CPU), one thread
/// (parts are small and many: a run's snapshot per partner and day).
///
/// A small part's strings and floats are written plain, its integers and timestamps with a
/// dictionary when it pays: polars' writer decides a dictionary for every string and float
/// column from a cardinality estimate whose fixed cost (16,384 registers summed per column)
/// outweighed the encoding of a feed's few hundred rows (5 % of the scheduler's CPU in the
/// soak benchmark); for integers it decides from their range, at no cost. Bigger parts (a
/// published file's chunks) keep polars' choice: there, dictionaries shrink the files.
fn parquet(part: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut out = Vec::new();
    if part.height() >= PLAIN_ROWS {
        ParquetWriter::new(&mut out)
            .with_compression(ParquetCompression::Snappy)
            .set_parallel(false)
            .finish(part)?;
        return Ok(out);
    }
    use polars_parquet::write::{
        CompressionOptions, Encoding, FileWriter, RowGroupIterator, StatisticsOptions, Version,
        WriteOptions,
    };
    part.rechunk_mut_par();
    let encodings: Vec<Vec<Encoding>> = part
        .dtypes()
        .iter()
        .map(|t| match t.is_integer() || t.is_temporal() {
            true => vec![Encoding::RleDictionary],
            false => vec![Encoding::Plain],
        })
        .collect();
    let schema = part.schema().to_arrow(CompatLevel::newest());
    let options = WriteOptions {
        statistics: StatisticsOptions::default(),
        version: Version::V1,
        compression: CompressionOptions::Snappy,
        data_page_size: None,
    };
    let groups = RowGroupIterator::try_new(
        part.iter_chunks(CompatLevel::newest(), false).map(Ok),
        &schema,
        options,
        encodings.into(),
    )?;
    let mut writer = FileWriter::try_new(&mut out, schema.clone(), options)?;
    for group in groups {
        writer.write(part.height() as u64, group?)?;
    }
    writer.end(None)?;
    Ok(out)
}

impl Drop for Curated {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobiflux_model::schema::REGIONS;

    #[test]
    fn partition_values_are_escaped_like_hive() {
        assert_eq!(hive_value("velo-city_2.0"), "velo-city_2.0");
        assert_eq!(hive_value("a/b c=é"), "a%2Fb%20c%3D%C3%A9");
    }

    fn regions(n: usize) -> DataFrame {
        let text = |name: &str, f: &dyn Fn(usize) -> String| {
            Column::new(name.into(), (0..n).map(f).collect::<Vec<_>>())
        };
        let valid_from =
            Int64Chunked::from_vec("valid_from".into(), vec![1_763_769_600_000_000; n])
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_series()
                .into();
        DataFrame::new(
            n,
            vec![
                text("partner", &|_| "p".into()),
                text("region_id", &|i| format!("r{i}")),
                text("name", &|i| format!("Region {i}")),
                valid_from,
                text("run_id", &|_| "run".into()),
            ],
        )
        .unwrap()
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    #[test]
    fn reference_frames_wait_for_the_commit_and_only_changed_tables_are_written() {
        let mut c = Curated::new("run", day());
        c.add(&REGIONS, &regions(3), &HashSet::new()).unwrap();
        assert!(c.parts().is_empty(), "nothing written before the commit");
        assert!(c.finish(&[("regions", 0)]).unwrap().is_empty());
        assert!(c.parts().is_empty(), "an unchanged table writes no part");

        let mut c = Curated::new("run", day());
        c.add(&REGIONS, &regions(3), &HashSet::new()).unwrap();
        let parts = c.finish(&[("regions", 3)]).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].rows, 3);
        assert_eq!(
            parts[0].key,
            "curated/regions/date=2026-11-22/partner=p/part-run-0000.parquet"
        );
        let Content::Memory(bytes) = &parts[0].content else {
            panic!("a small part stays in memory: {:?}", parts[0].content);
        };
        assert_eq!(&bytes[..4], b"PAR1");
        assert!(c.dir.is_none(), "no spill folder made");
    }

    #[test]
    fn small_and_big_parts_read_back_as_written() {
        for n in [3, PLAIN_ROWS + 1] {
            let mut df = regions(n);
            let lat = Column::new(
                "lat".into(),
                (0..n).map(|i| 45.0 + i as f64 / 1e4).collect::<Vec<_>>(),
            );
            df.with_column(lat).unwrap();
            let bytes = parquet(&mut df.clone()).unwrap();
            let back = ParquetReader::new(std::io::Cursor::new(bytes))
                .finish()
                .unwrap();
            assert!(back.equals_missing(&df), "{n} rows: {back:?} != {df:?}");
            assert_eq!(
                back.schema(),
                df.schema(),
                "{n} rows: types kept (UTC timestamps)"
            );
        }
    }

    #[test]
    fn parts_past_the_memory_budget_go_to_a_folder_removed_with_the_run() {
        let mut c = Curated::new("run-spill", day()).with_memory_budget(0);
        c.add(&REGIONS, &regions(2), &HashSet::new()).unwrap();
        let file = match &c.finish(&[("regions", 2)]).unwrap()[0].content {
            Content::File(f) => f.clone(),
            other => panic!("expected a spilled part, got {other:?}"),
        };
        assert_eq!(&std::fs::read(&file).unwrap()[..4], b"PAR1");
        drop(c);
        assert!(!file.exists(), "the spill folder goes with the run");
    }
}
