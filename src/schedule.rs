//! `mobiflux schedule`: the scheduler daemon of `schedules/`, given the runner and the
//! warehouse's leases. Runs until SIGTERM or SIGINT, then lets in-flight runs finish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use mobiflux_schedules::Schedule;
use mobiflux_schedules::clock::{CatchUp, PipelineClock, offset_for};
use mobiflux_schedules::daemon::{Daemon, Host, Job, Options};

use crate::definitions::Definition;
use crate::runner::Runner;

struct RunnerHost {
    runner: Runner,
    defs: BTreeMap<String, Definition>,
}

impl Host for RunnerHost {
    fn run(&self, pipeline: &str, scheduled_for: DateTime<Utc>) -> BoxFuture<'_, ()> {
        let pipeline = pipeline.to_string();
        Box::pin(async move {
            let Some(def) = self.defs.get(&pipeline) else {
                return;
            };
            let o = self.runner.run_tick(def, Some(scheduled_for)).await;
            match &o.error {
                None => {
                    tracing::info!(pipeline = %o.pipeline, run_id = %o.run_id, %scheduled_for, rows = o.tables.iter().map(|t| t.1).sum::<u64>(), elapsed_ms = o.elapsed.as_millis() as u64, "scheduled run done")
                }
                Some(e) => {
                    tracing::warn!(pipeline = %o.pipeline, run_id = %o.run_id, %scheduled_for, error = %e, "scheduled run failed")
                }
            }
        })
    }

    fn claim<'a>(
        &'a self,
        pipeline: &'a str,
        scheduled_for: DateTime<Utc>,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            self.runner
                .warehouse
                .claim_tick(pipeline, scheduled_for, owner, ttl)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn renew<'a>(
        &'a self,
        pipeline: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            self.runner
                .warehouse
                .renew_lease(pipeline, owner, ttl)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn release<'a>(&'a self, pipeline: &'a str, owner: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.runner.warehouse.release_lease(pipeline, owner).await {
                tracing::warn!(%pipeline, error = %e, "could not release the lease (it expires by itself)");
            }
        })
    }
}

/// This instance's name in the leases: host, process id and a unique part.
fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let unique = mobiflux_model::RunId::new().to_string();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &unique[unique.len() - 8..]
    )
}

pub struct Settings {
    pub lease: Duration,
    pub max_concurrent: usize,
    pub grace: Duration,
    pub catch_up: CatchUp,
}

pub async fn run(runner: Runner, defs: Vec<Definition>, settings: Settings) -> Result<()> {
    let start = Utc::now();
    let mut jobs = Vec::new();
    for d in &defs {
        let schedule = Schedule::parse(&d.schedule, &d.timezone)?;
        jobs.push(Job {
            name: d.name.clone(),
            clock: PipelineClock::new(
                schedule,
                start,
                offset_for(&d.name, d.jitter),
                settings.catch_up,
            ),
        });
    }
    let shares = runner.warehouse.shares_schedules();
    let owner = owner();
    println!(
        "scheduling {} pipelines as {owner} on {} ({}); stop with SIGTERM or Ctrl-C",
        jobs.len(),
        runner.warehouse.describe(),
        if shares {
            "instances share the pipelines through leases"
        } else {
            "SQLite: run one scheduler instance at a time"
        }
    );
    let host = Arc::new(RunnerHost {
        runner,
        defs: defs.into_iter().map(|d| (d.name.clone(), d)).collect(),
    });
    let daemon = Daemon::start(
        host,
        jobs,
        Options {
            owner,
            lease_ttl: settings.lease,
            max_concurrent: settings.max_concurrent,
            shutdown_grace: settings.grace,
        },
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!(
        "stopping: no new runs; waiting up to {} s for runs in flight",
        settings.grace.as_secs()
    );
    let counters = daemon.counters.clone();
    daemon.stop().await;
    use std::sync::atomic::Ordering::Relaxed;
    for (name, c) in counters.iter() {
        println!(
            "{name}: {} runs started, {} ticks taken elsewhere, {} skipped (overlap), {} missed",
            c.started.load(Relaxed),
            c.elsewhere.load(Relaxed),
            c.overlapped.load(Relaxed),
            c.missed.load(Relaxed)
        );
    }
    println!("stopped");
    Ok(())
}
