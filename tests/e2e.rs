//! End to end: the `mobiflux` binary against a simulated MSP serving the real GBFS
//! fixtures, with real PostgreSQL and a real S3-compatible server (started by `.ci/run`).

mod common;

use common::*;
use mobiflux::simulator::Fault;
use std::time::Duration;

const EXPECTED_COUNTS: &[(&str, usize)] = &[
    ("system_info", 4),
    ("vehicle_types", 3),
    ("pricing_plans", 3),
    ("regions", 1),
    ("stations", 27),
    ("geofencing_zones", 273),
    ("station_status", 3),
    ("vehicles", 8),
    ("charge_points", 0),
    ("charge_point_status", 0),
    ("parking_facilities", 0),
    ("parking_occupancy", 0),
    ("gateway_calls", 0),
    ("carpool_journeys", 0),
];

fn row<'a>(
    dump: &'a [(&str, mobiflux_loaders::TableDump)],
    table: &str,
    id: &str,
) -> &'a Vec<Option<String>> {
    let rows = &dump.iter().find(|(t, _)| *t == table).unwrap().1;
    rows.iter()
        .find(|r| r[1].as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no {table} row {id}"))
}

fn s(v: &[Option<String>], i: usize) -> Option<&str> {
    v[i].as_deref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_feeds_load_the_same_into_sqlite_and_into_postgres_with_s3() {
    let sim = msp().await;
    let pipelines = temp_dir("pipelines");
    define_fixture_feeds(&pipelines, &sim);

    // Embedded default: local folder + SQLite.
    let local = temp_dir("local");
    let sqlite = format!("sqlite://{}/warehouse.db", local.display());
    let out = mobiflux(
        &["run"],
        &dest(&pipelines, &format!("{}/raw", local.display()), &sqlite),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("4 pipelines run: 4 succeeded, 0 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rows loaded per table: geofencing_zones 273, pricing_plans 3, regions 1, station_status 3, stations 27, system_info 4, vehicle_types 3, vehicles 8"),
        "{stdout}"
    );

    // Production shape: S3 raw zone + PostgreSQL.
    let pg = pg_database().await;
    let s3 = s3_url();
    let mut env = dest(&pipelines, &s3, &pg);
    env.extend(s3_env());
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let lite = mobiflux_loaders::open(&sqlite).await.unwrap();
    let post = mobiflux_loaders::open(&pg).await.unwrap();
    let (a, b) = (dump_all(lite.as_ref()).await, dump_all(post.as_ref()).await);
    assert_eq!(counts(&b), EXPECTED_COUNTS);
    assert_eq!(a, b, "SQLite and PostgreSQL contents differ");

    // Values as the fixture files say (dump columns are the schema's, without run_id).
    let st = row(&b, "stations", "TST:Station:1");
    assert_eq!(
        (s(st, 0), s(st, 2), s(st, 3), s(st, 4)),
        (
            Some("gbfs-2-3"),
            Some("Cool bikes"),
            Some("12.34"),
            Some("45.67")
        )
    );
    assert_eq!(s(st, 11), Some("2025-07-02T06:21:03.000000Z"));
    let ss = row(&b, "station_status", "6efbec5a-6b8c-455b-bed2-8d66be6d6a4b");
    assert_eq!(
        (s(ss, 2), s(ss, 4)),
        (Some("2019-07-04T13:33:03.969000Z"), Some("0"))
    );
    let v = row(&b, "vehicles", "TST:Scooter:1234");
    assert_eq!(
        (s(v, 4), s(v, 5), s(v, 8), s(v, 9)),
        (
            Some("59.91465759277344"),
            Some("10.760470390319824"),
            Some("true"),
            Some("1431.2")
        )
    );

    // The raw zone on S3 holds every payload and one manifest per run.
    let raw = mobiflux_extractors::raw::open(&s3, Some(s3_config()))
        .await
        .unwrap();
    let manifests = raw.list("raw/_runs/").await.unwrap();
    assert_eq!(manifests.len(), 4, "{manifests:?}");
    let v23 = raw.list("raw/gbfs-2-3/").await.unwrap();
    assert_eq!(v23.len(), 13, "gbfs.json + 12 listed files: {v23:?}");
    let body = raw
        .get(v23.iter().find(|k| k.contains("/station_status/")).unwrap())
        .await
        .unwrap();
    assert_eq!(
        &body[..],
        &std::fs::read(format!("{FIXTURES}/gbfs/v2.3/station_status.json")).unwrap()[..]
    );
}

fn s3_config() -> mobiflux_extractors::raw::S3Config {
    let mut c = mobiflux_extractors::raw::S3Config::from_env();
    c.endpoint = Some(std::env::var("MOBIFLUX_TEST_S3_ENDPOINT").unwrap());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_feeds_fail_alone_with_clear_messages_and_leave_nothing_partial() {
    let sim = msp().await;
    let base = sim.base_url();
    // Each broken feed serves the real v2.3 files under its own path, with one fault.
    let pipelines = temp_dir("faults");
    define(
        &pipelines,
        "healthy",
        &format!("{base}/gbfs/v2.3/gbfs.json"),
        "",
    );
    define(
        &pipelines,
        "answers-500",
        &format!("{base}/gbfs/v3.0/gbfs.json"),
        "",
    );
    sim.set_fault("/gbfs/v3.0/station_status.json", Fault::Status(500));
    define(
        &pipelines,
        "sends-html",
        &format!("{base}/gbfs/spec-examples/v3.0/gbfs.json"),
        "",
    );
    sim.set_fault(
        "/gbfs/spec-examples/v3.0/station_information-1.json",
        Fault::Html,
    );
    define(
        &pipelines,
        "truncated",
        &format!("{base}/gbfs/spec-examples/v2.3/gbfs.json"),
        "",
    );
    sim.set_fault(
        "/gbfs/spec-examples/v2.3/station_information-1.json",
        Fault::Truncate,
    );
    define(
        &pipelines,
        "times-out",
        &format!("{base}/slow/gbfs.json"),
        "timeout_secs = 1",
    );
    sim.set_fault("/slow/gbfs.json", Fault::Delay(Duration::from_secs(5)));

    let pg = pg_database().await;
    let raw = temp_dir("faults-raw");
    let out = mobiflux(&["run"], &dest(&pipelines, raw.to_str().unwrap(), &pg)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("5 pipelines run: 1 succeeded, 4 failed"),
        "{stdout}"
    );
    assert!(stderr.contains(&format!(
        "FAILED pipeline answers-500: GET {base}/gbfs/v3.0/station_status.json answered 500; body starts with \"simulated failure 500"
    )), "{stderr}");
    assert!(stderr.contains(&format!(
        "FAILED pipeline sends-html: GET {base}/gbfs/spec-examples/v3.0/station_information-1.json (200, text/html; charset=utf-8) is not JSON"
    )), "{stderr}");
    assert!(
        stderr.contains("body starts with \"<!DOCTYPE html>"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!(
        "FAILED pipeline truncated: GET {base}/gbfs/spec-examples/v2.3/station_information-1.json (200): body ended early after"
    )), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "FAILED pipeline times-out: GET {base}/slow/gbfs.json timed out after 1 s"
        )),
        "{stderr}"
    );

    let wh = mobiflux_loaders::open(&pg).await.unwrap();
    let dump = dump_all(wh.as_ref()).await;
    for (table, rows) in &dump {
        assert!(
            rows.iter().all(|r| r[0].as_deref() == Some("healthy")),
            "{table} holds rows of a failed pipeline"
        );
    }
    assert_eq!(
        dump.iter().find(|(t, _)| *t == "stations").unwrap().1.len(),
        2
    );

    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let runs: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT pipeline, status, error FROM etl_runs ORDER BY pipeline")
            .fetch_all(&pool)
            .await
            .unwrap();
    let status: Vec<(&str, &str)> = runs
        .iter()
        .map(|(p, s, _)| (p.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        status,
        vec![
            ("answers-500", "failed"),
            ("healthy", "succeeded"),
            ("sends-html", "failed"),
            ("times-out", "failed"),
            ("truncated", "failed"),
        ]
    );
    assert!(runs[0].2.as_deref().unwrap().contains("answered 500"));

    // What the MSP sent is kept: the HTML page and the cut body are in the raw zone.
    let store = mobiflux_extractors::raw::open(raw.to_str().unwrap(), None)
        .await
        .unwrap();
    let html = store
        .list("raw/sends-html/station_information/")
        .await
        .unwrap();
    assert_eq!(html.len(), 1);
    assert!(
        store
            .get(&html[0])
            .await
            .unwrap()
            .starts_with(b"<!DOCTYPE html>")
    );
    assert_eq!(
        store
            .list("raw/truncated/station_information/")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_and_replay_are_idempotent_and_replay_calls_no_msp() {
    let sim = msp().await;
    let pipelines = temp_dir("replay");
    define(
        &pipelines,
        "oslo",
        &format!("{}/gbfs/v2.3/gbfs.json", sim.base_url()),
        "",
    );
    let pg = pg_database().await;
    let raw = temp_dir("replay-raw");
    let env = dest(&pipelines, raw.to_str().unwrap(), &pg);
    let out = mobiflux(&["run", "oslo"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let run_id = run_id_of(&text(&out).0, "oslo");
    let wh = mobiflux_loaders::open(&pg).await.unwrap();
    let first = dump_all(wh.as_ref()).await;

    // The same feed again: snapshots keep their keys, reference rows do not change.
    let out = mobiflux(&["run", "oslo"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(dump_all(wh.as_ref()).await, first);

    // Replay with the MSP gone: only the raw zone is read.
    let before = sim.requests().len();
    drop(sim);
    let out = mobiflux(&["replay", &run_id], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 pipelines run: 1 succeeded"), "{stdout}");
    assert!(before > 0);
    assert_eq!(dump_all(wh.as_ref()).await, first);
    let rec = wh.run(&run_id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status.as_str(), rec.trigger.as_str(), rec.rows_loaded),
        ("succeeded", "replay", 11)
    );

    let err = mobiflux(&["replay", "01936f6e-8f2a-7c3d-9e4f-0a1b2c3d4e5f"], &env).await;
    assert_eq!(err.status.code(), Some(1));
    assert!(text(&err).1.contains("no such object"), "{:?}", text(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_failing_before_commit_rolls_back_whole_in_both_warehouses() {
    let sim = msp().await;
    let pipelines = temp_dir("rollback");
    define(
        &pipelines,
        "paris",
        &format!("{}/gbfs/v3.0/gbfs.json", sim.base_url()),
        "",
    );
    let local = temp_dir("rollback-local");
    for wh_url in [
        pg_database().await,
        format!("sqlite://{}/w.db", local.display()),
    ] {
        let mut env = dest(&pipelines, local.join("raw").to_str().unwrap(), &wh_url);
        env.push(("MOBIFLUX_FAILPOINTS".into(), "loader.before_commit".into()));
        let out = mobiflux(&["run"], &env).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("was rolled back: failpoint 'loader.before_commit' fired"),
            "{stderr}"
        );
        let wh = mobiflux_loaders::open(&wh_url).await.unwrap();
        for (table, rows) in dump_all(wh.as_ref()).await {
            assert!(
                rows.is_empty(),
                "{wh_url}: {table} kept {} rows of a rolled-back load",
                rows.len()
            );
        }
        // The raw payloads stay, so the run can be replayed once the warehouse is healthy.
        let run_id = stdout
            .lines()
            .find(|l| l.starts_with("paris "))
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap();
        let rec = wh.run(run_id).await.unwrap().unwrap();
        assert_eq!(rec.status, "failed");
        env.pop();
        let out = mobiflux(&["replay", run_id], &env).await;
        assert!(out.status.success(), "{:?}", text(&out));
        assert_eq!(
            wh.dump(&mobiflux_model::schema::STATIONS)
                .await
                .unwrap()
                .len(),
            23
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_file_line_and_key() {
    let dir = temp_dir("validate");
    define(&dir, "good", "http://127.0.0.1:1/gbfs.json", "");
    std::fs::write(
        dir.join("bad.toml"),
        "name = \"bad\"\npartner = \"bad\"\nformat = \"gbfs\"\nurl = \"ftp://x\"\nschedule = \"0 * * * *\"\n",
    )
    .unwrap();
    let out = mobiflux(&["validate", "--pipelines", dir.to_str().unwrap()], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    let f = dir.join("bad.toml").display().to_string();
    assert!(
        stderr.contains(&format!(
            "{f}:4: url: \"ftp://x\" must be an http:// or https:// URL"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{f}:5: schedule: ")), "{stderr}");
    assert!(stdout.contains("1 definitions valid, 2 errors"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_examples_validate_and_the_demo_runs_them() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = mobiflux(
        &["validate", "--pipelines", &format!("{root}/pipelines")],
        &[],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let local = temp_dir("demo");
    let env = vec![
        ("MOBIFLUX_PIPELINES".into(), format!("{root}/pipelines")),
        ("MOBIFLUX_FIXTURES".into(), format!("{root}/fixtures")),
        (
            "MOBIFLUX_RAW_URL".into(),
            local.join("raw").display().to_string(),
        ),
        (
            "MOBIFLUX_WAREHOUSE_URL".into(),
            format!("sqlite://{}/w.db", local.display()),
        ),
    ];
    let out = mobiflux(&["demo"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("17 pipelines run: 17 succeeded, 0 failed"),
        "{stdout}"
    );
    // The invalid BNLS example is bundled on purpose: its one broken row shows up here.
    assert!(stdout.contains("rows quarantined: 1"), "{stdout}");
    assert!(stdout.contains("charge_points 2"), "{stdout}");
    assert!(
        stdout.contains("parking_facilities 1054, parking_occupancy 24"),
        "{stdout}"
    );
    // The carpooling example, pseudonymized with the demo key.
    assert!(stdout.contains("carpool_journeys 3"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_errors_manifests_or_etl_runs() {
    let sim = msp().await;
    let base = sim.base_url();
    let pipelines = temp_dir("secrets");
    let key = "k3y-MUST-NOT-LEAK-1234";
    let token = "t0ken-MUST-NOT-LEAK-5678";
    define(
        &pipelines,
        "guarded",
        &format!("{base}/gbfs/v2.3/gbfs.json?api_key=${{MOBIFLUX_TEST_API_KEY}}"),
        "[headers]\nAuthorization = \"Bearer ${MOBIFLUX_TEST_TOKEN}\"\nX-Partner-Secret = \"${MOBIFLUX_TEST_TOKEN}\"",
    );
    define(
        &pipelines,
        "guarded-ok",
        &format!("{base}/gbfs/v3.0/gbfs.json?token=${{MOBIFLUX_TEST_API_KEY}}"),
        "",
    );
    sim.set_fault("/gbfs/v2.3/gbfs.json", Fault::Status(503));
    let pg = pg_database().await;
    let raw = temp_dir("secrets-raw");
    let mut env = dest(&pipelines, raw.to_str().unwrap(), &pg);
    env.extend([
        ("MOBIFLUX_TEST_API_KEY".to_string(), key.to_string()),
        ("MOBIFLUX_TEST_TOKEN".to_string(), token.to_string()),
        ("MOBIFLUX_LOG".to_string(), "debug".to_string()),
        ("MOBIFLUX_LOG_FORMAT".to_string(), "json".to_string()),
    ]);
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // The MSP's error page echoed the key; the message shows it masked.
    assert!(
        stderr.contains(&format!(
            "GET {base}/gbfs/v2.3/gbfs.json?api_key=*** answered 503"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("{\"timestamp\""),
        "JSON logs expected: {stderr}"
    );

    let mut seen = format!("{stdout}\n{stderr}");
    let store = mobiflux_extractors::raw::open(raw.to_str().unwrap(), None)
        .await
        .unwrap();
    let manifests = store.list("raw/_runs/").await.unwrap();
    assert_eq!(manifests.len(), 2);
    for m in &manifests {
        seen.push_str(&String::from_utf8_lossy(&store.get(m).await.unwrap()));
    }
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let errors: Vec<Option<String>> = sqlx::query_scalar("SELECT error FROM etl_runs")
        .fetch_all(&pool)
        .await
        .unwrap();
    seen.push_str(&format!("{errors:?}"));
    assert!(
        !seen.contains(key) && !seen.contains(token),
        "a secret leaked:\n{seen}"
    );
    assert!(seen.contains("token=***"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_x_manifest_is_followed_to_the_chosen_system() {
    let root = env!("CARGO_MANIFEST_DIR");
    let sim = mobiflux::simulator::Simulator::start(root, "127.0.0.1:0")
        .await
        .unwrap();
    let pipelines = temp_dir("manifest");
    let url = format!("{}/tests/data/gbfs-manifest/manifest.json", sim.base_url());
    define(&pipelines, "berlin", &url, "system_id = \"example_berlin\"");
    define(&pipelines, "ambiguous", &url, "");
    let local = temp_dir("manifest-local");
    let env = dest(
        &pipelines,
        local.join("raw").to_str().unwrap(),
        &format!("sqlite://{}/w.db", local.display()),
    );
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!(
        "FAILED pipeline ambiguous: {url}: the manifest lists 7 systems [\"example_berlin\", \"example_rome\""
    )), "{stderr}");
    assert!(
        stderr.contains("set system_id in the definition"),
        "{stderr}"
    );
    let wh = mobiflux_loaders::open(&format!("sqlite://{}/w.db", local.display()))
        .await
        .unwrap();
    // The newest version listed for example_berlin is 3.0: the v3.0 fixture's 23 stations.
    assert_eq!(
        wh.dump(&mobiflux_model::schema::STATIONS)
            .await
            .unwrap()
            .len(),
        23
    );
    let store = mobiflux_extractors::raw::open(local.join("raw").to_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(store.list("raw/berlin/manifest/").await.unwrap().len(), 1);
    assert_eq!(store.list("raw/berlin/gbfs/").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reference_file_is_not_loaded_again_until_it_or_the_definition_changes() {
    // A copy of the GBFS 2.3 fixture feed, to change one of its files between runs.
    let feed = temp_dir("unchanged-feed");
    let v23 = feed.join("gbfs/v2.3");
    std::fs::create_dir_all(&v23).unwrap();
    for f in std::fs::read_dir(format!("{FIXTURES}/gbfs/v2.3")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, v23.join(f.file_name().unwrap())).unwrap();
    }
    let sim = mobiflux::simulator::Simulator::start(&feed, "127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("{}/gbfs/v2.3/gbfs.json", sim.base_url());
    let pg = pg_database().await;
    let local = temp_dir("unchanged-local");
    for (i, warehouse) in [pg.clone(), format!("sqlite://{}/w.db", local.display())]
        .iter()
        .enumerate()
    {
        let pipelines = temp_dir("unchanged");
        define(&pipelines, "oslo", &url, "");
        let raw = local.join(format!("raw-{i}"));
        let mut env = dest(&pipelines, raw.to_str().unwrap(), warehouse);
        // With a gateway cache to publish to (PostgreSQL's turn), the files are still read
        // for the gateway's documents but not loaded; without one, they are not read.
        if i == 1 {
            env.push(("MOBIFLUX_CACHE_URL".into(), "none".into()));
        }
        let wh = mobiflux_loaders::open(warehouse).await.unwrap();
        // Each run is a process of its own: its fetches are conditional on the validators of
        // the latest run's manifest, so the files that did not change answer 304.
        let store = mobiflux_extractors::raw::FolderStore::new(raw.to_str().unwrap());
        let run = || async {
            let out = mobiflux(&["run", "oslo"], &env).await;
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "{stdout}\n{stderr}");
            let id = run_id_of(&stdout, "oslo");
            let manifest = mobiflux_extractors::raw::Manifest::read(&store, &id.parse().unwrap())
                .await
                .unwrap();
            let confirmed = manifest.objects.iter().filter(|o| o.status == 304).count();
            assert_eq!(manifest.objects.len(), 13);
            (wh.run(&id).await.unwrap().unwrap().rows_loaded, confirmed)
        };
        let station_name = |dump: &[(&str, mobiflux_loaders::TableDump)]| {
            s(row(dump, "stations", "TST:Station:1"), 2).map(str::to_string)
        };
        // Every file is read: 8 reference rows (system, vehicle types, plan, region,
        // stations, zone) and 3 snapshot rows.
        let rows = run().await;
        assert_eq!(rows, (11, 0), "{warehouse}");
        let loaded = dump_all(wh.as_ref()).await;
        assert_eq!(station_name(&loaded).as_deref(), Some("Cool bikes"));
        let latest = wh.latest_loaded("oslo").await.unwrap();
        let mut resources: Vec<&str> = latest.keys().map(String::as_str).collect();
        resources.sort();
        assert_eq!(
            resources,
            [
                "geofencing_zones",
                "station_information",
                "system_information",
                "system_pricing_plans",
                "system_regions",
                "vehicle_types"
            ]
        );

        // The same files again: only the snapshots are read; the warehouse is as it was.
        let rows = run().await;
        assert_eq!(rows, (3, 13), "{warehouse}");
        assert_eq!(dump_all(wh.as_ref()).await, loaded);
        assert_eq!(wh.latest_loaded("oslo").await.unwrap(), latest);

        // A station renamed: station_information is read again, the others are not.
        let info = v23.join("station_information.json");
        let text_of = std::fs::read_to_string(&info).unwrap();
        std::fs::write(&info, text_of.replace("Cool bikes", "Cooler bikes")).unwrap();
        let rows = run().await;
        assert_eq!(rows, (3 + 2, 12), "{warehouse}");
        let renamed = dump_all(wh.as_ref()).await;
        assert_eq!(station_name(&renamed).as_deref(), Some("Cooler bikes"));
        let now = wh.latest_loaded("oslo").await.unwrap();
        assert_ne!(now["station_information"], latest["station_information"]);
        assert_eq!(now["vehicle_types"], latest["vehicle_types"]);

        // A definition change that shapes the rows (the language) reads every file again.
        define(&pipelines, "oslo", &url, "language = \"en\"");
        let rows = run().await;
        assert_eq!(rows, (11, 13), "{warehouse}");
        assert_eq!(dump_all(wh.as_ref()).await, renamed);
        std::fs::write(&info, text_of).unwrap();
    }
}
