//! Proprietary JSON feeds added by configuration only: a TOML file, no code.

mod common;

use common::*;
use mobiflux::simulator::Simulator;

/// A simulated partner serving `tests/data` (the scooter API's answers and its variants).
async fn data_site() -> Simulator {
    Simulator::start(
        format!("{}/tests/data", env!("CARGO_MANIFEST_DIR")),
        "127.0.0.1:0",
    )
    .await
    .unwrap()
}

/// The scooter API definition's `table`, `records` and `[columns]`, with `sections`
/// (`[auth]`, `[paging]`, …) put before `[columns]`.
fn zoomi_mapping(sections: &str) -> String {
    let body = std::fs::read_to_string(format!(
        "{}/tests/data/json/zoomi-scooters.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mapping = &body[body.find("table =").unwrap()..];
    mapping.replace("[columns]", &format!("{sections}\n[columns]"))
}

/// Runs one `json` pipeline `name` reading `url` with the scooter mapping and `sections`,
/// into a local raw zone and SQLite warehouse, with `env` added.
async fn run_zoomi(
    name: &str,
    url: &str,
    sections: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let pipelines = temp_dir(&format!("{name}-defs"));
    define_format(&pipelines, name, "json", url, &zoomi_mapping(sections));
    let local = temp_dir(&format!("{name}-local"));
    let (mut vars, _) = local_dest(&pipelines, &local);
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    mobiflux(&["run"], &vars).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proprietary_scooter_api_loads_from_one_toml_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let sim = data_site().await;
    let pipelines = temp_dir("json-defs");
    std::fs::copy(
        format!("{root}/tests/data/json/zoomi-scooters.toml"),
        pipelines.join("zoomi.toml"),
    )
    .unwrap();
    let pg = pg_database().await;
    let raw = temp_dir("json-raw");
    let mut env = dest(&pipelines, raw.to_str().unwrap(), &pg);
    env.push(("ZOOMI_API".into(), sim.base_url()));
    let out = mobiflux(&["validate"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: vehicles 3"),
        "{stdout}"
    );
    assert!(stdout.contains("rows quarantined: 1"), "{stdout}");
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    type V = (
        String,
        String,
        f64,
        f64,
        f64,
        f64,
        bool,
        bool,
        String,
        String,
    );
    let rows: Vec<V> = sqlx::query_as(
        "SELECT vehicle_id, vehicle_type_id, lat, lon, current_range_m, fuel_percent, is_reserved, is_disabled, \
         to_char(last_reported AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), pricing_plan_id \
         FROM vehicles ORDER BY vehicle_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        (
            "ZM-10001".into(),
            "zoomi-s3".into(),
            48.85873,
            2.37925,
            31500.0,
            0.82,
            false,
            false,
            // 14:58:12 in Paris (UTC+1 in November)
            "2026-11-21 13:58:12".into(),
            "zoomi-standard".into()
        )
    );
    assert!(rows[1].7, "ZM-10002 is in maintenance: disabled");
    assert!(rows[2].6, "ZM-20417 is reserved");
    let q: (String, String, String, String) = sqlx::query_as(
        "SELECT position, field, value, reason FROM quarantine WHERE pipeline = 'zoomi'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(q.0, "/data/zones/1/scooters/1");
    assert_eq!(
        (q.1.as_str(), q.2.as_str()),
        ("battery.range_km", "unknown")
    );
    assert!(q.3.contains("number"), "{q:?}");

    // A replay loads the run again under its own id: its quarantine is replaced, not doubled.
    let out = mobiflux(&["replay", &run_id_of(&stdout, "zoomi")], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE pipeline = 'zoomi'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_default_adapter_payload_loads_by_configuration() {
    let sim = msp().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let pipelines = temp_dir("mcm-defs");
    let def = std::fs::read_to_string(format!("{root}/pipelines/example-json-mcm-assets.toml"))
        .unwrap()
        .replace("${MOBIFLUX_EXAMPLE_MSP}", &sim.base_url());
    std::fs::write(pipelines.join("mcm.toml"), def).unwrap();
    let local = temp_dir("mcm-local");
    let sqlite = format!("sqlite://{}/w.db", local.display());
    let out = mobiflux(
        &["run"],
        &dest(&pipelines, local.join("raw").to_str().unwrap(), &sqlite),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let wh = mobiflux_loaders::open(&sqlite).await.unwrap();
    let rows = wh.dump(&mobiflux_model::schema::VEHICLES).await.unwrap();
    let col = |name: &str| {
        mobiflux_model::schema::VEHICLES
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
                r[col("vehicle_id")].as_deref(),
                r[col("vehicle_type_id")].as_deref(),
                r[col("station_id")].as_deref(),
                r[col("is_reserved")].as_deref(),
                r[col("is_disabled")].as_deref(),
            ]
        })
        .collect();
    assert_eq!(
        picked,
        vec![
            [
                Some("asset1"),
                Some("assettype1"),
                Some("sta1"),
                Some("false"),
                Some("false")
            ],
            [
                Some("asset2"),
                Some("assettype1"),
                Some("sta1"),
                Some("true"),
                Some("false")
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_as_configured_and_others_fail_alone() {
    let root = env!("CARGO_MANIFEST_DIR");
    let site = temp_dir("flaky-site");
    for name in ["patient", "impatient", "broken", "slow"] {
        std::fs::copy(
            format!("{root}/tests/data/json/zoomi-scooters.json"),
            site.join(format!("{name}.json")),
        )
        .unwrap();
    }
    let sim = mobiflux::simulator::Simulator::start(site, "127.0.0.1:0")
        .await
        .unwrap();
    use mobiflux::simulator::Fault;
    // Rate-limited twice (Retry-After: 1 s), then fine.
    let flaky = |status, retry_after| Fault::Flaky {
        status,
        times: 2,
        retry_after,
    };
    sim.set_fault("/patient.json", flaky(429, Some(1)));
    sim.set_fault("/impatient.json", flaky(503, None));
    sim.set_fault("/broken.json", Fault::Status(500));
    sim.set_fault(
        "/slow.json",
        Fault::Delay(std::time::Duration::from_secs(3)),
    );
    let body = &zoomi_mapping("");
    let pipelines = temp_dir("flaky-defs");
    for (name, extra) in [
        ("patient", "retries = 2"),
        ("impatient", ""),
        ("broken", "retries = 3"),
        ("slow", "retries = 1\ntimeout_secs = 1"),
    ] {
        define_format(
            &pipelines,
            name,
            "json",
            &format!("{}/{name}.json", sim.base_url()),
            &format!("{extra}\n{body}"),
        );
    }
    let local = temp_dir("flaky-local");
    let started = std::time::Instant::now();
    let out = mobiflux(&["run"], &local_dest(&pipelines, &local).0).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // The patient pipeline waited as told (twice 1 s) and loaded.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert!(
        stdout.contains("rows loaded per table: vehicles 3"),
        "{stdout}"
    );
    assert!(stderr.contains("transient failure; retrying"), "{stderr}");
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("FAILED pipeline"))
        .collect();
    assert_eq!(failed.len(), 3, "{stderr}");
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("FAILED pipeline slow:") && l.contains("timed out after 1 s")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("FAILED pipeline impatient:") && l.contains("answered 503")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("FAILED pipeline broken:") && l.contains("answered 500")),
        "{failed:?}"
    );
    let count = |p: &str| sim.requests().iter().filter(|r| r.as_str() == p).count();
    // 429 twice then 200; 503 once without retries; 500 is not transient: never retried.
    // A slow answer is a timeout: retried once, then the run fails.
    assert_eq!(
        (
            count("/patient.json"),
            count("/impatient.json"),
            count("/broken.json"),
            count("/slow.json")
        ),
        (3, 1, 1, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth2_partner_is_called_page_by_page_and_its_secret_never_leaks() {
    let sim = data_site().await;
    const SECRET: &str = "s3cr3t-Zoomi!";
    // The first token it issues is already expired: mobiflux must fetch one more, once.
    sim.require_oauth2("zoomi-app", SECRET, "/api/", true);
    let mapping = &zoomi_mapping("");
    let auth = "[auth]\ntype = \"oauth2\"\ntoken_url = \"${ZOOMI_API}/oauth/token\"\nclient_id = \"zoomi-app\"\nclient_secret = \"${ZOOMI_SECRET}\"\n[paging]\nnext = \"links.next\"\nmax_pages = 5\n";
    let pipelines = temp_dir("oauth-defs");
    let define = |name: &str, secret_var: &str| {
        let text = format!(
            "name = \"{name}\"\npartner = \"zoomi\"\nformat = \"json\"\nurl = \"${{ZOOMI_API}}/api/scooters-p1.json\"\nschedule = \"0 * * * * *\"\n{}\n{}",
            mapping.replace(
                "[columns]",
                &format!("{}\n[columns]", auth.replace("ZOOMI_SECRET", secret_var))
            ),
            ""
        );
        std::fs::write(pipelines.join(format!("{name}.toml")), text).unwrap();
    };
    define("zoomi-oauth", "ZOOMI_SECRET");
    define("zoomi-wrong", "ZOOMI_WRONG");
    let local = temp_dir("oauth-local");
    let sqlite = format!("sqlite://{}/w.db", local.display());
    let mut env = dest(&pipelines, local.join("raw").to_str().unwrap(), &sqlite);
    env.push(("ZOOMI_API".into(), sim.base_url()));
    env.push(("ZOOMI_SECRET".into(), SECRET.into()));
    env.push(("ZOOMI_WRONG".into(), "not-the-secret".into()));
    env.push(("MOBIFLUX_LOG".into(), "debug".into()));
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Two pages, 4 scooters, one quarantined (its range is not a number).
    assert!(
        stdout.contains("rows loaded per table: vehicles 3"),
        "{stdout}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("FAILED pipeline zoomi-wrong:"))
        .expect(&stderr);
    assert!(
        line.contains("OAuth2 token request") && line.contains("401"),
        "{line}"
    );
    let calls: Vec<String> = sim.requests();
    let count = |p: &str| calls.iter().filter(|c| c.as_str() == p).count();
    // zoomi-wrong: one refused token request. zoomi-oauth: a token, p1 refused (expired),
    // a new token, p1, p2.
    assert_eq!(count("/oauth/token"), 3, "{calls:?}");
    assert_eq!(
        (
            count("/api/scooters-p1.json"),
            count("/api/scooters-p2.json")
        ),
        (2, 1),
        "{calls:?}"
    );
    // The secret (and the tokens, and the Basic credentials) appear nowhere: not in the
    // output or the debug logs, not in the raw zone (manifests), not in the warehouse.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("zoomi-app:{SECRET}"));
    let mut haystacks = vec![stdout.to_string(), stderr.to_string()];
    for entry in files_under(&local) {
        haystacks.push(String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned());
    }
    for needle in [SECRET, "not-the-secret", "tok-1", "tok-2", basic.as_str()] {
        assert!(
            haystacks.iter().all(|h| !h.contains(needle)),
            "{needle} leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_plan_passes_values_from_one_call_to_the_next() {
    let sim = data_site().await;
    let mapping = &zoomi_mapping("");
    let pipelines = temp_dir("plan-defs");
    let definition = format!(
        "name = \"fleets\"\npartner = \"zoomi\"\nformat = \"json\"\n\
         url = \"${{ZOOMI_API}}/api/fleets/{{fleet_id}}/scooters\"\n\
         body = '{{\"fleet\": \"{{fleet_id}}\", \"state\": \"all\"}}'\n\
         schedule = \"0 * * * * *\"\n{mapping}\n\
         [[calls]]\nname = \"fleet-list\"\nurl = \"${{ZOOMI_API}}/api/fleets.json\"\nextract = {{ fleet_id = \"data.*.id\" }}\nheaders = {{ \"X-Fleet-Scope\" = \"all\" }}\n"
    );
    std::fs::write(pipelines.join("fleets.toml"), definition).unwrap();
    // A placeholder no call extracts is a validate error.
    std::fs::write(
        pipelines.join("broken.toml"),
        "name = \"broken\"\npartner = \"zoomi\"\nformat = \"json\"\nurl = \"https://x.example/{fleet}\"\nschedule = \"0 * * * * *\"\nrecords = \"*\"\ntable = \"regions\"\n[columns]\nregion_id = \"id\"\nname = \"name\"\n",
    )
    .unwrap();
    let local = temp_dir("plan-local");
    let (mut env, _) = local_dest(&pipelines, &local);
    env.push(("ZOOMI_API".into(), sim.base_url()));
    let out = mobiflux(&["validate"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("broken.toml:4: url: {fleet} is not extracted by a [[calls]] entry"),
        "{stderr}"
    );
    std::fs::remove_file(pipelines.join("broken.toml")).unwrap();
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: vehicles 3"),
        "{stdout}"
    );
    // The list first, then one POST per fleet with the fleet in the body.
    let calls = sim.requests_with_header("(body)");
    assert_eq!(
        calls,
        vec![
            ("/api/fleets.json".to_string(), String::new()),
            (
                "/api/fleets/paris-11/scooters".to_string(),
                r#"{"fleet": "paris-11", "state": "all"}"#.to_string()
            ),
            (
                "/api/fleets/paris-12/scooters".to_string(),
                r#"{"fleet": "paris-12", "state": "all"}"#.to_string()
            ),
        ]
    );
    // The call's own header went with that call only.
    let scoped: Vec<String> = sim
        .requests_with_header("x-fleet-scope")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(scoped, vec!["all", "", ""]);
    // Both the list and the pages are in the raw zone.
    let store = mobiflux_extractors::raw::open(local.join("raw").to_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        store
            .list("raw/fleets/call-fleet-list/")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.list("raw/fleets/records/").await.unwrap().len(), 2);
    // A failing POST is named as one.
    sim.set_fault(
        "/api/fleets/paris-12/scooters",
        mobiflux::simulator::Fault::Status(500),
    );
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "FAILED pipeline fleets: POST {}/api/fleets/paris-12/scooters answered 500",
            sim.base_url()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_follows_the_cursor_until_it_ends() {
    let sim = data_site().await;
    let out = run_zoomi(
        "cursor",
        &format!("{}/api/cursor", sim.base_url()),
        "[paging]\ncursor = \"meta.next_cursor\"\nparam = \"cursor\"\n",
        &[],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: vehicles 3"),
        "{stdout}"
    );
    assert_eq!(sim.requests(), vec!["/api/cursor", "/api/cursor"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_paging_steps_by_the_page_size_until_a_page_is_empty() {
    let sim = data_site().await;
    let out = run_zoomi(
        "offset",
        &format!("{}/api/offset", sim.base_url()),
        "[paging]\noffset = \"offset\"\nlimit = \"limit\"\nsize = 2\n",
        &[],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: vehicles 3"),
        "{stdout}"
    );
    assert_eq!(sim.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_number_paging_stops_at_the_first_page_without_records() {
    let sim = data_site().await;
    let out = run_zoomi(
        "paged",
        &format!("{}/api/paged", sim.base_url()),
        "[paging]\npage = \"page\"\n",
        &[],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: vehicles 3"),
        "{stdout}"
    );
    // Pages 1, 2 and the empty page 3.
    assert_eq!(sim.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_header_paging_follows_rel_next() {
    let sim = data_site().await;
    let out = run_zoomi(
        "linked",
        &format!("{}/api/linked", sim.base_url()),
        "[paging]\nlink_header = true\n",
        &[],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: vehicles 3"),
        "{stdout}"
    );
    assert_eq!(sim.requests(), vec!["/api/linked", "/api/linked"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_page_on_another_origin_is_not_called_with_the_credentials() {
    let sim = data_site().await;
    let out = run_zoomi(
        "escape",
        &format!("{}/api/escape.json", sim.base_url()),
        "[auth]\ntype = \"bearer\"\ntoken = \"${ZOOMI_TOKEN}\"\n[paging]\nnext = \"links.next\"\n",
        &[("ZOOMI_TOKEN", "zoomi-token-0123456789")],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the next page is on another origin (https://collector.example); it is not called with this partner's credentials"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("zoomi-token-0123456789") && !stdout.contains("zoomi-token-0123456789")
    );
    // The first page was the partner's, with the token.
    assert_eq!(
        sim.requests_with_header("authorization"),
        vec![(
            "/api/escape.json".to_string(),
            "Bearer zoomi-token-0123456789".to_string()
        )]
    );
}
