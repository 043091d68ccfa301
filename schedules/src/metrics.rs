//! The daemon's observability: Prometheus metrics (`/metrics`, text format 0.0.4) and a
//! health check (`/health`), served on one address (`MOBIFLUX_METRICS_ADDR`; port 0 picks a
//! free one, so several daemons can share a host).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon::{Counters, SharedCounters};

/// Upper bounds of the run duration histogram, in seconds.
const BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Debug, Default, Clone)]
struct PerPipeline {
    succeeded: u64,
    failed: u64,
    cache_failed: u64,
    rows: u64,
    bytes: u64,
    quarantined: u64,
    /// Count per bucket (last one: +Inf), and the sum of durations.
    buckets: Vec<u64>,
    duration_sum: f64,
    last_success: Option<f64>,
}

/// What one finished run reports.
#[derive(Debug, Clone, Copy)]
pub struct RunReport {
    pub ok: bool,
    pub cache_failed: bool,
    pub duration: Duration,
    pub rows: u64,
    pub bytes: u64,
    pub quarantined: u64,
}

pub struct Metrics {
    started: Instant,
    runs: Mutex<BTreeMap<String, PerPipeline>>,
    /// Circuit breaker state per MSP host (0 closed, 1 half-open, 2 open).
    breakers: Mutex<BTreeMap<String, u8>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            runs: Mutex::new(BTreeMap::new()),
            breakers: Mutex::new(BTreeMap::new()),
        }
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn record(&self, pipeline: &str, r: RunReport) {
        let mut all = self.runs.lock().expect("not poisoned");
        let p = all.entry(pipeline.to_string()).or_default();
        if p.buckets.is_empty() {
            p.buckets = vec![0; BUCKETS.len() + 1];
        }
        if r.ok {
            p.succeeded += 1;
            p.last_success = Some(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            );
        } else {
            p.failed += 1;
        }
        p.cache_failed += r.cache_failed as u64;
        p.rows += r.rows;
        p.bytes += r.bytes;
        p.quarantined += r.quarantined;
        let secs = r.duration.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        p.buckets[i] += 1;
        p.duration_sum += secs;
    }

    pub fn set_breaker(&self, host: &str, state: u8) {
        self.breakers
            .lock()
            .expect("not poisoned")
            .insert(host.to_string(), state);
    }

    /// The Prometheus text exposition of everything known, with the daemon's counters.
    pub fn render(&self, counters: &BTreeMap<String, Arc<Counters>>) -> String {
        let runs = self.runs.lock().expect("not poisoned").clone();
        let mut out = String::new();
        let mut section = |name: &str, kind: &str, help: &str, body: String| {
            let _ = writeln!(
                out,
                "# HELP mobiflux_{name} {help}\n# TYPE mobiflux_{name} {kind}"
            );
            out.push_str(&body);
        };
        let mut by_outcome = String::new();
        for (p, r) in &runs {
            let p = label(p);
            for (outcome, n) in [("succeeded", r.succeeded), ("failed", r.failed)] {
                let _ = writeln!(
                    by_outcome,
                    "mobiflux_runs_total{{pipeline=\"{p}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        section(
            "runs_total",
            "counter",
            "Scheduled runs by outcome.",
            by_outcome,
        );
        let per = |f: &dyn Fn(&PerPipeline) -> Option<String>, metric: &str| {
            let mut b = String::new();
            for (p, r) in &runs {
                if let Some(v) = f(r) {
                    let _ = writeln!(b, "mobiflux_{metric}{{pipeline=\"{}\"}} {v}", label(p));
                }
            }
            b
        };
        section(
            "cache_publish_failures_total",
            "counter",
            "Runs whose gateway-cache step failed.",
            per(
                &|r| Some(r.cache_failed.to_string()),
                "cache_publish_failures_total",
            ),
        );
        section(
            "rows_loaded_total",
            "counter",
            "Rows loaded into the warehouse.",
            per(&|r| Some(r.rows.to_string()), "rows_loaded_total"),
        );
        section(
            "bytes_fetched_total",
            "counter",
            "Bytes landed in the raw zone.",
            per(&|r| Some(r.bytes.to_string()), "bytes_fetched_total"),
        );
        section(
            "rows_quarantined_total",
            "counter",
            "Records quarantined.",
            per(
                &|r| Some(r.quarantined.to_string()),
                "rows_quarantined_total",
            ),
        );
        section(
            "last_success_timestamp_seconds",
            "gauge",
            "End of the last successful run (Unix time).",
            per(
                &|r| r.last_success.map(|t| format!("{t:.3}")),
                "last_success_timestamp_seconds",
            ),
        );
        let mut h = String::new();
        for (p, r) in &runs {
            let p = label(p);
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += r.buckets[i];
                let _ = writeln!(
                    h,
                    "mobiflux_run_duration_seconds_bucket{{pipeline=\"{p}\",le=\"{b}\"}} {cum}"
                );
            }
            cum += r.buckets[BUCKETS.len()];
            let _ = writeln!(
                h,
                "mobiflux_run_duration_seconds_bucket{{pipeline=\"{p}\",le=\"+Inf\"}} {cum}"
            );
            let _ = writeln!(
                h,
                "mobiflux_run_duration_seconds_sum{{pipeline=\"{p}\"}} {:.6}",
                r.duration_sum
            );
            let _ = writeln!(
                h,
                "mobiflux_run_duration_seconds_count{{pipeline=\"{p}\"}} {cum}"
            );
        }
        section(
            "run_duration_seconds",
            "histogram",
            "Duration of scheduled runs.",
            h,
        );
        let mut t = String::new();
        let mut l = String::new();
        for (p, c) in counters {
            let p = label(p);
            for (reason, v) in [
                ("overlap", &c.overlapped),
                ("elsewhere", &c.elsewhere),
                ("missed", &c.missed),
                ("claim_error", &c.claim_errors),
            ] {
                let _ = writeln!(
                    t,
                    "mobiflux_ticks_not_run_total{{pipeline=\"{p}\",reason=\"{reason}\"}} {}",
                    v.load(Ordering::Relaxed)
                );
            }
            let _ = writeln!(
                l,
                "mobiflux_lease_owned{{pipeline=\"{p}\"}} {}",
                c.lease_owned.load(Ordering::Relaxed)
            );
        }
        section(
            "ticks_not_run_total",
            "counter",
            "Ticks this instance did not run, by reason (overlap: the previous run was going; elsewhere: another instance took it; missed: while down).",
            t,
        );
        section(
            "lease_owned",
            "gauge",
            "1 when this instance holds the pipeline's lease.",
            l,
        );
        let mut b = String::new();
        for (host, state) in self.breakers.lock().expect("not poisoned").iter() {
            let _ = writeln!(
                b,
                "mobiflux_breaker_state{{host=\"{}\"}} {state}",
                label(host)
            );
        }
        section(
            "breaker_state",
            "gauge",
            "Circuit breaker per MSP host: 0 closed, 1 half-open (probing), 2 open (failing fast).",
            b,
        );
        section(
            "uptime_seconds",
            "gauge",
            "Since the daemon started.",
            format!(
                "mobiflux_uptime_seconds {:.3}\n",
                self.started.elapsed().as_secs_f64()
            ),
        );
        out
    }
}

/// `/health`: 200 and `"ok"` while the warehouse answers the daemon's claims; 503 and
/// `"failing"`, with how many pipelines' last claim failed and one of the errors, while
/// any does (the warehouse is unreachable, or a newer mobiflux migrated it: this instance
/// runs nothing until it is answered or upgraded).
fn health(counters: &SharedCounters, uptime: std::time::Duration) -> crate::httpd::Response {
    let counters = counters.lock().expect("not poisoned").clone();
    let errors: Vec<String> = counters
        .values()
        .filter_map(|c| c.claim_error.lock().expect("not poisoned").clone())
        .collect();
    let failing = match errors.first() {
        None => String::new(),
        Some(error) => format!(
            ",\"claims_failing\":{},\"error\":{}",
            errors.len(),
            serde_json::Value::from(error.as_str())
        ),
    };
    crate::httpd::Response {
        status: if errors.is_empty() { 200 } else { 503 },
        content_type: "application/json",
        body: format!(
            "{{\"status\":\"{}\",\"pipelines\":{},\"uptime_seconds\":{}{failing}}}\n",
            if errors.is_empty() { "ok" } else { "failing" },
            counters.len(),
            uptime.as_secs(),
        )
        .into_bytes(),
    }
}

/// Serves `/metrics` and `/health` until the process ends; returns the bound address.
pub async fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    counters: SharedCounters,
) -> std::io::Result<SocketAddr> {
    crate::httpd::serve(addr, move |r: crate::httpd::Request| {
        let (metrics, counters) = (metrics.clone(), counters.clone());
        async move {
            match r.path.as_str() {
                "/metrics" => crate::httpd::Response::ok(
                    "text/plain; version=0.0.4",
                    metrics.render(&counters.lock().expect("not poisoned").clone()),
                ),
                "/health" => health(&counters, metrics.started.elapsed()),
                _ => crate::httpd::Response::text(404, "see /metrics and /health\n"),
            }
        }
    })
    .await
}
