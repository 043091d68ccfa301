//! Published files end to end: IRVE and BNLS through their Table Schemas into the
//! warehouse, from local paths, HTTP and S3, and hostile files failing clearly.

mod common;

use common::*;
use mobiflux_model::schema::{CHARGE_POINT_STATUS, CHARGE_POINTS, PARKING_FACILITIES, QUARANTINE};
use std::io::Write;

fn fixture(path: &str) -> String {
    format!("{FIXTURES}/{path}")
}

/// The three file tables plus quarantine (without the raw keys and fetch-time versions,
/// which differ between two runs by nature).
async fn file_tables(wh: &dyn mobiflux_loaders::Warehouse) -> Vec<mobiflux_loaders::TableDump> {
    let mut out = Vec::new();
    for t in [&CHARGE_POINTS, &CHARGE_POINT_STATUS, &PARKING_FACILITIES] {
        let mut rows = wh.dump(t).await.unwrap();
        if t.name == "parking_facilities" {
            let vf = t
                .columns
                .iter()
                .filter(|c| c.name != "run_id")
                .position(|c| c.name == "valid_from")
                .unwrap();
            rows.iter_mut().for_each(|r| r[vf] = None);
        }
        out.push(rows);
    }
    let mut q = wh.dump(&QUARANTINE).await.unwrap();
    q.iter_mut().for_each(|r| r[2] = None); // source_object
    q.sort();
    out.push(q);
    out
}

fn define_examples(dir: &std::path::Path) {
    define_format(
        dir,
        "irve-static",
        "irve",
        &fixture("irve/statique/exemple-valide-statique.csv"),
        "",
    );
    define_format(
        dir,
        "irve-live",
        "irve-dynamic",
        &fixture("irve/dynamique/exemple-valide-dynamique.csv"),
        "",
    );
    define_format(
        dir,
        "bnls-valid",
        "bnls",
        &fixture("bnls/exemple-valide.csv"),
        "",
    );
    define_format(
        dir,
        "bnls-invalid",
        "bnls",
        &fixture("bnls/exemple-invalide.csv"),
        "",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irve_and_bnls_files_load_with_exact_values_in_postgres_and_sqlite() {
    let pipelines = temp_dir("files");
    define_examples(&pipelines);
    let pg = pg_database().await;
    let mut env = dest(&pipelines, &s3_url(), &pg);
    env.extend(s3_env());
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("4 pipelines run: 4 succeeded, 0 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "rows loaded per table: charge_point_status 2, charge_points 2, parking_facilities 2"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("rows quarantined: 1"), "{stdout}");

    let local = temp_dir("files-local");
    let sqlite = format!("sqlite://{}/w.db", local.display());
    let out = mobiflux(
        &["run"],
        &dest(&pipelines, local.join("raw").to_str().unwrap(), &sqlite),
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));

    let post = mobiflux_loaders::open(&pg).await.unwrap();
    let lite = mobiflux_loaders::open(&sqlite).await.unwrap();
    let tables = file_tables(post.as_ref()).await;
    assert_eq!(
        tables,
        file_tables(lite.as_ref()).await,
        "PostgreSQL and SQLite differ"
    );

    // charge_points: partner, charge_point_id, station_id, station_name, … (dump order, no run_id)
    let cp = &tables[0];
    assert_eq!(cp.len(), 2);
    let first = cp
        .iter()
        .find(|r| r[1].as_deref() == Some("FRA68E680210015"))
        .unwrap();
    let col = |name: &str| {
        CHARGE_POINTS
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap()
    };
    assert_eq!(first[col("station_name")].as_deref(), Some("Picpus"));
    assert_eq!(first[col("lat")].as_deref(), Some("48.345345"));
    assert_eq!(first[col("lon")].as_deref(), Some("7.487105"));
    assert_eq!(first[col("power_kw")].as_deref(), Some("22"));
    assert_eq!(first[col("commissioned_on")].as_deref(), Some("2020-01-14"));
    assert_eq!(
        first[col("valid_from")].as_deref(),
        Some("2021-04-05T00:00:00.000000Z")
    );
    assert_eq!(first[col("owner_name")].as_deref(), Some("Société X"));
    // charge_point_status
    assert_eq!(
        tables[1][0][2].as_deref(),
        Some("2022-10-18T12:35:49.000000Z")
    );
    // quarantine: the invalid BNLS row, with both broken rules
    let q: Vec<[Option<&str>; 4]> = tables[3]
        .iter()
        .map(|r| {
            [
                r[3].as_deref(),
                r[4].as_deref(),
                r[5].as_deref(),
                r[6].as_deref(),
            ]
        })
        .collect();
    assert_eq!(
        q,
        vec![
            [
                Some("line 2"),
                Some("id"),
                Some("P-001"),
                Some(r"pattern ^([013-9]\d|2[AB1-9])\d{3}-P-\d{3}$")
            ],
            [
                Some("line 2"),
                Some("tarif_pmr"),
                Some("inconnu"),
                Some(r#"enum ["gratuit", "normal_payant", "tarif_special"]"#)
            ],
        ]
    );
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let (loaded, quarantined): (i64, i64) = sqlx::query_as(
        "SELECT rows_loaded, rows_quarantined FROM etl_runs WHERE pipeline = 'bnls-invalid'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((loaded, quarantined), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_file_content_is_loaded_once() {
    let dir = temp_dir("dedupe");
    let csv = dir.join("irve.csv");
    std::fs::copy(fixture("irve/statique/exemple-valide-statique.csv"), &csv).unwrap();
    let pipelines = temp_dir("dedupe-defs");
    define_format(&pipelines, "irve-once", "irve", csv.to_str().unwrap(), "");
    let pg = pg_database().await;
    let env = dest(&pipelines, dir.join("raw").to_str().unwrap(), &pg);
    for expected in ["charge_points 2", "rows loaded per table: none"] {
        let out = mobiflux(&["run"], &env).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains(expected), "{stdout}");
    }
    // A changed file is new content: it loads.
    let changed = std::fs::read_to_string(&csv)
        .unwrap()
        .replace("2021-04-05,true", "2021-05-01,true");
    std::fs::write(&csv, changed).unwrap();
    let out = mobiflux(&["run"], &env).await;
    assert!(text(&out).0.contains("charge_points 2"), "{:?}", text(&out));
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM loaded_objects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let updated: String = sqlx::query_scalar(
        "SELECT updated_on::text FROM charge_points WHERE charge_point_id = 'FRA68E680210015'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(updated, "2021-05-01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_come_from_http_and_from_an_s3_prefix() {
    let sim = msp().await;
    let pipelines = temp_dir("sources");
    define_format(
        &pipelines,
        "bnls-http",
        "bnls",
        &format!("{}/bnls/exemple-valide.csv", sim.base_url()),
        "",
    );
    // An S3 prefix holding the IRVE example (landed there by the test, as a partner would).
    let bucket_prefix = s3_url();
    let src_store = mobiflux_extractors::raw::open(&bucket_prefix, Some(s3_config()))
        .await
        .unwrap();
    let data = std::fs::read(fixture("irve/statique/exemple-valide-statique.csv")).unwrap();
    src_store
        .put("drop/irve-2026-11-21.csv", data.into(), "text/csv")
        .await
        .unwrap();
    define_format(
        &pipelines,
        "irve-s3",
        "irve",
        &format!("{bucket_prefix}/drop/"),
        "",
    );
    let local = temp_dir("sources-local");
    let sqlite = format!("sqlite://{}/w.db", local.display());
    let mut env = dest(&pipelines, local.join("raw").to_str().unwrap(), &sqlite);
    env.extend(s3_env());
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("charge_points 2, parking_facilities 2"),
        "{stdout}"
    );
    let store = mobiflux_extractors::raw::open(local.join("raw").to_str().unwrap(), None)
        .await
        .unwrap();
    let landed = store.list("raw/irve-s3/file/").await.unwrap();
    assert_eq!(landed.len(), 1);
    assert!(landed[0].ends_with(".csv"), "{landed:?}");
}

fn s3_config() -> mobiflux_extractors::raw::S3Config {
    let mut c = mobiflux_extractors::raw::S3Config::from_env();
    c.endpoint = Some(std::env::var("MOBIFLUX_TEST_S3_ENDPOINT").unwrap());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_fail_alone_with_clear_errors_and_load_nothing() {
    let dir = temp_dir("hostile");
    let valid = std::fs::read_to_string(fixture("bnls/exemple-valide.csv")).unwrap();
    let header = valid.lines().next().unwrap().to_string();
    let pipelines = temp_dir("hostile-defs");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let semicolons = write("semicolons.csv", valid.replace(',', ";").as_bytes());
    define_format(&pipelines, "wrong-delimiter", "bnls", &semicolons, "");
    let renamed = write(
        "renamed.csv",
        valid.replacen("nb_places", "places", 1).as_bytes(),
    );
    define_format(&pipelines, "header-mismatch", "bnls", &renamed, "");
    let latin1 = write(
        "latin1.csv",
        &valid
            .replace("Levallois-Peret", "Levallois-Per\u{e9}t")
            .chars()
            .map(|c| c as u32 as u8)
            .collect::<Vec<u8>>(),
    );
    define_format(
        &pipelines,
        "invalid-utf8",
        "bnls",
        &latin1,
        "encoding = \"utf-8\"",
    );
    let long = dir.join("long-line.csv");
    {
        let mut f = std::fs::File::create(&long).unwrap();
        writeln!(f, "{header}").unwrap();
        let block = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&block).unwrap();
        }
    }
    define_format(&pipelines, "long-line", "bnls", long.to_str().unwrap(), "");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2000 {
        let row = valid
            .lines()
            .nth(1)
            .unwrap()
            .replace("75114-P-001", &format!("75114-P-{:03}", i % 1000));
        if i == 0 {
            writeln!(gz, "{header}").unwrap();
        }
        writeln!(gz, "{row}").unwrap();
    }
    let mut bytes = gz.finish().unwrap();
    bytes.truncate(bytes.len() * 2 / 3);
    let truncated = write("truncated.csv.gz", &bytes);
    define_format(&pipelines, "truncated-gzip", "bnls", &truncated, "");
    let empty = write("empty.csv", b"");
    define_format(&pipelines, "empty-file", "bnls", &empty, "");
    define_format(
        &pipelines,
        "healthy",
        "irve",
        &fixture("irve/statique/exemple-valide-statique.csv"),
        "",
    );

    let pg = pg_database().await;
    let out = mobiflux(
        &["run"],
        &dest(&pipelines, dir.join("raw").to_str().unwrap(), &pg),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("7 pipelines run: 1 succeeded, 6 failed"),
        "{stdout}"
    );
    let failed = |name: &str| {
        stderr
            .lines()
            .find(|l| l.starts_with(&format!("FAILED pipeline {name}:")))
            .unwrap_or_else(|| panic!("no failure line for {name}: {stderr}"))
            .to_string()
    };
    assert!(
        failed("wrong-delimiter")
            .contains("the header does not match the table schema: missing [\"id\""),
        "{stderr}"
    );
    assert!(
        failed("wrong-delimiter").contains("is the delimiter right?"),
        "{stderr}"
    );
    assert!(
        failed("header-mismatch").contains("missing [\"nb_places\"]; unexpected [\"places\"]"),
        "{stderr}"
    );
    assert!(
        failed("invalid-utf8").contains("line 2, column 4 (adresse): invalid UTF-8"),
        "{stderr}"
    );
    assert!(
        failed("long-line").contains("line 2 is longer than 1048576 bytes"),
        "{stderr}"
    );
    assert!(
        failed("truncated-gzip").contains("the compressed stream is truncated"),
        "{stderr}"
    );
    assert!(
        failed("empty-file").contains("the file is empty"),
        "{stderr}"
    );
    assert!(
        failed("wrong-delimiter").contains(&semicolons),
        "the message names the file: {stderr}"
    );

    let wh = mobiflux_loaders::open(&pg).await.unwrap();
    assert!(
        wh.dump(&PARKING_FACILITIES).await.unwrap().is_empty(),
        "a failed file left rows"
    );
    assert_eq!(wh.dump(&CHARGE_POINTS).await.unwrap().len(), 2);
}

/// The bundled municipal export examples, pointed at the fixture files on disk.
fn define_municipal(dir: &std::path::Path) {
    let root = env!("CARGO_MANIFEST_DIR");
    for name in [
        "example-parking-bietigheim",
        "example-parking-neckarsulm",
        "example-parking-reutlingen",
        "example-parking-reutlingen-pmr",
        "example-parking-bielefeld",
    ] {
        let text = std::fs::read_to_string(format!("{root}/pipelines/{name}.toml")).unwrap();
        let text = text.replace("${MOBIFLUX_EXAMPLE_MSP}", &format!("{root}/fixtures"));
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn municipal_exports_load_by_configuration_with_decoded_text_utc_times_and_points() {
    let pipelines = temp_dir("municipal");
    define_municipal(&pipelines);
    let pg = pg_database().await;
    let mut env = dest(&pipelines, &s3_url(), &pg);
    env.extend(s3_env());
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("parking_facilities 1052, parking_occupancy 14"),
        "{stdout}"
    );
    let local = temp_dir("municipal-local");
    let sqlite = format!("sqlite://{}/w.db", local.display());
    let out = mobiflux(
        &["run"],
        &dest(&pipelines, local.join("raw").to_str().unwrap(), &sqlite),
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));

    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let occ: Vec<(String, String, i64, i64, String)> = sqlx::query_as(
        "SELECT facility_id, to_char(observed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS'), capacity, occupied, status \
         FROM parking_occupancy ORDER BY facility_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(occ.len(), 14);
    let first = occ
        .iter()
        .find(|r| r.0 == "Parkplatz Mühlwiesenstr.")
        .unwrap();
    assert_eq!(
        first,
        &(
            "Parkplatz Mühlwiesenstr.".to_string(),
            "2025-02-27T10:17:47.085".to_string(),
            106,
            81,
            "open".to_string()
        )
    );
    assert_eq!(occ.iter().filter(|r| r.4 == "closed").count(), 1);

    let (lon, lat, cap): (f64, f64, Option<i64>) =
        sqlx::query_as("SELECT lon, lat, capacity FROM parking_facilities WHERE partner = 'neckarsulm' AND facility_id = '4'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        (lon - 9.24487198).abs() < 1e-7 && (lat - 49.190044818).abs() < 1e-7,
        "{lon} {lat}"
    );
    assert_eq!(cap, Some(203));
    let (name, cap): (String, Option<i64>) =
        sqlx::query_as("SELECT name, capacity FROM parking_facilities WHERE partner = 'reutlingen' AND facility_id = '585'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((name.as_str(), cap), ("Rommelsbacher Straße", None));
    let addr: String = sqlx::query_scalar("SELECT address FROM parking_facilities WHERE partner = 'bielefeld' AND facility_id = '620-1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(addr, "hinter Schildescher Straße 25 über Ernst-Rein-Straße");

    // SQLite holds the same rows.
    let post = mobiflux_loaders::open(&pg).await.unwrap();
    let lite = mobiflux_loaders::open(&sqlite).await.unwrap();
    let occ_schema = &mobiflux_model::schema::PARKING_OCCUPANCY;
    assert_eq!(
        post.dump(occ_schema).await.unwrap(),
        lite.dump(occ_schema).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_access_logs_load_into_gateway_calls() {
    let pipelines = temp_dir("logs");
    let log = format!(
        "{}/tests/data/access-logs/gateway.access.log.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let mapping = &gateway_log_mapping("\"path\"");
    define_format(&pipelines, "gateway-logs", "access_log", &log, mapping);
    let pg = pg_database().await;
    let raw = temp_dir("logs-raw");
    let out = mobiflux(
        &["validate", "--pipelines", pipelines.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = mobiflux(&["run"], &dest(&pipelines, raw.to_str().unwrap(), &pg)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: gateway_calls 6"),
        "{stdout}"
    );
    assert!(stdout.contains("rows quarantined: 1"), "{stdout}");
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let per_partner: Vec<(Option<String>, i64, Option<f64>)> = sqlx::query_as(
        "SELECT target_partner, count(*), max(latency_ms) FROM gateway_calls GROUP BY 1 ORDER BY 1 NULLS LAST",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        per_partner,
        vec![
            (Some("covoit-plus".into()), 2, Some(30001.0)),
            (Some("velo-city".into()), 3, Some(118.0)),
            (None, 1, Some(3.0)),
        ]
    );
    let reason: String = sqlx::query_scalar("SELECT position || ': ' || reason FROM quarantine")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        reason,
        "line 6: the line does not match the log format combined_timed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_width_export_loads_by_configuration() {
    let dir = temp_dir("fixed");
    let line = |id: &str, name: &str, free: &str, cap: &str| {
        format!("{id:<4} {name:<20}{free:>4}{cap:>5}\r\n")
    };
    let content = [
        line("ID", "NAME", "FREI", "KAP"),
        line("P001", "Parkhaus Mühlstraße", "41", "300"),
        line("P002", "Bahnhof Süd", "0", "85"),
    ]
    .concat();
    // A Latin-1 file, as mainframe-era exports often are.
    let latin1: Vec<u8> = content.chars().map(|c| c as u32 as u8).collect();
    std::fs::write(dir.join("belegung.txt"), latin1).unwrap();
    let pipelines = temp_dir("fixed-defs");
    let mapping = "table = \"parking_occupancy\"\nheader = true\nencoding = \"iso-8859-1\"\n\n[fields]\nid = [1, 4]\nname = [6, 25]\nfree = [26, 29]\ncapacity = [30, 34]\n\n[columns]\nfacility_id = \"id\"\nname = \"name\"\nfree = \"free\"\ncapacity = \"capacity\"\n";
    define_format(
        &pipelines,
        "fixed-occupancy",
        "fixed_width",
        dir.join("belegung.txt").to_str().unwrap(),
        mapping,
    );
    let sqlite = format!("sqlite://{}/w.db", dir.display());
    let out = mobiflux(
        &["run"],
        &dest(&pipelines, dir.join("raw").to_str().unwrap(), &sqlite),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let wh = mobiflux_loaders::open(&sqlite).await.unwrap();
    let rows = wh
        .dump(&mobiflux_model::schema::PARKING_OCCUPANCY)
        .await
        .unwrap();
    // partner, facility_id, observed_at, name, capacity, occupied, free, status
    // partner, facility_id, observed_at, name, capacity, occupied, free, status
    let pick = |r: &Vec<Option<String>>| [1, 3, 4, 6].map(|i| r[i].clone().unwrap_or_default());
    let got: Vec<[String; 4]> = rows.iter().map(pick).collect();
    let want = [
        ["P001", "Parkhaus Mühlstraße", "300", "41"],
        ["P002", "Bahnhof Süd", "85", "0"],
    ];
    assert_eq!(got, want.map(|r| r.map(String::from)).to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_definition_enforces_its_table_schema_before_its_mapping() {
    // Both BNLS examples through a csv definition: the published schema checks every
    // field (also those the mapping leaves out), the mapping picks a few columns.
    let pipelines = temp_dir("checked-defs");
    define_format(
        &pipelines,
        "parkings",
        "csv",
        &fixture("bnls/exemple-*.csv"),
        &format!(
            "schema = \"{}\"\ntable = \"parking_facilities\"\n[columns]\n\
             facility_id = \"id\"\nname = \"nom\"\ncapacity = \"nb_places\"\n\
             lon = \"Xlong\"\nlat = \"Ylat\"\nfree = \"gratuit\"\n",
            fixture("bnls/schema.json")
        ),
    );
    let local = temp_dir("checked");
    let env = dest(
        &pipelines,
        local.join("raw").to_str().unwrap(),
        &format!("sqlite://{}/w.db", local.display()),
    );
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: parking_facilities 2"),
        "{stdout}"
    );
    let wh = mobiflux_loaders::open(&format!("sqlite://{}/w.db", local.display()))
        .await
        .unwrap();
    let rows = wh.dump(&PARKING_FACILITIES).await.unwrap();
    let col = |name: &str| {
        PARKING_FACILITIES
            .columns
            .iter()
            .filter(|c| c.name != "run_id")
            .position(|c| c.name == name)
            .unwrap()
    };
    let picked: Vec<[Option<&str>; 5]> = rows
        .iter()
        .map(|r| {
            [
                r[col("facility_id")].as_deref(),
                r[col("capacity")].as_deref(),
                r[col("free")].as_deref(),
                r[col("lon")].as_deref(),
                r[col("address")].as_deref(),
            ]
        })
        .collect();
    let valid = std::fs::read_to_string(fixture("bnls/exemple-valide.csv")).unwrap();
    let first = valid.lines().nth(1).unwrap();
    assert!(first.starts_with("75114-P-001,"), "{first}");
    // Mapped columns typed by the table; unmapped ones (address) stay empty.
    assert_eq!(
        picked,
        vec![
            [
                Some("75114-P-001"),
                Some("325"),
                Some("true"),
                Some("1.452323"),
                None
            ],
            [
                Some("75114-P-002"),
                Some("325"),
                Some("true"),
                Some("1.452323"),
                None
            ],
        ]
    );
    let q = wh.dump(&QUARANTINE).await.unwrap();
    let rules: Vec<(Option<&str>, Option<&str>)> = q
        .iter()
        .map(|r| (r[4].as_deref(), r[6].as_deref()))
        .collect();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(
        rules.contains(&(
            Some("id"),
            Some(r"pattern ^([013-9]\d|2[AB1-9])\d{3}-P-\d{3}$")
        )),
        "{rules:?}"
    );
    assert!(
        rules.contains(&(
            Some("tarif_pmr"),
            Some(r#"enum ["gratuit", "normal_payant", "tarif_special"]"#)
        )),
        "{rules:?}"
    );
}

/// The partitions of a table partitioned by partner, with their bound and whether they
/// have their primary key.
async fn partner_partitions(pool: &sqlx::PgPool, table: &str) -> Vec<(String, String, bool)> {
    sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid), \
                EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary) \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = $1::regclass ORDER BY 2",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partner_gets_a_partition_built_at_its_first_load_and_a_failed_load_leaves_none() {
    let pipelines = temp_dir("partitions");
    let irve = fixture("irve/statique/exemple-valide-statique.csv");
    define_partner(&pipelines, "irve-a", "reseau-a", "irve", &irve, "");
    define_partner(&pipelines, "irve-b", "b", "irve", &irve, "");
    let pg = pg_database().await;
    let dir = temp_dir("partitions-raw");
    let env = dest(&pipelines, dir.join("raw").to_str().unwrap(), &pg);
    let out = mobiflux(&["run", "irve-a", "irve-b"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("charge_points 4"), "{stdout}");
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let parts = partner_partitions(&pool, "charge_points").await;
    let name = |p: &str| format!("charge_points_x{}", &sha256_hex(p)[..12]);
    assert_eq!(
        parts,
        vec![
            (name("b"), "FOR VALUES IN ('b')".to_string(), true),
            (
                name("reseau-a"),
                "FOR VALUES IN ('reseau-a')".to_string(),
                true
            ),
        ]
    );
    let per_partner: Vec<(String, i64)> =
        sqlx::query_as("SELECT partner, count(*) FROM charge_points GROUP BY 1 ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        per_partner,
        vec![("b".to_string(), 2), ("reseau-a".to_string(), 2)]
    );
    // A second load of a partner merges into its partition (the key holds: no duplicate).
    let changed = dir.join("changed.csv");
    std::fs::write(
        &changed,
        std::fs::read_to_string(&irve)
            .unwrap()
            .replace("2021-04-05,true", "2021-05-01,true"),
    )
    .unwrap();
    define_partner(
        &pipelines,
        "irve-b",
        "b",
        "irve",
        changed.to_str().unwrap(),
        "",
    );
    let out = mobiflux(&["run", "irve-b"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let updated: Vec<(String, String)> = sqlx::query_as(
        "SELECT partner, updated_on::text FROM charge_points \
         WHERE charge_point_id = 'FRA68E680210015' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        updated,
        vec![
            ("b".to_string(), "2021-05-01".to_string()),
            ("reseau-a".to_string(), "2021-04-05".to_string())
        ]
    );
    // A new partner's load that fails after its rows went in leaves no table behind.
    define_partner(&pipelines, "irve-c", "c", "irve", &irve, "");
    let mut failing = env.clone();
    failing.push(("MOBIFLUX_FAILPOINTS".into(), "loader.before_commit".into()));
    let out = mobiflux(&["run", "irve-c"], &failing).await;
    assert!(!out.status.success(), "{:?}", text(&out));
    let left: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(name("c"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, None);
    assert_eq!(partner_partitions(&pool, "charge_points").await.len(), 2);
    // Run again without the fault: it loads.
    let out = mobiflux(&["run", "irve-c"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(partner_partitions(&pool, "charge_points").await.len(), 3);
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A PostgreSQL warehouse migrated up to (not including) `version`, as one made by an
/// earlier mobiflux: its URL and a pool on it.
async fn postgres_before_migration(version: i32) -> (String, sqlx::PgPool) {
    let pg = pg_database().await;
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (v, ddl) in mobiflux_loaders::POSTGRES_MIGRATIONS
        .iter()
        .filter(|(v, _)| *v < version)
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*ddl))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(v)
            .execute(&pool)
            .await
            .unwrap();
    }
    (pg, pool)
}

/// Whether `role` may read each relation, as expected; then the role is dropped.
async fn reads_then_drop(pool: &sqlx::PgPool, role: &str, expected: &[(&str, bool)]) {
    for (relation, readable) in expected {
        let can: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, 'SELECT')")
            .bind(role)
            .bind(relation)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(can, *readable, "{role} on {relation}");
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role}"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// The columns of a table's indexes, in index order, one comma-separated list per index:
/// its primary key's (`primary`) or its other indexes'.
async fn index_columns(pool: &sqlx::PgPool, table: &str, primary: bool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT string_agg(a.attname, ', ' ORDER BY k.n) FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) \
         JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
         WHERE x.indrelid = $1::regclass AND x.indisprimary = $2 GROUP BY i.relname ORDER BY i.relname",
    )
    .bind(table)
    .bind(primary)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The day partitions of 2026-11-22 of the two tables every GBFS poll writes, as the
/// migration tests' older warehouses hold them.
const NOV_22_PARTITIONS: &str = "CREATE TABLE station_status_p20261122 PARTITION OF station_status \
       FOR VALUES FROM ('2026-11-22 00:00:00+00') TO ('2026-11-23 00:00:00+00'); \
     CREATE TABLE vehicles_p20261122 PARTITION OF vehicles \
       FOR VALUES FROM ('2026-11-22 00:00:00+00') TO ('2026-11-23 00:00:00+00');";

/// A warehouse made before migration 12: the times of its stored vehicle and station
/// snapshots are recorded in `snapshot_times`, each once per partner (what the loads ask to
/// skip a stored snapshot), and the two tables' time index becomes a BRIN index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_12_records_the_stored_snapshot_times() {
    let (pg, pool) = postgres_before_migration(12).await;
    sqlx::raw_sql(
        sqlx::AssertSqlSafe(format!(
            "{NOV_22_PARTITIONS} INSERT INTO station_status (partner, station_id, observed_at, vehicles_available, is_installed, is_renting, is_returning, run_id) \
           SELECT p, 's' || i, t, 3, true, true, true, 'r1' FROM generate_series(1, 50) i, \
             (VALUES ('a'), ('b')) AS x(p), \
             (VALUES ('2026-11-22 08:00:00+00'::timestamptz), ('2026-11-22 08:01:00+00')) AS y(t); \
         INSERT INTO vehicles (partner, vehicle_id, observed_at, is_reserved, is_disabled, run_id) \
           SELECT 'a', 'v' || i, '2026-11-22 08:00:30+00', false, false, 'r1' FROM generate_series(1, 20) i"))
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = mobiflux(&["migrate", "--warehouse", &pg], &[]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let times: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tbl, partner, to_char(observed_at AT TIME ZONE 'UTC', 'HH24:MI:SS') \
         FROM snapshot_times ORDER BY 1, 2, 3",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let row = |t: &str, p: &str, at: &str| (t.to_string(), p.to_string(), at.to_string());
    assert_eq!(
        times,
        vec![
            row("station_status", "a", "08:00:00"),
            row("station_status", "a", "08:01:00"),
            row("station_status", "b", "08:00:00"),
            row("station_status", "b", "08:01:00"),
            row("vehicles", "a", "08:00:30"),
        ]
    );
    let methods: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, am.amname::text FROM pg_index x \
         JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_am am ON am.oid = c.relam \
         WHERE x.indrelid IN ('vehicles'::regclass, 'station_status'::regclass, \
           'vehicles_p20261122'::regclass) AND NOT x.indisprimary ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let brin: Vec<&str> = methods.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(brin, vec!["brin"; 3], "{methods:?}");
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM station_status WHERE observed_at >= '2026-11-22 08:00:30+00' AND partner = 'b'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 50, "the stored rows stay");
}

/// A warehouse made before migration 14: the primary keys of `vehicles` and `station_status`
/// put the snapshot time before the id (a poll's rows land together at the end of their
/// partner's range), on the tables and on their existing day partitions; the stored rows
/// stay, and a snapshot stored twice is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_14_puts_the_snapshot_time_before_the_id_in_the_key() {
    let (pg, pool) = postgres_before_migration(14).await;
    sqlx::raw_sql(
        sqlx::AssertSqlSafe(format!(
            "{NOV_22_PARTITIONS} INSERT INTO station_status (partner, station_id, observed_at, vehicles_available, is_installed, is_renting, is_returning, run_id) \
           SELECT 'a', 's' || i, '2026-11-22 08:00:00+00', 3, true, true, true, 'r1' FROM generate_series(1, 30) i; \
         INSERT INTO vehicles (partner, vehicle_id, observed_at, is_reserved, is_disabled, run_id) \
           SELECT 'a', 'v' || i, t, false, false, 'r1' FROM generate_series(1, 20) i, \
             (VALUES ('2026-11-22 08:00:30+00'::timestamptz), ('2026-11-22 08:01:30+00')) AS y(t)"))
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = mobiflux(&["migrate", "--warehouse", &pg], &[]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    for table in ["vehicles", "vehicles_p20261122"] {
        assert_eq!(
            index_columns(&pool, table, true).await,
            vec!["partner, observed_at, vehicle_id"],
            "{table}"
        );
    }
    for table in ["station_status", "station_status_p20261122"] {
        assert_eq!(
            index_columns(&pool, table, true).await,
            vec!["partner, observed_at, station_id"],
            "{table}"
        );
    }
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM vehicles), (SELECT count(*) FROM station_status)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counts, (40, 30), "the stored rows stay");
    let again = sqlx::raw_sql(
        "INSERT INTO vehicles (partner, vehicle_id, observed_at, is_reserved, is_disabled, run_id) \
         VALUES ('a', 'v1', '2026-11-22 08:00:30+00', false, false, 'r2')",
    )
    .execute(&pool)
    .await
    .unwrap_err()
    .to_string();
    assert!(again.contains("duplicate key"), "{again}");
    let merged = sqlx::raw_sql(
        "INSERT INTO station_status (partner, station_id, observed_at, vehicles_available, is_installed, is_renting, is_returning, run_id) \
         VALUES ('a', 's1', '2026-11-22 08:00:00+00', 4, true, true, true, 'r2') \
         ON CONFLICT (partner, station_id, observed_at) DO NOTHING",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        merged.rows_affected(),
        0,
        "the merge's conflict target still names the key"
    );
}

/// A warehouse made before migration 13: each hourly rollup table becomes the folded rows
/// of a view by its name (over them and the new pending rows), the statistics read the same
/// figures, and a role that could read a table or a view still can, and the pending rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_13_keeps_the_hourly_rollups_and_who_reads_them() {
    let (pg, pool) = postgres_before_migration(13).await;
    let suffix = mobiflux_model::RunId::new().to_string().replace('-', "");
    let role = format!("migration13_{}", &suffix[suffix.len() - 8..]);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO fleet_availability_hourly VALUES ('p', '2026-11-22 08:00:00+00', 'bike', '45.76,4.83', 10, 8, 1, 1); \
         INSERT INTO fleet_snapshots_hourly VALUES ('p', '2026-11-22 08:00:00+00', 2); \
         CREATE ROLE {role}; \
         GRANT SELECT ON fleet_availability_hourly, stats_fleet_availability_hourly TO {role}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let out = mobiflux(&["migrate", "--warehouse", &pg], &[]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT relname::text, relkind::text FROM pg_class \
         WHERE relname LIKE 'fleet\\_availability\\_hourly%' AND relkind IN ('r', 'v') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let kind = |n: &str, k: &str| (n.to_string(), k.to_string());
    assert_eq!(
        kinds,
        vec![
            kind("fleet_availability_hourly", "v"),
            kind("fleet_availability_hourly_folded", "r"),
            kind("fleet_availability_hourly_pending", "r"),
            kind("fleet_availability_hourly_pending_rows", "v"),
        ]
    );
    let folded: i64 = sqlx::query_scalar("SELECT count(*) FROM fleet_availability_hourly_folded")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(folded, 1);
    let avg: f64 = sqlx::query_scalar(
        "SELECT avg_available FROM stats_fleet_availability_hourly WHERE partner = 'p'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(avg, 4.0);
    reads_then_drop(
        &pool,
        &role,
        &[
            ("fleet_availability_hourly", true),
            ("fleet_availability_hourly_folded", true),
            ("fleet_availability_hourly_pending", true),
            ("fleet_availability_hourly_pending_rows", true),
            ("stats_fleet_availability_hourly", true),
            ("fleet_snapshots_hourly", false),
        ],
    )
    .await;
}

/// Migration 15 (pending hourly rollup rows as one row of arrays per load): the rows pending
/// before it are folded into their keys, the hourly views and the statistics on them give
/// the same figures, and whoever could read the pending rows reads the new table and its
/// rows; a load's rows pending after it are read through the views too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_15_folds_the_pending_rollups_and_keeps_their_figures_and_readers() {
    let (pg, pool) = postgres_before_migration(15).await;
    let suffix = mobiflux_model::RunId::new().to_string().replace('-', "");
    let role = format!("migration15_{}", &suffix[suffix.len() - 8..]);
    // One key folded already, two pending rows of it and one of another key.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO fleet_availability_hourly_folded VALUES ('p', '2026-11-22 08:00:00+00', 'bike', '45.76,4.83', 10, 8, 1, 1); \
         INSERT INTO fleet_availability_hourly_pending VALUES \
           ('p', '2026-11-22 08:00:00+00', 'bike', '45.76,4.83', 5, 4, 1, 0), \
           ('p', '2026-11-22 08:00:00+00', 'bike', '45.76,4.83', 5, 2, 2, 1), \
           ('p', '2026-11-22 09:00:00+00', 'scooter', '45.75,4.84', 3, 3, 0, 0); \
         INSERT INTO fleet_snapshots_hourly_pending VALUES ('p', '2026-11-22 08:00:00+00', 2); \
         CREATE ROLE {role}; \
         GRANT SELECT ON fleet_availability_hourly, fleet_availability_hourly_pending, stats_fleet_availability_hourly TO {role}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let figures = |pool: sqlx::PgPool| async move {
        sqlx::query_as::<_, (String, String, String, f64, f64, f64, f64)>(
            "SELECT period::text, vehicle_type_id, area, vehicles, available, reserved, disabled \
             FROM fleet_availability_hourly ORDER BY 1, 2",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let before = figures(pool.clone()).await;
    assert_eq!(before.len(), 2);
    let out = mobiflux(&["migrate", "--warehouse", &pg], &[]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(figures(pool.clone()).await, before);
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM fleet_availability_hourly_pending").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM fleet_snapshots_hourly_pending").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM fleet_availability_hourly_folded").await,
        2
    );
    let bike: (f64, f64) = sqlx::query_as(
        "SELECT vehicles, available FROM fleet_availability_hourly_folded WHERE vehicle_type_id = 'bike'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(bike, (20.0, 14.0));
    // A load's batch after the migration: read through the views with the folded rows.
    sqlx::raw_sql(
        "INSERT INTO fleet_availability_hourly_pending VALUES ('p', '2026-11-22 08:00:00+00', \
           ARRAY['2026-11-22 08:00:00+00', '2026-11-22 10:00:00+00']::timestamptz[], ARRAY['bike', 'bike'], \
           ARRAY['45.76,4.83', '45.76,4.83'], ARRAY[1, 2]::float8[], ARRAY[1, 2]::float8[], \
           ARRAY[0, 0]::float8[], ARRAY[0, 0]::float8[])",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        count("SELECT count(*) FROM fleet_availability_hourly_pending_rows").await,
        2
    );
    let after = figures(pool.clone()).await;
    assert_eq!(after.len(), 3);
    assert_eq!(after[0].3, 21.0);
    assert_eq!(after[2].3, 2.0);
    reads_then_drop(
        &pool,
        &role,
        &[
            ("fleet_availability_hourly", true),
            ("fleet_availability_hourly_pending", true),
            ("fleet_availability_hourly_pending_rows", true),
            ("stats_fleet_availability_hourly", true),
            ("fleet_snapshots_hourly_pending", false),
        ],
    )
    .await;
}

/// `mobiflux run` closes the rollups' past days when it ends (a warehouse loaded from cron
/// alone has no scheduler to close them), with a single try of the days lock: while a load
/// holds the days open, the run neither waits for it nor closes them, and the next run does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_closes_the_past_days_unless_loads_hold_them_open() {
    let pg = pg_database().await;
    let pipelines = temp_dir("run-closes");
    define_format(
        &pipelines,
        "irve-static",
        "irve",
        &fixture("irve/statique/exemple-valide-statique.csv"),
        "",
    );
    let raw = temp_dir("run-closes-raw");
    let env = dest(&pipelines, raw.to_str().unwrap(), &pg);
    let out = mobiflux(&["migrate", "--warehouse", &pg], &[]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    sqlx::query("UPDATE rollup_days SET closed_before = '2026-11-01T00:00:00Z'")
        .execute(&pool)
        .await
        .unwrap();
    let closed = "SELECT closed_before = date_trunc('day', now(), 'UTC') FROM rollup_days";

    // A load in flight (of another process) holds the days lock shared.
    let mut load = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock_shared(hashtext('mobiflux.rollup.days'))")
        .execute(&mut *load)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let out = mobiflux(&["run"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    // The scheduler's closing would keep trying for a minute.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let done: bool = sqlx::query_scalar(closed).fetch_one(&pool).await.unwrap();
    assert!(!done, "closed while a load held the days open");

    sqlx::query("SELECT pg_advisory_unlock_shared(hashtext('mobiflux.rollup.days'))")
        .execute(&mut *load)
        .await
        .unwrap();
    let out = mobiflux(&["run"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let done: bool = sqlx::query_scalar(closed).fetch_one(&pool).await.unwrap();
    assert!(done, "the run did not close the past days");
}

/// A warehouse made before migration 8: its charge points and parking facilities move to
/// their partners' partitions, and the views that read them still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_8_moves_stored_rows_into_partner_partitions() {
    let (pg, pool) = postgres_before_migration(8).await;
    // Version 7's warehouse, loaded by the examples of both partners.
    let pipelines = temp_dir("migrate8");
    let irve = fixture("irve/statique/exemple-valide-statique.csv");
    define_partner(&pipelines, "irve-a", "a", "irve", &irve, "");
    define_partner(&pipelines, "irve-b", "b", "irve", &irve, "");
    let bnls = fixture("bnls/exemple-valide.csv");
    define_partner(&pipelines, "bnls-a", "a", "bnls", &bnls, "");
    for (table, values) in [(
        "charge_points",
        "('a', 'FRA1', 'S1', 'Station', 1, 2, now(), 'r1'), ('b', 'FRA1', 'S1', 'Station', 1, 2, now(), 'r1'), ('b', 'FRA2', 'S2', 'Station', 1, 2, now(), 'r1')",
    )] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (partner, charge_point_id, station_id, station_name, lat, lon, valid_from, run_id) VALUES {values}"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::raw_sql(
        "INSERT INTO parking_facilities (partner, facility_id, name, valid_from, run_id) \
         VALUES ('a', 'P1', 'Parking', now(), 'r1')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = mobiflux(&["migrate", "--warehouse", &pg], &[]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let parts: Vec<String> = partner_partitions(&pool, "charge_points")
        .await
        .into_iter()
        .map(|(_, bound, pk)| format!("{bound} {pk}"))
        .collect();
    assert_eq!(
        parts,
        vec!["FOR VALUES IN ('a') true", "FOR VALUES IN ('b') true"]
    );
    assert_eq!(
        partner_partitions(&pool, "parking_facilities").await.len(),
        1
    );
    let per_commune: i64 =
        sqlx::query_scalar("SELECT sum(charge_points)::bigint FROM stats_charge_points_by_commune")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(per_commune, 3);
    let rls: Vec<bool> = sqlx::query_scalar(
        "SELECT relrowsecurity FROM pg_class WHERE relname IN ('charge_points', 'parking_facilities')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rls, vec![true, true]);
    // Loads go on: partner b merges into its partition, a new partner gets one.
    let dir = temp_dir("migrate8-raw");
    let env = dest(&pipelines, dir.join("raw").to_str().unwrap(), &pg);
    let out = mobiflux(&["run"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM charge_points")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 3 + 4);
}

/// A warehouse made before migration 10 with a day of station status: each snapshot table's
/// time index becomes (observed_at, partner), on the table and on its existing partitions,
/// so a load's "is this snapshot of this partner stored already" is an index probe that
/// does not grow with the partner's rows; SQLite's likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_10_indexes_snapshot_times_by_time_then_partner() {
    let (pg, pool) = postgres_before_migration(10).await;
    sqlx::raw_sql(
        "CREATE TABLE station_status_p20261122 PARTITION OF station_status \
           FOR VALUES FROM ('2026-11-22 00:00:00+00') TO ('2026-11-23 00:00:00+00'); \
         INSERT INTO station_status (partner, station_id, observed_at, vehicles_available, is_installed, is_renting, is_returning, run_id) \
           SELECT 'p', 's' || i, '2026-11-22 08:00:00+00', 3, true, true, true, 'r1' FROM generate_series(1, 50) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = mobiflux(&["migrate", "--warehouse", &pg], &[]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    for table in [
        "charge_point_status",
        "parking_occupancy",
        "gateway_calls",
        "carpool_journeys",
    ] {
        assert_eq!(
            index_columns(&pool, table, false).await,
            vec!["observed_at, partner"],
            "{table}"
        );
    }
    // Migration 12 replaced the B-tree of these two with a BRIN index on the time alone.
    for table in ["station_status", "station_status_p20261122", "vehicles"] {
        assert_eq!(
            index_columns(&pool, table, false).await,
            vec!["observed_at"],
            "{table}"
        );
    }
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM station_status WHERE observed_at = '2026-11-22 08:00:00+00' AND partner = 'p'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 50, "the stored rows stay");

    let dir = temp_dir("migrate10-sqlite");
    let lite = format!("sqlite://{}/w.db", dir.display());
    let out = mobiflux(&["migrate", "--warehouse", &lite], &[]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let db = sqlx::SqlitePool::connect(&lite).await.unwrap();
    for table in [
        "station_status",
        "vehicles",
        "charge_point_status",
        "parking_occupancy",
        "gateway_calls",
        "carpool_journeys",
    ] {
        let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_index_info('{table}_observed') ORDER BY seqno"
        )))
        .fetch_all(&db)
        .await
        .unwrap();
        assert_eq!(cols, vec!["observed_at", "partner"], "{table}");
    }
}
