//! Statistics for AOM analysts: the stats_* views on both warehouses, fed by generated GBFS
//! history through the real pipeline (simulated MSP, `mobiflux run`, `mobiflux replay`),
//! with the expected figures written out; and territory scoping on PostgreSQL.

mod common;

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use serde_json::{Value, json};

/// 2026-11-02 08:00:00 UTC.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0).unwrap()
}

fn write(dir: &Path, name: &str, data: Value, at: DateTime<Utc>) {
    let doc = json!({ "last_updated": at.timestamp(), "ttl": 60, "version": "2.3", "data": data });
    std::fs::write(dir.join(name), serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// A GBFS 2.3 system with two docking stations and up to three free-floating vehicles.
fn write_static(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let feeds: Vec<Value> = [
        "system_information",
        "vehicle_types",
        "station_information",
        "station_status",
        "free_bike_status",
    ]
    .iter()
    .map(|n| json!({ "name": n, "url": format!("https://example.invalid/{n}") }))
    .collect();
    write(dir, "gbfs.json", json!({ "en": { "feeds": feeds } }), t0());
    write(
        dir,
        "system_information.json",
        json!({ "system_id": "gen", "language": "fr", "name": "Generated", "timezone": "Europe/Paris" }),
        t0(),
    );
    write(
        dir,
        "vehicle_types.json",
        json!({ "vehicle_types": [
            { "vehicle_type_id": "bike", "form_factor": "bicycle", "propulsion_type": "human", "name": "Bike" },
            { "vehicle_type_id": "scooter", "form_factor": "scooter", "propulsion_type": "electric", "max_range_meters": 20000, "name": "Scooter" }
        ] }),
        t0(),
    );
    write(
        dir,
        "station_information.json",
        json!({ "stations": [
            { "station_id": "a", "name": "Bellecour", "lat": 45.7578, "lon": 4.8320, "capacity": 10 },
            { "station_id": "b", "name": "Terreaux", "lat": 45.7675, "lon": 4.8336, "capacity": 10 }
        ] }),
        t0(),
    );
}

/// Minute offset, then per station (vehicles, docks, renting), then the vehicles seen
/// (id, type, lat, lon, reserved, disabled).
type Snapshot = (
    i64,
    [(i64, i64, bool); 2],
    &'static [(&'static str, &'static str, f64, f64, bool, bool)],
);

const V1: (&str, &str, f64, f64, bool, bool) = ("v1", "bike", 45.7641, 4.8357, false, false);
const HISTORY: &[Snapshot] = &[
    (
        0,
        [(0, 10, true), (4, 6, true)],
        &[V1, ("v2", "scooter", 45.7649, 4.8301, true, false)],
    ),
    (
        5,
        [(3, 7, true), (0, 10, true)],
        &[
            V1,
            ("v2", "scooter", 45.7649, 4.8301, false, true),
            ("v3", "bike", 45.7712, 4.8521, false, false),
        ],
    ),
    (10, [(10, 0, true), (5, 5, false)], &[V1]),
    (20, [(6, 4, true), (5, 5, true)], &[V1]),
    // 30 minutes without data: the states before it are not extended over the gap.
    (50, [(6, 4, true), (5, 5, true)], &[V1]),
    (62, [(0, 10, true), (2, 8, true)], &[V1]),
];

fn write_snapshot(dir: &Path, s: &Snapshot) {
    let at = t0() + chrono::Duration::minutes(s.0);
    let stations: Vec<Value> = ["a", "b"]
        .iter()
        .zip(s.1)
        .map(|(id, (v, d, renting))| {
            json!({ "station_id": id, "num_bikes_available": v, "num_docks_available": d,
                    "is_installed": true, "is_renting": renting, "is_returning": true,
                    "last_reported": at.timestamp() })
        })
        .collect();
    write(
        dir,
        "station_status.json",
        json!({ "stations": stations }),
        at,
    );
    let bikes: Vec<Value> =
        s.2.iter()
            .map(|(id, t, lat, lon, r, d)| {
                json!({ "bike_id": id, "vehicle_type_id": t, "lat": lat, "lon": lon,
                    "is_reserved": r, "is_disabled": d, "last_reported": at.timestamp() })
            })
            .collect();
    write(dir, "free_bike_status.json", json!({ "bikes": bikes }), at);
}

/// Loads the generated history for `partners` (one pipeline each, same feed) into `warehouse`,
/// then replays one run: the rollups must not count its snapshot twice.
async fn load_history(warehouse: &str, partners: &[(&str, &str)]) {
    let feed = temp_dir("stats-feed");
    write_static(&feed.join("sys"));
    let sim = mobiflux::simulator::Simulator::start(&feed, "127.0.0.1:0")
        .await
        .unwrap();
    let pipelines = temp_dir("stats-defs");
    for (partner, territory) in partners {
        define(
            &pipelines,
            partner,
            &format!("{}/sys/gbfs.json", sim.base_url()),
            &format!("territory = \"{territory}\""),
        );
    }
    let raw = temp_dir("stats-raw");
    let mut env = dest(&pipelines, raw.to_str().unwrap(), warehouse);
    env.push(("MOBIFLUX_CACHE_URL".into(), "none".into()));
    for s in HISTORY {
        write_snapshot(&feed.join("sys"), s);
        let out = mobiflux(&["run"], &env).await;
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let last = "SELECT run_id FROM etl_runs ORDER BY started_at DESC LIMIT 1";
    let run_id: String = match warehouse.strip_prefix("sqlite://") {
        Some(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
                .await
                .unwrap();
            sqlx::query_scalar(last).fetch_one(&pool).await.unwrap()
        }
        None => {
            let pool = sqlx::PgPool::connect(warehouse).await.unwrap();
            sqlx::query_scalar(last).fetch_one(&pool).await.unwrap()
        }
    };
    let out = mobiflux(&["replay", &run_id], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
}

async fn stats(warehouse: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["stats"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json", "--warehouse", warehouse]);
    let out = mobiflux(&all, &[]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str::<Vec<Value>>(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|f| (f - expected).abs() < 1e-9)
}

/// `rows` restricted to those whose `key` fields equal the given values.
fn pick<'a>(rows: &'a [Value], key: &[(&str, Value)]) -> &'a Value {
    let found: Vec<&Value> = rows
        .iter()
        .filter(|r| key.iter().all(|(k, v)| &r[*k] == v))
        .collect();
    assert_eq!(found.len(), 1, "{key:?} in {rows:#?}");
    found[0]
}

fn check(row: &Value, expected: &[(&str, f64)]) {
    for (k, v) in expected {
        assert!(
            close(&row[*k], *v),
            "{k}: expected {v}, got {} in {row}",
            row[*k]
        );
    }
}

/// The figures of the generated history, worked out by hand (see HISTORY).
async fn views_give_the_expected_figures(warehouse: &str, hour: impl Fn(u32) -> Value) {
    load_history(warehouse, &[("velov", "lyon")]).await;
    expected_figures(warehouse, hour).await;
}

async fn expected_figures(warehouse: &str, hour: impl Fn(u32) -> Value) {
    // Station occupancy per hour. Station a, 08:00: samples at 0, 5, 10, 20, 50 min with
    // 0, 3, 10, 6, 6 vehicles and 10, 7, 0, 4, 4 docks; empty 0-5, full 10-20, observed
    // 0-20 and 50-60 (the 20-50 gap is no data).
    let occ = stats(warehouse, &["station-occupancy"]).await;
    assert_eq!(occ.len(), 4, "{occ:#?}");
    let a8 = pick(&occ, &[("station_id", json!("a")), ("hour", hour(8))]);
    assert_eq!(a8["name"], json!("Bellecour"));
    assert_eq!(a8["samples"], json!(5));
    check(
        a8,
        &[
            ("avg_vehicles_available", 5.0),
            ("avg_docks_available", 5.0),
            ("occupancy", 0.5),
            ("observed_min", 30.0),
            ("empty_min", 5.0),
            ("full_min", 10.0),
            ("not_renting_min", 0.0),
        ],
    );
    let b8 = pick(&occ, &[("station_id", json!("b")), ("hour", hour(8))]);
    check(
        b8,
        &[
            ("avg_vehicles_available", 3.8),
            ("avg_docks_available", 6.2),
            ("occupancy", 0.38),
            ("observed_min", 30.0),
            ("empty_min", 5.0),
            ("full_min", 0.0),
            ("not_renting_min", 10.0),
        ],
    );
    // 09:00: one sample at 09:02, and the two minutes since 08:50.
    let a9 = pick(&occ, &[("station_id", json!("a")), ("hour", hour(9))]);
    assert_eq!(a9["samples"], json!(1));
    check(
        a9,
        &[
            ("occupancy", 0.0),
            ("observed_min", 2.0),
            ("empty_min", 0.0),
        ],
    );

    // Occupancy by day and hour across stations: 08:00 averages a 5/5 and b 3.8/6.2, so
    // 8.8 of 20; both were empty 5 minutes, a full 10. 09:00: a 0/10, b 2/8.
    let heat = stats(warehouse, &["occupancy-heat"]).await;
    assert_eq!(heat.len(), 2, "{heat:#?}");
    assert_eq!(heat[0]["day"], json!("2026-11-02"));
    assert_eq!(heat[0]["hour_of_day"], json!(8));
    assert_eq!(heat[0]["samples"], json!(10));
    check(
        &heat[0],
        &[("occupancy", 0.44), ("empty_min", 10.0), ("full_min", 10.0)],
    );
    assert_eq!(heat[1]["hour_of_day"], json!(9));
    check(&heat[1], &[("occupancy", 0.1), ("empty_min", 0.0)]);
    let timeline = stats(warehouse, &["fleet-timeline"]).await;
    assert_eq!(timeline.len(), 2, "{timeline:#?}");
    check(&timeline[0], &[("available", 1.2), ("vehicles", 1.6)]);
    check(&timeline[1], &[("available", 1.0), ("vehicles", 1.0)]);

    // Outages over the day, worst first (a tie: by station).
    let out = stats(
        warehouse,
        &[
            "station-outages",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-03",
        ],
    )
    .await;
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0]["station_id"], json!("a"));
    assert_eq!(out[0]["samples"], json!(6));
    check(
        &out[0],
        &[
            ("observed_min", 32.0),
            ("empty_min", 5.0),
            ("full_min", 10.0),
        ],
    );
    check(
        &out[1],
        &[
            ("observed_min", 32.0),
            ("empty_min", 5.0),
            ("not_renting_min", 10.0),
        ],
    );
    // Outside the period: nothing.
    let none = stats(warehouse, &["station-outages", "--from", "2026-11-03"]).await;
    assert!(none.is_empty(), "{none:#?}");

    // Fleet availability: five snapshots in the 08:00 hour, one at 09:02.
    let fleet = stats(warehouse, &["fleet-hourly"]).await;
    assert_eq!(fleet.len(), 4, "{fleet:#?}");
    let bike = pick(
        &fleet,
        &[
            ("hour", hour(8)),
            ("vehicle_type_id", json!("bike")),
            ("area", json!("45.76,4.83")),
        ],
    );
    assert_eq!(bike["snapshots"], json!(5));
    check(bike, &[("avg_vehicles", 1.0), ("avg_available", 1.0)]);
    let scooter = pick(
        &fleet,
        &[("hour", hour(8)), ("vehicle_type_id", json!("scooter"))],
    );
    check(
        scooter,
        &[
            ("avg_vehicles", 0.4),
            ("avg_available", 0.0),
            ("avg_reserved", 0.2),
            ("avg_disabled", 0.2),
        ],
    );
    let far = pick(&fleet, &[("hour", hour(8)), ("area", json!("45.77,4.85"))]);
    check(far, &[("avg_vehicles", 0.2), ("avg_available", 0.2)]);
    let daily = stats(warehouse, &["fleet-daily", "--partner", "velov"]).await;
    assert_eq!(daily.len(), 3, "{daily:#?}");
    let scooter = pick(&daily, &[("vehicle_type_id", json!("scooter"))]);
    assert_eq!(scooter["day"], json!("2026-11-02"));
    assert_eq!(scooter["snapshots"], json!(6));
    check(scooter, &[("avg_vehicles", 2.0 / 6.0)]);
    assert!(
        stats(warehouse, &["fleet-daily", "--partner", "other"])
            .await
            .is_empty()
    );
    assert_eq!(
        stats(warehouse, &["fleet-daily", "--territory", "lyon"])
            .await
            .len(),
        3
    );
    assert!(
        stats(warehouse, &["fleet-daily", "--territory", "grenoble"])
            .await
            .is_empty()
    );

    // Feed health: six runs (a replay runs again under its own run id), no failure.
    let health = stats(warehouse, &["feed-health"]).await;
    assert_eq!(health.len(), 1, "{health:#?}");
    assert_eq!(health[0]["pipeline"], json!("velov"));
    assert_eq!(health[0]["territory"], json!("lyon"));
    assert_eq!(health[0]["runs"], json!(6));
    assert_eq!(health[0]["failures"], json!(0));
    assert_eq!(health[0]["interval_s"], json!(60));
    assert_eq!(health[0]["last_status"], json!("succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_views_give_the_expected_figures() {
    let dir = temp_dir("stats-sqlite");
    let wh = format!("sqlite://{}/w.db", dir.display());
    views_give_the_expected_figures(&wh, |h| json!(format!("2026-11-02T{h:02}:00:00.000000Z")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_views_give_the_expected_figures() {
    let pg = pg_database().await;
    views_give_the_expected_figures(&pg, |h| json!(format!("2026-11-02T{h:02}:00:00.000000Z")))
        .await;
    // Each snapshot time recorded once per table (the replay found its time there).
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let times: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT tbl, partner, count(*) FROM snapshot_times GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let n = HISTORY.len() as i64;
    assert_eq!(
        times,
        vec![
            ("station_status".to_string(), "velov".to_string(), n),
            ("vehicles".to_string(), "velov".to_string(), n),
        ]
    );
}

/// The history's day is still open when it is loaded (PostgreSQL): loads append to the
/// pending hourly rollups only and the statistics are summed from them; folding them writes
/// each hourly key once, closing the day writes its daily rows once, and the figures stay
/// the same throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_daily_figures_are_the_same_before_and_after_their_day_closes() {
    use mobiflux_loaders::Warehouse as _;
    let pg = pg_database().await;
    let warehouse = mobiflux_loaders::PostgresWarehouse::connect(&pg)
        .await
        .unwrap();
    warehouse.migrate().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    // A fresh warehouse has closed every day before the one it was made on.
    let closed: bool = sqlx::query_scalar(
        "SELECT closed_before = date_trunc('day', now(), 'UTC') FROM rollup_days",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(closed);
    sqlx::query("UPDATE rollup_days SET closed_before = '2026-11-01T00:00:00Z'")
        .execute(&pool)
        .await
        .unwrap();
    let hour = |h: u32| json!(format!("2026-11-02T{h:02}:00:00.000000Z"));
    // Each `mobiflux run` tries once, as it ends, to fold the pending hourly rows and to
    // close the past days: a load of another process, holding the days lock shared, keeps
    // the days open, and another process folding keeps the rows pending.
    let mut other = pool.acquire().await.unwrap();
    sqlx::query(
        "SELECT pg_advisory_lock_shared(hashtext('mobiflux.rollup.days')), \
         pg_advisory_lock(hashtext('mobiflux.rollup.fold'))",
    )
    .execute(&mut *other)
    .await
    .unwrap();
    views_give_the_expected_figures(&pg, hour).await;
    let count = |table: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // The figures above were summed from the pending rows alone.
    assert_eq!(count("fleet_availability_hourly_folded".into()).await, 0);
    assert_eq!(count("station_occupancy_hourly_folded".into()).await, 0);
    let pending = count("fleet_availability_hourly_pending_rows".into()).await;
    // 6 loads (the replay adds nothing) of 1 to 3 type-and-area keys, each load one row of
    // arrays.
    assert!((6..=18).contains(&pending), "{pending}");
    assert_eq!(count("fleet_availability_hourly_pending".into()).await, 6);
    assert_eq!(
        warehouse.fold_rollups().await.unwrap(),
        0,
        "folded meanwhile"
    );
    sqlx::query("SELECT pg_advisory_unlock(hashtext('mobiflux.rollup.fold'))")
        .execute(&mut *other)
        .await
        .unwrap();
    // Folded: each key once, the same figures.
    let keys = warehouse.fold_rollups().await.unwrap();
    for t in [
        "fleet_availability_hourly",
        "fleet_snapshots_hourly",
        "station_occupancy_hourly",
        "station_occupancy_partner_hourly",
    ] {
        assert_eq!(count(format!("{t}_pending")).await, 0, "{t}");
    }
    let folded = count("fleet_availability_hourly_folded".into()).await
        + count("fleet_snapshots_hourly_folded".into()).await
        + count("station_occupancy_hourly_folded".into()).await
        + count("station_occupancy_partner_hourly_folded".into()).await;
    assert_eq!(keys as i64, folded);
    assert!(count("fleet_availability_hourly_folded".into()).await < pending);
    expected_figures(&pg, hour).await;
    assert_eq!(
        warehouse.fold_rollups().await.unwrap(),
        0,
        "nothing left to fold"
    );
    sqlx::query("SELECT pg_advisory_unlock_shared(hashtext('mobiflux.rollup.days'))")
        .execute(&mut *other)
        .await
        .unwrap();
    let daily_rows = "SELECT (SELECT count(*) FROM fleet_availability_daily) \
        + (SELECT count(*) FROM fleet_snapshots_daily) + (SELECT count(*) FROM station_occupancy_daily)";
    let open: i64 = sqlx::query_scalar(daily_rows)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(open, 0, "loads into an open day wrote daily rows");
    let hourly: i64 = sqlx::query_scalar("SELECT count(*) FROM fleet_availability_hourly")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hourly > 0);

    let days = warehouse
        .close_days(mobiflux_loaders::CLOSE_TRIES)
        .await
        .unwrap();
    let today = Utc::now().date_naive();
    let first = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    assert_eq!(days as i64, (today - first).num_days());
    // Fleet: 3 type-and-area rows and 1 snapshot count for the day; stations: 2.
    let closed: i64 = sqlx::query_scalar(daily_rows)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(closed, 3 + 1 + 2);
    expected_figures(&pg, hour).await;
    // Closing again has nothing to do.
    assert_eq!(
        warehouse
            .close_days(mobiflux_loaders::CLOSE_TRIES)
            .await
            .unwrap(),
        0
    );
    expected_figures(&pg, hour).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_statistic_names_the_known_ones() {
    let out = mobiflux(
        &["stats", "occupancy", "--warehouse", "sqlite::memory:"],
        &[],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no statistic named \"occupancy\""),
        "{stderr}"
    );
    assert!(stderr.contains("station-occupancy"), "{stderr}");
    let out = mobiflux(&["stats", "list"], &[]).await;
    let (stdout, _) = text(&out);
    assert_eq!(
        stdout.lines().count(),
        mobiflux_loaders::stats::STATS.len(),
        "{stdout}"
    );
}

/// Two AOMs on one warehouse: each analyst reads its own partners' rows, by any table or
/// view, and nothing of the other's; snapshot partitions are not readable at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_reads_only_its_territory() {
    let pg = pg_database().await;
    load_history(&pg, &[("velov", "lyon"), ("metrovelo", "grenoble")]).await;
    let suffix = mobiflux_model::RunId::new().to_string().replace('-', "");
    let suffix = &suffix[suffix.len() - 8..];
    let lyon = format!("analyst_lyon_{suffix}");
    let grenoble = format!("analyst_grenoble_{suffix}");
    for (role, territory) in [(&lyon, "lyon"), (&grenoble, "grenoble")] {
        let out = mobiflux(
            &[
                "grant-analyst",
                role,
                "--territory",
                territory,
                "--warehouse",
                &pg,
            ],
            &[],
        )
        .await;
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let admin = sqlx::PgPool::connect(&pg).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition \
         AND has_table_privilege($1, c.oid, 'SELECT') ORDER BY 1",
    )
    .bind(&lyon)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(tables.contains(&"station_status".to_string()), "{tables:?}");
    assert!(
        tables.contains(&"stats_feed_health".to_string()),
        "{tables:?}"
    );
    assert!(
        !tables.contains(&"schedule_leases".to_string()),
        "{tables:?}"
    );
    let base = pg
        .split_once("://")
        .unwrap()
        .1
        .split_once('@')
        .unwrap()
        .1
        .to_string();
    for (role, mine, theirs) in [
        (&lyon, "velov", "metrovelo"),
        (&grenoble, "metrovelo", "velov"),
    ] {
        let analyst = sqlx::PgPool::connect(&format!("postgres://{role}@{base}"))
            .await
            .unwrap();
        let mut seen_rows = 0;
        for t in &tables {
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1",
            )
            .bind(t)
            .fetch_all(&admin)
            .await
            .unwrap();
            for col in ["partner", "target_partner"] {
                if !columns.iter().any(|c| c == col) {
                    continue;
                }
                let partners: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
                    format!("SELECT DISTINCT {col}::text FROM {t}"),
                ))
                .fetch_all(&analyst)
                .await
                .unwrap_or_else(|e| panic!("{role} reading {t}: {e}"));
                assert!(
                    !partners.iter().flatten().any(|p| p == theirs),
                    "{role} sees {theirs} in {t}: {partners:?}"
                );
                seen_rows += partners.iter().flatten().filter(|p| *p == mine).count();
            }
        }
        // Its own partner shows in the tables and views it reads.
        assert!(
            seen_rows >= 10,
            "{role} sees its partner in only {seen_rows} tables"
        );
        let own: i64 = sqlx::query_scalar("SELECT count(*) FROM station_status")
            .fetch_one(&analyst)
            .await
            .unwrap();
        assert_eq!(own, 12, "{role}: two stations, six snapshots");
        let pipelines: Vec<String> = sqlx::query_scalar("SELECT pipeline FROM stats_feed_health")
            .fetch_all(&analyst)
            .await
            .unwrap();
        assert_eq!(pipelines, vec![mine.to_string()]);
        // A day partition, read directly, is refused.
        let partition: String = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'station_status' LIMIT 1",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        let err = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {partition}")))
            .fetch_all(&analyst)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("permission denied"), "{err}");
        // Read-only.
        let err = sqlx::query("DELETE FROM pipelines")
            .execute(&analyst)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("permission denied"), "{err}");
        // `mobiflux stats` with the analyst's own role: it writes nothing to a current
        // schema (the role could not), and shows only its territory's feeds; also for a
        // role granted before it could read the schema's version.
        let url = format!("postgres://{role}@{base}");
        for granted in [true, false] {
            if !granted {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "REVOKE SELECT ON schema_migrations FROM {role}"
                )))
                .execute(&admin)
                .await
                .unwrap();
            }
            let health = stats(&url, &["feed-health"]).await;
            let shown: Vec<&str> = health
                .iter()
                .map(|r| r["pipeline"].as_str().unwrap())
                .collect();
            assert_eq!(shown, vec![mine], "{role}, version granted: {granted}");
        }
        analyst.close().await;
    }
    // The loader (table owner) still sees both.
    let all: i64 = sqlx::query_scalar("SELECT count(DISTINCT partner) FROM station_status")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(all, 2);
    for role in [&lyon, &grenoble] {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP OWNED BY {role}; DROP ROLE {role}"
        )))
        .execute(&admin)
        .await;
    }
}

/// The bundled examples (`mobiflux demo`: IRVE, BNLS, carpooling, …) and a gateway access
/// log: charge points and parking per commune, carpool pairs and gateway usage.
async fn fixture_views_give_the_expected_figures(warehouse: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let local = temp_dir("stats-demo");
    run_demo(&local.join("raw"), warehouse).await;

    // Twenty calls of one MaaS app to one partner's available assets, 10 to 200 ms, two
    // of them failing; in nginx's combined format with $request_time, as the gateway logs.
    let mut log = String::new();
    for i in 1..=20 {
        let status = if i % 10 == 0 { 503 } else { 200 };
        log.push_str(&format!(
            "203.0.113.10 - maas-app-9 [21/Nov/2026:09:{i:02}:00 +0100] \"GET /v1/partners/velo-city/available-assets?lat=45.76&lon=4.83 HTTP/1.1\" {status} 5123 \"-\" \"MaaSApp/3.2 (Android 14)\" {:.3}\n",
            i as f64 * 0.010
        ));
    }
    // The endpoint cut to the gateway resource (`available-assets`, `stations`, …).
    let mapping =
        gateway_log_mapping(r#"{ from = "path", regex = '^/v1/partners/[^/]+/([^/?]+)' }"#);
    let logs = temp_dir("stats-logs");
    std::fs::write(logs.join("gateway.log"), log).unwrap();
    let pipelines = temp_dir("stats-log-defs");
    let files = format!("{}/*.log", logs.display());
    define_format(&pipelines, "gateway-logs", "access_log", &files, &mapping);
    let more = format!("{root}/tests/data/access-logs/gateway.access.log");
    define_format(&pipelines, "gateway-logs-2", "access_log", &more, &mapping);
    let mut env = dest(&pipelines, local.join("raw").to_str().unwrap(), warehouse);
    env.push(("MOBIFLUX_CACHE_URL".into(), "none".into()));
    let out = mobiflux(&["run"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));

    // IRVE: two 22 kW points in 75001; the dynamic file reports one of them, free.
    let cp = stats(warehouse, &["charge-points"]).await;
    assert_eq!(cp.len(), 1, "{cp:#?}");
    assert_eq!(cp[0]["insee_code"], json!("75001"));
    for (k, v) in [
        ("stations", 2),
        ("charge_points", 2),
        ("fast_points", 0),
        ("reporting_points", 1),
        ("free_now", 1),
        ("occupied_now", 0),
        ("in_service_now", 1),
    ] {
        assert_eq!(cp[0][k], json!(v), "{k} in {}", cp[0]);
    }
    check(&cp[0], &[("total_power_kw", 44.0), ("max_power_kw", 22.0)]);

    // BNLS: the valid example's two car parks of 325 places in 75114 (the invalid example's
    // broken row is quarantined, its other rows load under the same partner).
    let parking = stats(warehouse, &["parking", "--partner", "example-parking-aom"]).await;
    assert_eq!(parking.len(), 1, "{parking:#?}");
    for (k, v) in [
        ("facilities", 2),
        ("capacity", 650),
        ("spaces_pmr", 500),
        ("spaces_ev", 20),
        ("spaces_bike", 50),
        ("spaces_park_ride", 500),
    ] {
        assert_eq!(parking[0][k], json!(v), "{k} in {}", parking[0]);
    }
    // The German municipal exports have no INSEE code: one line per city, null commune.
    let bielefeld = stats(warehouse, &["parking", "--partner", "bielefeld"]).await;
    assert_eq!(bielefeld[0]["insee_code"], Value::Null);
    assert_eq!(bielefeld[0]["facilities"], json!(853));

    // Carpooling: the standard's example journey (its coordinates as published) departs on
    // 2022-06-17; the two searches without a departure time are not counted.
    let od = stats(
        warehouse,
        &["carpool-od", "--from", "2022-06-01", "--to", "2022-07-01"],
    )
    .await;
    assert_eq!(od.len(), 1, "{od:#?}");
    assert_eq!(od[0]["origin"], json!("2.25,48.85"));
    assert_eq!(od[0]["destination"], json!("1.40,43.60"));
    assert_eq!(od[0]["journeys"], json!(1));
    assert_eq!(od[0]["driver_offers"], json!(1));

    // Gateway usage: percentile_cont over 10, 20, … 200 ms interpolates: p50 105, p95 190.5.
    let usage = stats(warehouse, &["gateway-usage", "--partner", "velo-city"]).await;
    let assets = pick(
        &usage,
        &[
            ("client_id", json!("maas-app-9")),
            ("endpoint", json!("available-assets")),
        ],
    );
    assert_eq!(assets["day"], json!("2026-11-21"));
    assert_eq!(assets["calls"], json!(20));
    assert_eq!(assets["errors"], json!(2));
    check(
        assets,
        &[("error_rate", 0.1), ("p50_ms", 105.0), ("p95_ms", 190.5)],
    );
    // The fixture log: one call per client and endpoint.
    let one = pick(
        &usage,
        &[
            ("client_id", json!("maas-app-1")),
            ("endpoint", json!("available-assets")),
        ],
    );
    check(one, &[("p50_ms", 42.0), ("p95_ms", 42.0)]);
    let stations = pick(
        &usage,
        &[
            ("client_id", json!("maas-app-1")),
            ("endpoint", json!("stations")),
        ],
    );
    check(
        stations,
        &[("p50_ms", 118.0), ("p95_ms", 118.0), ("error_rate", 0.0)],
    );
    let timeouts = stats(warehouse, &["gateway-usage", "--partner", "covoit-plus"]).await;
    let journeys = pick(&timeouts, &[("endpoint", json!("driver-journeys"))]);
    check(journeys, &[("error_rate", 1.0), ("p50_ms", 30001.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fixture_views_give_the_expected_figures() {
    let dir = temp_dir("stats-fixtures-sqlite");
    fixture_views_give_the_expected_figures(&format!("sqlite://{}/w.db", dir.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fixture_views_give_the_expected_figures() {
    fixture_views_give_the_expected_figures(&pg_database().await).await;
}
