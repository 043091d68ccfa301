//! `mobiflux schedule` as real processes: ticks run once each, a graceful stop on SIGTERM,
//! several daemons sharing one PostgreSQL warehouse, a pipeline taken over after its daemon
//! is killed, definitions reloaded while the daemon runs, a daemon that claims nothing in a
//! warehouse a newer mobiflux migrated, and one that outlives a warehouse outage.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn daemon(env: &[(String, String)], extra: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mobiflux"));
    cmd.arg("schedule")
        .args(extra)
        .env_remove("MOBIFLUX_FAILPOINTS")
        .env("MOBIFLUX_LOG", "warn")
        .env("MOBIFLUX_METRICS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// A GET on the daemon's metrics server: (status line, body).
fn get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0);
}

fn finish(child: Child) -> (bool, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `n` GBFS pipelines ticking every second, served by `sim`.
fn every_second(dir: &std::path::Path, base: &str, n: usize) {
    for i in 0..n {
        std::fs::write(
            dir.join(format!("p{i}.toml")),
            format!(
                "name = \"p{i}\"\npartner = \"p{i}\"\nformat = \"gbfs\"\nurl = \"{base}/gbfs/v2.3/gbfs.json\"\nschedule = \"* * * * * *\"\nsoft_ttl = 1\nhard_ttl = 60\n"
            ),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_runs_once_and_sigterm_lets_the_run_in_flight_finish() {
    let sim = msp().await;
    let pipelines = temp_dir("sched-defs");
    every_second(&pipelines, &sim.base_url(), 1);
    let work = temp_dir("sched-work");
    let (mut env, wh_url) = local_dest(&pipelines, &work);
    env.push((
        "MOBIFLUX_CACHE_URL".into(),
        format!("sqlite://{}/cache.db", work.display()),
    ));
    let addr = free_port();
    let child = daemon(&env, &["--metrics-addr", &addr]);
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let (status, health) = get(&addr, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        health.starts_with("{\"status\":\"ok\",\"pipelines\":1,"),
        "{health}"
    );
    let (status, metrics) = get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    signal(&child, libc::SIGTERM);
    let (ok, stdout, stderr) = finish(child);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("SQLite: run one scheduler instance at a time"),
        "{stdout}"
    );
    assert!(stdout.contains("stopping: no new runs"), "{stdout}");
    assert!(stdout.trim_end().ends_with("stopped"), "{stdout}");
    assert!(
        stdout.contains(&format!("metrics on http://{addr}/metrics")),
        "{stdout}"
    );
    // Metrics while running: successes, a duration histogram, rows, lease, last success.
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let succeeded = value("mobiflux_runs_total{pipeline=\"p0\",outcome=\"succeeded\"}");
    assert!(succeeded >= 2.0, "{metrics}");
    assert_eq!(
        value("mobiflux_runs_total{pipeline=\"p0\",outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(
        value("mobiflux_run_duration_seconds_count{pipeline=\"p0\"}"),
        succeeded
    );
    assert_eq!(
        value("mobiflux_run_duration_seconds_bucket{pipeline=\"p0\",le=\"+Inf\"}"),
        succeeded
    );
    // The first run loads the feed's 11 rows; later ones its 3 snapshot rows (the
    // unchanged reference files are not loaded again).
    assert_eq!(
        value("mobiflux_rows_loaded_total{pipeline=\"p0\"}"),
        11.0 + 3.0 * (succeeded - 1.0),
        "{metrics}"
    );
    assert_eq!(value("mobiflux_lease_owned{pipeline=\"p0\"}"), 1.0);
    assert!(value("mobiflux_last_success_timestamp_seconds{pipeline=\"p0\"}") > 1.7e9);
    assert!(metrics.contains("# TYPE mobiflux_run_duration_seconds histogram"));
    let pool = sqlx::SqlitePool::connect(&wh_url).await.unwrap();
    let runs: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT scheduled_for, status, trigger FROM etl_runs WHERE pipeline = 'p0' ORDER BY scheduled_for",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!((3..=6).contains(&runs.len()), "{runs:?}");
    let ticks: std::collections::BTreeSet<&String> = runs.iter().map(|r| &r.0).collect();
    assert_eq!(ticks.len(), runs.len(), "each tick once: {runs:?}");
    for (tick, status, trigger) in &runs {
        assert_eq!(status, "succeeded", "no run cut short: {runs:?}");
        assert_eq!(trigger, "schedule");
        assert!(tick.ends_with(".000000Z"), "ticks on whole seconds: {tick}");
    }
    // From the second run on, each file is asked for with the ETag its last answer gave, and
    // the unchanged fixtures are answered 304, without their bodies.
    let asked = sim.requests_with_header("if-none-match");
    let per_run = asked.len() / runs.len();
    assert_eq!((per_run, asked.len()), (13, 13 * runs.len()), "{asked:?}");
    assert!(
        asked[..per_run].iter().all(|(_, v)| v.is_empty()),
        "{asked:?}"
    );
    assert!(
        asked[per_run..].iter().all(|(_, v)| v.starts_with('"')),
        "{asked:?}"
    );
    // `mobiflux status` reports the daemon's runs.
    let out = mobiflux(&["status", "--json"], &env).await;
    assert!(out.status.success(), "{}", text(&out).1);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["pipeline"], "p0");
    assert_eq!(status[0]["freshness"], "fresh");
    assert_eq!(status[0]["runs"], runs.len());
    assert_eq!(status[0]["failures"], 0);
    // The lease was released on the way out.
    let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM schedule_leases")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(leases, 0);
}

/// (ticks claimed, distinct ticks, runs) per pipeline, and the owners that ran it.
async fn ledger(pg: &str) -> Vec<(String, i64, i64, i64, Vec<String>)> {
    let pool = sqlx::PgPool::connect(pg).await.unwrap();
    sqlx::query_as(
        "SELECT t.pipeline, count(*), count(DISTINCT t.scheduled_for), \
                (SELECT count(*) FROM etl_runs r WHERE r.pipeline = t.pipeline AND r.trigger = 'schedule'), \
                array_agg(DISTINCT t.owner ORDER BY t.owner) \
         FROM schedule_ticks t GROUP BY t.pipeline ORDER BY t.pipeline",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
}

/// Three daemons, one PostgreSQL, 50 pipelines ticking every 10 s, for 3 minutes; the first
/// daemon (which took every pipeline) is killed with SIGKILL after one minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_50_pipelines_for_3_minutes_and_outlive_a_killed_one() {
    use chrono::{DurationRound, Utc};
    let tomorrow = (Utc::now() + chrono::Duration::days(1)).format("%Y%m%d");
    let sim = msp().await;
    let base = sim.base_url();
    let pipelines = temp_dir("sched-pg-defs");
    for i in 0..50 {
        std::fs::write(
            pipelines.join(format!("p{i:02}.toml")),
            format!(
                "name = \"p{i:02}\"\npartner = \"p{i:02}\"\nformat = \"gbfs\"\nurl = \"{base}/gbfs/v2.3/gbfs.json\"\nschedule = \"*/10 * * * * *\"\n"
            ),
        )
        .unwrap();
    }
    let pg = pg_database().await;
    let work = temp_dir("sched-pg-work");
    let mut env = dest(&pipelines, work.join("raw").to_str().unwrap(), &pg);
    let prefix = format!("t-sched-{}", mobiflux_model::RunId::new());
    let redis = std::env::var("MOBIFLUX_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    env.push((
        "MOBIFLUX_CACHE_URL".into(),
        format!("{redis}?prefix={prefix}"),
    ));
    // Migrate once before the daemons start racing for the pipelines.
    let out = mobiflux(&["migrate"], &env).await;
    assert!(out.status.success());
    let lease = ["--lease-secs", "10", "--per-host", "8", "--fold-secs", "5"];
    let started = Utc::now();
    // The first daemon takes every pipeline; the two others find the leases held.
    let a = daemon(&env, &lease);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let b = daemon(&env, &lease);
    let c = daemon(&env, &lease);
    tokio::time::sleep(Duration::from_secs(48)).await;
    // The first daemon dies without a word, most likely mid-run.
    signal(&a, libc::SIGKILL);
    let killed = Utc::now();
    let (_, a_out, _) = finish(a);
    let owner_a = a_out
        .split_whitespace()
        .skip_while(|w| *w != "as")
        .nth(1)
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_secs(120)).await;
    signal(&b, libc::SIGTERM);
    signal(&c, libc::SIGTERM);
    let stopped = Utc::now();
    let (ok_b, out_b, err_b) = finish(b);
    let (ok_c, out_c, err_c) = finish(c);
    assert!(ok_b && ok_c, "{out_b}\n{err_b}\n{out_c}\n{err_c}");

    let rows = ledger(&pg).await;
    assert_eq!(rows.len(), 50, "{rows:?}");
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    // Every tick of the window, except those of the takeover (the killed daemon's lease
    // running out), was run by exactly one daemon.
    let ten = chrono::Duration::seconds(10);
    let first = started.duration_trunc(ten).unwrap() + ten * 2;
    let takeover = (
        killed - ten,
        killed + chrono::Duration::seconds(10) + ten * 2,
    );
    let mut expected = Vec::new();
    let mut t = first;
    while t + ten < stopped {
        if !(takeover.0..takeover.1).contains(&t) {
            expected.push(t);
        }
        t += ten;
    }
    assert!(expected.len() >= 12, "{expected:?}");
    // A tick claimed but never started: only by the killed daemon, just before it died
    // (claimed, then waiting for its turn or a connection when the SIGKILL came).
    let unstarted: Vec<(String, String, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT t.pipeline, t.owner, t.scheduled_for FROM schedule_ticks t WHERE NOT EXISTS \
         (SELECT 1 FROM etl_runs r WHERE r.pipeline = t.pipeline AND r.scheduled_for = t.scheduled_for)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (pipeline, owner, tick) in &unstarted {
        assert!(
            *owner == owner_a && (killed - ten * 3..killed).contains(tick),
            "{pipeline}: tick {tick} claimed by {owner} never run"
        );
    }
    for (pipeline, claimed, distinct, runs, owners) in &rows {
        assert_eq!(claimed, distinct, "{pipeline}: a tick claimed twice");
        let lost = unstarted.iter().filter(|u| u.0 == *pipeline).count() as i64;
        assert!(lost <= 1, "{pipeline}: {unstarted:?}");
        assert_eq!(
            *claimed,
            runs + lost,
            "{pipeline}: one run per claimed tick"
        );
        assert!(
            owners.contains(&owner_a),
            "{pipeline}: the first daemon ran it: {owners:?}"
        );
        assert!(owners.len() >= 2, "{pipeline} was taken over: {owners:?}");
        let ticks: Vec<chrono::DateTime<Utc>> = sqlx::query_scalar(
            "SELECT scheduled_for FROM schedule_ticks WHERE pipeline = $1 ORDER BY 1",
        )
        .bind(pipeline)
        .fetch_all(&pool)
        .await
        .unwrap();
        let missing: Vec<_> = expected.iter().filter(|t| !ticks.contains(t)).collect();
        assert!(
            missing.is_empty(),
            "{pipeline}: ticks not run {missing:?}; ran {ticks:?}"
        );
    }
    // Every run ended: the ones the killed daemon had in flight (at most one a pipeline)
    // were marked abandoned when the pipeline's next tick was claimed; no other failed.
    assert_eq!(still_running(&pool).await, 0);
    let failed: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT pipeline, error FROM etl_runs WHERE status = 'failed'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut abandoned: Vec<&str> = failed.iter().map(|f| f.0.as_str()).collect();
    abandoned.dedup();
    assert!(
        abandoned.len() == failed.len()
            && failed.iter().all(|f| f
                .1
                .as_deref()
                .is_some_and(|e| e.starts_with("abandoned: the daemon running it stopped"))),
        "{failed:?}"
    );
    // Nothing was loaded twice: one station_status snapshot per (station, observed_at).
    let dupes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT partner, station_id, observed_at FROM station_status GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dupes, 0);
    // The daemons folded the hourly rollup rows their loads appended (every 5 s, one daemon
    // at a time): none is left pending, and each snapshot was counted once.
    let pending: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM fleet_availability_hourly_pending) \
         + (SELECT count(*) FROM fleet_snapshots_hourly_pending) \
         + (SELECT count(*) FROM station_occupancy_hourly_pending) \
         + (SELECT count(*) FROM station_occupancy_partner_hourly_pending)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 0);
    let counted: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT partner, coalesce(v.n, 0), coalesce(s.n, 0) FROM \
         (SELECT partner, count(DISTINCT observed_at) AS n FROM vehicles GROUP BY 1) v \
         FULL JOIN (SELECT partner, sum(snapshots) AS n FROM fleet_snapshots_hourly_folded GROUP BY 1) s \
         USING (partner) ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(counted.len(), 50, "{counted:?}");
    for (partner, stored, snapshots) in &counted {
        assert_eq!(*stored as f64, *snapshots, "{partner}: {counted:?}");
    }
    // The daemons made every snapshot table's partition for tomorrow ahead of its loads.
    for t in mobiflux_model::schema::UNIFIED_TABLES
        .iter()
        .filter(|t| t.kind == mobiflux_model::TableKind::Snapshot)
    {
        let part = format!("{}_p{tomorrow}", t.name);
        let made: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&part)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(made, "{part} made ahead");
    }
}

/// Scheduled runs of a pipeline (its ticks, RFC 3339 text) in a SQLite warehouse.
/// Runs of a PostgreSQL warehouse still marked `running`.
async fn still_running(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM etl_runs WHERE status = 'running'")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn ticks_of(wh_url: &str, pipeline: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
    let pool = sqlx::SqlitePool::connect(wh_url).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT scheduled_for FROM etl_runs WHERE pipeline = ? AND trigger = 'schedule' ORDER BY scheduled_for",
    )
    .bind(pipeline)
    .fetch_all(&pool)
    .await
    .unwrap();
    rows.iter().map(|t| t.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_are_added_changed_rejected_and_removed_without_a_restart() {
    let sim = msp().await;
    let base = sim.base_url();
    let pipelines = temp_dir("reload-defs");
    every_second(&pipelines, &base, 1);
    let work = temp_dir("reload-work");
    let (mut env, wh_url) = local_dest(&pipelines, &work);
    env.push((
        "MOBIFLUX_CACHE_URL".into(),
        format!("sqlite://{}/cache.db", work.display()),
    ));
    let child = daemon(&env, &["--reload-secs", "1"]);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // A new pipeline, and a broken edit of the running one.
    every_second(&pipelines, &base, 2);
    let p0 = pipelines.join("p0.toml");
    let good = std::fs::read_to_string(&p0).unwrap();
    std::fs::write(&p0, good.replace("* * * * * *", "every second")).unwrap();
    let broken_at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    // The fix, to every other second; then the new pipeline goes away.
    let fixed = good
        .replace("* * * * * *", "*/2 * * * * *")
        .replace("soft_ttl = 1", "soft_ttl = 2");
    std::fs::write(&p0, fixed).unwrap();
    let every_other_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    std::fs::remove_file(pipelines.join("p1.toml")).unwrap();
    let removed_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    signal(&child, libc::SIGTERM);
    let (ok, stdout, stderr) = finish(child);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("pipeline added to the schedule"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "p0.toml:5: schedule: \"every second\" is not a cron expression with seconds"
        ),
        "the rejected file is named with its error: {stderr}"
    );
    assert!(stderr.contains("pipeline schedule reloaded"), "{stderr}");
    assert!(
        stderr.contains("pipeline removed from the schedule"),
        "{stderr}"
    );
    let p0_ticks = ticks_of(&wh_url, "p0").await;
    let p1_ticks = ticks_of(&wh_url, "p1").await;
    // The old definition kept running while the broken one was refused.
    let while_broken = p0_ticks
        .iter()
        .filter(|t| **t > broken_at && **t < broken_at + chrono::Duration::seconds(3))
        .count();
    assert!(while_broken >= 2, "p0 kept running: {p0_ticks:?}");
    // After the fix, only even seconds.
    let after: Vec<_> = p0_ticks.iter().filter(|t| **t > every_other_at).collect();
    assert!(!after.is_empty(), "{p0_ticks:?}");
    assert!(
        after.iter().all(|t| chrono::Timelike::second(*t) % 2 == 0),
        "{p0_ticks:?}"
    );
    // The added pipeline ran, then stopped.
    assert!(p1_ticks.len() >= 2, "{p1_ticks:?}");
    assert!(p1_ticks.iter().all(|t| *t <= removed_at), "{p1_ticks:?}");
    // Each tick once.
    for ticks in [&p0_ticks, &p1_ticks] {
        let distinct: std::collections::BTreeSet<_> = ticks.iter().collect();
        assert_eq!(distinct.len(), ticks.len(), "{ticks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_host_opens_its_circuit_and_fails_fast_while_other_hosts_run() {
    let down = msp().await;
    let up = msp().await;
    down.set_fault(
        "/gbfs/v2.3/gbfs.json",
        mobiflux::simulator::Fault::Status(503),
    );
    let pipelines = temp_dir("breaker-defs");
    for (name, base) in [("down", down.base_url()), ("up", up.base_url())] {
        std::fs::write(
            pipelines.join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\npartner = \"{name}\"\nformat = \"gbfs\"\nurl = \"{base}/gbfs/v2.3/gbfs.json\"\nschedule = \"* * * * * *\"\nsoft_ttl = 1\nhard_ttl = 60\n"
            ),
        )
        .unwrap();
    }
    let work = temp_dir("breaker-work");
    let (mut env, wh_url) = local_dest(&pipelines, &work);
    env.push((
        "MOBIFLUX_CACHE_URL".into(),
        format!("sqlite://{}/cache.db", work.display()),
    ));
    let addr = free_port();
    let child = daemon(
        &env,
        &[
            "--breaker-failures",
            "2",
            "--breaker-cooldown-secs",
            "3",
            "--metrics-addr",
            &addr,
        ],
    );
    tokio::time::sleep(Duration::from_millis(4_400)).await;
    let (_, metrics) = get(&addr, "/metrics");
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    signal(&child, libc::SIGTERM);
    let (ok, stdout, stderr) = finish(child);
    assert!(ok, "{stdout}\n{stderr}");
    let pool = sqlx::SqlitePool::connect(&wh_url).await.unwrap();
    let runs: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT pipeline, status, error FROM etl_runs WHERE trigger = 'schedule' ORDER BY scheduled_for",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let of = |p: &str| runs.iter().filter(|r| r.0 == p).collect::<Vec<_>>();
    let host = down.base_url().trim_start_matches("http://").to_string();
    let refused: Vec<_> = of("down")
        .into_iter()
        .filter(|r| {
            r.2.as_deref()
                .is_some_and(|e| e.contains(&format!("the circuit for {host} is open")))
        })
        .collect();
    assert!(of("down").len() >= 5, "{runs:?}");
    assert!(of("down").iter().all(|r| r.1 == "failed"), "{runs:?}");
    assert!(refused.len() >= 2, "ticks failed fast: {runs:?}");
    // Two failures opened the circuit; after the 3 s cool-down at most one probe (whether
    // it came before the stop depends on when the daemon's first tick fell).
    let calls = down
        .requests()
        .iter()
        .filter(|p| p.as_str() == "/gbfs/v2.3/gbfs.json")
        .count();
    assert!(
        (2..=3).contains(&calls),
        "requests to the failing host: {calls}; runs {runs:?}"
    );
    assert_eq!(calls + refused.len(), of("down").len());
    // The other host was not affected.
    assert!(
        of("up").len() >= 5 && of("up").iter().all(|r| r.1 == "succeeded"),
        "{runs:?}"
    );
    assert!(stderr.contains("circuit opened"), "{stderr}");
    assert!(
        metrics.contains(&format!("mobiflux_breaker_state{{host=\"{host}\"}} 2")),
        "{metrics}"
    );
    let up_host = up.base_url().trim_start_matches("http://").to_string();
    assert!(
        metrics.contains(&format!("mobiflux_breaker_state{{host=\"{up_host}\"}} 0")),
        "{metrics}"
    );
}

/// A newer mobiflux migrating the shared warehouse while this one runs (a rolling upgrade):
/// this daemon stops claiming ticks and gives its leases up at once, instead of writing
/// tables whose shape or meaning it does not know; `/health` says why with a 503; it
/// resumes when the warehouse is back at a version it knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_runs_nothing_in_a_warehouse_a_newer_mobiflux_migrated() {
    let sim = msp().await;
    let pipelines = temp_dir("newer-defs");
    every_second(&pipelines, &sim.base_url(), 2);
    let pg = pg_database().await;
    let work = temp_dir("newer-work");
    let env = dest(&pipelines, work.join("raw").to_str().unwrap(), &pg);
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let runs = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM etl_runs WHERE trigger = 'schedule'")
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    };
    let leases = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM schedule_leases")
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    };
    let addr = free_port();
    let child = daemon(&env, &["--metrics-addr", &addr, "--lease-secs", "60"]);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(get(&addr, "/health").0, "HTTP/1.1 200 OK");
    assert!(runs().await >= 2);
    assert_eq!(leases().await, 2);

    // A newer mobiflux's migration lands.
    sqlx::query("INSERT INTO schema_migrations (version) VALUES (10000)")
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (status, health) = get(&addr, "/health");
    let before = runs().await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        runs().await,
        before,
        "no run started under the newer schema"
    );
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    let known = mobiflux_loaders::POSTGRES_MIGRATIONS.last().unwrap().0;
    assert!(
        health.starts_with("{\"status\":\"failing\",\"pipelines\":2,")
            && health.contains("\"claims_failing\":2,")
            && health.contains(&format!(
                "is at schema version 10000, newer than this mobiflux knows (up to {known}): upgrade this instance"
            )),
        "{health}"
    );
    // Its leases were given up at once (not after their 60 s), for an upgraded instance.
    assert_eq!(leases().await, 0);
    // A one-shot run refuses the warehouse before fetching anything.
    let requests = sim.requests().len();
    let out = mobiflux(&["run", "p0"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("is at schema version 10000, newer than this mobiflux knows"),
        "{stderr}"
    );
    assert_eq!(sim.requests().len(), requests);

    // The warehouse is back at a version this mobiflux knows: it runs again.
    sqlx::query("DELETE FROM schema_migrations WHERE version = 10000")
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (status, health) = get(&addr, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK", "{health}");
    assert!(runs().await > before);
    signal(&child, libc::SIGTERM);
    let (ok, stdout, stderr) = finish(child);
    assert!(ok, "{stdout}\n{stderr}");
    // Each pipeline said it once, not at every tick it could not claim.
    assert_eq!(
        stderr.matches("could not claim the tick; not run").count(),
        2,
        "{stderr}"
    );
    assert!(
        stderr.contains("newer than this mobiflux knows"),
        "{stderr}"
    );
}

/// The warehouse goes away under a running daemon (its connections cut, new ones refused),
/// then comes back: the daemon keeps going, `/health` says it is failing meanwhile, each
/// pipeline logs the failure once rather than at every tick, and ticks run again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_outlives_a_warehouse_outage_and_says_so_on_health() {
    let sim = msp().await;
    // Each run spends 1.5 s fetching: runs are in flight when the warehouse goes away.
    sim.set_fault(
        "/gbfs/v2.3/gbfs.json",
        mobiflux::simulator::Fault::Delay(Duration::from_millis(1_500)),
    );
    let pipelines = temp_dir("outage-defs");
    every_second(&pipelines, &sim.base_url(), 2);
    let pg = pg_database().await;
    let db = pg.rsplit_once('/').unwrap().1.to_string();
    let admin = sqlx::PgPool::connect(
        &std::env::var("MOBIFLUX_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
    .await
    .unwrap();
    let work = temp_dir("outage-work");
    let env = dest(&pipelines, work.join("raw").to_str().unwrap(), &pg);
    let addr = free_port();
    let mut child = daemon(&env, &["--metrics-addr", &addr]);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(get(&addr, "/health").0, "HTTP/1.1 200 OK");
    // The cut comes while a run is fetching (started less than 1 s ago, so more than 0.5 s
    // of its fetch is left), not at a moment left to chance between two runs.
    let watch = sqlx::PgPool::connect(&pg).await.unwrap();
    let fetching = async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM etl_runs WHERE status = 'running' \
                 AND started_at > now() - interval '1 second'",
            )
            .fetch_one(&watch)
            .await
            .unwrap();
            if n > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fetching)
        .await
        .expect("a run fetching within 10 s");
    watch.close().await;

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (status, health) = get(&addr, "/health");
    let (_, metrics) = get(&addr, "/metrics");
    assert!(child.try_wait().unwrap().is_none(), "the daemon died");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let up = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (status_after, health_after) = get(&addr, "/health");
    signal(&child, libc::SIGTERM);
    let (ok, stdout, stderr) = finish(child);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{health}");
    assert!(
        health.starts_with("{\"status\":\"failing\",\"pipelines\":2,")
            && health.contains("\"claims_failing\":2,")
            && health.contains("is not currently accepting connections"),
        "{health}"
    );
    // Some 40 ticks could not be claimed; each pipeline logged an error when its claims
    // began to fail, and again when they failed differently (connections cut, then refused).
    let unclaimed: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("mobiflux_ticks_not_run_total{") && l.contains("reason=\"claim_error\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    let logged = stderr.matches("could not claim the tick").count();
    assert!(unclaimed >= 30, "{metrics}");
    assert!(
        (2..=4).contains(&logged),
        "{logged} errors logged:\n{stderr}"
    );
    assert_eq!(status_after, "HTTP/1.1 200 OK", "{health_after}");
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let after: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM etl_runs WHERE trigger = 'schedule' AND status = 'succeeded' AND started_at > $1",
    )
    .bind(up)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(after >= 2, "runs after the outage: {after}");
    // The runs the outage cut short could not record their end; the next claims marked
    // them abandoned, so none is left running.
    assert_eq!(still_running(&pool).await, 0);
    let abandoned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM etl_runs WHERE status = 'failed' AND error LIKE 'abandoned: %'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        abandoned >= 1,
        "runs in flight at the outage: {abandoned} marked"
    );
}
