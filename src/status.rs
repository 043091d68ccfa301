//! `mobiflux status`: per pipeline, its last run, its freshness against its schedule, its
//! recent failures and quarantined rows, read from `etl_runs`.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use mobiflux_loaders::{RunRecord, Warehouse};
use mobiflux_schedules::Schedule;
use serde_json::json;

use crate::definitions::Definition;

/// One pipeline's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub pipeline: String,
    pub schedule: Option<String>,
    pub last_status: Option<String>,
    pub last_started: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// `fresh` (succeeded within twice the schedule's longest wait), `late`, `never`
    /// (no success in the window), or `unscheduled` (runs of a pipeline with no definition).
    pub freshness: &'static str,
    pub runs: usize,
    pub failures: usize,
    pub quarantined: i64,
    pub last_error: Option<String>,
}

pub fn lines(defs: &[Definition], runs: &[RunRecord], now: DateTime<Utc>) -> Vec<Line> {
    let mut by: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    for r in runs {
        by.entry(&r.pipeline).or_default().push(r);
    }
    let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    names.extend(
        by.keys()
            .copied()
            .filter(|n| !defs.iter().any(|d| d.name == *n)),
    );
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let def = defs.iter().find(|d| d.name == name);
            let mine = by.get(name).cloned().unwrap_or_default();
            let last = mine.last();
            let last_success = mine
                .iter()
                .rev()
                .find(|r| r.status == "succeeded")
                .map(|r| r.finished_at.unwrap_or(r.started_at));
            let gap = def
                .and_then(|d| Schedule::parse(&d.schedule, &d.timezone).ok())
                .and_then(|s| s.longest_gap(now));
            let freshness = match (def, last_success, gap) {
                (None, _, _) => "unscheduled",
                (_, None, _) => "never",
                (_, Some(t), Some(g)) if now - t > g * 2 + Duration::seconds(60) => "late",
                _ => "fresh",
            };
            Line {
                pipeline: name.to_string(),
                schedule: def.map(|d| d.schedule.clone()),
                last_status: last.map(|r| r.status.clone()),
                last_started: last.map(|r| r.started_at),
                last_success,
                freshness,
                runs: mine.len(),
                failures: mine.iter().filter(|r| r.status == "failed").count(),
                quarantined: mine.iter().map(|r| r.rows_quarantined).sum(),
                last_error: mine.iter().rev().find_map(|r| r.error.clone()),
            }
        })
        .collect()
}

fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        None => "-".into(),
        Some(t) => {
            let s = (now - t).num_seconds().max(0);
            match s {
                0..120 => format!("{s}s ago"),
                120..7200 => format!("{}m ago", s / 60),
                7200..172_800 => format!("{}h ago", s / 3600),
                _ => format!("{}d ago", s / 86_400),
            }
        }
    }
}

pub async fn run(
    warehouse: &dyn Warehouse,
    defs: &[Definition],
    hours: i64,
    json_out: bool,
) -> Result<()> {
    let now = Utc::now();
    let runs = warehouse.runs_since(now - Duration::hours(hours)).await?;
    let lines = lines(defs, &runs, now);
    if json_out {
        let v: Vec<_> = lines
            .iter()
            .map(|l| {
                json!({
                    "pipeline": l.pipeline, "schedule": l.schedule, "last_status": l.last_status,
                    "last_started": l.last_started, "last_success": l.last_success,
                    "freshness": l.freshness, "runs": l.runs, "failures": l.failures,
                    "quarantined": l.quarantined, "last_error": l.last_error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "runs of the last {hours} h in {} at {}",
        warehouse.describe(),
        now.format("%Y-%m-%d %H:%M:%S UTC")
    );
    println!(
        "{:<32} {:<16} {:<10} {:<11} {:<12} {:<11} {:>5} {:>8} {:>11}  last error",
        "pipeline",
        "schedule",
        "last",
        "started",
        "last success",
        "freshness",
        "runs",
        "failures",
        "quarantined"
    );
    for l in &lines {
        let mut err = l.last_error.clone().unwrap_or_default();
        if err.chars().count() > 80 {
            err = err.chars().take(79).collect::<String>() + "…";
        }
        println!(
            "{:<32} {:<16} {:<10} {:<11} {:<12} {:<11} {:>5} {:>8} {:>11}  {}",
            l.pipeline,
            l.schedule.as_deref().unwrap_or("-"),
            l.last_status.as_deref().unwrap_or("-"),
            ago(l.last_started, now),
            ago(l.last_success, now),
            l.freshness,
            l.runs,
            l.failures,
            l.quarantined,
            err
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn def(name: &str, schedule: &str) -> Definition {
        let text = format!(
            "name = \"{name}\"\npartner = \"{name}\"\nformat = \"gbfs\"\nurl = \"https://x/gbfs.json\"\nschedule = \"{schedule}\"\n"
        );
        crate::definitions::parse(std::path::Path::new("x.toml"), &text).unwrap()
    }

    fn run(p: &str, at: DateTime<Utc>, status: &str, q: i64, error: Option<&str>) -> RunRecord {
        RunRecord {
            run_id: format!("{p}-{}", at.timestamp()),
            pipeline: p.into(),
            partner: p.into(),
            format: "gbfs".into(),
            trigger: "schedule".into(),
            scheduled_for: Some(at),
            started_at: at,
            finished_at: Some(at + Duration::seconds(1)),
            status: status.into(),
            rows_loaded: 10,
            rows_quarantined: q,
            bytes: 100,
            error: error.map(str::to_string),
            manifest: None,
            curated_batch: None,
        }
    }

    #[test]
    fn freshness_failures_and_quarantine_per_pipeline() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let m = |min: i64| now - Duration::minutes(min);
        let defs = vec![
            def("a", "0 * * * * *"),
            def("b", "0 * * * * *"),
            def("c", "0 */2 * * * *"),
        ];
        let runs = vec![
            run("a", m(3), "succeeded", 2, None),
            run("a", m(2), "failed", 0, Some("pipeline a: 503")),
            run("a", m(1), "succeeded", 1, None),
            run("b", m(30), "succeeded", 0, None),
            run("b", m(10), "failed", 0, Some("pipeline b: timeout")),
            run("old", m(50), "succeeded", 0, None),
        ];
        let l = lines(&defs, &runs, now);
        let names: Vec<_> = l
            .iter()
            .map(|x| (x.pipeline.as_str(), x.freshness))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a", "fresh"),
                ("b", "late"),
                ("c", "never"),
                ("old", "unscheduled")
            ]
        );
        assert_eq!((l[0].runs, l[0].failures, l[0].quarantined), (3, 1, 3));
        assert_eq!(l[0].last_status.as_deref(), Some("succeeded"));
        assert_eq!(l[0].last_error.as_deref(), Some("pipeline a: 503"));
        assert_eq!(l[1].last_status.as_deref(), Some("failed"));
        assert_eq!(l[1].last_success, Some(m(30) + Duration::seconds(1)));
    }
}
