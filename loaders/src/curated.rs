//! The curated zone: the unified tables as Parquet beside the raw zone, laid out for any
//! engine (DuckDB, Spark, Trino, Athena) with Hive partitions:
//! `curated/{table}/date=YYYY-MM-DD/partner={partner}/part-….parquet`.
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
//! A run's rows go either to parts of its own, `part-{run_id}-{n}.parquet` (a published
//! file, pages, a replay), or, for a feed's poll ([`Curated::batched`]), to the process's
//! [`Batch`]: a file per table, day and partner for many polls, `part-{batch}.parquet`.
//!
//! A run's own parts are kept in memory during the load (up to [`MEMORY_BUDGET`] per run,
//! then spilled to a local folder made for the run when first needed) and uploaded only
//! after the warehouse commits ([`Curated::parts`]); a load that rolls back leaves nothing.
//! Part names derive from the run id, so a replay of a run writes the same keys again. A
//! batched run's rows join its batch only after the commit too ([`Batch::absorb`]).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use chrono::NaiveDate;
use mobiflux_model::{ColType, TableKind, TableSchema};
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
    /// For a run that joins a [`Batch`]: its rows by table, day and partner, kept as frames
    /// until the commit hands them to the batch, instead of parts of their own.
    staged: Option<Vec<Staged>>,
}

/// A run's rows of one table, day and partner, waiting to join a [`Batch`].
#[derive(Debug)]
struct Staged {
    schema: &'static TableSchema,
    day: NaiveDate,
    partner: String,
    /// The schema's columns but `partner`, in its order (see [`normalized`]).
    frame: DataFrame,
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
            staged: None,
        }
    }

    /// A run whose rows join a [`Batch`] after the commit ([`Batch::absorb`]) rather than
    /// writing parts of their own: a feed's poll, whose rows are few and in memory anyway.
    pub fn batched(mut self) -> Self {
        self.staged = Some(Vec::new());
        self
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
        if let Some(staged) = &mut self.staged {
            staged.retain(|s| s.schema.kind == TableKind::Snapshot || changed_table(s.schema.name));
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
            if let Some(staged) = &mut self.staged {
                staged.push(Staged {
                    schema,
                    day,
                    partner: p.to_string(),
                    frame: normalized(schema, &part)
                        .map_err(|e| bad(format!("curated part: {e}")))?,
                });
                continue;
            }
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

/// A snapshot frame's `observed_at` values, read as [`Curated::add`] reads them to leave
/// stale snapshots out (none for a table without the column).
pub fn observed_at(schema: &'static TableSchema, df: &DataFrame) -> Result<Vec<i64>, LoadError> {
    let Some(at) = schema.columns.iter().position(|c| c.name == "observed_at") else {
        return Ok(Vec::new());
    };
    let cols = cells::columns(schema, df)?;
    Ok((0..df.height())
        .filter_map(|i| match cols[at].get(i) {
            Cell::Ts(t) => Some(t),
            _ => None,
        })
        .collect())
}

/// A frame's rows as the columns of its table's schema but `partner` (a partition in the
/// path), in the schema's order and types (timestamps in UTC microseconds): every run's rows
/// of a table then share one Parquet schema, as a [`Batch`]'s files need.
fn normalized(schema: &TableSchema, df: &DataFrame) -> PolarsResult<DataFrame> {
    let columns = schema
        .columns
        .iter()
        .filter(|c| c.name != "partner")
        .map(|c| {
            let col = df.column(c.name)?;
            let ty = match c.ty {
                ColType::Text => DataType::String,
                ColType::Int => DataType::Int64,
                ColType::Float => DataType::Float64,
                ColType::Bool => DataType::Boolean,
                ColType::Timestamp => {
                    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                }
                ColType::Date => DataType::Date,
            };
            if col.dtype() == &ty {
                Ok(col.clone())
            } else {
                col.cast(&ty)
            }
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new(df.height(), columns)
}

/// A run's rows of one table, day and partner, as a small Parquet of their own.
struct Piece {
    schema: &'static TableSchema,
    day: NaiveDate,
    partner: String,
    rows: usize,
    bytes: Vec<u8>,
}

/// A committed run's rows for its [`Batch`], encoded ([`Curated::pieces`]): the CPU work done
/// before the batch is locked.
pub struct Pieces {
    run_id: String,
    pieces: Vec<Piece>,
}

impl Curated {
    /// A [`Curated::batched`] run's rows, after [`Curated::finish`], encoded for its batch.
    pub fn pieces(&mut self) -> Result<Pieces, LoadError> {
        let mut pieces = Vec::new();
        for s in self.staged.take().unwrap_or_default() {
            let mut frame = s.frame;
            if frame.height() == 0 {
                continue;
            }
            let mut bytes = parquet(&mut frame).map_err(|e| LoadError::BadFrame {
                table: s.schema.name,
                message: format!("curated batch: {e}"),
            })?;
            bytes.shrink_to_fit();
            pieces.push(Piece {
                schema: s.schema,
                day: s.day,
                partner: s.partner,
                rows: frame.height(),
                bytes,
            });
        }
        Ok(Pieces {
            run_id: self.run_id.clone(),
            pieces,
        })
    }
}

/// One file of a batch: each run's rows of its table, day and partner, as Parquet of their
/// own until the batch is written ([`Batch::finish`] merges them).
struct Group {
    pieces: Vec<Vec<u8>>,
    rows: usize,
    reference: bool,
}

/// Feed runs' curated rows gathered across runs: one Parquet file per table, day and
/// partner, `part-{batch}.parquet`, uploaded when the batch is flushed rather than a file
/// per table a poll (a system polled each minute wrote 2,880 files a day).
///
/// Each run's rows are encoded at once, as a small Parquet of their own (a feed's poll: a
/// few KB), and the batch's files are made of them when it is written. A writer left open
/// per file, a row group a poll, held about 40 KB of metadata per row group (measured:
/// 1,000 systems polled for 5 minutes took 250 MB for 40 MB of Parquet); the pieces hold
/// their bytes only.
///
/// The warehouse marks each run loaded into a batch with the batch's key, in the load's
/// transaction, and clears the mark once the files are uploaded; the files of a batch left
/// marked (its process killed) can be written again under the same names from the runs' raw
/// payloads, so nothing is lost and nothing counted twice.
#[derive(Default)]
pub struct Batch {
    key: String,
    files: BTreeMap<(&'static str, NaiveDate, String), Group>,
    held: usize,
    runs: Vec<String>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("key", &self.key)
            .field("files", &self.files.len())
            .field("bytes", &self.held)
            .field("runs", &self.runs.len())
            .finish()
    }
}

impl Batch {
    pub fn new(key: &str) -> Self {
        Batch {
            key: key.to_string(),
            ..Default::default()
        }
    }

    /// The batch's key: its files' names and the warehouse's mark on its runs.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes of Parquet held.
    pub fn bytes(&self) -> usize {
        self.held
    }

    /// The runs absorbed, in order.
    pub fn runs(&self) -> &[String] {
        &self.runs
    }

    /// Adds a committed run's rows, encoded by [`Curated::pieces`], to the file of each
    /// table, day and partner it has rows for.
    pub fn absorb(&mut self, run: Pieces) {
        for p in run.pieces {
            self.held += p.bytes.len();
            let group = self
                .files
                .entry((p.schema.name, p.day, p.partner))
                .or_insert_with(|| Group {
                    pieces: Vec::new(),
                    rows: 0,
                    reference: p.schema.kind != TableKind::Snapshot,
                });
            group.rows += p.rows;
            group.pieces.push(p.bytes);
        }
        self.runs.push(run.run_id);
    }

    /// The batch's files: a part per table, day and partner, its runs' rows in the order
    /// they came, a row group a run ([`join_row_groups`]).
    pub fn finish(self) -> Result<Vec<Part>, LoadError> {
        let key = self.key;
        self.files
            .into_iter()
            .map(|((table, day, partner), group)| {
                let bytes = match <[Vec<u8>; 1]>::try_from(group.pieces) {
                    Ok([one]) => one,
                    Err(pieces) => {
                        join_row_groups(&pieces).map_err(|message| LoadError::BadFrame {
                            table,
                            message: format!("curated batch: {message}"),
                        })?
                    }
                };
                Ok(Part {
                    table,
                    reference: group.reference,
                    key: format!(
                        "curated/{table}/date={}/partner={}/part-{key}.parquet",
                        day.format("%Y-%m-%d"),
                        hive_value(&partner),
                    ),
                    content: Content::Memory(bytes.into()),
                    rows: group.rows,
                })
            })
            .collect()
    }
}

const MAGIC: &[u8; 4] = b"PAR1";

/// Parquet files of one schema joined as one, their row groups one after the other, without
/// decoding them: each row group's bytes are copied and its column chunks' offsets moved;
/// the footer is the first file's with every row group. The files' page indexes (optional)
/// are not carried over.
fn join_row_groups(files: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    use polars_parquet_format::FileMetaData;
    use polars_parquet_format::thrift::protocol::{TCompactInputProtocol, TCompactOutputProtocol};
    let mut out = Vec::with_capacity(files.iter().map(Vec::len).sum());
    out.extend_from_slice(MAGIC);
    let mut joined: Option<FileMetaData> = None;
    let mut row_groups = Vec::new();
    let mut rows = 0;
    for file in files {
        let n = file.len();
        if n < 12 || &file[..4] != MAGIC || &file[n - 4..] != MAGIC {
            return Err("not a Parquet file".into());
        }
        let footer_len =
            u32::from_le_bytes(file[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
        let footer = file
            .get(n.saturating_sub(8 + footer_len)..n - 8)
            .filter(|f| f.len() == footer_len)
            .ok_or("a Parquet footer longer than its file")?;
        let mut meta = FileMetaData::read_from_in_protocol(&mut TCompactInputProtocol::new(
            footer,
            usize::MAX,
        ))
        .map_err(|e| format!("Parquet footer: {e}"))?;
        for mut group in std::mem::take(&mut meta.row_groups) {
            let mut chunks = Vec::new();
            for c in &group.columns {
                let m = c
                    .meta_data
                    .as_ref()
                    .ok_or("a column chunk without metadata")?;
                let start = m.dictionary_page_offset.unwrap_or(m.data_page_offset);
                let start = start.min(m.data_page_offset);
                chunks.push((start, start + m.total_compressed_size));
            }
            let start = chunks
                .iter()
                .map(|c| c.0)
                .min()
                .ok_or("an empty row group")?;
            let end = chunks
                .iter()
                .map(|c| c.1)
                .max()
                .ok_or("an empty row group")?;
            let bytes = usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(s, e)| file.get(s..e))
                .ok_or("a row group outside its file")?;
            let shift = out.len() as i64 - start;
            out.extend_from_slice(bytes);
            for c in &mut group.columns {
                if c.file_offset != 0 {
                    c.file_offset += shift;
                }
                c.offset_index_offset = None;
                c.offset_index_length = None;
                c.column_index_offset = None;
                c.column_index_length = None;
                let m = c.meta_data.as_mut().expect("checked above");
                m.data_page_offset += shift;
                m.dictionary_page_offset = m.dictionary_page_offset.map(|o| o + shift);
                m.index_page_offset = m.index_page_offset.map(|o| o + shift);
                m.bloom_filter_offset = None;
                m.bloom_filter_length = None;
            }
            group.file_offset = group.file_offset.map(|o| o + shift);
            group.ordinal = Some(row_groups.len() as i16);
            row_groups.push(group);
        }
        rows += meta.num_rows;
        if let Some(first) = &joined {
            if first.schema != meta.schema {
                return Err("Parquet files of different schemas".into());
            }
        } else {
            joined = Some(meta);
        }
    }
    let mut meta = joined.ok_or("no Parquet file to join")?;
    meta.row_groups = row_groups;
    meta.num_rows = rows;
    let start = out.len();
    meta.write_to_out_protocol(&mut TCompactOutputProtocol::new(&mut out))
        .map_err(|e| format!("Parquet footer: {e}"))?;
    let footer_len = u32::try_from(out.len() - start).map_err(|_| "a Parquet footer over 4 GB")?;
    out.extend_from_slice(&footer_len.to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
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
    fn a_batch_writes_a_file_per_table_day_and_partner_with_a_row_group_a_run() {
        let mut batch = Batch::new("batch-1");
        for (run, rows, changed) in [("run-a", 3, 3), ("run-b", 2, 1), ("run-c", 4, 0)] {
            let mut c = Curated::new(run, day()).batched();
            c.add(&REGIONS, &regions(rows), &HashSet::new()).unwrap();
            assert!(c.finish(&[("regions", changed)]).unwrap().is_empty());
            batch.absorb(c.pieces().unwrap());
        }
        assert_eq!(batch.runs(), ["run-a", "run-b", "run-c"]);
        assert!(batch.bytes() > 0);
        let parts = batch.finish().unwrap();
        assert_eq!(parts.len(), 1, "{parts:?}");
        assert_eq!(
            parts[0].key,
            "curated/regions/date=2026-11-22/partner=p/part-batch-1.parquet"
        );
        // run-c changed nothing: its rows are not written.
        assert_eq!(parts[0].rows, 5);
        let Content::Memory(bytes) = &parts[0].content else {
            panic!("{:?}", parts[0].content);
        };
        let back = ParquetReader::new(std::io::Cursor::new(bytes.to_vec()))
            .finish()
            .unwrap();
        assert_eq!(back.height(), 5);
        let names: Vec<&str> = back.get_column_names().iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["region_id", "name", "valid_from", "run_id"]);
        let meta = ParquetReader::new(std::io::Cursor::new(bytes.to_vec()))
            .get_metadata()
            .unwrap()
            .clone();
        assert_eq!(meta.row_groups.len(), 2, "a row group per run written");
        let ids: Vec<&str> = back
            .column("region_id")
            .unwrap()
            .str()
            .unwrap()
            .downcast_iter()
            .flat_map(|a| a.values_iter())
            .collect();
        assert_eq!(
            ids,
            ["r0", "r1", "r2", "r0", "r1"],
            "in the order the runs came"
        );
    }

    #[test]
    fn joined_files_read_back_as_their_rows_one_after_the_other() {
        let (mut small, big) = (regions(3), regions(PLAIN_ROWS + 1));
        let joined = join_row_groups(&[
            parquet(&mut small.clone()).unwrap(),
            parquet(&mut big.clone()).unwrap(),
            parquet(&mut small.clone()).unwrap(),
        ])
        .unwrap();
        let back = ParquetReader::new(std::io::Cursor::new(joined))
            .finish()
            .unwrap();
        small.vstack_mut(&big).unwrap();
        small.vstack_mut(&regions(3)).unwrap();
        assert!(back.equals_missing(&small));
        assert!(join_row_groups(&[b"PAR1 not parquet PAR1".to_vec()]).is_err());
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
