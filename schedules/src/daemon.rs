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
    /// Claims that failed (warehouse unreachable, or migrated by a newer mobiflux).
    pub claim_errors: AtomicU64,
    /// The error of the pipeline's last claim while claims fail; `None` once one is
    /// answered (`/health` reports the daemon failing while any pipeline has one).
    pub claim_error: std::sync::Mutex<Option<String>>,
    /// 1 while this instance holds the pipeline's lease (as far as it knows).
    pub lease_owned: AtomicU64,
}

/// One pipeline to schedule.
pub struct Job {
    pub name: String,
    pub clock: PipelineClock,
}

/// Why a pipeline's task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    No,
    /// A new schedule takes over: the lease stays (the new task holds it next).
    Replaced,
    /// Removed or shutting down: the lease is released once the run in flight ends.
    Stopped,
}

/// A pipeline's task in the daemon.
struct Task {
    stop: watch::Sender<Stop>,
    handle: tokio::task::JoinHandle<()>,
}

/// A running daemon: pipelines can be added, replaced and removed while it runs (hot
/// reload); stop it with [`Daemon::stop`], which waits for in-flight runs.
pub struct Daemon {
    host: Arc<dyn Host>,
    opts: Options,
    permits: Arc<Semaphore>,
    tasks: BTreeMap<String, Task>,
    counters: SharedCounters,
}

/// Counters by pipeline, shared with whoever reports them (the metrics endpoint).
pub type SharedCounters = Arc<std::sync::Mutex<BTreeMap<String, Arc<Counters>>>>;

impl Daemon {
    pub fn start(host: Arc<dyn Host>, jobs: Vec<Job>, opts: Options) -> Daemon {
        let permits = Arc::new(Semaphore::new(opts.max_concurrent.max(1)));
        let mut d = Daemon {
            host,
            opts,
            permits,
            tasks: BTreeMap::new(),
            counters: SharedCounters::default(),
        };
        for job in jobs {
            d.upsert(job);
        }
        d
    }

    /// The pipelines scheduled now.
    pub fn pipelines(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    /// Counters by pipeline (kept for removed pipelines too).
    pub fn counters(&self) -> SharedCounters {
        self.counters.clone()
    }

    /// Schedules a pipeline, or replaces its schedule: a run in flight is not interrupted,
    /// and the new schedule's first run waits for it (no overlap across a reload).
    pub fn upsert(&mut self, job: Job) {
        let previous = self.tasks.remove(&job.name).map(|t| {
            let _ = t.stop.send(Stop::Replaced);
            t.handle
        });
        let c = self
            .counters
            .lock()
            .expect("not poisoned")
            .entry(job.name.clone())
            .or_insert_with(|| Arc::new(Counters::default()))
            .clone();
        let (stop, stopped) = watch::channel(Stop::No);
        let name = job.name.clone();
        let handle = tokio::spawn(pipeline_loop(
            self.host.clone(),
            job,
            self.opts.clone(),
            self.permits.clone(),
            stopped,
            c,
            previous,
        ));
        self.tasks.insert(name, Task { stop, handle });
    }

    /// Stops scheduling a pipeline; its run in flight finishes (within the grace period) in
    /// the background, then its lease is released.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.tasks.remove(name) {
            Some(t) => {
                let _ = t.stop.send(Stop::Stopped);
                true
            }
            None => false,
        }
    }

    /// Starts no new run, lets in-flight runs finish within the grace period, releases leases.
    pub async fn stop(self) {
        for t in self.tasks.values() {
            let _ = t.stop.send(Stop::Stopped);
        }
        for (name, t) in self.tasks {
            if let Err(e) = t.handle.await {
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
    mut stopped: watch::Receiver<Stop>,
    counters: Arc<Counters>,
    previous: Option<tokio::task::JoinHandle<()>>,
) {
    // The replaced schedule's run in flight counts as this pipeline's running run.
    let mut running: Option<tokio::task::JoinHandle<()>> = previous;
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
        if *stopped.borrow() != Stop::No {
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
    if *stopped.borrow() != Stop::Replaced {
        host.release(&job.name, &opts.owner).await;
        counters.lease_owned.store(0, Ordering::Relaxed);
    }
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
    let claimed = host.claim(name, tick, &opts.owner, opts.lease_ttl).await;
    // A failing warehouse fails every pipeline's claims, tick after tick: each pipeline
    // logs an error when its claims start failing or fail differently, and when they are
    // answered again; the ticks in between are counted (`claim_error`) and logged at debug.
    let before = std::mem::replace(
        &mut *counters.claim_error.lock().expect("not poisoned"),
        claimed.as_ref().err().cloned(),
    );
    if before.is_some() && claimed.is_ok() {
        tracing::info!(pipeline = %name, %tick, "the warehouse answers the claims again");
    }
    match claimed {
        Ok(true) => counters.lease_owned.store(1, Ordering::Relaxed),
        Ok(false) => {
            counters.lease_owned.store(0, Ordering::Relaxed);
            counters.elsewhere.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(pipeline = %name, %tick, "tick taken by another instance");
            return;
        }
        Err(e) => {
            counters.lease_owned.store(0, Ordering::Relaxed);
            counters.claim_errors.fetch_add(1, Ordering::Relaxed);
            if before.as_ref() != Some(&e) {
                tracing::error!(pipeline = %name, %tick, error = %e, "could not claim the tick; not run (repeats are logged at debug and counted)");
            } else {
                tracing::debug!(pipeline = %name, %tick, error = %e, "could not claim the tick; not run");
            }
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
