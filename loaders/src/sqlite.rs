//! SQLite warehouse, the embedded default: the same tables and semantics as PostgreSQL,
//! loaded with multi-row upserts inside one `BEGIN IMMEDIATE` transaction per run.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::BoxFuture;
use mobiflux_model::schema::QUARANTINE;
use mobiflux_model::{ColType, TableKind, TableSchema, failpoint};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Row as _, Sqlite};

use crate::cells::{self, Cell, ColRef};
use crate::{
    Latest, LoadError, LoadStats, LoadTx, PipelineInfo, RunRecord, TableDump, TxCounts, Warehouse,
    sql, ts_text,
};
use crate::{rollup, stats};
use polars::prelude::DataFrame;

const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_files.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_gateway_calls.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_carpool_journeys.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_schedule_leases.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_stats.sql")),
    (
        7,
        include_str!("../migrations/sqlite/0007_occupancy_heat.sql"),
    ),
    // 8 (reference tables partitioned by partner) is PostgreSQL's only.
    (
        9,
        include_str!("../migrations/sqlite/0009_latest_objects.sql"),
    ),
    (
        10,
        include_str!("../migrations/sqlite/0010_snapshot_time_index.sql"),
    ),
    // 11 to 15 (PostgreSQL's storage of snapshots and rollups) are PostgreSQL's only.
    (
        16,
        include_str!("../migrations/sqlite/0016_curated_batches.sql"),
    ),
];
/// SQLite accepts up to 32,766 bound values per statement; stay well below.
const MAX_BINDS: usize = 30_000;
const MAX_ROWS_PER_INSERT: usize = 1_000;

pub struct SqliteWarehouse {
    pool: SqlitePool,
    target: String,
}

impl SqliteWarehouse {
    /// The `etl_runs` rows a condition (and order) selects, its one parameter bound to
    /// `value`.
    async fn runs_where<'a, T>(&self, cond: &str, value: T) -> Result<Vec<RunRecord>, LoadError>
    where
        T: sqlx::Encode<'a, Sqlite> + sqlx::Type<Sqlite> + Send + 'a,
    {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM etl_runs WHERE {cond}",
            sql::ETL_RUN_COLUMNS
        )))
        .bind(value)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| record_of(r).map_err(|e| self.db(e)))
            .collect()
    }

    pub async fn open(path: &str) -> Result<Self, LoadError> {
        let target = format!("sqlite://{path}");
        let pool = open_pool(path)
            .await
            .map_err(|message| LoadError::Database {
                target: target.clone(),
                message,
            })?;
        Ok(SqliteWarehouse { pool, target })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn db(&self, e: sqlx::Error) -> LoadError {
        LoadError::Database {
            target: self.target.clone(),
            message: e.to_string(),
        }
    }

    /// The newest migration applied to the database.
    async fn schema_version(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ) -> Result<Option<i32>, LoadError> {
        sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.db(e))
    }

    /// Writes a run's `etl_runs` row as it stands (started, or failed).
    async fn record_run(&self, run: &RunRecord) -> Result<(), LoadError> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.db(e))?;
        upsert_run(&mut conn, run).await.map_err(|e| self.db(e))
    }
}

/// A pool on a SQLite file (created with its folder if missing) or `:memory:`, in WAL mode:
/// the embedded warehouse and the embedded gateway cache open their files the same way.
pub(crate) async fn open_pool(path: &str) -> Result<SqlitePool, String> {
    let memory = path == ":memory:";
    if !memory
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let opts = SqliteConnectOptions::from_str(if memory {
        "sqlite::memory:"
    } else {
        "sqlite://"
    })
    .map_err(|e| e.to_string())?;
    let opts = if memory { opts } else { opts.filename(path) }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(60))
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    SqlitePoolOptions::new()
        // One connection for memory (each connection would be its own database).
        .max_connections(if memory { 1 } else { 4 })
        .connect_with(opts)
        .await
        .map_err(|e| e.to_string())
}

type Args<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

fn bind_cell<'q>(q: Args<'q>, cell: Cell) -> Args<'q> {
    match cell {
        Cell::Null => q.bind(None::<String>),
        Cell::Text(s) => q.bind(s.to_string()),
        Cell::Int(i) => q.bind(i),
        Cell::Float(f) => q.bind(f),
        Cell::Bool(b) => q.bind(b as i64),
        Cell::Ts(us) => q.bind(ts_text(
            Utc.timestamp_micros(us).single().unwrap_or_default(),
        )),
        Cell::Date(d) => q.bind(cells::date_text(d)),
    }
}

/// Upserts a frame's rows; returns how many rows were inserted or changed.
async fn insert_frame(
    conn: &mut sqlx::SqliteConnection,
    schema: &'static TableSchema,
    cols: &[ColRef<'_>],
    height: usize,
) -> Result<u64, sqlx::Error> {
    let ncols = schema.columns.len();
    let per_stmt = (MAX_BINDS / ncols).clamp(1, MAX_ROWS_PER_INSERT);
    let row_marks = format!("({})", vec!["?"; ncols].join(","));
    let conflict = sql::on_conflict_sqlite(schema);
    let mut start = 0;
    let mut changed = 0;
    while start < height {
        let end = (start + per_stmt).min(height);
        let values = vec![row_marks.as_str(); end - start].join(",");
        let stmt = format!(
            "INSERT INTO {} ({}) VALUES {values} {conflict}",
            schema.name,
            sql::column_list(schema)
        );
        let mut q = sqlx::query(AssertSqlSafe(stmt));
        for i in start..end {
            for c in cols {
                q = bind_cell(q, c.get(i));
            }
        }
        changed += q.execute(&mut *conn).await?.rows_affected();
        start = end;
    }
    Ok(changed)
}

fn ts_of(us: i64) -> String {
    ts_text(Utc.timestamp_micros(us).single().unwrap_or_default())
}

/// Of a snapshot frame, before its rows go in: which snapshots the warehouse already held
/// (`stale_snapshots`, for the curated zone), and what the new ones change in the rollups
/// (`rollup.rs`).
async fn roll_up(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    counts: &mut TxCounts,
    partner: &str,
    schema: &'static TableSchema,
    cols: &[ColRef<'_>],
    height: usize,
) -> Result<(), sqlx::Error> {
    let observed = rollup::observed(schema, cols, height);
    if observed.len() > crate::SNAPSHOT_CHECK_MAX && !rollup::feeds(schema) {
        return Ok(());
    }
    let mut stored = Vec::new();
    for t in &observed {
        let found: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT 1 FROM {} WHERE partner = ? AND observed_at = ? LIMIT 1",
            schema.name
        )))
        .bind(partner)
        .bind(ts_of(*t))
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_some() {
            stored.push(*t);
        }
    }
    let fresh = counts.fresh_snapshots(schema.name, &observed, &stored);
    if fresh.is_empty() || !rollup::feeds(schema) {
        return Ok(());
    }
    let is_new = |t: i64| fresh.contains(&t);
    let deltas = if schema.name == "vehicles" {
        rollup::fleet(schema, cols, height, &is_new)
    } else {
        let rows = sqlx::query(
            "SELECT station_id, observed_at, was_empty, was_full, was_renting FROM station_last_status WHERE partner = ?",
        )
        .bind(partner)
        .fetch_all(&mut **tx)
        .await?;
        let mut last = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let at = parse_ts(r.try_get(1)?)
                .map(|t| t.timestamp_micros())
                .unwrap_or(0);
            let sample = rollup::Sample {
                observed_at: at,
                empty: r.try_get(2)?,
                full: r.try_get(3)?,
                renting: r.try_get(4)?,
            };
            last.insert(r.try_get::<String, _>(0)?, sample);
        }
        let (deltas, changed) = rollup::stations(schema, cols, height, &is_new, &mut last);
        for (station, v) in &changed {
            sqlx::query(
                "INSERT INTO station_last_status (partner, station_id, observed_at, was_empty, was_full, was_renting) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (partner, station_id) DO UPDATE SET \
                 observed_at = excluded.observed_at, was_empty = excluded.was_empty, was_full = excluded.was_full, \
                 was_renting = excluded.was_renting",
            )
            .bind(partner)
            .bind(station)
            .bind(ts_of(v.observed_at))
            .bind(v.empty)
            .bind(v.full)
            .bind(v.renting)
            .execute(&mut **tx)
            .await?;
        }
        deltas
    };
    for d in deltas.iter().filter(|d| !d.rows.is_empty()) {
        add_delta(tx, d).await?;
    }
    Ok(())
}

/// Multi-row `INSERT … ON CONFLICT (key) DO UPDATE SET s = s + excluded.s` of a rollup delta.
async fn add_delta(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    d: &rollup::Delta,
) -> Result<(), sqlx::Error> {
    let t = d.table;
    let names = t.columns();
    let adding = t.adding_into(t.name);
    let rows: Vec<(&Vec<rollup::Key>, &Vec<f64>)> = d.rows.iter().collect();
    let per_stmt = (MAX_BINDS / names.len()).clamp(1, MAX_ROWS_PER_INSERT);
    let marks = format!("({})", vec!["?"; names.len()].join(","));
    for chunk in rows.chunks(per_stmt) {
        let stmt = format!(
            "INSERT INTO {} ({}) VALUES {} {adding}",
            t.name,
            names.join(", "),
            vec![marks.as_str(); chunk.len()].join(","),
        );
        let mut q = sqlx::query(AssertSqlSafe(stmt));
        for (key, sums) in chunk {
            for k in key.iter() {
                q = match k {
                    rollup::Key::Text(s) => q.bind(s.clone()),
                    rollup::Key::Ts(us) => q.bind(ts_of(*us)),
                };
            }
            for v in sums.iter() {
                q = q.bind(*v);
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts_text)
}

async fn upsert_run(conn: &mut sqlx::SqliteConnection, r: &RunRecord) -> Result<(), sqlx::Error> {
    let q = format!(
        "INSERT INTO etl_runs ({}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) {}",
        sql::ETL_RUN_COLUMNS,
        sql::ETL_RUN_UPSERT
    );
    sqlx::query(AssertSqlSafe(q))
        .bind(&r.run_id)
        .bind(&r.pipeline)
        .bind(&r.partner)
        .bind(&r.format)
        .bind(&r.trigger)
        .bind(opt_ts(r.scheduled_for))
        .bind(ts_text(r.started_at))
        .bind(opt_ts(r.finished_at))
        .bind(&r.status)
        .bind(r.rows_loaded)
        .bind(r.rows_quarantined)
        .bind(r.bytes)
        .bind(&r.error)
        .bind(&r.manifest)
        .bind(&r.curated_batch)
        .execute(conn)
        .await?;
    Ok(())
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A cell of a statistics row as JSON, by the SQLite value's own type (views' computed
/// columns have none declared).
fn json_cell(row: &SqliteRow, i: usize) -> Result<serde_json::Value, sqlx::Error> {
    use serde_json::Value;
    use sqlx::{TypeInfo as _, ValueRef as _};
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().name().to_string();
    Ok(match ty.as_str() {
        "INTEGER" | "BOOLEAN" => row.try_get_unchecked::<i64, _>(i)?.into(),
        "REAL" => serde_json::Number::from_f64(row.try_get_unchecked::<f64, _>(i)?)
            .map_or(Value::Null, Value::Number),
        _ => row.try_get_unchecked::<String, _>(i)?.into(),
    })
}

fn dump_cell(row: &SqliteRow, i: usize, ty: ColType) -> Result<Option<String>, sqlx::Error> {
    Ok(match ty {
        ColType::Text | ColType::Timestamp | ColType::Date => {
            row.try_get::<Option<String>, _>(i)?
        }
        ColType::Int => row.try_get::<Option<i64>, _>(i)?.map(|v| v.to_string()),
        ColType::Float => row.try_get::<Option<f64>, _>(i)?.map(|v| v.to_string()),
        ColType::Bool => row
            .try_get::<Option<i64>, _>(i)?
            .map(|v| (v != 0).to_string()),
    })
}

/// A SQLite load: chunks are upserted as they come, inside one `BEGIN IMMEDIATE` transaction.
struct SqliteLoad {
    tx: sqlx::Transaction<'static, Sqlite>,
    run: RunRecord,
    counts: TxCounts,
}

impl SqliteLoad {
    fn rolled_back(&self, table: &'static str, e: impl std::fmt::Display) -> LoadError {
        LoadError::RolledBack {
            run_id: self.run.run_id.clone(),
            table,
            message: e.to_string(),
        }
    }
}

impl LoadTx for SqliteLoad {
    fn frame<'a>(
        &'a mut self,
        schema: &'static TableSchema,
        df: &'a DataFrame,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let cols = cells::columns(schema, df)?;
            self.counts.add(schema.name, df.height());
            self.counts.stale.clear();
            if schema.kind == mobiflux_model::TableKind::Snapshot {
                let r = roll_up(
                    &mut self.tx,
                    &mut self.counts,
                    &self.run.partner,
                    schema,
                    &cols,
                    df.height(),
                )
                .await;
                r.map_err(|e| self.rolled_back(schema.name, e))?;
            }
            let tx = &mut self.tx;
            let step = async {
                let n = insert_frame(tx, schema, &cols, df.height()).await?;
                failpoint::check("loader.after_copy")?;
                Ok::<u64, crate::StepError>(n)
            };
            let r = step.await;
            let n = r.map_err(|e| self.rolled_back(schema.name, e))?;
            if schema.kind == mobiflux_model::TableKind::Static {
                self.counts.changed(schema.name, n);
            }
            Ok(())
        })
    }

    fn stale_snapshots(&self) -> &std::collections::HashSet<i64> {
        &self.counts.stale
    }

    fn record_object(&mut self, sha256: &str, source_object: &str) {
        self.counts.record_object(sha256, source_object);
    }

    fn record_latest(&mut self, resource: &str, content: &str, source_object: &str) {
        self.counts.record_latest(resource, content, source_object);
    }

    fn quarantine<'a>(&'a mut self, df: &'a DataFrame) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let cols = cells::columns(&QUARANTINE, df)?;
            self.counts.add_quarantine(df)?;
            let r = insert_frame(&mut self.tx, &QUARANTINE, &cols, df.height()).await;
            r.map(|_| ()).map_err(|e| self.rolled_back("quarantine", e))
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<LoadStats, LoadError>> {
        Box::pin(async move {
            let mut me = *self;
            failpoint::check("loader.before_commit").map_err(|e| me.rolled_back("etl_runs", e))?;
            for (sha, key) in std::mem::take(&mut me.counts.objects) {
                let r = sqlx::query("INSERT INTO loaded_objects (pipeline, sha256, run_id, source_object) VALUES (?, ?, ?, ?) ON CONFLICT (pipeline, sha256) DO NOTHING")
                    .bind(&me.run.pipeline)
                    .bind(&sha)
                    .bind(&me.run.run_id)
                    .bind(&key)
                    .execute(&mut *me.tx)
                    .await;
                r.map_err(|e| me.rolled_back("loaded_objects", e))?;
            }
            for (resource, content, key) in std::mem::take(&mut me.counts.latest) {
                let r = sqlx::query("INSERT INTO latest_objects (pipeline, resource, content, run_id, source_object) VALUES (?, ?, ?, ?, ?) ON CONFLICT (pipeline, resource) DO UPDATE SET content = excluded.content, run_id = excluded.run_id, source_object = excluded.source_object")
                    .bind(&me.run.pipeline)
                    .bind(&resource)
                    .bind(&content)
                    .bind(&me.run.run_id)
                    .bind(&key)
                    .execute(&mut *me.tx)
                    .await;
                r.map_err(|e| me.rolled_back("latest_objects", e))?;
            }
            let (stats, done) = me.counts.finish(&me.run);
            let r = upsert_run(&mut me.tx, &done).await;
            r.map_err(|e| me.rolled_back("etl_runs", e))?;
            let r = me.tx.commit().await;
            r.map_err(|e| LoadError::RolledBack {
                run_id: done.run_id.clone(),
                table: "etl_runs",
                message: e.to_string(),
            })?;
            Ok(stats)
        })
    }
}

impl Warehouse for SqliteWarehouse {
    fn schema(&self) -> BoxFuture<'_, Result<crate::Schema, LoadError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
            let exists: bool = sqlx::query_scalar(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            let newest = match exists {
                true => self.schema_version(&mut tx).await?,
                false => None,
            };
            crate::schema_of(&self.target, newest, MIGRATIONS)
        })
    }

    fn migrate(&self) -> BoxFuture<'_, Result<(), LoadError>> {
        Box::pin(async move {
            // Current: nothing to do, and no lock taken (a thousand one-shot runs starting
            // at the same minute would otherwise queue on it one after the other).
            if self.schema().await? == crate::Schema::Current {
                return Ok(());
            }
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|e| self.db(e))?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))",
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            for (version, ddl) in MIGRATIONS {
                let done: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| self.db(e))?;
                if done.is_none() {
                    sqlx::raw_sql(AssertSqlSafe(*ddl))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| LoadError::Database {
                            target: self.target.clone(),
                            message: format!("migration {version}: {e}"),
                        })?;
                    sqlx::query("INSERT INTO schema_migrations (version) VALUES (?)")
                        .bind(version)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.db(e))?;
                }
            }
            let newest = self.schema_version(&mut tx).await?;
            crate::check_schema(&self.target, newest, MIGRATIONS)?;
            tx.commit().await.map_err(|e| self.db(e))
        })
    }

    fn start_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<Latest, LoadError>> {
        Box::pin(async move {
            self.record_run(run).await?;
            self.latest_loaded(&run.pipeline).await
        })
    }

    fn fail_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(self.record_run(run))
    }

    fn register_pipelines<'a>(
        &'a self,
        pipelines: &'a [PipelineInfo],
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
            let now = ts_text(Utc::now());
            for p in pipelines {
                sqlx::query(
                    "INSERT INTO pipelines (pipeline, partner, territory, format, schedule, interval_s, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pipeline) DO UPDATE SET partner = excluded.partner, \
                     territory = excluded.territory, format = excluded.format, schedule = excluded.schedule, \
                     interval_s = excluded.interval_s, updated_at = excluded.updated_at",
                )
                .bind(&p.pipeline)
                .bind(&p.partner)
                .bind(&p.territory)
                .bind(&p.format)
                .bind(&p.schedule)
                .bind(p.interval_s)
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
            }
            tx.commit().await.map_err(|e| self.db(e))
        })
    }

    fn begin<'a>(
        &'a self,
        run: &'a RunRecord,
        _tables: &'a [&'static TableSchema],
    ) -> BoxFuture<'a, Result<Box<dyn LoadTx>, LoadError>> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|e| self.db(e))?;
            if run.reloads() {
                sqlx::query("DELETE FROM quarantine WHERE run_id = ?")
                    .bind(&run.run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?;
            }
            Ok(Box::new(SqliteLoad {
                tx,
                run: run.clone(),
                counts: TxCounts::default(),
            }) as Box<dyn LoadTx>)
        })
    }

    fn last_run<'a>(
        &'a self,
        pipeline: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, LoadError>> {
        Box::pin(async move {
            sqlx::query_scalar(sql::LAST_RUN)
                .bind(pipeline)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.db(e))
        })
    }

    fn latest_loaded<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<Latest, LoadError>> {
        Box::pin(async move {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT resource, content FROM latest_objects WHERE pipeline = ?")
                    .bind(pipeline)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.db(e))?;
            Ok(rows.into_iter().collect())
        })
    }

    fn loaded_by<'a>(
        &'a self,
        pipeline: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, LoadError>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT run_id FROM loaded_objects WHERE pipeline = ? AND sha256 = ?",
            )
            .bind(pipeline)
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(e))
        })
    }

    fn curated_done<'a>(&'a self, batch: &'a str) -> BoxFuture<'a, Result<u64, LoadError>> {
        Box::pin(async move {
            let r = sqlx::query("UPDATE etl_runs SET curated_batch = NULL WHERE curated_batch = ?")
                .bind(batch)
                .execute(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
            Ok(r.rows_affected())
        })
    }

    fn curated_orphans(
        &self,
        finished_before: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<String>, LoadError>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT curated_batch FROM etl_runs WHERE curated_batch IS NOT NULL \
                 GROUP BY curated_batch HAVING max(finished_at) < ? ORDER BY min(finished_at)",
            )
            .bind(ts_text(finished_before))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(e))
        })
    }

    fn curated_runs<'a>(
        &'a self,
        batch: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LoadError>> {
        Box::pin(self.runs_where("curated_batch = ? ORDER BY started_at, run_id", batch))
    }

    fn run_rows<'a>(
        &'a self,
        table: &'static TableSchema,
        partner: &'a str,
        run_id: &'a str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<DateTime<Utc>>, LoadError>> {
        Box::pin(async move {
            if table.kind != TableKind::Snapshot {
                let holds: bool = sqlx::query_scalar(AssertSqlSafe(sql::run_rows(table)))
                    .bind(partner)
                    .bind(run_id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.db(e))?;
                return Ok(if holds { vec![from] } else { Vec::new() });
            }
            let times: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql::run_rows(table)))
                .bind(partner)
                .bind(run_id)
                .bind(ts_text(from))
                .bind(ts_text(to))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
            Ok(times
                .into_iter()
                .filter_map(|t| parse_ts(Some(t)))
                .collect())
        })
    }

    fn run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>, LoadError>> {
        Box::pin(async move { Ok(self.runs_where("run_id = ?", run_id).await?.pop()) })
    }

    fn runs_since<'a>(
        &'a self,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LoadError>> {
        Box::pin(self.runs_where("started_at >= ? ORDER BY started_at", ts_text(since)))
    }

    fn dump<'a>(
        &'a self,
        table: &'static TableSchema,
    ) -> BoxFuture<'a, Result<TableDump, LoadError>> {
        Box::pin(async move {
            let cols: Vec<_> = table
                .columns
                .iter()
                .filter(|c| c.name != "run_id")
                .collect();
            let list = cols.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {list} FROM {} ORDER BY {}",
                table.name,
                sql::dump_order(table)
            )))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
            let mut dump: TableDump = rows
                .iter()
                .map(|r| {
                    cols.iter()
                        .enumerate()
                        .map(|(i, c)| dump_cell(r, i, c.ty))
                        .collect()
                })
                .collect::<Result<_, _>>()
                .map_err(|e| self.db(e))?;
            // Collations differ between databases: order in one place, byte-wise.
            dump.sort();
            Ok(dump)
        })
    }

    fn describe(&self) -> String {
        self.target.clone()
    }

    fn claim_tick<'a>(
        &'a self,
        pipeline: &'a str,
        scheduled_for: DateTime<Utc>,
        owner: &'a str,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, LoadError>> {
        Box::pin(async move {
            let now = Utc::now().timestamp_millis();
            let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
            let leased: Option<String> = sqlx::query_scalar(
                "INSERT INTO schedule_leases (pipeline, owner, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (pipeline) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE schedule_leases.owner = excluded.owner OR schedule_leases.expires_at < ?4 RETURNING owner",
            )
            .bind(pipeline)
            .bind(owner)
            .bind(now + ttl.as_millis() as i64)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            // Read after the first write, which took the database's write lock (a read
            // first would have to upgrade its lock, and could find the database busy);
            // returning drops the transaction, and the lease with it.
            let newest = self.schema_version(&mut tx).await?;
            crate::check_schema(&self.target, newest, MIGRATIONS)?;
            if leased.is_none() {
                return Ok(false);
            }
            let taken = sqlx::query(
                "INSERT INTO schedule_ticks (pipeline, scheduled_for, owner, claimed_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(pipeline)
            .bind(ts_text(scheduled_for))
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?
            .rows_affected();
            if taken == 0 {
                return Ok(false);
            }
            // The pipeline's scheduled runs left `running` since its previous tick's claim,
            // as abandoned (see PostgreSQL's claim_tick).
            let previous: Option<i64> = sqlx::query_scalar(
                "SELECT claimed_at FROM schedule_ticks WHERE pipeline = ? AND scheduled_for < ? ORDER BY scheduled_for DESC LIMIT 1",
            )
            .bind(pipeline)
            .bind(ts_text(scheduled_for))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            if let Some(since) =
                previous.and_then(|ms| DateTime::from_timestamp_millis(ms - 30_000))
            {
                sqlx::query(
                    "UPDATE etl_runs SET status = 'failed', finished_at = ?, error = ? || run_id || ')' \
                     WHERE pipeline = ? AND trigger = 'schedule' AND status = 'running' AND scheduled_for < ? AND started_at >= ?",
                )
                .bind(ts_text(Utc::now()))
                .bind(sql::ABANDONED)
                .bind(pipeline)
                .bind(ts_text(scheduled_for))
                .bind(ts_text(since))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
            }
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(true)
        })
    }

    fn renew_lease<'a>(
        &'a self,
        pipeline: &'a str,
        owner: &'a str,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, LoadError>> {
        Box::pin(async move {
            let n = sqlx::query(
                "UPDATE schedule_leases SET expires_at = ? WHERE pipeline = ? AND owner = ?",
            )
            .bind(Utc::now().timestamp_millis() + ttl.as_millis() as i64)
            .bind(pipeline)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(e))?
            .rows_affected();
            Ok(n == 1)
        })
    }

    fn release_lease<'a>(
        &'a self,
        pipeline: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM schedule_leases WHERE pipeline = ? AND owner = ?")
                .bind(pipeline)
                .bind(owner)
                .execute(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
            Ok(())
        })
    }

    fn stats<'a>(
        &'a self,
        stat: &'static stats::Stat,
        filters: &'a stats::Filters,
    ) -> BoxFuture<'a, Result<stats::Table, LoadError>> {
        Box::pin(async move {
            let (sql, binds) = stats::query(stat, filters, stats::Dialect::Sqlite);
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in binds {
                q = match b {
                    stats::Bind::Text(t) => q.bind(t),
                    stats::Bind::Ts(t) => q.bind(ts_text(t)),
                    stats::Bind::Date(d) => q.bind(d.to_string()),
                };
            }
            let rows = q.fetch_all(&self.pool).await.map_err(|e| self.db(e))?;
            stats::Table::of(&rows, json_cell).map_err(|e| self.db(e))
        })
    }

    fn shares_schedules(&self) -> bool {
        false
    }
}

/// An `etl_runs` row read with `sql::ETL_RUN_COLUMNS`.
fn record_of(r: &SqliteRow) -> Result<RunRecord, sqlx::Error> {
    Ok(RunRecord {
        run_id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        partner: r.try_get(2)?,
        format: r.try_get(3)?,
        trigger: r.try_get(4)?,
        scheduled_for: parse_ts(r.try_get(5)?),
        started_at: parse_ts(r.try_get(6)?).unwrap_or_default(),
        finished_at: parse_ts(r.try_get(7)?),
        status: r.try_get(8)?,
        rows_loaded: r.try_get(9)?,
        rows_quarantined: r.try_get(10)?,
        bytes: r.try_get(11)?,
        error: r.try_get(12)?,
        manifest: r.try_get(13)?,
        curated_batch: r.try_get(14)?,
    })
}
