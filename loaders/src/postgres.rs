//! PostgreSQL warehouse: per table, COPY (CSV) into a temporary staging table, then one
//! `INSERT … SELECT … ON CONFLICT` merge; every table of a run, its quarantine and its
//! `etl_runs` row in one transaction. Snapshot tables get their day partitions on demand.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::BoxFuture;
use mobiflux_model::schema::QUARANTINE;
use mobiflux_model::{ColType, TableKind, TableSchema, failpoint};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row as _};
use std::str::FromStr;

use crate::cells::{self, Cell, ColRef};
use crate::{
    Latest, LoadError, LoadStats, LoadTx, PipelineInfo, RunRecord, TableDump, TxCounts, Warehouse,
    sql, ts_text,
};
use crate::{rollup, stats};
use polars::prelude::DataFrame;

/// The PostgreSQL migrations, in order (tests rebuild older warehouses from them).
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_files.sql")),
    (
        3,
        include_str!("../migrations/postgres/0003_gateway_calls.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_carpool_journeys.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_schedule_leases.sql"),
    ),
    (6, include_str!("../migrations/postgres/0006_stats.sql")),
    (
        7,
        include_str!("../migrations/postgres/0007_occupancy_heat.sql"),
    ),
    (
        8,
        include_str!("../migrations/postgres/0008_partner_partitions.sql"),
    ),
    (
        9,
        include_str!("../migrations/postgres/0009_latest_objects.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_snapshot_time_index.sql"),
    ),
    (
        11,
        include_str!("../migrations/postgres/0011_rollup_days.sql"),
    ),
    (
        12,
        include_str!("../migrations/postgres/0012_snapshot_times.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres/0013_pending_rollups.sql"),
    ),
    (
        14,
        include_str!("../migrations/postgres/0014_snapshot_key_order.sql"),
    ),
    (
        15,
        include_str!("../migrations/postgres/0015_pending_batches.sql"),
    ),
    (
        16,
        include_str!("../migrations/postgres/0016_curated_batches.sql"),
    ),
];
/// Reference tables partitioned by partner (migration 8): a partner's first load writes a
/// table of its own without an index, builds its primary key at commit and attaches it.
const PARTNER_PARTITIONED: &[&str] = &["charge_points", "parking_facilities"];
/// Serializes migrations across processes (any constant shared by all mobiflux instances).
const MIGRATION_LOCK: i64 = 0x6d6f_6269_666c_7578;
/// COPY data is sent in pieces of about this size.
const COPY_CHUNK: usize = 1 << 20;

/// What an analyst role may read (each under a territory policy, migration 6), besides
/// the `stats_*` views. The hourly rollups are views of two tables each (migration 13),
/// granted with them ([`hourly_tables`]).
const ANALYST_TABLES: &[&str] = &[
    "etl_runs",
    "quarantine",
    "pipelines",
    "analyst_territories",
    "system_info",
    "vehicle_types",
    "stations",
    "station_status",
    "vehicles",
    "pricing_plans",
    "regions",
    "geofencing_zones",
    "charge_points",
    "charge_point_status",
    "parking_facilities",
    "parking_occupancy",
    "carpool_journeys",
    "gateway_calls",
    "fleet_availability_hourly",
    "fleet_availability_daily",
    "fleet_snapshots_hourly",
    "fleet_snapshots_daily",
    "station_occupancy_hourly",
    "station_occupancy_daily",
    "station_last_status",
    "station_occupancy_partner_hourly",
];

/// Pool size of a warehouse opened for one-off commands and tests.
pub const DEFAULT_CONNECTIONS: u32 = 8;

pub struct PostgresWarehouse {
    pool: PgPool,
    target: String,
    /// Day partitions known to exist: loads into them take no lock and run no DDL.
    partitions: Partitions,
}

type Partitions = std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>;

/// Turns Nagle's algorithm off on this process's TCP connections to the warehouse's port.
/// sqlx 0.9.0 stopped setting `TCP_NODELAY` (launchbadge/sqlx#4335; fixed upstream, not
/// released): the last small write of every COPY (its end message) then waits for the
/// server's delayed acknowledgement, 40 ms on Linux, once per COPY. sqlx gives no access
/// to its socket, so the sockets are found by their peer's port. Setting it on another
/// connection to the same port is harmless (it only sends small writes sooner).
fn nodelay(port: u16) {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for fd in fds.flatten() {
        let Some(fd) = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at most `len`
        // bytes into it and fails harmlessly on descriptors that are not sockets.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let named =
            unsafe { libc::getpeername(fd, (&raw mut addr).cast::<libc::sockaddr>(), &mut len) };
        if named != 0 {
            continue;
        }
        let peer_port = match addr.ss_family as libc::c_int {
            // SAFETY: the family says which address structure the storage holds.
            libc::AF_INET => {
                u16::from_be(unsafe { (*(&raw const addr).cast::<libc::sockaddr_in>()).sin_port })
            }
            libc::AF_INET6 => {
                u16::from_be(unsafe { (*(&raw const addr).cast::<libc::sockaddr_in6>()).sin6_port })
            }
            _ => continue,
        };
        if peer_port == port {
            let on: libc::c_int = 1;
            // SAFETY: a valid option value and length for TCP_NODELAY on a TCP socket.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&raw const on).cast::<libc::c_void>(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

/// Idle for this long, a pooled connection is pinged before use.
const IDLE_PING: Duration = Duration::from_secs(1);

impl PostgresWarehouse {
    /// The `etl_runs` rows a condition (and order) selects, its one parameter bound to
    /// `value`.
    async fn runs_where<'a, T>(&self, cond: &str, value: T) -> Result<Vec<RunRecord>, LoadError>
    where
        T: sqlx::Encode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'a,
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

    pub async fn connect(url: &str) -> Result<Self, LoadError> {
        Self::connect_sized(url, DEFAULT_CONNECTIONS).await
    }

    /// Connects with a pool of at most `connections` (a scheduler sizes it to its runs at once).
    pub async fn connect_sized(url: &str, connections: u32) -> Result<Self, LoadError> {
        let target = mobiflux_model::redact::url(url, &[]);
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| LoadError::BadUrl {
                url: target.clone(),
                message: e.to_string(),
            })?
            // Bulk merges take seconds by design: not worth a warning each.
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let port = opts.get_port();
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .acquire_timeout(Duration::from_secs(15))
            // sqlx pings a connection when it comes back to the pool; pinging it again when
            // it is taken is worth a round trip only after it sat idle a while (a scheduler's
            // runs take and return connections every few milliseconds: ~1 round trip in 8).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |_, _| {
                Box::pin(async move {
                    nodelay(port);
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| LoadError::Database {
                target: target.clone(),
                message: format!("cannot connect: {e}"),
            })?;
        Ok(PostgresWarehouse {
            pool,
            target,
            partitions: Partitions::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The newest migration applied to the database (the claim, the fold and the closing
    /// of days read it inside their own statements).
    async fn schema_version<'e>(
        &self,
        e: impl sqlx::PgExecutor<'e>,
    ) -> Result<Option<i32>, LoadError> {
        sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
            .fetch_one(e)
            .await
            .map_err(|e| self.db(e))
    }

    /// Creates the role if needed (LOGIN, read-only), lets it read the analysts' tables and
    /// every `stats_*` view, and adds the territories it may see (row-level security, see
    /// migration 6). Day partitions are not granted: an analyst reads snapshots through
    /// their parent table, where the policies apply.
    pub async fn grant_analyst(
        &self,
        role: &str,
        territories: &[String],
        password: Option<&str>,
    ) -> Result<(), LoadError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        let mut statements: Vec<String> = Vec::new();
        let quoted: String = sqlx::query_scalar("SELECT quote_ident($1)")
            .bind(role)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        if exists.is_none() {
            statements.push(format!(
                "CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
            ));
        }
        if let Some(p) = password {
            let literal: String = sqlx::query_scalar("SELECT quote_literal($1)")
                .bind(p)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
            statements.push(format!("ALTER ROLE {quoted} PASSWORD {literal}"));
        }
        statements.push(format!("GRANT USAGE ON SCHEMA public TO {quoted}"));
        // The schema's version, so `mobiflux stats` and `serve` can check it without writing.
        statements.push(format!("GRANT SELECT ON schema_migrations TO {quoted}"));
        let views: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(viewname) FROM pg_views WHERE schemaname = 'public' \
             AND (viewname LIKE 'stats\\_%' OR viewname = 'partner_territories')",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        for t in ANALYST_TABLES
            .iter()
            .map(|t| t.to_string())
            .chain(hourly_tables())
            .chain(views)
        {
            statements.push(format!("GRANT SELECT ON {t} TO {quoted}"));
        }
        for stmt in statements {
            sqlx::raw_sql(AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
        }
        for t in territories {
            sqlx::query("INSERT INTO analyst_territories (role, territory) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(role)
                .bind(t)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))
    }

    fn db(&self, e: sqlx::Error) -> LoadError {
        LoadError::Database {
            target: self.target.clone(),
            message: e.to_string(),
        }
    }
}

/// PostgreSQL's epoch (2000-01-01) in Unix microseconds and days.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Appends one field in PostgreSQL's binary COPY encoding (length, then big-endian value).
fn push_binary(buf: &mut Vec<u8>, cell: Cell) {
    match cell {
        Cell::Null => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        Cell::Text(s) => {
            // PostgreSQL text cannot hold NUL: drop it (the raw zone keeps the original).
            if s.as_bytes().contains(&0) {
                let clean: String = s.chars().filter(|c| *c != '\0').collect();
                buf.extend_from_slice(&(clean.len() as i32).to_be_bytes());
                buf.extend_from_slice(clean.as_bytes());
            } else {
                buf.extend_from_slice(&(s.len() as i32).to_be_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
        }
        Cell::Int(i) => {
            buf.extend_from_slice(&8i32.to_be_bytes());
            buf.extend_from_slice(&i.to_be_bytes());
        }
        Cell::Float(f) => {
            buf.extend_from_slice(&8i32.to_be_bytes());
            buf.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Cell::Bool(b) => {
            buf.extend_from_slice(&1i32.to_be_bytes());
            buf.push(b as u8);
        }
        Cell::Ts(us) => {
            buf.extend_from_slice(&8i32.to_be_bytes());
            buf.extend_from_slice(&(us - PG_EPOCH_MICROS).to_be_bytes());
        }
        Cell::Date(d) => {
            buf.extend_from_slice(&4i32.to_be_bytes());
            buf.extend_from_slice(&(d - PG_EPOCH_DAYS).to_be_bytes());
        }
    }
}

/// Rows encoded at a time by [`encode_columns`].
const COPY_ROWS: usize = 1024;

/// Appends rows `lo..hi` in binary COPY form, column by column: every row's size first,
/// then each column written at its rows' cursors, one typed loop per column instead of a
/// dispatch per cell. Every column must have a single array, text without NUL (checked by
/// the caller).
fn encode_columns(
    buf: &mut Vec<u8>,
    cols: &[ColRef<'_>],
    lo: usize,
    hi: usize,
    at: &mut Vec<usize>,
) {
    // Whether value `i` of a primitive array is present.
    macro_rules! present {
        ($a:expr, $i:expr) => {
            $a.validity().is_none_or(|v| v.get_bit($i))
        };
    }
    at.clear();
    at.resize(hi - lo, 2);
    for c in cols {
        let (fixed, validity) = match c {
            ColRef::Text(t) => {
                let a = t.single().expect("checked by the caller");
                for (k, i) in (lo..hi).enumerate() {
                    at[k] += 4 + a.get(i).map_or(0, str::len);
                }
                continue;
            }
            ColRef::Int(c) | ColRef::Ts(c) => (8, c.single().and_then(|a| a.validity())),
            ColRef::Float(c) => (8, c.single().and_then(|a| a.validity())),
            ColRef::Date(c) => (4, c.single().and_then(|a| a.validity())),
            ColRef::Bool(c) => (1, c.single().and_then(|a| a.validity())),
        };
        for (k, i) in (lo..hi).enumerate() {
            at[k] += 4 + if validity.is_none_or(|v| v.get_bit(i)) {
                fixed
            } else {
                0
            };
        }
    }
    let mut end = buf.len();
    for size in at.iter_mut() {
        let start = end;
        end += *size;
        *size = start;
    }
    buf.resize(end, 0);
    let width = (cols.len() as i16).to_be_bytes();
    for p in at.iter_mut() {
        buf[*p..*p + 2].copy_from_slice(&width);
        *p += 2;
    }
    let null = (-1i32).to_be_bytes();
    // A field at a row's cursor: its length (or -1 for null), then its bytes.
    let mut put = |p: &mut usize, bytes: Option<&[u8]>| {
        let Some(bytes) = bytes else {
            buf[*p..*p + 4].copy_from_slice(&null);
            *p += 4;
            return;
        };
        buf[*p..*p + 4].copy_from_slice(&(bytes.len() as i32).to_be_bytes());
        buf[*p + 4..*p + 4 + bytes.len()].copy_from_slice(bytes);
        *p += 4 + bytes.len();
    };
    // A fixed-size column: each present value encoded by `$enc`.
    macro_rules! fixed {
        ($c:expr, |$x:ident| $enc:expr) => {{
            let a = $c.single().expect("checked by the caller");
            for (k, i) in (lo..hi).enumerate() {
                let v = present!(a, i).then(|| {
                    let $x = a.value(i);
                    $enc
                });
                put(&mut at[k], v.as_ref().map(|b| &b[..]));
            }
        }};
    }
    for c in cols {
        match c {
            ColRef::Text(t) => {
                let a = t.single().expect("checked by the caller");
                for (k, i) in (lo..hi).enumerate() {
                    let v = a.get(i).map(str::as_bytes);
                    put(&mut at[k], v);
                }
            }
            ColRef::Int(c) => fixed!(c, |x| x.to_be_bytes()),
            ColRef::Ts(c) => fixed!(c, |x| (x - PG_EPOCH_MICROS).to_be_bytes()),
            ColRef::Float(c) => fixed!(c, |x| x.to_bits().to_be_bytes()),
            ColRef::Date(c) => fixed!(c, |x| (x - PG_EPOCH_DAYS).to_be_bytes()),
            ColRef::Bool(c) => fixed!(c, |x| [x as u8]),
        }
    }
}

/// Copies a frame into a table (COPY … FROM STDIN, binary format: no text formatting on
/// our side, no parsing on the server's).
async fn copy_frame(
    conn: &mut sqlx::PgConnection,
    target: &str,
    schema: &'static TableSchema,
    cols: &[ColRef<'_>],
    height: usize,
) -> Result<(), sqlx::Error> {
    let stmt = format!(
        "COPY {target} ({}) FROM STDIN WITH (FORMAT binary)",
        sql::column_list(schema)
    );
    let mut copy = conn.copy_in_raw(&stmt).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(COPY_CHUNK + 64 * 1024);
    buf.extend_from_slice(COPY_SIGNATURE);
    buf.extend_from_slice(&0u32.to_be_bytes()); // flags
    buf.extend_from_slice(&0u32.to_be_bytes()); // header extension length
    let width = (cols.len() as i16).to_be_bytes();
    let columnar = cols.iter().all(|c| match c {
        ColRef::Text(t) => t.single().is_some_and(cells::nul_free),
        ColRef::Int(c) | ColRef::Ts(c) => c.single().is_some(),
        ColRef::Float(c) => c.single().is_some(),
        ColRef::Bool(c) => c.single().is_some(),
        ColRef::Date(c) => c.single().is_some(),
    });
    let mut at = Vec::with_capacity(COPY_ROWS);
    for lo in (0..height).step_by(COPY_ROWS) {
        let hi = (lo + COPY_ROWS).min(height);
        if columnar {
            encode_columns(&mut buf, cols, lo, hi, &mut at);
        } else {
            for i in lo..hi {
                buf.extend_from_slice(&width);
                for c in cols {
                    push_binary(&mut buf, c.get(i));
                }
            }
        }
        if buf.len() >= COPY_CHUNK {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(buf.as_slice()).await?;
    copy.finish().await?;
    Ok(())
}

/// Day partitions (`{table}_pYYYYMMDD`) for every day present in the frame. A partition
/// seen before (by this process, or in the catalog) costs nothing; a missing one is created
/// under a per-table lock held to commit (once a day per table), so loads of different
/// partners into an existing day never wait for each other.
async fn ensure_partitions(
    conn: &mut sqlx::PgConnection,
    known: &Partitions,
    schema: &'static TableSchema,
    cols: &[ColRef<'_>],
    height: usize,
) -> Result<(), sqlx::Error> {
    let idx = schema
        .columns
        .iter()
        .position(|c| c.name == "observed_at")
        .expect("snapshot tables have observed_at");
    let days: BTreeSet<chrono::NaiveDate> = (0..height)
        .filter_map(|i| match cols[idx].get(i) {
            Cell::Ts(us) => Utc.timestamp_micros(us).single().map(|t| t.date_naive()),
            _ => None,
        })
        .collect();
    let mut missing = Vec::new();
    for day in days {
        let part = day_partition(schema, day);
        if known.lock().expect("not poisoned").contains(&part) {
            continue;
        }
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&part)
            .fetch_one(&mut *conn)
            .await?;
        if exists {
            known.lock().expect("not poisoned").insert(part);
        } else {
            missing.push(day);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    // Two loaders creating the same partition would race: one lock per table, held to commit.
    xact_lock(conn, &partition_lock(schema)).await?;
    for day in missing {
        create_day_partition(conn, schema, day).await?;
    }
    Ok(())
}

/// The name of a snapshot table's partition for a (UTC) day.
fn day_partition(schema: &TableSchema, day: chrono::NaiveDate) -> String {
    format!("{}_p{}", schema.name, day.format("%Y%m%d"))
}

/// Takes an advisory lock, by name (`hashtext`), held to the transaction's end.
async fn xact_lock(conn: &mut sqlx::PgConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// The advisory lock under which a snapshot table's day partitions are made.
fn partition_lock(schema: &TableSchema) -> String {
    format!("mobiflux.partition.{}", schema.name)
}

/// `{table}_pYYYYMMDD`, the day's partition of a snapshot table, unless it exists (the
/// caller holds the table's partition lock).
async fn create_day_partition(
    conn: &mut sqlx::PgConnection,
    schema: &TableSchema,
    day: chrono::NaiveDate,
) -> Result<(), sqlx::Error> {
    let Some(next) = day.succ_opt() else {
        return Ok(());
    };
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
        day_partition(schema, day),
        schema.name,
    );
    sqlx::raw_sql(AssertSqlSafe(ddl)).execute(conn).await?;
    Ok(())
}

/// The `etl_runs` upsert of a run record, its columns bound from `$1` (`bind_run!`).
fn upsert_run_sql() -> String {
    format!(
        "INSERT INTO etl_runs ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) {}",
        sql::ETL_RUN_COLUMNS,
        sql::ETL_RUN_UPSERT
    )
}

/// A query's `$1` to `$15`: the run record's columns, in `sql::ETL_RUN_COLUMNS` order (for
/// `query` and `query_as` alike).
macro_rules! bind_run {
    ($q:expr, $r:expr) => {{
        let r: &RunRecord = $r;
        $q.bind(&r.run_id)
            .bind(&r.pipeline)
            .bind(&r.partner)
            .bind(&r.format)
            .bind(&r.trigger)
            .bind(r.scheduled_for)
            .bind(r.started_at)
            .bind(r.finished_at)
            .bind(&r.status)
            .bind(r.rows_loaded)
            .bind(r.rows_quarantined)
            .bind(r.bytes)
            .bind(&r.error)
            .bind(&r.manifest)
            .bind(&r.curated_batch)
    }};
}

async fn upsert_run(conn: &mut sqlx::PgConnection, r: &RunRecord) -> Result<(), sqlx::Error> {
    bind_run!(sqlx::query(AssertSqlSafe(upsert_run_sql())), r)
        .execute(conn)
        .await?;
    Ok(())
}

/// A cell of a statistics row as JSON, by its PostgreSQL type.
fn json_cell(row: &PgRow, i: usize) -> Result<serde_json::Value, sqlx::Error> {
    use serde_json::Value;
    use sqlx::{TypeInfo as _, ValueRef as _};
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().name().to_string();
    Ok(match ty.as_str() {
        "INT8" => row.try_get::<i64, _>(i)?.into(),
        "INT4" => row.try_get::<i32, _>(i)?.into(),
        "INT2" => row.try_get::<i16, _>(i)?.into(),
        "FLOAT8" => serde_json::Number::from_f64(row.try_get::<f64, _>(i)?)
            .map_or(Value::Null, Value::Number),
        "FLOAT4" => serde_json::Number::from_f64(row.try_get::<f32, _>(i)? as f64)
            .map_or(Value::Null, Value::Number),
        "BOOL" => row.try_get::<bool, _>(i)?.into(),
        "TIMESTAMPTZ" => ts_text(row.try_get::<DateTime<Utc>, _>(i)?).into(),
        "DATE" => row.try_get::<chrono::NaiveDate, _>(i)?.to_string().into(),
        _ => row.try_get::<String, _>(i)?.into(),
    })
}

fn dump_cell(row: &PgRow, i: usize, ty: ColType) -> Result<Option<String>, sqlx::Error> {
    Ok(match ty {
        ColType::Text => row.try_get::<Option<String>, _>(i)?,
        ColType::Int => row.try_get::<Option<i64>, _>(i)?.map(|v| v.to_string()),
        ColType::Float => row.try_get::<Option<f64>, _>(i)?.map(|v| v.to_string()),
        ColType::Bool => row.try_get::<Option<bool>, _>(i)?.map(|v| v.to_string()),
        ColType::Timestamp => row.try_get::<Option<DateTime<Utc>>, _>(i)?.map(ts_text),
        ColType::Date => row
            .try_get::<Option<chrono::NaiveDate>, _>(i)?
            .map(|d| d.to_string()),
    })
}

/// A PostgreSQL load: each table's chunks are COPYed into a temporary staging table; the
/// merges into the real tables run at commit, in load order.
struct PgLoad {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    partitions: Partitions,
    run: RunRecord,
    /// Tables with a staging table, merged at commit.
    staged: Vec<&'static TableSchema>,
    /// Tables locked for this partner, and where their rows may be COPYed straight in
    /// (`None`: staged and merged at commit).
    locked: Vec<(&'static str, Option<String>)>,
    /// A partner's first partitions, written without an index: (table, partition, partner
    /// as a literal); their keys are built and they are attached at commit.
    fresh: Vec<(&'static TableSchema, String, String)>,
    /// [`DAYS_LOCK`] held, shared.
    days_shared: bool,
    counts: TxCounts,
}

fn to_utc(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// `INSERT … SELECT … FROM UNNEST(…)` of every row of a rollup delta, its arrays bound from
/// `$first` on; `only_if` (a condition, or nothing) decides whether its rows go in. Hourly
/// rows are appended to `{table}_pending`, one row of arrays per partner (migrations 13 and
/// 15; [`fold_sql`] adds them to their keys later); daily rows are added to theirs (`ON
/// CONFLICT … DO UPDATE SET s = s + excluded.s`), and only for days already closed
/// (`rollup_days`): an open day is summed from the hourly rows.
fn delta_insert(d: &rollup::Delta, first: usize, only_if: Option<&str>) -> String {
    let t = d.table;
    let names = t.columns();
    let mut arrays = Vec::new();
    for (i, (_, ty)) in t.keys.iter().enumerate() {
        arrays.push(format!(
            "${}::{}",
            first + i,
            match ty {
                rollup::KeyType::Text => "text[]",
                rollup::KeyType::Ts => "timestamptz[]",
            }
        ));
    }
    for j in 0..t.sums.len() {
        arrays.push(format!("${}::float8[]", first + t.keys.len() + j));
    }
    let mut conditions: Vec<&str> = only_if.into_iter().collect();
    if t.daily_of.is_some() {
        conditions.push(DAY_CLOSED);
    }
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conditions.join(" AND ")),
    };
    if t.daily_of.is_none() {
        let batched = pending_columns(t);
        let aggregates: Vec<String> = batched
            .iter()
            .map(|c| format!("array_agg(u.{c})"))
            .collect();
        return format!(
            "INSERT INTO {}_pending (partner, first_period, {}) SELECT u.partner, min(u.period), {} \
             FROM UNNEST({}) AS u({}){filter} GROUP BY u.partner",
            t.name,
            batched.join(", "),
            aggregates.join(", "),
            arrays.join(", "),
            names.join(", "),
        );
    }
    format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) AS u({}){filter} {}",
        t.name,
        names.join(", "),
        arrays.join(", "),
        names.join(", "),
        t.adding_into(t.name)
    )
}

/// The columns of an hourly table that its pending rows hold as arrays (migration 15): all
/// but `partner`, one row of arrays per partner and load.
fn pending_columns(hourly: &rollup::RollupTable) -> Vec<&'static str> {
    hourly
        .columns()
        .into_iter()
        .filter(|c| *c != "partner")
        .collect()
}

/// The relations behind the hourly rollup views (migrations 13 and 15): `{name}_folded`,
/// `{name}_pending` and its rows, `{name}_pending_rows`, of each.
fn hourly_tables() -> impl Iterator<Item = String> {
    rollup::HOURLY.iter().flat_map(|t| {
        [
            format!("{}_folded", t.name),
            format!("{}_pending", t.name),
            format!("{}_pending_rows", t.name),
        ]
    })
}

/// Moves an hourly table's pending rows (migrations 13 and 15: rows of arrays) into its
/// folded rows, summed per key, in one statement: rows appended by loads that commit
/// meanwhile stay for the next fold. It unnests the rows it deletes as `{name}_pending_rows`
/// does (a view cannot be deleted from).
fn fold_sql(hourly: &rollup::RollupTable) -> String {
    let names = hourly.columns().join(", ");
    let batched = pending_columns(hourly);
    let keys: Vec<String> = hourly
        .key_names()
        .iter()
        .map(|k| match *k {
            "partner" => "m.partner".to_string(),
            k => format!("u.{k}"),
        })
        .collect();
    let sums: Vec<String> = hourly.sums.iter().map(|s| format!("sum(u.{s})")).collect();
    let arrays: Vec<String> = batched.iter().map(|c| format!("m.{c}")).collect();
    let folded = format!("{}_folded", hourly.name);
    format!(
        "WITH moved AS (DELETE FROM {}_pending RETURNING *) \
         INSERT INTO {folded} ({names}) SELECT {}, {} FROM moved m \
         CROSS JOIN LATERAL unnest({}) AS u({}) GROUP BY {} {}",
        hourly.name,
        keys.join(", "),
        sums.join(", "),
        arrays.join(", "),
        batched.join(", "),
        keys.join(", "),
        hourly.adding_into(&folded)
    )
}

/// A daily delta row's day is closed (migration 11): loads read the mark under
/// [`DAYS_LOCK`], shared, so a day cannot close between their reading it and their commit.
const DAY_CLOSED: &str = "u.period < (SELECT closed_before FROM rollup_days)";

/// The advisory lock (`hashtext`) loads that add to rollups hold shared, and
/// [`PostgresWarehouse::close_days`] exclusive.
const DAYS_LOCK: &str = "mobiflux.rollup.days";

/// The advisory lock (`hashtext`) a fold of the pending rollup rows holds: one fold at a
/// time across instances (two would add to the same keys in different orders).
const FOLD_LOCK: &str = "mobiflux.rollup.fold";

/// Writes the days in `[$1, $2)` of a daily table from its hourly rows
/// (`RollupTable::daily_of`), replacing what the table held for them.
fn close_sql(daily: &rollup::RollupTable) -> String {
    let hourly = daily.daily_of.expect("a daily table");
    let names = daily.columns();
    let keys: Vec<String> = daily
        .keys
        .iter()
        .map(|(k, _)| match *k {
            "period" => "date_trunc('day', period, 'UTC')".to_string(),
            k => k.to_string(),
        })
        .collect();
    let sums: Vec<String> = daily.sums.iter().map(|s| format!("sum({s})")).collect();
    let sets: Vec<String> = daily
        .sums
        .iter()
        .map(|s| format!("{s} = EXCLUDED.{s}"))
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT {}, {} FROM {} WHERE period >= $1 AND period < $2 GROUP BY {} \
         ON CONFLICT ({}) DO UPDATE SET {}",
        daily.name,
        names.join(", "),
        keys.join(", "),
        sums.join(", "),
        hourly.name,
        (1..=keys.len())
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        daily.key_names().join(", "),
        sets.join(", ")
    )
}

/// Binds each delta's key and sum arrays, in order.
fn bind_deltas<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    deltas: &[&rollup::Delta],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for d in deltas {
        let t = d.table;
        for (i, (_, ty)) in t.keys.iter().enumerate() {
            let column = d.rows.keys().map(|k| &k[i]);
            q = match ty {
                rollup::KeyType::Text => q.bind(
                    column
                        .map(|k| match k {
                            rollup::Key::Text(s) => s.clone(),
                            rollup::Key::Ts(_) => String::new(),
                        })
                        .collect::<Vec<_>>(),
                ),
                rollup::KeyType::Ts => q.bind(
                    column
                        .map(|k| match k {
                            rollup::Key::Ts(t) => to_utc(*t),
                            rollup::Key::Text(_) => DateTime::<Utc>::default(),
                        })
                        .collect::<Vec<_>>(),
                ),
            };
        }
        for j in 0..t.sums.len() {
            q = q.bind(d.rows.values().map(|v| v[j]).collect::<Vec<f64>>());
        }
    }
    q
}

/// Whether a snapshot table's times are kept in `snapshot_times` (migration 12): the tables
/// every GBFS poll writes (the rollups' tables), whose time index was a B-tree entry per row.
fn catalogued(schema: &TableSchema) -> bool {
    rollup::feeds(schema)
}

/// Which of a frame's snapshot times (`$2`) a partner (`$1`) has stored already: one index
/// probe per time, of `snapshot_times` (migration 12) or of the table's `(observed_at,
/// partner)` index (migration 10), however many rows the partner has loaded before.
fn probe_sql(schema: &TableSchema) -> String {
    match catalogued(schema) {
        true => format!(
            "SELECT t FROM unnest($2::timestamptz[]) AS t WHERE EXISTS (SELECT 1 FROM snapshot_times \
             WHERE tbl = '{}' AND partner = $1 AND observed_at = t)",
            schema.name
        ),
        false => format!(
            "SELECT t FROM unnest($2::timestamptz[]) AS t \
             WHERE EXISTS (SELECT 1 FROM {} WHERE observed_at = t AND partner = $1)",
            schema.name
        ),
    }
}

/// Records a catalogued frame's snapshot times (`$2`) for its partner (`$1`), the new ones:
/// a data-modifying `WITH` item, beside the probe in the same statement (which reads the
/// times as they were before it). Its rows commit or roll back with the load's.
fn record_sql(schema: &TableSchema) -> String {
    format!(
        "INSERT INTO snapshot_times (tbl, partner, observed_at) \
         SELECT '{}', $1, t FROM unnest($2::timestamptz[]) AS t ON CONFLICT DO NOTHING",
        schema.name
    )
}

/// The snapshot check (`probe_sql`, on `$1` and `$2`), the record of the times and the fleet
/// rollup deltas in one statement: the deltas go in only if none of the times was stored.
/// Returns the times stored before.
async fn fleet_unless_stored(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    schema: &TableSchema,
    partner: &str,
    at: &[DateTime<Utc>],
    deltas: &[rollup::Delta],
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let deltas: Vec<&rollup::Delta> = deltas.iter().filter(|d| !d.rows.is_empty()).collect();
    let mut first = 3;
    let mut ctes = vec![
        format!("stored AS ({})", probe_sql(schema)),
        format!("recorded AS ({})", record_sql(schema)),
    ];
    for (i, d) in deltas.iter().enumerate() {
        let insert = delta_insert(d, first, Some("NOT EXISTS (SELECT 1 FROM stored)"));
        ctes.push(format!("d{i} AS ({insert})"));
        first += d.table.keys.len() + d.table.sums.len();
    }
    let stmt = format!("WITH {} SELECT t FROM stored", ctes.join(", "));
    let q = sqlx::query(AssertSqlSafe(stmt)).bind(partner).bind(at);
    let rows = bind_deltas(q, &deltas).fetch_all(&mut **tx).await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// The last sample of each station (`station_last_status`) whose sample changed, by partner,
/// bound from `$1` to `$6`.
const LAST_STATUS_UPSERT: &str = "INSERT INTO station_last_status (partner, station_id, observed_at, was_empty, was_full, was_renting) \
     SELECT $1, * FROM UNNEST($2::text[], $3::timestamptz[], $4::bool[], $5::bool[], $6::bool[]) \
     ON CONFLICT (partner, station_id) DO UPDATE SET observed_at = EXCLUDED.observed_at, \
     was_empty = EXCLUDED.was_empty, was_full = EXCLUDED.was_full, was_renting = EXCLUDED.was_renting";

/// The rows of rollup deltas added in one statement (each delta an `INSERT` of its own in a
/// `WITH` clause, the last one the statement's), with the stations' changed last samples
/// when given: one round trip per frame, not per table.
async fn add_deltas(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    deltas: &[rollup::Delta],
    last_status: Option<(&str, &[(String, rollup::Sample)])>,
) -> Result<(), sqlx::Error> {
    let deltas: Vec<&rollup::Delta> = deltas.iter().filter(|d| !d.rows.is_empty()).collect();
    let last_status = last_status.filter(|(_, changed)| !changed.is_empty());
    let mut first = 1;
    let mut with = Vec::new();
    if last_status.is_some() {
        with.push(LAST_STATUS_UPSERT.to_string());
        first += 6;
    }
    for d in &deltas {
        with.push(delta_insert(d, first, None));
        first += d.table.keys.len() + d.table.sums.len();
    }
    let Some(stmt) = with.pop() else {
        return Ok(());
    };
    let stmt = match with.is_empty() {
        true => stmt,
        false => {
            let ctes: Vec<String> = with
                .iter()
                .enumerate()
                .map(|(i, s)| format!("d{i} AS ({s})"))
                .collect();
            format!("WITH {} {stmt}", ctes.join(", "))
        }
    };
    let mut q = sqlx::query(AssertSqlSafe(stmt));
    if let Some((partner, changed)) = last_status {
        q = q
            .bind(partner)
            .bind(changed.iter().map(|c| c.0.as_str()).collect::<Vec<_>>())
            .bind(
                changed
                    .iter()
                    .map(|c| to_utc(c.1.observed_at))
                    .collect::<Vec<_>>(),
            )
            .bind(changed.iter().map(|c| c.1.empty).collect::<Vec<_>>())
            .bind(changed.iter().map(|c| c.1.full).collect::<Vec<_>>())
            .bind(changed.iter().map(|c| c.1.renting).collect::<Vec<_>>());
    }
    bind_deltas(q, &deltas).execute(&mut **tx).await?;
    Ok(())
}

/// The time range of a snapshot frame (UTC microseconds).
fn observed_range(
    schema: &'static TableSchema,
    cols: &[ColRef<'_>],
    height: usize,
) -> Option<(i64, i64)> {
    let idx = schema
        .columns
        .iter()
        .position(|c| c.name == "observed_at")?;
    let mut range: Option<(i64, i64)> = None;
    for i in 0..height {
        if let Cell::Ts(t) = cols[idx].get(i) {
            range = Some(match range {
                Some((lo, hi)) => (lo.min(t), hi.max(t)),
                None => (t, t),
            });
        }
    }
    range
}

/// The advisory lock a load of a partner's rows into a table holds to commit (`hashtext`).
fn load_lock(schema: &TableSchema, partner: &str) -> String {
    format!("mobiflux.load.{}.{partner}", schema.name)
}

impl PgLoad {
    /// Locks the table for this partner (held to commit), once per load. For a reference
    /// table, also says where its rows may be COPYed straight in: the partner has no row
    /// yet (the table, or the partner's new partition). `None` otherwise.
    async fn lock(&mut self, schema: &'static TableSchema) -> Result<Option<String>, sqlx::Error> {
        if let Some((_, d)) = self.locked.iter().find(|(t, _)| *t == schema.name) {
            return Ok(d.clone());
        }
        let partner = self.run.partner.clone();
        xact_lock(&mut self.tx, &load_lock(schema, &partner)).await?;
        let target = match schema.kind {
            TableKind::Static => match self.fresh_partition(schema, &partner).await? {
                Some(part) => Some(part),
                None => {
                    let empty: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT NOT EXISTS (SELECT 1 FROM {} WHERE partner = $1)",
                        schema.name
                    )))
                    .bind(&partner)
                    .fetch_one(&mut *self.tx)
                    .await?;
                    empty.then(|| schema.name.to_string())
                }
            },
            _ => None,
        };
        self.locked.push((schema.name, target.clone()));
        Ok(target)
    }

    /// Whether this chunk can be COPYed straight into its table: no stored row of the
    /// partner can collide with it. Reference tables: the partner has no row yet.
    /// Snapshots: none at the chunk's snapshot times (`stored`, when the rollups checked
    /// each of them already; else none in the chunk's time range).
    /// Keys within a run are unique (transforms refuse repeats), so a direct COPY never
    /// violates the primary key, and a load run again takes the merge path.
    /// Returns the table to COPY into, or `None` when the chunk is staged and merged.
    /// A table partitioned by partner whose partner has no partition yet gets a new table,
    /// without index, attached at commit (`attach_fresh`).
    async fn direct(
        &mut self,
        schema: &'static TableSchema,
        cols: &[ColRef<'_>],
        height: usize,
        stored: Option<bool>,
    ) -> Result<Option<String>, sqlx::Error> {
        let static_direct = self.lock(schema).await?;
        match schema.kind {
            TableKind::Static => Ok(static_direct.filter(|_| !self.staged.contains(&schema))),
            TableKind::Snapshot => {
                let taken = match stored {
                    Some(any) => any,
                    None => {
                        let Some((lo, hi)) = observed_range(schema, cols, height) else {
                            return Ok(None);
                        };
                        sqlx::query_scalar(AssertSqlSafe(format!(
                            "SELECT EXISTS (SELECT 1 FROM {} WHERE partner = $1 AND observed_at BETWEEN $2 AND $3)",
                            schema.name
                        )))
                        .bind(&self.run.partner)
                        .bind(to_utc(lo))
                        .bind(to_utc(hi))
                        .fetch_one(&mut *self.tx)
                        .await?
                    }
                };
                Ok((!taken).then(|| schema.name.to_string()))
            }
            TableKind::PerRun => Ok(None),
        }
    }

    /// Of a reference table partitioned by partner whose partner has no partition yet: a
    /// new table, without index, under the partition's name, where the partner's rows go
    /// (it becomes the partition at commit, `attach_fresh`). `None` for any other table or
    /// when the partition exists.
    async fn fresh_partition(
        &mut self,
        schema: &'static TableSchema,
        partner: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        if schema.kind != TableKind::Static || !PARTNER_PARTITIONED.contains(&schema.name) {
            return Ok(None);
        }
        let (part, exists, literal): (String, bool, String) = sqlx::query_as(
            "SELECT p, to_regclass(p) IS NOT NULL, quote_literal($2) \
             FROM mobiflux_partner_partition($1, $2) AS p",
        )
        .bind(schema.name)
        .bind(partner)
        .fetch_one(&mut *self.tx)
        .await?;
        if exists {
            return Ok(None);
        }
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE {part} (LIKE {t} INCLUDING DEFAULTS, CONSTRAINT {part}_partner CHECK (partner = {literal}))",
            t = schema.name
        )))
        .execute(&mut *self.tx)
        .await?;
        self.fresh.push((schema, part.clone(), literal));
        Ok(Some(part))
    }

    /// The partner's new partitions: primary key built in one sorted pass, then attached
    /// (their check constraint spares PostgreSQL the scan that proves the bound).
    async fn attach_fresh(&mut self) -> Result<(), (&'static str, sqlx::Error)> {
        for (schema, part, literal) in std::mem::take(&mut self.fresh) {
            let ddl = format!(
                "ALTER TABLE {part} ADD PRIMARY KEY ({key}); \
                 ALTER TABLE {t} ATTACH PARTITION {part} FOR VALUES IN ({literal})",
                key = schema.key.join(", "),
                t = schema.name
            );
            sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(&mut *self.tx)
                .await
                .map_err(|e| (schema.name, e))?;
        }
        Ok(())
    }
}

impl PgLoad {
    /// Of a snapshot frame, before its rows go in: which snapshots the warehouse already
    /// held (`stale_snapshots`, for the curated zone), and what the new ones change in the
    /// rollups (`rollup.rs`). Returns whether any of the frame's snapshot times was stored
    /// already, when they were all checked (`None` for a frame of too many to check).
    async fn roll_up(
        &mut self,
        schema: &'static TableSchema,
        cols: &[ColRef<'_>],
        height: usize,
    ) -> Result<Option<bool>, sqlx::Error> {
        let partner = self.run.partner.clone();
        let observed = rollup::observed(schema, cols, height);
        if observed.len() > crate::SNAPSHOT_CHECK_MAX && !rollup::feeds(schema) {
            return Ok(None);
        }
        if rollup::feeds(schema) && !self.days_shared {
            // A load that did not name its tables up front. The closing of days never waits
            // for a load (it only tries its lock), so taking this after a load lock cannot
            // deadlock.
            sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtext($1))")
                .bind(DAYS_LOCK)
                .execute(&mut *self.tx)
                .await?;
            self.days_shared = true;
        }
        let at: Vec<DateTime<Utc>> = observed.iter().map(|t| to_utc(*t)).collect();
        let micros = |stored: Vec<DateTime<Utc>>| -> Vec<i64> {
            stored.iter().map(|t| t.timestamp_micros()).collect()
        };
        if schema.name == "vehicles" {
            // The check and the rollups in one statement: the deltas assume no time of the
            // frame is stored yet (a poll's new snapshot), and are added only if so. When some
            // is, they are recomputed for the fresh times and added by a second statement.
            let all = |_: i64| true;
            let optimistic = rollup::fleet(schema, cols, height, &all);
            let stored = micros(
                fleet_unless_stored(&mut self.tx, schema, &partner, &at, &optimistic).await?,
            );
            let fresh = self.counts.fresh_snapshots(schema.name, &observed, &stored);
            if !stored.is_empty() && !fresh.is_empty() {
                let deltas = rollup::fleet(schema, cols, height, &|t| fresh.contains(&t));
                add_deltas(&mut self.tx, &deltas, None).await?;
            }
            return Ok(Some(!stored.is_empty()));
        }
        let probe = probe_sql(schema);
        if !rollup::feeds(schema) {
            let stored: Vec<DateTime<Utc>> = sqlx::query_scalar(AssertSqlSafe(probe))
                .bind(&partner)
                .bind(&at)
                .fetch_all(&mut *self.tx)
                .await?;
            let stored = micros(stored);
            self.counts.fresh_snapshots(schema.name, &observed, &stored);
            return Ok(Some(!stored.is_empty()));
        }
        // Station status: the check and the stations' last samples in one statement (rows
        // without a station are the stored times).
        let rows = sqlx::query(AssertSqlSafe(format!(
            "WITH recorded AS ({}) \
             SELECT NULL::text, t, NULL::bool, NULL::bool, NULL::bool FROM ({probe}) AS stored(t) \
             UNION ALL SELECT station_id, observed_at, was_empty, was_full, was_renting \
             FROM station_last_status WHERE partner = $1",
            record_sql(schema)
        )))
        .bind(&partner)
        .bind(&at)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut stored = Vec::new();
        let mut last = HashMap::with_capacity(rows.len());
        for r in &rows {
            let at: DateTime<Utc> = r.try_get(1)?;
            let Some(station) = r.try_get::<Option<String>, _>(0)? else {
                stored.push(at.timestamp_micros());
                continue;
            };
            let sample = rollup::Sample {
                observed_at: at.timestamp_micros(),
                empty: r.try_get(2)?,
                full: r.try_get(3)?,
                renting: r.try_get(4)?,
            };
            last.insert(station, sample);
        }
        let any_stored = Some(!stored.is_empty());
        let fresh = self.counts.fresh_snapshots(schema.name, &observed, &stored);
        if fresh.is_empty() {
            return Ok(any_stored);
        }
        let is_new = |t: i64| fresh.contains(&t);
        let (deltas, changed) = rollup::stations(schema, cols, height, &is_new, &mut last);
        add_deltas(&mut self.tx, &deltas, Some((&partner, &changed))).await?;
        Ok(any_stored)
    }

    fn rolled_back(&self, table: &'static str, e: impl std::fmt::Display) -> LoadError {
        LoadError::RolledBack {
            run_id: self.run.run_id.clone(),
            table,
            message: e.to_string(),
        }
    }
}

impl LoadTx for PgLoad {
    fn frame<'a>(
        &'a mut self,
        schema: &'static TableSchema,
        df: &'a DataFrame,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let cols = cells::columns(schema, df)?;
            let height = df.height();
            self.counts.add(schema.name, height);
            if height == 0 {
                return Ok(());
            }
            if schema.kind == TableKind::Snapshot {
                let r =
                    ensure_partitions(&mut self.tx, &self.partitions, schema, &cols, height).await;
                r.map_err(|e| self.rolled_back(schema.name, e))?;
            }
            self.counts.stale.clear();
            let mut stored = None;
            if schema.kind == TableKind::Snapshot {
                // Locked first: what the rollups find stored cannot change before the COPY.
                let r = match self.lock(schema).await {
                    Ok(_) => self.roll_up(schema, &cols, height).await,
                    Err(e) => Err(e),
                };
                stored = r.map_err(|e| self.rolled_back(schema.name, e))?;
            }
            let direct = self.direct(schema, &cols, height, stored).await;
            let direct = direct.map_err(|e| self.rolled_back(schema.name, e))?;
            if let Some(target) = direct {
                if schema.kind == TableKind::Static {
                    self.counts.changed(schema.name, height as u64);
                }
                let r = async {
                    copy_frame(&mut self.tx, &target, schema, &cols, height).await?;
                    failpoint::check("loader.after_copy")?;
                    Ok::<(), crate::StepError>(())
                }
                .await;
                return r.map_err(|e| self.rolled_back(schema.name, e));
            }
            let first = !self.staged.contains(&schema);
            let tx = &mut self.tx;
            let step = async {
                let stage = format!("stage_{}", schema.name);
                if first {
                    // Made once per connection and emptied at each commit: creating and
                    // dropping a table per load (catalog rows, a file) cost PostgreSQL more
                    // than the merge itself for a feed's few hundred stations.
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DO $$ BEGIN IF to_regclass('pg_temp.{stage}') IS NULL THEN \
                         CREATE TEMP TABLE {stage} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; \
                         END IF; END $$",
                        schema.name
                    )))
                    .execute(&mut **tx)
                    .await?;
                }
                copy_frame(tx, &stage, schema, &cols, height).await?;
                failpoint::check("loader.after_copy")?;
                Ok::<(), crate::StepError>(())
            };
            let r = step.await;
            r.map_err(|e| self.rolled_back(schema.name, e))?;
            if first {
                self.staged.push(schema);
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
            if df.height() > 0 {
                let r =
                    copy_frame(&mut self.tx, "quarantine", &QUARANTINE, &cols, df.height()).await;
                r.map_err(|e| self.rolled_back("quarantine", e))?;
            }
            Ok(())
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<LoadStats, LoadError>> {
        Box::pin(async move {
            let mut me = *self;
            if let Err((table, e)) = me.attach_fresh().await {
                return Err(me.rolled_back(table, e));
            }
            let order = |s: &&TableSchema| {
                mobiflux_model::schema::UNIFIED_TABLES
                    .iter()
                    .position(|t| t.name == s.name)
                    .unwrap_or(usize::MAX)
            };
            let mut staged = me.staged.clone();
            staged.sort_by_key(order);
            for schema in staged {
                let list = sql::column_list(schema);
                let r = sqlx::raw_sql(AssertSqlSafe(format!(
                    "INSERT INTO {t} ({list}) SELECT {list} FROM stage_{t} {}",
                    sql::on_conflict(schema),
                    t = schema.name
                )))
                .execute(&mut *me.tx)
                .await;
                let done = r.map_err(|e| me.rolled_back(schema.name, e))?;
                if schema.kind == TableKind::Static {
                    me.counts.changed(schema.name, done.rows_affected());
                }
            }
            failpoint::check("loader.before_commit").map_err(|e| me.rolled_back("etl_runs", e))?;
            let objects = std::mem::take(&mut me.counts.objects);
            if !objects.is_empty() {
                let (shas, keys): (Vec<String>, Vec<String>) = objects.into_iter().unzip();
                let r = sqlx::query(
                    "INSERT INTO loaded_objects (pipeline, sha256, run_id, source_object) \
                     SELECT $1, sha, $3, key FROM UNNEST($2::text[], $4::text[]) AS o(sha, key) \
                     ON CONFLICT (pipeline, sha256) DO NOTHING",
                )
                .bind(&me.run.pipeline)
                .bind(&shas)
                .bind(&me.run.run_id)
                .bind(&keys)
                .execute(&mut *me.tx)
                .await;
                r.map_err(|e| me.rolled_back("loaded_objects", e))?;
            }
            let latest = std::mem::take(&mut me.counts.latest);
            if !latest.is_empty() {
                let (mut resources, mut contents, mut keys) = (Vec::new(), Vec::new(), Vec::new());
                for (resource, content, key) in latest {
                    resources.push(resource);
                    contents.push(content);
                    keys.push(key);
                }
                let r = sqlx::query(
                    "INSERT INTO latest_objects (pipeline, resource, content, run_id, source_object) \
                     SELECT $1, resource, content, $4, key FROM UNNEST($2::text[], $3::text[], $5::text[]) AS o(resource, content, key) \
                     ON CONFLICT (pipeline, resource) DO UPDATE SET content = excluded.content, \
                     run_id = excluded.run_id, source_object = excluded.source_object",
                )
                .bind(&me.run.pipeline)
                .bind(&resources)
                .bind(&contents)
                .bind(&me.run.run_id)
                .bind(&keys)
                .execute(&mut *me.tx)
                .await;
                r.map_err(|e| me.rolled_back("latest_objects", e))?;
            }
            let (stats, done) = me.counts.finish(&me.run);
            let r = upsert_run(&mut me.tx, &done).await;
            r.map_err(|e| me.rolled_back("etl_runs", e))?;
            // The load's COPY data went through the connection's buffers, which keep the
            // capacity of the largest message they held: back to their default size before
            // the connection returns to the pool. Otherwise each pooled connection grows to
            // the largest frame it ever loaded (a daemon's RSS rose by ~30 MB over each
            // connection's 30-minute life in the soak, falling back at each recycle).
            sqlx::Connection::shrink_buffers(&mut *me.tx);
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

impl Warehouse for PostgresWarehouse {
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
                sqlx::query_as("SELECT resource, content FROM latest_objects WHERE pipeline = $1")
                    .bind(pipeline)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.db(e))?;
            Ok(rows.into_iter().collect())
        })
    }

    fn schema(&self) -> BoxFuture<'_, Result<crate::Schema, LoadError>> {
        Box::pin(async move {
            let (exists, readable): (bool, Option<bool>) = sqlx::query_as(
                "SELECT to_regclass('schema_migrations') IS NOT NULL, \
                 CASE WHEN to_regclass('schema_migrations') IS NOT NULL \
                 THEN has_table_privilege('schema_migrations', 'SELECT') END",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
            if exists && readable == Some(false) {
                return Ok(crate::Schema::Hidden);
            }
            let newest = match exists {
                true => self.schema_version(&self.pool).await?,
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
            let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            for (version, ddl) in MIGRATIONS {
                let done: Option<i32> =
                    sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
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
                    sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                        .bind(version)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.db(e))?;
                }
            }
            let newest = self.schema_version(&mut *tx).await?;
            crate::check_schema(&self.target, newest, MIGRATIONS)?;
            tx.commit().await.map_err(|e| self.db(e))
        })
    }

    fn start_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<Latest, LoadError>> {
        Box::pin(async move {
            // One checkout and one statement: the run's row, then the pipeline's latest
            // objects (a data-modifying WITH runs whatever the query reads).
            let q = format!(
                "WITH run AS ({}) SELECT resource, content FROM latest_objects WHERE pipeline = $2",
                upsert_run_sql()
            );
            let rows: Vec<(String, String)> = bind_run!(sqlx::query_as(AssertSqlSafe(q)), run)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
            Ok(rows.into_iter().collect())
        })
    }

    fn fail_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(|e| self.db(e))?;
            upsert_run(&mut conn, run).await.map_err(|e| self.db(e))
        })
    }

    fn register_pipelines<'a>(
        &'a self,
        pipelines: &'a [PipelineInfo],
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let col = |f: &dyn Fn(&PipelineInfo) -> Option<String>| {
                pipelines.iter().map(f).collect::<Vec<_>>()
            };
            sqlx::query(
                "INSERT INTO pipelines (pipeline, partner, territory, format, schedule, interval_s, updated_at) \
                 SELECT *, now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
                 ON CONFLICT (pipeline) DO UPDATE SET partner = EXCLUDED.partner, territory = EXCLUDED.territory, \
                 format = EXCLUDED.format, schedule = EXCLUDED.schedule, interval_s = EXCLUDED.interval_s, \
                 updated_at = EXCLUDED.updated_at \
                 WHERE (pipelines.partner, pipelines.territory, pipelines.format, pipelines.schedule, pipelines.interval_s) \
                 IS DISTINCT FROM (EXCLUDED.partner, EXCLUDED.territory, EXCLUDED.format, EXCLUDED.schedule, EXCLUDED.interval_s)",
            )
            .bind(col(&|p| Some(p.pipeline.clone())))
            .bind(col(&|p| Some(p.partner.clone())))
            .bind(col(&|p| p.territory.clone()))
            .bind(col(&|p| Some(p.format.clone())))
            .bind(col(&|p| p.schedule.clone()))
            .bind(pipelines.iter().map(|p| p.interval_s).collect::<Vec<_>>())
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
            Ok(())
        })
    }

    fn begin<'a>(
        &'a self,
        run: &'a RunRecord,
        tables: &'a [&'static TableSchema],
    ) -> BoxFuture<'a, Result<Box<dyn LoadTx>, LoadError>> {
        Box::pin(async move {
            // A load's statements run with generic plans: their parameters are arrays of a
            // frame's keys and times, which a custom plan cannot use any better, yet
            // PostgreSQL's estimate for an array of unknown length made it re-plan the
            // snapshot check at every load (a quarter of a millisecond each, more than its
            // execution). In the BEGIN's own round trip, with the snapshot tables' load
            // locks (in name order, as every load takes them up front): each statement of a
            // simple query sees what committed before it ran, so the rollups' check that
            // follows sees every load that held the lock before.
            let mut snapshots: Vec<&'static TableSchema> = tables
                .iter()
                .copied()
                .filter(|s| s.kind == TableKind::Snapshot)
                .collect();
            snapshots.sort_by_key(|s| s.name);
            snapshots.dedup_by_key(|s| s.name);
            let mut begin = String::from("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan");
            // The rollups' days stay open or closed until this load ends.
            let days_shared = snapshots.iter().any(|s| rollup::feeds(s));
            if days_shared {
                begin.push_str(&format!(
                    "; SELECT pg_advisory_xact_lock_shared(hashtext({}))",
                    sql::dollar_quoted(DAYS_LOCK)
                ));
            }
            for s in &snapshots {
                begin.push_str(&format!(
                    "; SELECT pg_advisory_xact_lock(hashtext({}))",
                    sql::dollar_quoted(&load_lock(s, &run.partner))
                ));
            }
            let mut tx = self
                .pool
                .begin_with(AssertSqlSafe(begin))
                .await
                .map_err(|e| self.db(e))?;
            if run.reloads() {
                sqlx::query("DELETE FROM quarantine WHERE run_id = $1")
                    .bind(&run.run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?;
            }
            Ok(Box::new(PgLoad {
                tx,
                partitions: self.partitions.clone(),
                run: run.clone(),
                staged: Vec::new(),
                locked: snapshots.iter().map(|s| (s.name, None)).collect(),
                fresh: Vec::new(),
                days_shared,
                counts: TxCounts::default(),
            }) as Box<dyn LoadTx>)
        })
    }

    fn loaded_by<'a>(
        &'a self,
        pipeline: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, LoadError>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT run_id FROM loaded_objects WHERE pipeline = $1 AND sha256 = $2",
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
            let r =
                sqlx::query("UPDATE etl_runs SET curated_batch = NULL WHERE curated_batch = $1")
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
                 GROUP BY curated_batch HAVING max(finished_at) < $1 ORDER BY min(finished_at)",
            )
            .bind(finished_before)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(e))
        })
    }

    fn curated_runs<'a>(
        &'a self,
        batch: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LoadError>> {
        Box::pin(self.runs_where("curated_batch = $1 ORDER BY started_at, run_id", batch))
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
            sqlx::query_scalar(AssertSqlSafe(sql::run_rows(table)))
                .bind(partner)
                .bind(run_id)
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db(e))
        })
    }

    fn run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>, LoadError>> {
        Box::pin(async move { Ok(self.runs_where("run_id = $1", run_id).await?.pop()) })
    }

    fn runs_since<'a>(
        &'a self,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LoadError>> {
        Box::pin(self.runs_where("started_at >= $1 ORDER BY started_at", since))
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
        // One statement, one round trip: the schema's version is read, the lease is taken
        // (new, ours, or expired) if this mobiflux knows that version, then the tick, only
        // if the lease was. Taking an expired lease for a tick another instance already ran
        // is the takeover the lease exists for; the tick's key keeps it from running twice.
        // Under a newer schema, a lease this instance holds is given up at once, so an
        // upgraded instance takes the pipeline at its next tick, not after the lease's time.
        // A tick taken marks the pipeline's scheduled runs still `running` since the claim
        // of its previous tick failed, as abandoned ([`sql::ABANDONED`]): its runs never
        // overlap, so with the lease in hand (and this instance's previous run over), such
        // a run's daemon is gone or lost the warehouse. Should it still end, its own record
        // replaces the mark. (30 s before that claim: the daemons' clocks stamp the runs.)
        Box::pin(async move {
            let (newest, claimed): (Option<i32>, Option<String>) = sqlx::query_as(
                "WITH schema AS (SELECT max(version) AS version FROM schema_migrations), \
                 lease AS (\
                 INSERT INTO schedule_leases (pipeline, owner, expires_at) \
                 SELECT $1, $2, now() + make_interval(secs => $3::float8 / 1000) FROM schema WHERE coalesce(version, 0) <= $5 \
                 ON CONFLICT (pipeline) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
                 WHERE schedule_leases.owner = EXCLUDED.owner OR schedule_leases.expires_at < now() RETURNING owner), \
                 tick AS (INSERT INTO schedule_ticks (pipeline, scheduled_for, owner) SELECT $1, $4, owner FROM lease \
                 ON CONFLICT DO NOTHING RETURNING owner), \
                 given_up AS (DELETE FROM schedule_leases WHERE pipeline = $1 AND owner = $2 \
                 AND (SELECT coalesce(version, 0) FROM schema) > $5), \
                 abandoned AS (UPDATE etl_runs SET status = 'failed', finished_at = now(), error = $6 || run_id || ')' \
                 WHERE pipeline = $1 AND trigger = 'schedule' AND status = 'running' AND scheduled_for < $4 \
                 AND EXISTS (SELECT 1 FROM tick) \
                 AND started_at >= (SELECT claimed_at - interval '30 seconds' FROM schedule_ticks \
                 WHERE pipeline = $1 AND scheduled_for < $4 ORDER BY scheduled_for DESC LIMIT 1)) \
                 SELECT schema.version, (SELECT owner FROM tick) FROM schema",
            )
            .bind(pipeline)
            .bind(owner)
            .bind(ttl.as_millis() as i64)
            .bind(scheduled_for)
            .bind(crate::known_version(MIGRATIONS))
            .bind(sql::ABANDONED)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
            crate::check_schema(&self.target, newest, MIGRATIONS)?;
            Ok(claimed.is_some())
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
                "UPDATE schedule_leases SET expires_at = now() + make_interval(secs => $3::float8 / 1000) WHERE pipeline = $1 AND owner = $2",
            )
            .bind(pipeline)
            .bind(owner)
            .bind(ttl.as_millis() as i64)
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
            sqlx::query("DELETE FROM schedule_leases WHERE pipeline = $1 AND owner = $2")
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
            let (sql, binds) = stats::query(stat, filters, stats::Dialect::Postgres);
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in binds {
                q = match b {
                    stats::Bind::Text(t) => q.bind(t),
                    stats::Bind::Ts(t) => q.bind(t),
                    stats::Bind::Date(d) => q.bind(d),
                };
            }
            let rows = q.fetch_all(&self.pool).await.map_err(|e| self.db(e))?;
            stats::Table::of(&rows, json_cell).map_err(|e| self.db(e))
        })
    }

    fn prepare_partitions<'a>(
        &'a self,
        days: &'a [chrono::NaiveDate],
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let snapshots = mobiflux_model::schema::UNIFIED_TABLES
                .iter()
                .filter(|t| t.kind == TableKind::Snapshot);
            for schema in snapshots {
                // One short transaction per table: a load making one of them waits no longer.
                let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
                xact_lock(&mut tx, &partition_lock(schema))
                    .await
                    .map_err(|e| self.db(e))?;
                for day in days {
                    create_day_partition(&mut tx, schema, *day)
                        .await
                        .map_err(|e| self.db(e))?;
                }
                tx.commit().await.map_err(|e| self.db(e))?;
                let mut known = self.partitions.lock().expect("not poisoned");
                for day in days {
                    known.insert(day_partition(schema, *day));
                }
            }
            Ok(())
        })
    }

    fn close_days(&self, tries: u32) -> BoxFuture<'_, Result<u32, LoadError>> {
        Box::pin(async move {
            // Closing days runs this version's statements: under a newer schema, none run.
            let due = "SELECT closed_before, date_trunc('day', now(), 'UTC'), (SELECT max(version) FROM schema_migrations) FROM rollup_days";
            let (from, to, newest): (DateTime<Utc>, DateTime<Utc>, Option<i32>) =
                sqlx::query_as(due)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.db(e))?;
            crate::check_schema(&self.target, newest, MIGRATIONS)?;
            if from >= to {
                return Ok(0);
            }
            // Loads adding to the rollups hold the lock shared: wait until none does, by
            // trying (a closing waiting in the lock's queue would stall every new load
            // behind the longest one running).
            for attempt in 0..tries {
                if attempt > 0 {
                    tokio::time::sleep(CLOSE_RETRY).await;
                }
                let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
                let locked: bool =
                    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
                        .bind(DAYS_LOCK)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| self.db(e))?;
                if !locked {
                    continue;
                }
                // Read again under the lock (every closing takes it): another instance may
                // have closed them.
                let (from, to): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(due)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?;
                if from >= to {
                    return Ok(0);
                }
                for daily in rollup::DAILY {
                    sqlx::query(AssertSqlSafe(close_sql(daily)))
                        .bind(from)
                        .bind(to)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.db(e))?;
                }
                sqlx::query("UPDATE rollup_days SET closed_before = $1")
                    .bind(to)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?;
                tx.commit().await.map_err(|e| self.db(e))?;
                let days = (to - from).num_days();
                tracing::info!(from = %from, to = %to, days, "rollup days closed");
                return Ok(days as u32);
            }
            tracing::info!(
                "rollup days not closed: loads held them open the whole wait; retried later"
            );
            Ok(0)
        })
    }

    fn fold_rollups(&self) -> BoxFuture<'_, Result<u64, LoadError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
            // The fold's statements are this version's: under a newer schema, none run.
            let (locked, newest): (bool, Option<i32>) = sqlx::query_as(
                "SELECT pg_try_advisory_xact_lock(hashtext($1)), (SELECT max(version) FROM schema_migrations)",
            )
            .bind(FOLD_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            crate::check_schema(&self.target, newest, MIGRATIONS)?;
            if !locked {
                return Ok(0);
            }
            let mut keys = 0;
            for hourly in rollup::HOURLY {
                keys += sqlx::query(AssertSqlSafe(fold_sql(hourly)))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?
                    .rows_affected();
            }
            tx.commit().await.map_err(|e| self.db(e))?;
            if keys > 0 {
                // The moved rows stay behind dead until vacuumed, and every read of the
                // views scans the pending tables (they have no index): vacuumed now, not at
                // autovacuum's next pass.
                let tables: Vec<String> = rollup::HOURLY
                    .iter()
                    .map(|t| format!("{}_pending", t.name))
                    .collect();
                // The fold is committed: a vacuum that fails is autovacuum's to do.
                if let Err(e) =
                    sqlx::raw_sql(AssertSqlSafe(format!("VACUUM {}", tables.join(", "))))
                        .execute(&self.pool)
                        .await
                {
                    tracing::warn!(error = %e, "could not vacuum the pending rollup tables after a fold");
                }
            }
            tracing::debug!(keys, "pending rollup rows folded");
            Ok(keys)
        })
    }

    fn shares_schedules(&self) -> bool {
        true
    }
}

/// How long apart [`Warehouse::close_days`] tries its lock.
const CLOSE_RETRY: Duration = Duration::from_millis(500);

/// An `etl_runs` row read with `sql::ETL_RUN_COLUMNS`.
fn record_of(r: &sqlx::postgres::PgRow) -> Result<RunRecord, sqlx::Error> {
    Ok(RunRecord {
        run_id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        partner: r.try_get(2)?,
        format: r.try_get(3)?,
        trigger: r.try_get(4)?,
        scheduled_for: r.try_get(5)?,
        started_at: r.try_get(6)?,
        finished_at: r.try_get(7)?,
        status: r.try_get(8)?,
        rows_loaded: r.try_get(9)?,
        rows_quarantined: r.try_get(10)?,
        bytes: r.try_get(11)?,
        error: r.try_get(12)?,
        manifest: r.try_get(13)?,
        curated_batch: r.try_get(14)?,
    })
}
