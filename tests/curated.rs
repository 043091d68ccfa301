//! The curated Parquet zone read by DuckDB (the `duckdb` package from PyPI, installed into
//! `~/.cache/mobiflux-tools/duckdb-venv` on first use): after the bundled examples run
//! twice, DuckDB counts what the warehouse holds, table by table, on both warehouses.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mobiflux_model::TableKind;
use mobiflux_model::schema::UNIFIED_TABLES;
use serde_json::{Value, json};

fn duckdb_python() -> PathBuf {
    // The tests of this file share one install.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    mobiflux::bench::python_venv("duckdb-venv", "duckdb", &["duckdb"]).unwrap()
}

/// Per unified table, what DuckDB counts in the curated zone: rows of snapshot tables,
/// distinct keys of reference tables (their latest version is the warehouse's row).
fn duckdb_counts(curated: &Path) -> BTreeMap<String, i64> {
    let spec: Vec<Value> = UNIFIED_TABLES
        .iter()
        .map(
            |t| json!({ "table": t.name, "snapshot": t.kind == TableKind::Snapshot, "key": t.key }),
        )
        .collect();
    let script = r#"
import duckdb, json, os, sys
root, spec = sys.argv[1], json.loads(sys.argv[2])
con = duckdb.connect()
out = {}
for t in spec:
    path = os.path.join(root, t["table"])
    if not os.path.isdir(path):
        out[t["table"]] = 0
        continue
    src = f"read_parquet('{path}/**/*.parquet', hive_partitioning = true)"
    if t["snapshot"]:
        q = f"SELECT count(*) FROM {src}"
    else:
        q = f"SELECT count(*) FROM (SELECT DISTINCT {', '.join(t['key'])} FROM {src})"
    out[t["table"]] = con.execute(q).fetchone()[0]
print(json.dumps(out))
"#;
    let out = Command::new(duckdb_python())
        .args(["-c", script])
        .arg(curated)
        .arg(serde_json::to_string(&spec).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn warehouse_counts(warehouse: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for t in UNIFIED_TABLES {
        let sql = format!("SELECT count(*) FROM {}", t.name);
        let n: i64 = match warehouse.strip_prefix("sqlite://") {
            Some(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
                    .await
                    .unwrap();
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
            None => {
                let pool = sqlx::PgPool::connect(warehouse).await.unwrap();
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        out.insert(t.name.to_string(), n);
    }
    out
}

async fn duckdb_counts_what_the_warehouse_holds(warehouse: &str) {
    let local = temp_dir("curated");
    let raw = local.join("raw");
    // Twice: the feeds' snapshots are the same (same last_updated), the files are skipped
    // (same content), the reference tables are loaded again, unchanged: nothing new.
    // The second run adds no part, but for what is observed anew at each run: the carpool
    // searches, the scraped page, and the feeds without timestamps of their own (TOMP and
    // the proprietary JSON example are stamped at the fetch, so each run is a new snapshot
    // and a new version of their reference rows).
    let fetch_stamped = ["carpool_journeys/", "parking_occupancy/"];
    let settled = || {
        let mut f: Vec<String> = files_under(&raw.join("curated"))
            .iter()
            .map(|f| {
                f.strip_prefix(raw.join("curated"))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .filter(|f| !fetch_stamped.iter().any(|p| f.starts_with(p)))
            .filter(|f| {
                !f.contains("/partner=example-freebike/")
                    && !f.contains("/partner=example-mcm-msp/")
            })
            .collect();
        f.sort();
        f
    };
    run_demo(&raw, warehouse).await;
    let first = settled();
    assert!(
        first.iter().any(|f| f.starts_with("stations/")),
        "{first:#?}"
    );
    run_demo(&raw, warehouse).await;
    assert_eq!(settled(), first);
    let wh = warehouse_counts(warehouse).await;
    let zone = duckdb_counts(&raw.join("curated"));
    assert_eq!(zone, wh, "curated zone (DuckDB) vs warehouse");
    // Something of every kind made it: snapshots, references, files, pages, searches.
    for t in [
        "vehicles",
        "station_status",
        "stations",
        "charge_points",
        "parking_facilities",
        "parking_occupancy",
        "carpool_journeys",
    ] {
        assert!(wh[t] > 0, "{t}: {wh:?}");
    }
    // Hive layout: curated/{table}/date=YYYY-MM-DD/partner={id}/part-….parquet.
    let files = files_under(&raw.join("curated/station_status"));
    assert!(!files.is_empty());
    for f in &files {
        let rel = f
            .strip_prefix(raw.join("curated/station_status"))
            .unwrap()
            .to_string_lossy()
            .to_string();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 3, "{rel}");
        assert!(
            parts[0].starts_with("date=") && parts[0].len() == 15,
            "{rel}"
        );
        assert!(parts[1].starts_with("partner="), "{rel}");
        assert!(
            parts[2].starts_with("part-") && parts[2].ends_with(".parquet"),
            "{rel}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_counts_what_the_sqlite_warehouse_holds() {
    let dir = temp_dir("curated-sqlite");
    duckdb_counts_what_the_warehouse_holds(&format!("sqlite://{}/w.db", dir.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_counts_what_the_postgres_warehouse_holds() {
    duckdb_counts_what_the_warehouse_holds(&pg_database().await).await;
}

/// A load that rolls back leaves nothing in the curated zone; the next run writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_rolled_back_writes_no_curated_part() {
    let sim = msp().await;
    let pipelines = temp_dir("curated-rollback");
    define(
        &pipelines,
        "gbfs-2-3",
        &format!("{}/gbfs/v2.3/gbfs.json", sim.base_url()),
        "",
    );
    let local = temp_dir("curated-rollback-out");
    let (mut env, warehouse) = local_dest(&pipelines, &local);
    env.push(("MOBIFLUX_CACHE_URL".into(), "none".into()));
    let mut failing = env.clone();
    failing.push(("MOBIFLUX_FAILPOINTS".into(), "loader.before_commit".into()));
    let out = mobiflux(&["run"], &failing).await;
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(
        !local.join("raw/curated").exists(),
        "{:?}",
        files_under(&local.join("raw"))
    );
    let out = mobiflux(&["run"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let zone = duckdb_counts(&local.join("raw/curated"));
    let wh = warehouse_counts(&warehouse).await;
    assert_eq!(zone, wh);
    assert!(wh["station_status"] > 0, "{wh:?}");
}

/// The curated-batch marks left on `etl_runs`: (batch, runs).
async fn curated_marks(warehouse: &str) -> Vec<(String, i64)> {
    let sql = "SELECT curated_batch, count(*) FROM etl_runs WHERE curated_batch IS NOT NULL \
               GROUP BY curated_batch ORDER BY 1";
    match warehouse.strip_prefix("sqlite://") {
        Some(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
                .await
                .unwrap();
            sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
        }
        None => {
            let pool = sqlx::PgPool::connect(warehouse).await.unwrap();
            sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
        }
    }
}

/// `mobiflux schedule` uploading its curated batch every `every` seconds.
fn schedule(env: &[(String, String)], every: &str) -> std::process::Child {
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_mobiflux"));
    daemon
        .args(["schedule", "--curated-every", every, "--lease-secs", "2"])
        .env_remove("MOBIFLUX_FAILPOINTS")
        .env("MOBIFLUX_METRICS_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        daemon.env(k, v);
    }
    daemon.spawn().unwrap()
}

/// A daemon killed (-9) with its curated batch not yet uploaded: its runs keep the batch's
/// mark, and the next process writes the batch's files from their raw payloads, under the
/// batch's own names; the zone then counts what the warehouse holds, nothing twice.
async fn a_killed_daemons_batch_is_written_again(warehouse: &str, local: &Path) {
    let sim = msp().await;
    let pipelines = local.join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    let base = sim.base_url();
    // TOMP answers carry no time of their own: each poll is a new snapshot, so a batch holds
    // several polls' rows per file.
    for (name, format, url) in [
        ("gbfs-2-3", "gbfs", format!("{base}/gbfs/v2.3/gbfs.json")),
        (
            "spec-3-0",
            "gbfs",
            format!("{base}/gbfs/spec-examples/v3.0/gbfs.json"),
        ),
        ("tomp", "tomp", format!("{base}/tomp")),
    ] {
        std::fs::write(
            pipelines.join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\npartner = \"{name}\"\nformat = \"{format}\"\nurl = \"{url}\"\nschedule = \"* * * * * *\"\n"
            ),
        )
        .unwrap();
    }
    let raw = local.join("raw");
    let mut env = dest(&pipelines, raw.to_str().unwrap(), warehouse);
    env.push(("MOBIFLUX_CACHE_URL".into(), "none".into()));
    let mut daemon = schedule(&env, "3600");
    // Polls every second until both pipelines have loaded, then the kill.
    let mut marks = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if warehouse.starts_with("sqlite://") && !local.join("w.db").exists() {
            continue;
        }
        marks = curated_marks(warehouse).await;
        if warehouse_counts(warehouse).await["vehicles"] > 0
            && warehouse_counts(warehouse).await["station_status"] > 0
        {
            break;
        }
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let marks_after_kill = curated_marks(warehouse).await;
    assert_eq!(
        marks_after_kill.len(),
        1,
        "one open batch: {marks_after_kill:?} ({marks:?})"
    );
    let (key, runs) = marks_after_kill[0].clone();
    assert!(runs >= 2, "{runs} runs marked");
    let parts = |zone: &Path| -> Vec<String> {
        if !zone.exists() {
            return Vec::new();
        }
        files_under(zone)
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert!(
        !parts(&raw.join("curated")).iter().any(|f| f.contains(&key)),
        "nothing of the batch uploaded before the kill"
    );
    // The next process (a one-shot run, with 1-second batches: a batch is left behind
    // once its runs all ended 4 seconds ago) writes the batch again.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    env.push(("MOBIFLUX_CURATED_EVERY".into(), "1".into()));
    env.push(("MOBIFLUX_LOG".into(), "info".into()));
    let out = mobiflux(&["run"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        curated_marks(warehouse).await,
        vec![],
        "no batch left marked (before: {key}): {:?}",
        text(&out)
    );
    let written = parts(&raw.join("curated"));
    let of_batch: Vec<&String> = written.iter().filter(|f| f.contains(&key)).collect();
    assert!(
        of_batch
            .iter()
            .all(|f| *f == &format!("part-{key}.parquet")),
        "{of_batch:?}"
    );
    // station_status, stations, … of both partners.
    assert!(of_batch.len() >= 4, "{written:#?}");
    let wh = warehouse_counts(warehouse).await;
    assert!(wh["vehicles"] > 0 && wh["station_status"] > 0, "{wh:?}");
    assert_eq!(
        duckdb_counts(&raw.join("curated")),
        wh,
        "curated zone (DuckDB) vs warehouse"
    );
    // A daemon's own batches, uploaded every 2 seconds and as it stops: files of several
    // polls each, a row group a poll.
    let before = parts(&raw.join("curated")).len();
    let daemon = schedule(&env, "2");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    assert!(daemon.wait_with_output().unwrap().status.success());
    assert_eq!(curated_marks(warehouse).await, vec![]);
    assert!(parts(&raw.join("curated")).len() > before);
    let wh = warehouse_counts(warehouse).await;
    assert_eq!(
        duckdb_counts(&raw.join("curated")),
        wh,
        "curated zone (DuckDB) vs warehouse, after the daemon's own batches"
    );
    // Some file holds several polls of the TOMP feed.
    let script = "import duckdb, sys; print(duckdb.connect().execute(f\"SELECT max(n) FROM (SELECT count(DISTINCT observed_at) AS n FROM read_parquet('{sys.argv[1]}/**/*.parquet', filename = true) GROUP BY filename)\").fetchone()[0])";
    let polls = Command::new(duckdb_python())
        .args(["-c", script])
        .arg(raw.join("curated/vehicles/date=*/partner=tomp"))
        .output()
        .unwrap();
    let most: i64 = String::from_utf8_lossy(&polls.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(most >= 2, "{polls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_batch_is_written_again_on_sqlite() {
    let local = temp_dir("curated-killed-sqlite");
    let warehouse = format!("sqlite://{}/w.db", local.display());
    a_killed_daemons_batch_is_written_again(&warehouse, &local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_batch_is_written_again_on_postgres() {
    let local = temp_dir("curated-killed-pg");
    a_killed_daemons_batch_is_written_again(&pg_database().await, &local).await;
}

/// `mobiflux stats NAME --format parquet` gives DuckDB the rows `--format json` gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statistic_as_parquet_reads_back_in_duckdb() {
    let local = temp_dir("stats-parquet");
    let warehouse = format!("sqlite://{}/w.db", local.display());
    run_demo(&local.join("raw"), &warehouse).await;
    let file = local.join("parking.parquet");
    let out = mobiflux(
        &[
            "stats",
            "parking",
            "--format",
            "parquet",
            "--output",
            file.to_str().unwrap(),
            "--warehouse",
            &warehouse,
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = mobiflux(
        &[
            "stats",
            "parking",
            "--format",
            "json",
            "--warehouse",
            &warehouse,
        ],
        &[],
    )
    .await;
    let json: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let script = r#"
import duckdb, json, sys
rows = duckdb.connect().execute(f"SELECT * FROM read_parquet('{sys.argv[1]}')").fetchall()
cols = [d[0] for d in duckdb.connect().execute(f"DESCRIBE SELECT * FROM read_parquet('{sys.argv[1]}')").fetchall()]
print(json.dumps([dict(zip(cols, r)) for r in rows]))
"#;
    let out = Command::new(duckdb_python())
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parquet: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parquet, json);
    assert_eq!(parquet.len(), 5, "{parquet:#?}");
    // Parquet needs a file.
    let out = mobiflux(
        &[
            "stats",
            "parking",
            "--format",
            "parquet",
            "--warehouse",
            &warehouse,
        ],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--output FILE"), "{:?}", text(&out));
}
