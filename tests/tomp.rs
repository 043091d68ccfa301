//! TOMP-API 1.3 operators end to end: the TOMP-REF payloads served as an operator API by
//! the simulated MSP, through the raw zone into PostgreSQL.

mod common;

use common::*;
use mobiflux::simulator::Fault;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tomp_operator_loads_with_exact_values_and_its_mandatory_headers() {
    let sim = msp().await;
    let base = sim.base_url();
    let pipelines = temp_dir("tomp-defs");
    define_format(
        &pipelines,
        "freebike",
        "tomp",
        &format!("{base}/tomp"),
        "language = \"fr\"",
    );
    let pg = pg_database().await;
    let raw = temp_dir("tomp-raw");
    let out = mobiflux(&["run"], &dest(&pipelines, raw.to_str().unwrap(), &pg)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: pricing_plans 2, regions 1, stations 1, system_info 1, vehicle_types 1, vehicles 1"),
        "{stdout}"
    );
    // information first, then the other endpoints; every call with TOMP's headers.
    let calls = sim.requests_with_header("api-version");
    assert_eq!(
        calls[0],
        (
            "/tomp/operator/information".to_string(),
            "1.3.0".to_string()
        )
    );
    let mut paths: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/tomp/operator/alerts",
            "/tomp/operator/available-assets",
            "/tomp/operator/information",
            "/tomp/operator/pricing-plans",
            "/tomp/operator/regions",
            "/tomp/operator/stations",
        ]
    );
    assert!(calls.iter().all(|(_, v)| v == "1.3.0"), "{calls:?}");
    assert!(
        sim.requests_with_header("accept-language")
            .iter()
            .all(|(_, v)| v == "fr")
    );
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let station: (String, String, f64, f64) = sqlx::query_as(
        "SELECT station_id, name, lat, lon FROM stations WHERE partner = 'freebike'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        station,
        (
            "XX:Y:12345678".into(),
            "Island Central".into(),
            52.253279,
            6.169639
        )
    );
    let plans: Vec<(String, f64, Option<String>)> = sqlx::query_as(
        "SELECT plan_id, price, per_min_pricing FROM pricing_plans ORDER BY plan_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(plans[0].0, "freeplan1");
    assert_eq!(plans[1].1, 3.0);
    let vehicle: (String, Option<String>, bool) =
        sqlx::query_as("SELECT vehicle_type_id, station_id, is_reserved FROM vehicles")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(vehicle.1.as_deref(), Some("station1"));
    assert!(!vehicle.2);
    // Every response, alerts included, is in the raw zone.
    let store = mobiflux_extractors::raw::open(raw.to_str().unwrap(), None)
        .await
        .unwrap();
    for resource in [
        "information",
        "stations",
        "available_assets",
        "pricing_plans",
        "regions",
        "alerts",
    ] {
        assert_eq!(
            store
                .list(&format!("raw/freebike/{resource}/"))
                .await
                .unwrap()
                .len(),
            1,
            "{resource}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_not_implemented_is_skipped_and_a_failing_one_fails_alone() {
    let sim = msp().await;
    let base = sim.base_url();
    // The same operator API on two servers: one without regions, one whose stations fail.
    sim.set_fault("/tomp/operator/regions", Fault::Status(501));
    let sim2 = msp().await;
    sim2.set_fault("/tomp/operator/stations", Fault::Status(500));
    let pipelines = temp_dir("tomp-faults");
    define_format(
        &pipelines,
        "no-regions",
        "tomp",
        &format!("{base}/tomp"),
        "",
    );
    define_format(
        &pipelines,
        "broken",
        "tomp",
        &format!("{}/tomp", sim2.base_url()),
        "",
    );
    let local = temp_dir("tomp-faults-local");
    let out = mobiflux(&["run"], &local_dest(&pipelines, &local).0).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("FAILED pipeline broken:"))
        .expect(&stderr);
    assert!(
        line.contains(&format!("{}/tomp/operator/stations", sim2.base_url()))
            && line.contains("500"),
        "{line}"
    );
    assert!(!stderr.contains("FAILED pipeline no-regions"), "{stderr}");
    assert!(
        stderr.contains("not offered by the partner; skipped"),
        "{stderr}"
    );
    assert!(
        stdout.contains("rows loaded per table: pricing_plans 2, stations 1, system_info 1, vehicle_types 1, vehicles 1"),
        "{stdout}"
    );
}
