//! `mobiflux serve`: the statistics over HTTP, and the dashboard drawn by a real browser
//! (Debian's headless Chromium, installed by `.ci/run`) on a warehouse loaded by the bundled
//! examples plus generated GBFS history. The screenshot is kept as a test artifact:
//! `$CARGO_TARGET_DIR/test-artifacts/dashboard.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::{TimeZone, Utc};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

fn chromium() -> &'static str {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return c;
        }
    }
    panic!("no Chromium: run the tests with `bash .ci/run`, which installs Debian's chromium");
}

/// A GBFS 2.3 system, one snapshot per call, moving in time (like tests/stats.rs).
fn write_feed(dir: &Path, minute: i64) {
    let at =
        Utc.with_ymd_and_hms(2026, 11, 2, 6, 0, 0).unwrap() + chrono::Duration::minutes(minute);
    let doc = |data: Value| json!({ "last_updated": at.timestamp(), "ttl": 60, "version": "2.3", "data": data });
    let put = |name: &str, v: Value| {
        std::fs::write(dir.join(name), serde_json::to_vec(&doc(v)).unwrap()).unwrap()
    };
    let feeds: Vec<Value> = [
        "system_information",
        "station_information",
        "station_status",
        "free_bike_status",
    ]
    .iter()
    .map(|n| json!({ "name": n, "url": format!("https://example.invalid/{n}") }))
    .collect();
    put("gbfs.json", json!({ "en": { "feeds": feeds } }));
    put(
        "system_information.json",
        json!({ "system_id": "dash", "language": "en", "name": "Dash", "timezone": "Europe/Paris" }),
    );
    put(
        "station_information.json",
        json!({ "stations": (0..4).map(|i| json!({ "station_id": format!("s{i}"), "name": format!("S{i}"), "lat": 45.75 + i as f64 * 0.01, "lon": 4.85, "capacity": 10 })).collect::<Vec<_>>() }),
    );
    put(
        "station_status.json",
        json!({ "stations": (0..4).map(|i| { let v = (i * 3 + minute / 30) % 11; json!({ "station_id": format!("s{i}"), "num_bikes_available": v, "num_docks_available": 10 - v.min(10), "is_installed": true, "is_renting": true, "is_returning": true, "last_reported": at.timestamp() }) }).collect::<Vec<_>>() }),
    );
    put(
        "free_bike_status.json",
        json!({ "bikes": (0..(5 + minute / 60)).map(|i| json!({ "bike_id": format!("b{i}"), "lat": 45.76, "lon": 4.84, "is_reserved": false, "is_disabled": false })).collect::<Vec<_>>() }),
    );
}

fn artifacts() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_every_chart_with_data_in_a_browser() {
    let local = temp_dir("dashboard");
    let warehouse = format!("sqlite://{}/w.db", local.display());
    // The bundled examples (carpooling, parking, charge points, feeds)…
    run_demo(&local.join("raw"), &warehouse).await;
    // …and six hours of a docking-station system, a snapshot every 20 minutes.
    let feed = temp_dir("dashboard-feed");
    let sim = mobiflux::simulator::Simulator::start(&feed, "127.0.0.1:0")
        .await
        .unwrap();
    let pipelines = temp_dir("dashboard-defs");
    define(
        &pipelines,
        "dash",
        &format!("{}/gbfs.json", sim.base_url()),
        "territory = \"lyon\"",
    );
    let mut env = dest(&pipelines, local.join("raw").to_str().unwrap(), &warehouse);
    env.push(("MOBIFLUX_CACHE_URL".into(), "none".into()));
    for minute in (0..360).step_by(20) {
        write_feed(&feed, minute);
        let out = mobiflux(&["run"], &env).await;
        assert!(out.status.success(), "{:?}", text(&out));
    }

    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_mobiflux"))
        .args(["serve", "--bind", "127.0.0.1:0", "--warehouse", &warehouse])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();

    // The JSON API.
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let r = client.get(path).send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap(),
            )
        }
    };
    let (_, list) = get(format!("{url}api/stats")).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), mobiflux_loaders::stats::STATS.len());
    let (status, timeline) = get(format!("{url}api/stats/fleet-timeline?partner=dash")).await;
    assert_eq!(status, 200);
    let timeline = timeline.as_array().unwrap().clone();
    assert_eq!(timeline.len(), 6, "{timeline:#?}");
    // 06:00-06:59: snapshots at 0, 20 and 40 minutes with 5 bikes each.
    assert_eq!(timeline[0]["available"], json!(5.0));
    let (status, bad) = get(format!("{url}api/stats/fleet-timeline?from=yesterday")).await;
    assert_eq!(status, 400);
    assert!(
        bad["error"].as_str().unwrap().contains("yesterday"),
        "{bad}"
    );
    let (status, _) = get(format!("{url}api/stats/nothing")).await;
    assert_eq!(status, 404);

    // The page, drawn by Chromium: the DOM once the charts are in, and a screenshot.
    let run = |extra: &[&str]| {
        let mut c = std::process::Command::new(chromium());
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
        ])
        .args(extra)
        .arg(&url);
        c
    };
    let dom = run(&["--dump-dom"]).output().unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    std::fs::write(artifacts().join("dashboard.html"), &dom).unwrap();
    assert!(
        dom.contains(r#"data-ready="1""#),
        "the page did not finish drawing:\n{dom}"
    );
    assert!(!dom.contains(r#"data-error="1""#), "a chart failed:\n{dom}");
    // Availability: one line for the generated partner, a point per hour.
    assert!(
        dom.contains(r#"class="series" data-partner="dash""#),
        "{dom}"
    );
    assert!(dom.matches(r#"class="point""#).count() >= 6, "{dom}");
    // Occupancy heat: the generated day's six hours (the examples' station status adds
    // cells on their own days).
    assert_eq!(dom.matches("<title>2026-11-02 ").count(), 6, "{dom}");
    assert!(dom.matches(r#"class="cell""#).count() > 6, "{dom}");
    // Carpooling: the example's journey pair.
    assert_eq!(dom.matches(r#"class="bar""#).count(), 1, "{dom}");
    // Feed health: the 17 examples and the generated feed.
    assert_eq!(dom.matches(r#"<tr class="feed">"#).count(), 18, "{dom}");

    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = run(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,1400",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    server.kill().await.unwrap();
}
