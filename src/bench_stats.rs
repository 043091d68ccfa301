//! `mobiflux bench stats`: what an AOM analyst waits for. N days of minutely status of M
//! docking stations (default 30 days × 1,500 stations, 64.8 M snapshots) are loaded into a
//! fresh PostgreSQL database through the loaders, so the rollups are kept as in
//! production; then every documented view's example query (docs/stats.md, on this data)
//! and every `mobiflux stats` statistic over the last week run R times each: p50, p95 and
//! max per query, against the target p95 ≤ 200 ms.
//!
//! The example queries run in one `psql` session with `\timing` (server time plus the
//! transfer of the answer, as an analyst's SQL client sees it); the statistics run through
//! the warehouse as `mobiflux stats` does.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, Utc};
use mobiflux_loaders::stats::{Filters, STATS};
use mobiflux_loaders::{Batch, PipelineInfo};
use mobiflux_model::RunId;
use mobiflux_model::schema::{QUARANTINE, STATION_STATUS, STATIONS};
use mobiflux_transforms::frame::{FrameBuilder, ValueRef, empty};

use crate::bench::{FreshDb, Rng, percentile};

const PARTNER: &str = "bench-docks";
const CAPACITY: i64 = 20;
/// Snapshots per load: six hours of one minute each.
const MINUTES_PER_LOAD: i64 = 360;

pub struct Options {
    pub stations: usize,
    pub days: i64,
    pub runs: usize,
    pub pg_admin: String,
}

fn record(run: &RunId) -> mobiflux_loaders::RunRecord {
    crate::runner::new_record(run, PARTNER, PARTNER, "gbfs", "run")
}

/// The example query of each documented view (docs/stats.md), on the generated data.
fn examples(from: DateTime<Utc>, days: i64) -> Vec<(&'static str, String)> {
    let end = from + Duration::days(days);
    let week = (end - Duration::days(7)).format("%Y-%m-%d").to_string();
    let month = from.format("%Y-%m-%d").to_string();
    let end = end.format("%Y-%m-%d").to_string();
    vec![
        (
            "fleet availability, daily per partner (month)",
            format!(
                "SELECT day, partner, sum(avg_available), sum(avg_vehicles) FROM stats_fleet_availability_daily \
                 WHERE day >= '{month}' AND day < '{end}' GROUP BY day, partner ORDER BY day, partner"
            ),
        ),
        (
            "fleet availability, hourly (last week)",
            format!(
                "SELECT hour, sum(avg_available) FROM stats_fleet_availability_hourly \
                 WHERE hour >= '{week}' AND hour < '{end}' GROUP BY hour ORDER BY hour"
            ),
        ),
        (
            "station occupancy: one station by hour of day (week)",
            format!(
                "SELECT extract(hour FROM hour) AS h, avg(occupancy) FROM stats_station_occupancy_hourly \
                 WHERE partner = '{PARTNER}' AND station_id = 's0042' AND hour >= '{week}' AND hour < '{end}' \
                 GROUP BY 1 ORDER BY 1"
            ),
        ),
        (
            "station occupancy: all stations by hour of day (week)",
            format!(
                "SELECT extract(hour FROM hour) AS h, avg(occupancy) FROM stats_station_occupancy_hourly \
                 WHERE hour >= '{week}' AND hour < '{end}' GROUP BY 1 ORDER BY 1"
            ),
        ),
        (
            "occupancy by hour of day, weekdays (4 weeks)",
            format!(
                "SELECT hour_of_day, sum(vehicles_available) / sum(vehicles_available + docks_available) \
                 FROM stats_occupancy_by_hour WHERE day >= '{end}'::date - 28 AND extract(isodow FROM day) < 6 \
                 GROUP BY hour_of_day ORDER BY hour_of_day"
            ),
        ),
        (
            "station outages: ten emptiest stations (week)",
            format!(
                "SELECT partner, station_id, max(name), sum(empty_min) AS empty_min FROM stats_station_outages_daily \
                 WHERE day >= '{week}' AND day < '{end}' GROUP BY partner, station_id ORDER BY empty_min DESC LIMIT 10"
            ),
        ),
        (
            "carpool O-D pairs, least frequented (month)",
            format!(
                "SELECT origin, destination, sum(journeys) AS journeys FROM stats_carpool_od_daily \
                 WHERE day >= '{month}' AND day < '{end}' GROUP BY origin, destination ORDER BY journeys ASC LIMIT 10"
            ),
        ),
        (
            "charge points per commune",
            "SELECT insee_code, charge_points, total_power_kw, fast_points, free_now FROM stats_charge_points_by_commune \
             ORDER BY charge_points DESC LIMIT 20"
                .into(),
        ),
        (
            "parking per commune",
            "SELECT insee_code, facilities, capacity, spaces_pmr, occupied_now, free_now FROM stats_parking_by_commune \
             ORDER BY capacity DESC"
                .into(),
        ),
        (
            "gateway usage: slowest client per partner (a day)",
            format!(
                "SELECT partner, client_id, sum(calls), max(p95_ms) AS worst FROM stats_gateway_usage_daily \
                 WHERE day = '{week}' GROUP BY partner, client_id ORDER BY worst DESC"
            ),
        ),
        (
            "feed health: late feeds",
            "SELECT pipeline, partner, last_status, freshness_s, failures, quarantined FROM stats_feed_health \
             WHERE late ORDER BY freshness_s DESC"
                .into(),
        ),
    ]
}

/// Runs each query `runs` times in one psql session; the `\timing` of each run, in ms.
fn psql_timings(url: &str, queries: &[(&str, String)], runs: usize) -> Result<Vec<Vec<f64>>> {
    let mut script = String::from("\\timing on\n\\o /dev/null\n");
    for _ in 0..runs {
        for (_, q) in queries {
            script.push_str(q);
            script.push_str(";\n");
        }
    }
    let mut child = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql (is the postgresql-client package installed?)")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Time: "))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    if times.len() != runs * queries.len() {
        bail!(
            "psql gave {} timings for {} queries",
            times.len(),
            runs * queries.len()
        );
    }
    Ok((0..queries.len())
        .map(|q| (0..runs).map(|r| times[r * queries.len() + q]).collect())
        .collect())
}

fn line(name: &str, mut ms: Vec<f64>, rows: Option<usize>) -> bool {
    ms.sort_by(f64::total_cmp);
    let p = |q| percentile(&ms, q).unwrap_or(f64::NAN);
    let ok = p(0.95) <= 200.0;
    println!(
        "  {name:<58} p50 {:>7.1} ms  p95 {:>7.1} ms  max {:>7.1} ms{}  {}",
        p(0.5),
        p(0.95),
        ms.last().copied().unwrap_or(f64::NAN),
        rows.map(|r| format!("  {r:>6} rows")).unwrap_or_default(),
        if ok { "ok" } else { "OVER 200 ms" }
    );
    ok
}

pub async fn run(o: Options) -> Result<()> {
    if o.stations == 0 || o.days < 1 || o.runs == 0 {
        bail!("--stations, --days and --runs must be at least 1");
    }
    let db = FreshDb::named(&o.pg_admin, "stats")?;
    let wh = mobiflux_loaders::open(&db.url).await?;
    wh.migrate().await?;
    wh.register_pipelines(&[PipelineInfo {
        pipeline: PARTNER.into(),
        partner: PARTNER.into(),
        territory: Some("bench".into()),
        format: "gbfs".into(),
        schedule: Some("0 * * * * *".into()),
        interval_s: Some(60),
    }])
    .await?;
    let quarantine = empty(&QUARANTINE);
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let from = today - Duration::days(o.days);
    println!(
        "stats: {} stations, minutely status for {} days ({:.1} M snapshots) into a fresh PostgreSQL database, through the loaders",
        o.stations,
        o.days,
        (o.stations as f64 * o.days as f64 * 1440.0) / 1e6
    );

    // The stations.
    let run = RunId::new();
    let mut b = FrameBuilder::with_capacity(&STATIONS, o.stations);
    let ids: Vec<String> = (0..o.stations).map(|i| format!("s{i:04}")).collect();
    let names: Vec<String> = (0..o.stations).map(|i| format!("Station {i}")).collect();
    let run_text = run.to_string();
    for i in 0..o.stations {
        let a = i as f64 * 0.618;
        b.push_checked(&[
            ValueRef::Text(PARTNER),
            ValueRef::Text(&ids[i]),
            ValueRef::Text(&names[i]),
            ValueRef::Float(45.75 + (a.sin() * 0.05)),
            ValueRef::Float(4.85 + (a.cos() * 0.07)),
            ValueRef::Int(CAPACITY),
            ValueRef::Null,
            ValueRef::Null,
            ValueRef::Null,
            ValueRef::Bool(false),
            ValueRef::Null,
            ValueRef::Ts(from.timestamp_micros()),
            ValueRef::Text(&run_text),
        ]);
    }
    let tables = [(&STATIONS, b.finish())];
    wh.load(Batch {
        run: &record(&run),
        tables: &tables,
        quarantine: &quarantine,
    })
    .await?;

    // The status, six hours per load: each station's vehicles walk up and down; now and
    // then a station stops renting for an hour.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut vehicles: Vec<i64> = (0..o.stations).map(|i| (i as i64 * 7) % CAPACITY).collect();
    let mut closed_until: Vec<i64> = vec![0; o.stations];
    let started = Instant::now();
    let mut loaded = 0u64;
    let total_minutes = o.days * 1440;
    let mut minute = 0;
    while minute < total_minutes {
        let run = RunId::new();
        let run_text = run.to_string();
        let n = MINUTES_PER_LOAD.min(total_minutes - minute);
        let mut b = FrameBuilder::with_capacity(&STATION_STATUS, o.stations * n as usize);
        for m in minute..minute + n {
            let at = (from + Duration::minutes(m)).timestamp_micros();
            for s in 0..o.stations {
                let r = rng.unit();
                vehicles[s] = (vehicles[s]
                    + if r < 0.3 {
                        -1
                    } else if r > 0.7 {
                        1
                    } else {
                        0
                    })
                .clamp(0, CAPACITY);
                if rng.unit() < 0.000_05 {
                    closed_until[s] = m + 60;
                }
                b.push_checked(&[
                    ValueRef::Text(PARTNER),
                    ValueRef::Text(&ids[s]),
                    ValueRef::Ts(at),
                    ValueRef::Ts(at),
                    ValueRef::Int(vehicles[s]),
                    ValueRef::Int(CAPACITY - vehicles[s]),
                    ValueRef::Int(0),
                    ValueRef::Int(0),
                    ValueRef::Bool(true),
                    ValueRef::Bool(closed_until[s] <= m),
                    ValueRef::Bool(true),
                    ValueRef::Null,
                    ValueRef::Null,
                    ValueRef::Text(&run_text),
                ]);
            }
        }
        let tables = [(&STATION_STATUS, b.finish())];
        wh.load(Batch {
            run: &record(&run),
            tables: &tables,
            quarantine: &quarantine,
        })
        .await?;
        loaded += o.stations as u64 * n as u64;
        minute += n;
        if minute % 1440 == 0 {
            print!(
                "\r  loaded day {}/{}: {:.1} M snapshots, {:.0} rows/s   ",
                minute / 1440,
                o.days,
                loaded as f64 / 1e6,
                loaded as f64 / started.elapsed().as_secs_f64()
            );
            std::io::stdout().flush()?;
        }
    }
    // The scheduler folds the appended hourly rows every few minutes: queried as it leaves them.
    let keys = wh.fold_rollups().await?;
    println!(
        "\n  {loaded} snapshots loaded in {:.1} s, rollups kept by the loader ({keys} hourly keys folded); ANALYZE",
        started.elapsed().as_secs_f64()
    );
    let out = Command::new("psql")
        .args([db.url.as_str(), "-q", "-c", "ANALYZE"])
        .output()?;
    if !out.status.success() {
        bail!("ANALYZE: {}", String::from_utf8_lossy(&out.stderr));
    }

    let mut all_ok = true;
    println!(
        "documented example queries (docs/stats.md), {} runs each, psql \\timing:",
        o.runs
    );
    let queries = examples(from, o.days);
    for ((name, _), ms) in queries.iter().zip(psql_timings(&db.url, &queries, o.runs)?) {
        all_ok &= line(name, ms, None);
    }
    println!(
        "mobiflux stats NAME over the last week, {} runs each (whole answers, fetched and decoded; \
         station-occupancy is an export of every station-hour: not held to the target):",
        o.runs
    );
    let filters = Filters {
        from: Some(today - Duration::days(7)),
        to: Some(today),
        ..Filters::default()
    };
    for stat in STATS {
        let mut ms = Vec::new();
        let mut rows = 0;
        for _ in 0..o.runs {
            let t = Instant::now();
            let table = wh.stats(stat, &filters).await?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            rows = table.rows.len();
        }
        let ok = line(stat.name, ms, Some(rows));
        all_ok &= ok || stat.name == "station-occupancy";
    }
    println!(
        "target: every query p95 <= 200 ms: {}",
        if all_ok { "met" } else { "NOT met" }
    );
    Ok(())
}
