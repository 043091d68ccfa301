//! The warehouses themselves: migrations that create exactly the columns the unified schemas
//! declare, where a schema stands against them, PostgreSQL's binary COPY, merge staging, the
//! loads' locks, closing days, and a warehouse a newer mobiflux migrated refused.

mod common;

use mobiflux_loaders::Schema;
use mobiflux_model::schema::{QUARANTINE, UNIFIED_TABLES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_match_the_declared_schemas_in_postgres_and_sqlite() {
    let pg = common::pg_database().await;
    let wh = mobiflux_loaders::open(&pg).await.unwrap();
    wh.migrate().await.unwrap();
    wh.migrate().await.unwrap(); // a second time is a no-op
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let dir = common::temp_dir("schema");
    let lite_url = format!("sqlite://{}/w.db", dir.display());
    let lite = mobiflux_loaders::open(&lite_url).await.unwrap();
    lite.migrate().await.unwrap();
    let lite_pool = sqlx::SqlitePool::connect(&lite_url).await.unwrap();
    for t in UNIFIED_TABLES.iter().chain([&QUARANTINE]) {
        let declared: Vec<String> = t.column_names().map(str::to_string).collect();
        let in_pg: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        )
        .bind(t.name)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(in_pg, declared, "PostgreSQL {}", t.name);
        let in_lite: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(t.name)
                .fetch_all(&lite_pool)
                .await
                .unwrap();
        assert_eq!(in_lite, declared, "SQLite {}", t.name);
    }
    let partitioned: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        partitioned,
        // Snapshots by day; the reference tables of big published files by partner.
        vec![
            "carpool_journeys",
            "charge_point_status",
            "charge_points",
            "gateway_calls",
            "parking_facilities",
            "parking_occupancy",
            "station_status",
            "vehicles"
        ]
    );
}

/// A charge point with every column type; `full` sets the optional ones, otherwise null.
fn charge_point(id: &str, name: &str, full: bool) -> mobiflux_transforms::frame::Row {
    use chrono::TimeZone as _;
    let mut r = mobiflux_transforms::frame::Row::new(&mobiflux_model::schema::CHARGE_POINTS);
    let day = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    r.set("partner", "enc")
        .set("charge_point_id", id)
        .set("station_id", "S1")
        .set("station_name", name)
        .set("lat", 48.5)
        .set("lon", -1.25)
        .set(
            "valid_from",
            chrono::Utc
                .with_ymd_and_hms(1999, 12, 31, 23, 0, 0)
                .unwrap(),
        )
        .set("run_id", "r-enc")
        .set("network", full.then_some("Réseau «Ouest»"))
        .set("station_points", full.then_some(-3i64))
        .set("power_kw", full.then_some(22.5))
        .set("socket_ccs", full.then_some(false))
        .set("commissioned_on", full.then_some(day));
    r
}

/// A run of partner `enc`'s IRVE pipeline as it starts.
fn irve_run(run_id: &str, pipeline: &str) -> mobiflux_loaders::RunRecord {
    mobiflux_loaders::RunRecord {
        run_id: run_id.into(),
        pipeline: pipeline.into(),
        partner: "enc".into(),
        format: "irve".into(),
        trigger: "run".into(),
        scheduled_for: None,
        started_at: chrono::Utc::now(),
        finished_at: None,
        status: "running".into(),
        rows_loaded: 0,
        rows_quarantined: 0,
        bytes: 0,
        error: None,
        manifest: None,
        curated_batch: None,
    }
}

/// PostgreSQL's binary COPY, both ways of encoding it: column by column (single arrays,
/// text without NUL) and cell by cell (a frame of several chunks, or text holding NUL,
/// which PostgreSQL cannot store: it is dropped). Every type, present and null, reads back
/// exactly; dates and times on both sides of PostgreSQL's 2000 epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_encodes_every_type_by_column_and_by_cell() {
    use mobiflux_model::schema::CHARGE_POINTS;
    use mobiflux_transforms::frame::FrameBuilder;
    let frame = |rows: Vec<mobiflux_transforms::frame::Row>| {
        let mut b = FrameBuilder::new(&CHARGE_POINTS);
        for r in rows {
            b.push(r).unwrap();
        }
        b.finish()
    };
    let columnar = frame(vec![
        charge_point("A1", "Alpha", true),
        charge_point("A2", "a name longer than twelve bytes", false),
    ]);
    let with_nul = frame(vec![charge_point("B1", "Pic\0pus", true)]);
    let mut chunked = frame(vec![charge_point("C1", "Gamma", false)]);
    chunked
        .vstack_mut(&frame(vec![charge_point("C2", "Delta", true)]))
        .unwrap();
    assert_eq!(chunked.first_col_n_chunks(), 2);
    let pg = common::pg_database().await;
    let wh = mobiflux_loaders::open(&pg).await.unwrap();
    wh.migrate().await.unwrap();
    let run = irve_run("r-enc", "enc");
    wh.start_run(&run).await.unwrap();
    let mut tx = wh.begin(&run, &[]).await.unwrap();
    for df in [&columnar, &with_nul, &chunked] {
        tx.frame(&CHARGE_POINTS, df).await.unwrap();
    }
    tx.commit().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    type Read = (
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<f64>,
        Option<bool>,
        Option<String>,
        String,
        f64,
    );
    let rows: Vec<Read> = sqlx::query_as(
        "SELECT charge_point_id, station_name, network, station_points, power_kw, socket_ccs, \
                commissioned_on::text, to_char(valid_from AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), lon \
         FROM charge_points ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let full = |id: &str, name: &str| -> Read {
        (
            id.into(),
            name.into(),
            Some("Réseau «Ouest»".into()),
            Some(-3),
            Some(22.5),
            Some(false),
            Some("2024-02-29".into()),
            "1999-12-31 23:00".into(),
            -1.25,
        )
    };
    let bare = |id: &str, name: &str| -> Read {
        (
            id.into(),
            name.into(),
            None,
            None,
            None,
            None,
            None,
            "1999-12-31 23:00".into(),
            -1.25,
        )
    };
    assert_eq!(
        rows,
        vec![
            full("A1", "Alpha"),
            bare("A2", "a name longer than twelve bytes"),
            full("B1", "Picpus"),
            bare("C1", "Gamma"),
            full("C2", "Delta"),
        ]
    );
}

/// Merges stage through a temporary table made once per connection and emptied at each
/// commit: a second merge on the same connection sees only its own rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_stage_tables_outlive_a_load_but_not_its_rows() {
    use mobiflux_loaders::{PostgresWarehouse, Warehouse as _};
    use mobiflux_model::schema::CHARGE_POINTS;
    use mobiflux_transforms::frame::FrameBuilder;
    let frame = |rows: &[(&str, &str)]| {
        let mut b = FrameBuilder::new(&CHARGE_POINTS);
        for (id, name) in rows {
            b.push(charge_point(id, name, true)).unwrap();
        }
        b.finish()
    };
    let pg = common::pg_database().await;
    // One connection: every load, and the check, use the same session.
    let wh = PostgresWarehouse::connect_sized(&pg, 1).await.unwrap();
    wh.migrate().await.unwrap();
    let mut changed = Vec::new();
    for (i, rows) in [
        &[("A1", "Alpha")][..],
        &[("A1", "Alpha 2"), ("A2", "Beta")],
        &[("A2", "Beta 2")],
    ]
    .into_iter()
    .enumerate()
    {
        let run = irve_run(&format!("r-stage-{i}"), "stage");
        wh.start_run(&run).await.unwrap();
        let mut tx = wh.begin(&run, &[]).await.unwrap();
        tx.frame(&CHARGE_POINTS, &frame(rows)).await.unwrap();
        let stats = tx.commit().await.unwrap();
        changed.push(stats.changed);
    }
    // The first load COPYs into the partner's new partition; the next two merge, and the
    // third changes only its own row (the second load's rows are gone from the stage).
    assert_eq!(
        changed,
        [
            vec![("charge_points", 1)],
            vec![("charge_points", 2)],
            vec![("charge_points", 1)]
        ]
    );
    let mut conn = wh.pool().acquire().await.unwrap();
    let (exists, rows): (bool, i64) = sqlx::query_as(
        "SELECT to_regclass('pg_temp.stage_charge_points') IS NOT NULL, (SELECT count(*) FROM pg_temp.stage_charge_points)",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!((exists, rows), (true, 0));
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT charge_point_id, station_name FROM charge_points WHERE partner = 'enc' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        names,
        [
            ("A1".to_string(), "Alpha 2".to_string()),
            ("A2".to_string(), "Beta 2".to_string())
        ]
    );
}

/// A load that names its snapshot tables takes their per-partner load locks in its BEGIN,
/// whatever the partner's name holds (quotes, a dollar tag), and holds them to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_holds_its_snapshot_tables_locks_from_its_begin_to_its_end() {
    use mobiflux_model::schema::{STATION_STATUS, VEHICLES};
    let pg = common::pg_database().await;
    let wh = mobiflux_loaders::open(&pg).await.unwrap();
    wh.migrate().await.unwrap();
    let mut run = irve_run("r-locks", "locks");
    run.partner = "o'neil $q$ bikes".into();
    wh.start_run(&run).await.unwrap();
    let other = sqlx::PgPool::connect(&pg).await.unwrap();
    let free = |table: &str| {
        let key = format!("mobiflux.load.{table}.{}", run.partner);
        let other = other.clone();
        async move {
            let mut tx = other.begin().await.unwrap();
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            got
        }
    };
    let tx = wh.begin(&run, &[&VEHICLES, &STATION_STATUS]).await.unwrap();
    assert!(!free("vehicles").await, "vehicles locked by the BEGIN");
    assert!(
        !free("station_status").await,
        "station_status locked by the BEGIN"
    );
    assert!(free("charge_points").await, "only the tables named");
    tx.commit().await.unwrap();
    assert!(free("vehicles").await, "released at commit");
    assert!(free("station_status").await, "released at commit");
}

/// Days close only when no load that adds to the rollups is open: a load holds the days
/// lock shared from its BEGIN, and the closing, which only tries the lock, closes them once
/// that load has committed (and never makes new loads wait behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_close_only_once_the_loads_in_flight_have_ended() {
    use mobiflux_model::schema::{CHARGE_POINTS, VEHICLES};
    let pg = common::pg_database().await;
    let wh = std::sync::Arc::new(mobiflux_loaders::open(&pg).await.unwrap());
    wh.migrate().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    sqlx::query("UPDATE rollup_days SET closed_before = date_trunc('day', now(), 'UTC') - interval '3 days'")
        .execute(&pool)
        .await
        .unwrap();
    let mark = || async {
        let open: bool = sqlx::query_scalar(
            "SELECT closed_before < date_trunc('day', now(), 'UTC') FROM rollup_days",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        open
    };
    let run = irve_run("r-days", "days");
    wh.start_run(&run).await.unwrap();
    // A load of a table without rollups does not hold the days open.
    let other = irve_run("r-days-cp", "days-cp");
    wh.start_run(&other).await.unwrap();
    let unrelated = wh.begin(&other, &[&CHARGE_POINTS]).await.unwrap();
    let tx = wh.begin(&run, &[&VEHICLES]).await.unwrap();
    let closing = tokio::spawn({
        let wh = wh.clone();
        async move { wh.close_days(mobiflux_loaders::CLOSE_TRIES).await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(mark().await, "closed while a load was open");
    assert!(!closing.is_finished());
    // A new load is not made to wait by the closing's tries.
    let mut second = irve_run("r-days-2", "days-2");
    second.partner = "other".into();
    wh.start_run(&second).await.unwrap();
    let tx2 = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        wh.begin(&second, &[&VEHICLES]),
    )
    .await
    .expect("a new load began at once")
    .unwrap();
    tx.commit().await.unwrap();
    tx2.commit().await.unwrap();
    let days = tokio::time::timeout(std::time::Duration::from_secs(5), closing)
        .await
        .expect("closed once the loads had ended")
        .unwrap();
    assert_eq!(days, 3);
    assert!(!mark().await);
    unrelated.commit().await.unwrap();
}

/// A warehouse a newer mobiflux migrated further is refused, PostgreSQL and SQLite alike:
/// by `migrate` (every command starts with it), by a scheduler's claim (which takes nothing,
/// and gives up the lease it held on PostgreSQL), and by PostgreSQL's fold and closing of
/// days; with the newer version gone, all work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_a_newer_mobiflux_migrated_is_refused_with_both_versions() {
    use sqlx::Connection;
    use std::time::Duration;
    for url in both_warehouses("newer-schema").await {
        let url = url.as_str();
        let wh = mobiflux_loaders::open(url).await.unwrap();
        assert!(
            matches!(
                wh.schema().await.unwrap(),
                Schema::Behind { found: None, .. }
            ),
            "{url}"
        );
        wh.migrate().await.unwrap();
        assert_eq!(wh.schema().await.unwrap(), Schema::Current, "{url}");
        if url.starts_with("postgres") {
            // Current: migrate takes no lock (one-shot runs starting together do not queue
            // on it), even while another process holds the migrations' lock.
            let mut other = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(0x6d6f_6269_666c_7578_i64) // postgres.rs's MIGRATION_LOCK
                .execute(&mut other)
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(10), wh.migrate())
                .await
                .expect("migrate waited for the lock")
                .unwrap();
            other.close().await.unwrap();
        }
        let tick = chrono::Utc::now();
        let ttl = Duration::from_secs(60);
        assert!(wh.claim_tick("p", tick, "me", ttl).await.unwrap(), "{url}");
        let db = if url.starts_with("postgres") {
            Db::Pg(sqlx::PgPool::connect(url).await.unwrap())
        } else {
            Db::Lite(sqlx::SqlitePool::connect(url).await.unwrap())
        };
        db.exec("INSERT INTO schema_migrations (version) VALUES (10000)")
            .await;
        let e = wh.migrate().await.unwrap_err().to_string();
        assert!(
            e.contains("is at schema version 10000, newer than this mobiflux knows (up to ")
                && e.contains("): upgrade this instance; every mobiflux sharing a warehouse must run the same version"),
            "{url}: {e}"
        );
        for e in [
            wh.schema().await.unwrap_err(),
            mobiflux_loaders::ready_to_read(wh.as_ref())
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    mobiflux_loaders::LoadError::SchemaNewer { found: 10000, .. }
                ),
                "{url}: {e}"
            );
        }
        let next = tick + chrono::Duration::seconds(1);
        let e = wh.claim_tick("p", next, "me", ttl).await.unwrap_err();
        assert!(
            matches!(
                e,
                mobiflux_loaders::LoadError::SchemaNewer { found: 10000, .. }
            ),
            "{url}: {e}"
        );
        if url.starts_with("postgres") {
            // The lease this instance held is given up, for an instance that knows the schema.
            assert_eq!(db.leases().await, 0);
            let known = mobiflux_loaders::POSTGRES_MIGRATIONS.last().unwrap().0;
            for e in [
                wh.fold_rollups().await.unwrap_err(),
                wh.close_days(1).await.unwrap_err(),
            ] {
                assert!(
                    matches!(e, mobiflux_loaders::LoadError::SchemaNewer { found: 10000, known: k, .. } if k == known),
                    "{e}"
                );
            }
        } else {
            // One instance only: its lease stays as it was.
            assert_eq!(db.leases().await, 1);
        }
        db.exec("DELETE FROM schema_migrations WHERE version = 10000")
            .await;
        wh.migrate().await.unwrap();
        assert!(wh.claim_tick("p", next, "me", ttl).await.unwrap(), "{url}");
        assert_eq!(db.leases().await, 1);
        if url.starts_with("postgres") {
            wh.fold_rollups().await.unwrap();
            wh.close_days(1).await.unwrap();
        }
    }
}

/// Either warehouse's pool, for statements both run alike.
enum Db {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

impl Db {
    async fn exec(&self, q: &'static str) {
        match self {
            Db::Pg(p) => sqlx::query(q).execute(p).await.map(drop),
            Db::Lite(p) => sqlx::query(q).execute(p).await.map(drop),
        }
        .unwrap()
    }

    async fn leases(&self) -> i64 {
        let q = "SELECT count(*) FROM schedule_leases";
        match self {
            Db::Pg(p) => sqlx::query_scalar(q).fetch_one(p).await,
            Db::Lite(p) => sqlx::query_scalar(q).fetch_one(p).await,
        }
        .unwrap()
    }
}

/// A scheduled run left `running` (its daemon killed, or cut from the warehouse before it
/// recorded the end) is marked failed, as abandoned, when its pipeline's next tick is
/// claimed, PostgreSQL and SQLite alike; a one-shot run going at the same time, another
/// pipeline's run, and a tick another instance holds leave runs as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_left_running_is_marked_abandoned_at_the_next_claim() {
    use chrono::{DurationRound, Utc};
    use std::time::Duration;
    for url in both_warehouses("abandoned").await {
        let url = url.as_str();
        let wh = mobiflux_loaders::open(url).await.unwrap();
        wh.migrate().await.unwrap();
        let ttl = Duration::from_secs(60);
        let t1 = Utc::now()
            .duration_trunc(chrono::TimeDelta::seconds(1))
            .unwrap();
        let t2 = t1 + chrono::Duration::seconds(1);
        let scheduled = |id: &str, pipeline: &str| mobiflux_loaders::RunRecord {
            trigger: "schedule".into(),
            scheduled_for: Some(t1),
            ..irve_run(id, pipeline)
        };
        assert!(wh.claim_tick("p", t1, "a", ttl).await.unwrap());
        assert!(wh.claim_tick("q", t1, "a", ttl).await.unwrap());
        wh.start_run(&scheduled("run-p", "p")).await.unwrap();
        wh.start_run(&scheduled("run-q", "q")).await.unwrap();
        wh.start_run(&irve_run("one-shot", "p")).await.unwrap();
        // Another instance cannot take p's tick while a's lease lives: nothing is marked.
        assert!(!wh.claim_tick("p", t2, "b", ttl).await.unwrap());
        assert_eq!(wh.run("run-p").await.unwrap().unwrap().status, "running");
        // a's daemon comes back (or another takes over later): the next tick is claimed.
        assert!(wh.claim_tick("p", t2, "a", ttl).await.unwrap());
        let p = wh.run("run-p").await.unwrap().unwrap();
        assert_eq!(p.status, "failed", "{url}");
        assert!(p.finished_at.is_some());
        assert_eq!(
            p.error.as_deref(),
            Some(
                "abandoned: the daemon running it stopped, or lost the warehouse, before recording how it ended (a complete extraction can be loaded again: mobiflux replay run-p)"
            ),
            "{url}"
        );
        for untouched in ["run-q", "one-shot"] {
            assert_eq!(
                wh.run(untouched).await.unwrap().unwrap().status,
                "running",
                "{url} {untouched}"
            );
        }
        // Should the run still end, its own record replaces the mark.
        let ended = mobiflux_loaders::RunRecord {
            status: "succeeded".into(),
            finished_at: Some(Utc::now()),
            ..scheduled("run-p", "p")
        };
        wh.fail_run(&ended).await.unwrap();
        let p = wh.run("run-p").await.unwrap().unwrap();
        assert_eq!((p.status.as_str(), p.error), ("succeeded", None), "{url}");
    }
}

/// A fresh PostgreSQL database and a fresh SQLite file: the URLs of both warehouses.
async fn both_warehouses(tag: &str) -> [String; 2] {
    let dir = common::temp_dir(tag);
    [
        common::pg_database().await,
        format!("sqlite://{}/w.db", dir.display()),
    ]
}
