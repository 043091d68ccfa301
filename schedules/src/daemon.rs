//! The scheduler loop: every pipeline on its clock, a tick claimed in the warehouse before it
//! runs (so several daemons share the pipelines, each tick run once), no overlap with the
//! pipeline's previous run, a global concurrency limit, and a graceful stop.
//!
//! The daemon knows nothing of extractors or warehouses: the binary gives it a [`Host`] that
//! runs a pipeline and keeps the leases.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, watch};

use crate::clock::{Decision, PipelineClock};

/// What the daemon needs from the rest of mobiflux.
pub trait Host: Send + Sync + 'static {
    /// Runs one tick of a pipeline to its end (its outcome is the host's to record).
    fn run(&self, pipeline: &str, scheduled_for: DateTime<Utc>) -> BoxFuture<'_, ()>;
    /// Takes the tick for this instance (see the warehouse's `claim_tick`).
    fn claim<'a>(
        &'a self,
        pipeline: &'a str,
        scheduled_for: DateTime<Utc>,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, String>>;
    fn renew<'a>(
        &'a self,
        pipeline: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, String>>;
    fn release<'a>(&'a self, pipeline: &'a str, owner: &'a str) -> BoxFuture<'a, ()>;
}

#[derive(Debug, Clone)]
pub struct Options {
    /// This instance's name in the leases (host, process id, random part).
    pub owner: String,
    /// How long a lease lives without renewal: after a crash, the pipeline is taken over
    /// by another instance at its first tick after this.
    pub lease_ttl: Duration,
    /// Runs at once in this instance.
    pub max_concurrent: usize,
    /// How long in-flight runs may take to finish after a stop request.
    pub shutdown_grace: Duration,
}

/// Counters of one daemon, by pipeline.
#[derive(Debug, Default)]
pub struct Counters {
    pub started: AtomicU64,
    /// Ticks found with the pipeline's previous run still going.
    pub overlapped: AtomicU64,
    /// Ticks another instance took (or held the lease for).
    pub elsewhere: AtomicU64,
    /// Ticks missed while down and not caught up.
    pub missed: AtomicU64,
    /// Claims that failed (warehouse unreachable).
    pub claim_errors: AtomicU64,
}

/// One pipeline to schedule.
pub struct Job {
    pub name: String,
    pub clock: PipelineClock,
}

/// A running daemon: stop it with [`Daemon::stop`], which waits for in-flight runs.
pub struct Daemon {
    stop: watch::Sender<bool>,
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    pub counters: Arc<BTreeMap<String, Arc<Counters>>>,
}

impl Daemon {
    pub fn start(host: Arc<dyn Host>, jobs: Vec<Job>, opts: Options) -> Daemon {
        let (stop, stopped) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(opts.max_concurrent.max(1)));
        let mut counters = BTreeMap::new();
        let mut tasks = Vec::new();
        for job in jobs {
            let c = Arc::new(Counters::default());
            counters.insert(job.name.clone(), c.clone());
            let name = job.name.clone();
            let task = tokio::spawn(pipeline_loop(
                host.clone(),
                job,
                opts.clone(),
                permits.clone(),
                stopped.clone(),
                c,
            ));
            tasks.push((name, task));
        }
        Daemon {
            stop,
            tasks,
            counters: Arc::new(counters),
        }
    }

    /// Starts no new run, lets in-flight runs finish within the grace period, releases leases.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, t) in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(pipeline = %name, error = %e, "scheduler task ended abnormally");
            }
        }
    }
}

async fn pipeline_loop(
    host: Arc<dyn Host>,
    mut job: Job,
    opts: Options,
    permits: Arc<Semaphore>,
    mut stopped: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let Some(wake) = job.clock.next_wake() else {
            tracing::warn!(pipeline = %job.name, "the schedule never fires again");
            break;
        };
        let wait = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => break,
        }
        if *stopped.borrow() {
            break;
        }
        let busy = running.as_ref().is_some_and(|h| !h.is_finished());
        let missed_before = job.clock.missed;
        let decision = job.clock.decide(Utc::now(), busy);
        counters
            .missed
            .fetch_add(job.clock.missed - missed_before, Ordering::Relaxed);
        match decision {
            Decision::Wait => {}
            Decision::Overlap(ticks) => {
                counters
                    .overlapped
                    .fetch_add(ticks.len() as u64, Ordering::Relaxed);
                tracing::warn!(pipeline = %job.name, skipped = ticks.len(), "previous run still going; tick skipped");
            }
            Decision::Run(ticks) => {
                let (host, name, opts, permits, counters) = (
                    host.clone(),
                    job.name.clone(),
                    opts.clone(),
                    permits.clone(),
                    counters.clone(),
                );
                running = Some(tokio::spawn(async move {
                    for tick in ticks {
                        run_tick(host.as_ref(), &name, tick, &opts, &permits, &counters).await;
                    }
                }));
            }
        }
    }
    if let Some(h) = running
        && tokio::time::timeout(opts.shutdown_grace, h).await.is_err()
    {
        tracing::error!(pipeline = %job.name, grace_s = opts.shutdown_grace.as_secs(), "run still going at the end of the grace period; abandoned");
    }
    host.release(&job.name, &opts.owner).await;
}

async fn run_tick(
    host: &dyn Host,
    name: &str,
    tick: DateTime<Utc>,
    opts: &Options,
    permits: &Semaphore,
    counters: &Counters,
) {
    let Ok(_permit) = permits.acquire().await else {
        return;
    };
    match host.claim(name, tick, &opts.owner, opts.lease_ttl).await {
        Ok(true) => {}
        Ok(false) => {
            counters.elsewhere.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(pipeline = %name, %tick, "tick taken by another instance");
            return;
        }
        Err(e) => {
            counters.claim_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(pipeline = %name, %tick, error = %e, "could not claim the tick; not run");
            return;
        }
    }
    counters.started.fetch_add(1, Ordering::Relaxed);
    let run = host.run(name, tick);
    tokio::pin!(run);
    // Renew the lease while the run goes on, three times per lease period.
    let mut every = tokio::time::interval(opts.lease_ttl / 3);
    every.tick().await;
    loop {
        tokio::select! {
            _ = &mut run => break,
            _ = every.tick() => {
                match host.renew(name, &opts.owner, opts.lease_ttl).await {
                    Ok(true) => {}
                    Ok(false) => tracing::error!(pipeline = %name, "lease lost during the run"),
                    Err(e) => tracing::error!(pipeline = %name, error = %e, "could not renew the lease"),
                }
            }
        }
    }
}
