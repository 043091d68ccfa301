//! mobiflux loaders: unified frames to destinations.
//!
//! The warehouse is one trait, [`Warehouse`], with PostgreSQL (production: COPY into a
//! staging table, then one merge per table, all in one transaction) and SQLite (the
//! embedded default) side by side. A run's tables, its quarantine and its `etl_runs`
//! row commit together or not at all, and loading a run again changes nothing.

pub mod cache;
mod cells;
pub mod curated;
mod postgres;
mod rollup;
mod sql;
mod sqlite;
pub mod stats;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use mobiflux_model::TableSchema;
use polars::prelude::DataFrame;

pub use postgres::MIGRATIONS as POSTGRES_MIGRATIONS;
pub use postgres::PostgresWarehouse;
pub use sqlite::SqliteWarehouse;

/// One row of `etl_runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub pipeline: String,
    pub partner: String,
    pub format: String,
    /// `run`, `replay` or `schedule`.
    pub trigger: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub rows_loaded: i64,
    pub rows_quarantined: i64,
    pub bytes: i64,
    /// Already free of secrets.
    pub error: Option<String>,
    /// Raw-zone key of the run's manifest.
    pub manifest: Option<String>,
    /// The curated-zone batch whose files will hold the run's rows, until they are uploaded
    /// (see `curated::Batch`). A run loaded again keeps the mark it has.
    pub curated_batch: Option<String>,
}

impl RunRecord {
    /// A replay loads a run again under its own id: what the first load quarantined is
    /// replaced, not added to. Any other load is a new run with nothing stored yet.
    pub(crate) fn reloads(&self) -> bool {
        self.trigger == "replay"
    }
}

/// What one run loads.
pub struct Batch<'a> {
    pub run: &'a RunRecord,
    pub tables: &'a [(&'static TableSchema, DataFrame)],
    /// Frame following `mobiflux_model::schema::QUARANTINE`.
    pub quarantine: &'a DataFrame,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadStats {
    /// Rows offered per table, in load order.
    pub tables: Vec<(&'static str, u64)>,
    pub quarantined: u64,
    /// Reference tables: rows inserted or changed (a feed loaded again unchanged changes
    /// none).
    pub changed: Vec<(&'static str, u64)>,
}

impl LoadStats {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("warehouse {target}: {message}")]
    Database { target: String, message: String },
    #[error("warehouse URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("frame for {table} does not follow its schema: {message}")]
    BadFrame {
        table: &'static str,
        message: String,
    },
    #[error("load of run {run_id} into {table} failed and was rolled back: {message}")]
    RolledBack {
        run_id: String,
        table: &'static str,
        message: String,
    },
    /// A newer mobiflux migrated the warehouse: this one would write tables whose shape or
    /// meaning it does not know (every instance sharing a warehouse runs the same version).
    #[error(
        "warehouse {target} is at schema version {found}, newer than this mobiflux knows (up to {known}): upgrade this instance; every mobiflux sharing a warehouse must run the same version"
    )]
    SchemaNewer {
        target: String,
        found: i32,
        known: i32,
    },
}

/// The schema version a warehouse's migrations reach.
pub(crate) fn known_version(migrations: &[(i32, &str)]) -> i32 {
    migrations.last().map_or(0, |m| m.0)
}

/// Whether this mobiflux may write a warehouse whose newest applied migration is `found`
/// ([`schema_of`] says why not).
pub(crate) fn check_schema(
    target: &str,
    found: Option<i32>,
    migrations: &[(i32, &str)],
) -> Result<(), LoadError> {
    schema_of(target, found, migrations).map(drop)
}

/// Where a warehouse's schema stands against this mobiflux's migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// At the version this mobiflux knows.
    Current,
    /// Behind it (`None`: never migrated).
    Behind { found: Option<i32>, known: i32 },
    /// The role may not read `schema_migrations` (an analyst granted before it could).
    Hidden,
}

/// Readies a warehouse for a command that only reads it (`stats`, `serve`, `status`):
/// nothing is written when its schema is current, so a read-only role (an analyst's, see
/// `grant-analyst`) can run them; a schema behind is migrated (by a role that may), one
/// ahead refused ([`LoadError::SchemaNewer`]).
pub async fn ready_to_read(wh: &dyn Warehouse) -> Result<(), LoadError> {
    match wh.schema().await? {
        Schema::Current | Schema::Hidden => Ok(()),
        Schema::Behind { found, known } => wh.migrate().await.map_err(|e| LoadError::Database {
            target: wh.describe(),
            message: format!(
                "the schema is at version {}, this mobiflux reads version {known}, and migrating it failed ({e}): run `mobiflux migrate` with the warehouse owner's role",
                found.map_or("none".to_string(), |v| v.to_string())
            ),
        }),
    }
}

/// Where a warehouse whose newest applied migration is `found` stands; an error when a
/// newer mobiflux migrated it.
pub(crate) fn schema_of(
    target: &str,
    found: Option<i32>,
    migrations: &[(i32, &str)],
) -> Result<Schema, LoadError> {
    let known = known_version(migrations);
    match found {
        Some(found) if found > known => Err(LoadError::SchemaNewer {
            target: target.to_string(),
            found,
            known,
        }),
        Some(found) if found == known => Ok(Schema::Current),
        _ => Ok(Schema::Behind { found, known }),
    }
}

/// A failure inside a load transaction: the database's, or an injected fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Fault(#[from] mobiflux_model::failpoint::Fired),
}

/// A table's rows as text, sorted by natural key, with `run_id` left out: how two
/// warehouses are compared (timestamps RFC 3339 UTC with microseconds, floats shortest form).
pub type TableDump = Vec<Vec<Option<String>>>;

/// An open load: one transaction for one run. Frames arrive in chunks (a file of any size
/// is loaded chunk by chunk); nothing is visible to readers until [`LoadTx::commit`].
/// Dropping it without committing rolls everything back.
pub trait LoadTx: Send {
    /// Adds rows of a table; a table may receive any number of chunks.
    fn frame<'a>(
        &'a mut self,
        schema: &'static TableSchema,
        df: &'a DataFrame,
    ) -> BoxFuture<'a, Result<(), LoadError>>;
    /// Adds quarantined records (frames following `mobiflux_model::schema::QUARANTINE`).
    fn quarantine<'a>(&'a mut self, df: &'a DataFrame) -> BoxFuture<'a, Result<(), LoadError>>;
    /// Records that a raw object's content was loaded by this run (written at commit).
    fn record_object(&mut self, sha256: &str, source_object: &str);
    /// Records what the rows of a feed resource's payload loaded by this run depend on
    /// (written at commit; see [`Warehouse::latest_loaded`]).
    fn record_latest(&mut self, resource: &str, content: &str, source_object: &str);
    /// Of the last frame of a snapshot table, the snapshot times (`observed_at`, UTC
    /// microseconds) the warehouse held before this load: rows the load leaves as they were.
    /// Checked for frames of at most [`SNAPSHOT_CHECK_MAX`] distinct times (feeds, pages,
    /// searches); event tables from files are deduplicated by file content instead.
    fn stale_snapshots(&self) -> &std::collections::HashSet<i64>;
    /// Merges what was staged, writes the run's final `etl_runs` row and commits.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<LoadStats, LoadError>>;
}

/// Counts of one open load, kept by both warehouses the same way.
#[derive(Debug, Default)]
pub(crate) struct TxCounts {
    stats: LoadStats,
    /// (source_object, position) of the last quarantined record, to count rows, not violations.
    last_rejected: Option<(String, String)>,
    /// (sha256, source_object) of the raw objects loaded.
    pub(crate) objects: Vec<(String, String)>,
    /// (resource, content, source_object) of the feed payloads loaded as their resource's latest.
    pub(crate) latest: Vec<(String, String, String)>,
    /// Snapshots (table, observed_at) this load found new: a later chunk of the same
    /// snapshot is new too, though its first rows are already in the table.
    pub(crate) rolled: std::collections::HashSet<(&'static str, i64)>,
    /// The last frame's snapshot times already stored before this load.
    pub(crate) stale: std::collections::HashSet<i64>,
}

/// Frames with more distinct snapshot times than this are not checked one time at a time
/// against the warehouse (see [`LoadTx::stale_snapshots`]).
pub const SNAPSHOT_CHECK_MAX: usize = 64;

/// The tries of [`Warehouse::close_days`] by the scheduler: a minute, half a second apart.
pub const CLOSE_TRIES: u32 = 120;

impl TxCounts {
    /// Of a frame's snapshot times, those the rollups have not counted: neither stored
    /// before this load (`stored`) nor seen earlier in it. They are marked counted.
    pub(crate) fn fresh_snapshots(
        &mut self,
        table: &'static str,
        observed: &[i64],
        stored: &[i64],
    ) -> std::collections::HashSet<i64> {
        let mut fresh = std::collections::HashSet::new();
        self.stale.clear();
        for t in observed {
            if self.rolled.contains(&(table, *t)) {
                fresh.insert(*t);
            } else if !stored.contains(t) {
                self.rolled.insert((table, *t));
                fresh.insert(*t);
            } else {
                self.stale.insert(*t);
            }
        }
        fresh
    }
}

impl TxCounts {
    /// See [`LoadTx::record_object`].
    pub(crate) fn record_object(&mut self, sha256: &str, source_object: &str) {
        self.objects
            .push((sha256.to_string(), source_object.to_string()));
    }

    /// See [`LoadTx::record_latest`].
    pub(crate) fn record_latest(&mut self, resource: &str, content: &str, source_object: &str) {
        self.latest.push((
            resource.to_string(),
            content.to_string(),
            source_object.to_string(),
        ));
    }

    /// Counts rows of a reference table the load inserted or changed.
    pub(crate) fn changed(&mut self, table: &'static str, rows: u64) {
        match self.stats.changed.iter_mut().find(|(t, _)| *t == table) {
            Some((_, n)) => *n += rows,
            None => self.stats.changed.push((table, rows)),
        }
    }

    pub(crate) fn add(&mut self, table: &'static str, rows: usize) {
        match self.stats.tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, n)) => *n += rows as u64,
            None => self.stats.tables.push((table, rows as u64)),
        }
    }

    /// A record rejected for several reasons is one quarantined row: its violations follow
    /// each other with the same source object and position.
    pub(crate) fn add_quarantine(&mut self, df: &DataFrame) -> Result<(), LoadError> {
        let bad = |e: polars::error::PolarsError| LoadError::BadFrame {
            table: "quarantine",
            message: e.to_string(),
        };
        let src = df
            .column("source_object")
            .and_then(|c| c.str().cloned())
            .map_err(bad)?;
        let pos = df
            .column("position")
            .and_then(|c| c.str().cloned())
            .map_err(bad)?;
        for (s, p) in src.iter().zip(pos.iter()) {
            let key = (
                s.unwrap_or_default().to_string(),
                p.unwrap_or_default().to_string(),
            );
            if self.last_rejected.as_ref() != Some(&key) {
                self.stats.quarantined += 1;
                self.last_rejected = Some(key);
            }
        }
        Ok(())
    }

    pub(crate) fn finish(&self, run: &RunRecord) -> (LoadStats, RunRecord) {
        let mut done = run.clone();
        done.status = "succeeded".into();
        done.rows_loaded = self.stats.rows() as i64;
        done.rows_quarantined = self.stats.quarantined as i64;
        (self.stats.clone(), done)
    }
}

/// A pipeline as the statistics see it: whose feed, for which territory (AOM), how often.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineInfo {
    pub pipeline: String,
    pub partner: String,
    pub territory: Option<String>,
    pub format: String,
    pub schedule: Option<String>,
    /// The schedule's longest wait between two ticks, in seconds.
    pub interval_s: Option<i64>,
}

/// Per feed resource of a pipeline, the content key of the payload it loaded last
/// (`latest_objects`).
pub type Latest = std::collections::HashMap<String, String>;

pub trait Warehouse: Send + Sync {
    /// Records the pipelines' partners, territories and schedules (`pipelines`), which the
    /// statistics views and the territory policies read.
    fn register_pipelines<'a>(
        &'a self,
        pipelines: &'a [PipelineInfo],
    ) -> BoxFuture<'a, Result<(), LoadError>>;
    /// Where the schema stands against this mobiflux's migrations, read without writing
    /// (see [`ready_to_read`]); fails with [`LoadError::SchemaNewer`] when it is ahead.
    fn schema(&self) -> BoxFuture<'_, Result<Schema, LoadError>>;
    /// Creates or upgrades the schema; safe to call from several processes at once; reads
    /// its version only, taking no lock, when it is current. Fails with
    /// [`LoadError::SchemaNewer`] when a newer mobiflux has migrated it further.
    fn migrate(&self) -> BoxFuture<'_, Result<(), LoadError>>;
    /// Records a run as started (or restarted, for a replay), and returns what its pipeline
    /// loaded last ([`Warehouse::latest_loaded`]), in the same round trip.
    fn start_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<Latest, LoadError>>;
    /// Opens the run's load transaction; the run's earlier quarantine rows are replaced.
    /// `tables`: those the load will write, when known up front (PostgreSQL takes the
    /// snapshot tables' load locks in the BEGIN's own round trip; others as they come).
    fn begin<'a>(
        &'a self,
        run: &'a RunRecord,
        tables: &'a [&'static TableSchema],
    ) -> BoxFuture<'a, Result<Box<dyn LoadTx>, LoadError>>;
    /// Loads a run's frames, quarantine and final `etl_runs` row in one transaction.
    fn load<'a>(&'a self, batch: Batch<'a>) -> BoxFuture<'a, Result<LoadStats, LoadError>> {
        Box::pin(async move {
            let tables: Vec<&'static TableSchema> = batch.tables.iter().map(|t| t.0).collect();
            let mut tx = self.begin(batch.run, &tables).await?;
            for (schema, df) in batch.tables {
                tx.frame(schema, df).await?;
            }
            tx.quarantine(batch.quarantine).await?;
            tx.commit().await
        })
    }
    /// Records a run as failed (its data, if any, was not loaded).
    fn fail_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<(), LoadError>>;
    /// The run that loaded this content for this pipeline, if one did.
    fn loaded_by<'a>(
        &'a self,
        pipeline: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, LoadError>>;
    /// Per feed resource, what the rows of this pipeline's payload loaded last depend on (its
    /// content, with the settings that shape its rows, as the runner hashes them): a payload
    /// fetched again unchanged need not be transformed again (DESIGN: raw zone).
    fn latest_loaded<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<Latest, LoadError>>;
    /// The id of the pipeline's latest run (replays aside): its manifest says what it
    /// fetched, with the validators of each answer, so a process that has not run the
    /// pipeline yet can still fetch conditionally.
    fn last_run<'a>(
        &'a self,
        pipeline: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, LoadError>>;
    /// Clears the mark of a curated batch's runs once its files are uploaded. Returns the
    /// runs cleared.
    fn curated_done<'a>(&'a self, batch: &'a str) -> BoxFuture<'a, Result<u64, LoadError>>;
    /// The curated batches still marked on runs that all finished before then: batches whose
    /// process stopped before uploading them, to be written again from their runs.
    fn curated_orphans(
        &self,
        finished_before: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<String>, LoadError>>;
    /// The runs marked with a curated batch, oldest first.
    fn curated_runs<'a>(
        &'a self,
        batch: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LoadError>>;
    /// What a run stored of a table, for its curated rows written again: the snapshot
    /// times between `from` and `to` (inclusive) whose rows the run inserted (a snapshot
    /// table), or whether any row holds the run's version (another table: one time, `from`,
    /// when it does).
    fn run_rows<'a>(
        &'a self,
        table: &'static TableSchema,
        partner: &'a str,
        run_id: &'a str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<DateTime<Utc>>, LoadError>>;
    /// The `etl_runs` row of a run.
    fn run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>, LoadError>>;
    /// Every run started since then, oldest first.
    fn runs_since<'a>(
        &'a self,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LoadError>>;
    /// A table's content for comparisons and checks.
    fn dump<'a>(
        &'a self,
        table: &'static TableSchema,
    ) -> BoxFuture<'a, Result<TableDump, LoadError>>;
    /// Where the warehouse is, without credentials.
    fn describe(&self) -> String;
    /// Takes one tick of a pipeline for a scheduler instance (`owner`), in one transaction:
    /// false when another instance holds a live lease on the pipeline, or when the tick was
    /// taken already. On success the instance holds the pipeline's lease for `ttl`. Fails
    /// with [`LoadError::SchemaNewer`], taking nothing, once a newer mobiflux has migrated
    /// the warehouse while this one runs: its ticks are left to the instances that know the
    /// schema.
    fn claim_tick<'a>(
        &'a self,
        pipeline: &'a str,
        scheduled_for: DateTime<Utc>,
        owner: &'a str,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, LoadError>>;
    /// Extends the owner's lease (while its run goes on); false if it lost it.
    fn renew_lease<'a>(
        &'a self,
        pipeline: &'a str,
        owner: &'a str,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, LoadError>>;
    /// Gives the lease up (the run ended, or the instance stops).
    fn release_lease<'a>(
        &'a self,
        pipeline: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LoadError>>;
    /// Whether several scheduler instances may share this warehouse (PostgreSQL: yes).
    fn shares_schedules(&self) -> bool;
    /// Makes the snapshot tables' partitions for these days ahead of the loads, in a short
    /// transaction of its own (a scheduler: today's and tomorrow's, every hour). Loads make
    /// a missing day's partition themselves, under a lock held to their commit: at midnight
    /// every load running then would wait for the one before it. SQLite: nothing to do.
    fn prepare_partitions<'a>(
        &'a self,
        _days: &'a [chrono::NaiveDate],
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async { Ok(()) })
    }
    /// Closes the rollups' UTC days before today's (PostgreSQL): their daily rows are written
    /// once from the hourly rows, where loads into an open day add to the hourly rows only.
    /// Loads adding to the rollups keep the days open: the closing tries its lock `tries`
    /// times, half a second apart ([`CLOSE_TRIES`] is a minute), and never waits in its
    /// queue. Returns the days closed (none when nothing was due, or when loads kept the
    /// lock every try: the next call closes them). SQLite: loads keep both rows up to date,
    /// nothing to close.
    fn close_days(&self, _tries: u32) -> BoxFuture<'_, Result<u32, LoadError>> {
        Box::pin(async { Ok(0) })
    }
    /// Folds the hourly rollup rows loads appended (PostgreSQL, migration 13) into their
    /// keys, unless another instance is folding. Returns the keys written. The statistics
    /// read the same figures before and after. SQLite: loads add to the keys themselves.
    fn fold_rollups(&self) -> BoxFuture<'_, Result<u64, LoadError>> {
        Box::pin(async { Ok(0) })
    }
    /// A statistic (`stats::STATS`) with its filters.
    fn stats<'a>(
        &'a self,
        stat: &'static stats::Stat,
        filters: &'a stats::Filters,
    ) -> BoxFuture<'a, Result<stats::Table, LoadError>>;
}

/// Opens the warehouse named by a URL: `sqlite://path` (created if missing) or `postgres://…`.
pub async fn open(url: &str) -> Result<Box<dyn Warehouse>, LoadError> {
    open_sized(url, postgres::DEFAULT_CONNECTIONS).await
}

/// [`open`], with a PostgreSQL pool of at most `connections` (SQLite keeps its own).
pub async fn open_sized(url: &str, connections: u32) -> Result<Box<dyn Warehouse>, LoadError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(
            PostgresWarehouse::connect_sized(url, connections).await?,
        ))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(SqliteWarehouse::open(path).await?))
    } else if url == "sqlite::memory:" {
        Ok(Box::new(SqliteWarehouse::open(":memory:").await?))
    } else {
        Err(LoadError::BadUrl {
            url: mobiflux_model::redact::url(url, &[]),
            message: "expected sqlite://path or postgres://user@host/db".into(),
        })
    }
}

/// Text form of a timestamp used by SQLite storage and table dumps.
pub fn ts_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
