//! `mobiflux schedule`: the scheduler daemon of `schedules/`, given the runner and the
//! warehouse's leases. Runs until SIGTERM or SIGINT, then lets in-flight runs finish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use mobiflux_schedules::Schedule;
use mobiflux_schedules::breaker::{Admit, Breaker};
use mobiflux_schedules::clock::{CatchUp, PipelineClock, offset_for};
use mobiflux_schedules::daemon::{Daemon, Host, Job, Options};
use mobiflux_schedules::metrics::{Metrics, RunReport};

use crate::definitions::Definition;
use crate::runner::Runner;

struct RunnerHost {
    runner: Runner,
    /// The definitions in force; a run keeps the one it started with.
    defs: std::sync::RwLock<BTreeMap<String, Arc<Definition>>>,
    metrics: Arc<Metrics>,
    /// Runs at once per MSP host, and the host's circuit breaker.
    hosts: std::sync::Mutex<BTreeMap<String, (Arc<tokio::sync::Semaphore>, Breaker)>>,
    per_host: usize,
    breaker: (u32, Duration),
}

impl RunnerHost {
    /// The host's permit pool, and the breaker's decision for a run starting now.
    fn admit(&self, host: &str) -> (Arc<tokio::sync::Semaphore>, Admit) {
        let mut hosts = self.hosts.lock().expect("not poisoned");
        let (permits, breaker) = hosts.entry(host.to_string()).or_insert_with(|| {
            let (threshold, cooldown) = self.breaker;
            let cooldown = chrono::Duration::from_std(cooldown).unwrap_or_default();
            (
                Arc::new(tokio::sync::Semaphore::new(self.per_host.max(1))),
                Breaker::new(threshold, cooldown, cooldown * 20),
            )
        });
        let admit = breaker.admit(Utc::now());
        self.metrics.set_breaker(host, breaker.gauge());
        (permits.clone(), admit)
    }

    fn outcome(&self, host: &str, ok: bool) {
        let mut hosts = self.hosts.lock().expect("not poisoned");
        if let Some((_, breaker)) = hosts.get_mut(host) {
            let before = breaker.gauge();
            breaker.record(ok, Utc::now());
            if breaker.gauge() == 2 && before != 2 {
                tracing::warn!(%host, "circuit opened: this host's pipelines fail fast until a probe succeeds");
            } else if breaker.gauge() == 0 && before != 0 {
                tracing::warn!(%host, "circuit closed: the probe succeeded");
            }
            self.metrics.set_breaker(host, breaker.gauge());
        }
    }
}

impl Host for RunnerHost {
    fn run(&self, pipeline: &str, scheduled_for: DateTime<Utc>) -> BoxFuture<'_, ()> {
        let pipeline = pipeline.to_string();
        Box::pin(async move {
            let def = self
                .defs
                .read()
                .expect("not poisoned")
                .get(&pipeline)
                .cloned();
            let Some(def) = def else {
                return;
            };
            let host = self.runner.msp_host(&def);
            let mut permit = None;
            let mut refused = None;
            if let Some(h) = &host {
                let (permits, admit) = self.admit(h);
                match admit {
                    Admit::Refused { until } => refused = Some(until),
                    Admit::Go | Admit::Probe => {
                        permit = permits.acquire_owned().await.ok();
                    }
                }
            }
            let o = match (refused, &host) {
                (Some(until), Some(h)) => {
                    let reason = format!(
                        "not run: the circuit for {h} is open after repeated failures (next probe after {})",
                        until.format("%H:%M:%S UTC")
                    );
                    self.runner.refuse_tick(&def, scheduled_for, &reason).await
                }
                _ => {
                    let o = self.runner.run_tick(&def, Some(scheduled_for)).await;
                    if let Some(h) = &host {
                        self.outcome(h, o.ok());
                    }
                    o
                }
            };
            drop(permit);
            self.metrics.record(
                &o.pipeline,
                RunReport {
                    ok: o.ok(),
                    cache_failed: matches!(o.cache, Some(Err(_))),
                    duration: o.elapsed,
                    rows: o.tables.iter().map(|t| t.1).sum(),
                    bytes: o.bytes,
                    quarantined: o.quarantined,
                },
            );
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
    /// How often the pipelines folder is looked at for changes.
    pub reload: Duration,
    /// How often the hourly rollup rows appended by loads are folded into their keys
    /// (PostgreSQL, migration 13): each key is rewritten once a fold instead of once a
    /// load, and the views sum at most this long of pending rows.
    pub fold: Duration,
    pub pipelines: std::path::PathBuf,
    /// Where `/metrics` and `/health` are served (port 0: any free port).
    pub metrics_addr: String,
    /// Runs at once per MSP host.
    pub per_host: usize,
    /// Failed runs in a row that open a host's circuit, and the first cool-down.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

fn job(d: &Definition, start: DateTime<Utc>, catch_up: CatchUp) -> Result<Job> {
    let schedule = Schedule::parse(&d.schedule, &d.timezone)?;
    Ok(Job {
        name: d.name.clone(),
        clock: PipelineClock::new(schedule, start, offset_for(&d.name, d.jitter), catch_up),
    })
}

/// Each definition file's size and modification time (nanoseconds): what a reload
/// compares. Reading metadata, not contents, keeps a folder of thousands of definitions
/// cheap to watch every few seconds.
fn fingerprint(dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml")
            && let Ok(m) = e.metadata()
        {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            out.insert(p, mtime ^ m.len().rotate_left(48));
        }
    }
    out
}

/// Applies the pipelines folder's changes to the running daemon: new and changed valid
/// definitions are (re)scheduled, removed ones stop; an invalid file is rejected with its
/// errors and the definition it replaced (if any) keeps running.
fn reload(
    dir: &std::path::Path,
    seen: &mut BTreeMap<std::path::PathBuf, u64>,
    host: &RunnerHost,
    daemon: &mut Daemon,
    catch_up: CatchUp,
) {
    let now = fingerprint(dir);
    if now == *seen {
        return;
    }
    let changed: std::collections::BTreeSet<&std::path::PathBuf> = now
        .iter()
        .filter(|(f, h)| seen.get(*f) != Some(h))
        .map(|(f, _)| f)
        .collect();
    let (defs, errors) = match crate::definitions::load_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(folder = %dir.display(), error = %e, "cannot read the pipelines folder; schedules unchanged");
            return;
        }
    };
    for e in &errors {
        tracing::error!(error = %e, "definition rejected; what ran before keeps running");
    }
    let current = host.defs.read().expect("not poisoned").clone();
    let mut next: BTreeMap<String, Arc<Definition>> = defs
        .into_iter()
        .map(|d| (d.name.clone(), Arc::new(d)))
        .collect();
    for old in current.values() {
        let broken = errors.iter().any(|e| e.file == old.file);
        if broken && !next.contains_key(&old.name) {
            next.insert(old.name.clone(), old.clone());
        }
    }
    *host.defs.write().expect("not poisoned") = next.clone();
    let start = Utc::now();
    for name in current.keys().filter(|n| !next.contains_key(*n)) {
        daemon.remove(name);
        tracing::warn!(pipeline = %name, "pipeline removed from the schedule");
    }
    let mut registered = Vec::new();
    for (name, d) in &next {
        let fresh = !current.contains_key(name);
        let edited = !fresh && changed.contains(&d.file) && !Arc::ptr_eq(d, &current[name]);
        if fresh || edited {
            registered.push(Definition::clone(d));
            match job(d, start, catch_up) {
                Ok(j) => {
                    daemon.upsert(j);
                    tracing::warn!(pipeline = %name, schedule = %d.schedule, "{}", if fresh { "pipeline added to the schedule" } else { "pipeline schedule reloaded" });
                }
                Err(e) => tracing::error!(pipeline = %name, error = %e, "not scheduled"),
            }
        }
    }
    *seen = now;
    if !registered.is_empty() {
        let warehouse = host.runner.warehouse.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::definitions::register(warehouse.as_ref(), &registered).await {
                tracing::error!(error = %e, "could not register the reloaded pipelines");
            }
        });
    }
}

pub async fn run(runner: Runner, defs: Vec<Definition>, settings: Settings) -> Result<()> {
    let start = Utc::now();
    let mut seen = fingerprint(&settings.pipelines);
    let jobs = defs
        .iter()
        .map(|d| job(d, start, settings.catch_up))
        .collect::<Result<Vec<_>>>()?;
    crate::definitions::register(runner.warehouse.as_ref(), &defs).await?;
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
        defs: std::sync::RwLock::new(
            defs.into_iter()
                .map(|d| (d.name.clone(), Arc::new(d)))
                .collect(),
        ),
        metrics: Arc::new(Metrics::default()),
        hosts: std::sync::Mutex::new(BTreeMap::new()),
        per_host: settings.per_host,
        breaker: (settings.breaker_failures, settings.breaker_cooldown),
    });
    let mut daemon = Daemon::start(
        host.clone(),
        jobs,
        Options {
            owner,
            lease_ttl: settings.lease,
            max_concurrent: settings.max_concurrent,
            shutdown_grace: settings.grace,
        },
    );
    let bound = mobiflux_schedules::metrics::serve(
        &settings.metrics_addr,
        host.metrics.clone(),
        daemon.counters(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("metrics address {}: {e}", settings.metrics_addr))?;
    println!("metrics on http://{bound}/metrics, health on http://{bound}/health");
    // The curated zone's batches, uploaded every few minutes and once more at the end.
    let curated_stop = Arc::new(tokio::sync::Notify::new());
    let curated = {
        let (host, stop) = (host.clone(), curated_stop.clone());
        tokio::spawn(async move {
            let language = |pipeline: &str| {
                host.defs
                    .read()
                    .expect("not poisoned")
                    .get(pipeline)
                    .and_then(|d| d.language.clone())
            };
            host.runner.curated_loop(&language, &stop).await
        })
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut every = tokio::time::interval(settings.reload);
    // Today's and tomorrow's partitions, made ahead of the loads, and the rollups' past days
    // closed (at start, then hourly).
    let mut partitions = tokio::time::interval(Duration::from_secs(3600));
    // The hourly rollup rows the loads appended, folded into their keys.
    let mut fold = tokio::time::interval(settings.fold);
    fold.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = every.tick() => {
                reload(&settings.pipelines, &mut seen, &host, &mut daemon, settings.catch_up);
            }
            _ = fold.tick() => {
                let warehouse = host.runner.warehouse.clone();
                tokio::spawn(async move {
                    if let Err(e) = warehouse.fold_rollups().await {
                        tracing::warn!(error = %e, "could not fold the pending rollup rows (the statistics sum them meanwhile)");
                    }
                });
            }
            _ = partitions.tick() => {
                let warehouse = host.runner.warehouse.clone();
                tokio::spawn(async move {
                    let today = Utc::now().date_naive();
                    let days: Vec<_> = [Some(today), today.succ_opt()].into_iter().flatten().collect();
                    if let Err(e) = warehouse.prepare_partitions(&days).await {
                        tracing::warn!(error = %e, "could not make the coming days' partitions ahead (loads make them when missing)");
                    }
                    if let Err(e) = warehouse.close_days(mobiflux_loaders::CLOSE_TRIES).await {
                        tracing::warn!(error = %e, "could not close the rollups' past days (the statistics sum them from the hourly rows meanwhile)");
                    }
                });
            }
        }
    }
    println!(
        "stopping: no new runs; waiting up to {} s for runs in flight",
        settings.grace.as_secs()
    );
    let counters = daemon.counters();
    daemon.stop().await;
    // The runs have ended: their curated rows are uploaded.
    curated_stop.notify_one();
    if let Err(e) = curated.await {
        tracing::error!(error = %e, "curated batches task");
    }
    use std::sync::atomic::Ordering::Relaxed;
    for (name, c) in counters.lock().expect("not poisoned").iter() {
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
