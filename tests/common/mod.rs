//! Shared by the end-to-end tests: real PostgreSQL databases made per test, the real S3
//! server started by `.ci/run`, a simulated MSP serving the project's fixtures, and the
//! `mobiflux` binary run as a user would run it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use mobiflux::simulator::Simulator;
use mobiflux_loaders::Warehouse;
use mobiflux_model::schema::UNIFIED_TABLES;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A fresh PostgreSQL database for one test (`mobiflux_t_…`); `.ci/run` drops them all when
/// the suite ends.
pub async fn pg_database() -> String {
    let admin = env_or(
        "MOBIFLUX_TEST_PG_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (start it with `bash .ci/run`): {e}"));
    let name = format!("mobiflux_t_{}", uuid_like());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    mobiflux_model::RunId::new().to_string().replace('-', "")
}

/// The S3 raw zone of `.ci/run`, under a prefix of its own; `None` when not configured.
pub fn s3_url() -> String {
    let bucket = std::env::var("MOBIFLUX_TEST_S3_BUCKET")
        .expect("MOBIFLUX_TEST_S3_BUCKET is not set: run the tests with `bash .ci/run`, which starts the S3 server");
    // Short: the test server (s3s-fs) keeps each object's metadata in a file named after the
    // base64 of the whole key, and file names stop at 255 bytes (S3 itself takes 1,024-byte
    // keys), so curated part keys under a long prefix would not fit.
    let id = uuid_like();
    format!("s3://{bucket}/t{}", &id[id.len() - 12..])
}

pub fn s3_env() -> Vec<(String, String)> {
    vec![(
        "MOBIFLUX_S3_ENDPOINT".into(),
        std::env::var("MOBIFLUX_TEST_S3_ENDPOINT")
            .expect("MOBIFLUX_TEST_S3_ENDPOINT (set by .ci/run)"),
    )]
}

pub async fn msp() -> Simulator {
    Simulator::start(FIXTURES, "127.0.0.1:0").await.unwrap()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mobiflux-{tag}-{}", uuid_like()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a GBFS definition file; `extra` lines are appended.
pub fn define(dir: &Path, name: &str, url: &str, extra: &str) {
    define_format(dir, name, "gbfs", url, extra);
}

/// Writes a definition file of any format; `extra` lines are appended.
pub fn define_format(dir: &Path, name: &str, format: &str, url: &str, extra: &str) {
    define_partner(dir, name, name, format, url, extra);
}

/// Writes a definition file whose partner is not its name.
pub fn define_partner(dir: &Path, name: &str, partner: &str, format: &str, url: &str, extra: &str) {
    let text = format!(
        "name = \"{name}\"\npartner = \"{partner}\"\nformat = \"{format}\"\nurl = \"{url}\"\nschedule = \"0 * * * * *\"\n{extra}\n"
    );
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

/// The four fixture feeds of the README demo, served by `sim`.
pub fn define_fixture_feeds(dir: &Path, sim: &Simulator) {
    let base = sim.base_url();
    define(dir, "gbfs-2-3", &format!("{base}/gbfs/v2.3/gbfs.json"), "");
    define(dir, "gbfs-3-0", &format!("{base}/gbfs/v3.0/gbfs.json"), "");
    define(
        dir,
        "spec-2-3",
        &format!("{base}/gbfs/spec-examples/v2.3/gbfs.json"),
        "",
    );
    define(
        dir,
        "spec-3-0",
        &format!("{base}/gbfs/spec-examples/v3.0/gbfs.json"),
        "",
    );
}

/// Runs the binary with the given arguments and environment.
pub async fn mobiflux(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mobiflux"));
    cmd.args(args).env_remove("MOBIFLUX_FAILPOINTS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

/// The run id a `mobiflux run` printed for a pipeline.
pub fn run_id_of(stdout: &str, pipeline: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{pipeline} ")))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no run of {pipeline} in {stdout}"))
        .to_string()
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A test's destinations. Its embedded gateway cache sits beside its pipelines folder: the
/// default (`./var/cache.db` in the working directory) would be one file shared by every
/// test running at the same time.
pub fn dest(pipelines: &Path, raw: &str, warehouse: &str) -> Vec<(String, String)> {
    vec![
        ("MOBIFLUX_PIPELINES".into(), pipelines.display().to_string()),
        ("MOBIFLUX_RAW_URL".into(), raw.into()),
        ("MOBIFLUX_WAREHOUSE_URL".into(), warehouse.into()),
        (
            "MOBIFLUX_CACHE_URL".into(),
            format!(
                "sqlite://{}",
                pipelines.with_extension("cache.db").display()
            ),
        ),
    ]
}

/// A raw folder and a SQLite warehouse under `dir`: the environment and the warehouse URL.
pub fn local_dest(pipelines: &Path, dir: &Path) -> (Vec<(String, String)>, String) {
    let sqlite = format!("sqlite://{}/w.db", dir.display());
    (
        dest(pipelines, dir.join("raw").to_str().unwrap(), &sqlite),
        sqlite,
    )
}

/// Every unified table's content (without run ids).
pub async fn dump_all(wh: &dyn Warehouse) -> Vec<(&'static str, mobiflux_loaders::TableDump)> {
    let mut out = Vec::new();
    for t in UNIFIED_TABLES {
        out.push((t.name, wh.dump(t).await.unwrap()));
    }
    out
}

pub fn counts(dump: &[(&'static str, mobiflux_loaders::TableDump)]) -> Vec<(&'static str, usize)> {
    dump.iter().map(|(t, rows)| (*t, rows.len())).collect()
}

/// Every file under a folder (to search a raw zone and a warehouse for what must not be there).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Runs the bundled examples (`mobiflux demo`) into a raw zone and a warehouse, without the
/// gateway cache.
pub async fn run_demo(raw: &Path, warehouse: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut env = dest(
        Path::new(&format!("{root}/pipelines")),
        raw.to_str().unwrap(),
        warehouse,
    );
    env.push(("MOBIFLUX_FIXTURES".into(), format!("{root}/fixtures")));
    env.push(("MOBIFLUX_CACHE_URL".into(), "none".into()));
    let out = mobiflux(&["demo"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
}

/// An access-log definition for the gateway's logs (nginx `combined` plus `$request_time`)
/// into `gateway_calls`; `endpoint` maps the endpoint column.
pub fn gateway_log_mapping(endpoint: &str) -> String {
    format!(
        r#"log_format = "combined_timed"
table = "gateway_calls"
nulls = ["", "-"]

[columns]
request_id = "line_id"
observed_at = {{ from = "time_local", time = "%d/%b/%Y:%H:%M:%S %z" }}
client_id = "remote_user"
target_partner = {{ from = "path", regex = '^/v1/partners/([^/]+)/' }}
remote_addr = "remote_addr"
method = "method"
endpoint = {endpoint}
status = "status"
latency_ms = {{ from = "request_time", scale = 1000 }}
bytes = "bytes"
user_agent = "user_agent"
"#
    )
}
