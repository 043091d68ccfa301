//! The curated zone's batches: feed polls write their curated rows into the process's open
//! [`Batch`] (a Parquet file per table, day and partner, one row group a poll), uploaded
//! every [`Settings::every`] rather than as files of each poll's own.
//!
//! Nothing is lost and nothing counted twice when a process dies with a batch not yet
//! uploaded: each run's `etl_runs` row carries the batch's key from its load's commit until
//! the batch's files are uploaded ([`Runner::flush_curated`]). A key still marked on runs
//! none of which finished for [`Settings::orphaned_after`] belongs to a process that stopped:
//! its files are written again from the runs' raw payloads under the same names
//! ([`Runner::recover_curated`]), replacing whatever part of them was uploaded.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use mobiflux_extractors::raw::Manifest;
use mobiflux_loaders::LoadStats;
use mobiflux_loaders::curated::{Batch, Curated, observed_at};
use mobiflux_model::{RunId, TableKind};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use super::Runner;

/// How often the open batch is uploaded (`MOBIFLUX_CURATED_EVERY`, seconds): a system
/// polled each minute then writes a file per table every 5 minutes instead of every poll.
pub const EVERY: Duration = Duration::from_secs(300);

/// Bytes of Parquet the open batch holds before it is uploaded early: memory stays bounded
/// however many feeds poll.
pub const BATCH_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub every: Duration,
    pub max_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            every: EVERY,
            max_bytes: BATCH_BYTES,
        }
    }
}

impl Settings {
    /// How long a batch's runs must all have been finished before the batch counts as
    /// left behind by a stopped process: four periods (20 minutes by default), at most
    /// three periods and 5 minutes. A process uploads its batch each period; one that
    /// cannot keeps its runs marked, and the batch is written again all the same.
    pub fn orphaned_after(&self) -> Duration {
        self.every * 3 + self.every.min(Duration::from_secs(300))
    }
}

/// The open batch and what joined it.
struct Slot {
    key: String,
    /// `None` once taken for upload.
    batch: Mutex<Option<Batch>>,
    /// Why the batch cannot be uploaded (a run's rows could not be added): its runs stay
    /// marked, and the batch is written again from them later.
    failed: Mutex<Option<String>>,
    /// Held (read) by each run between its commit's mark and its rows added; the upload
    /// takes it (write) once the slot is closed, so it waits for those runs.
    joined: Arc<RwLock<()>>,
}

impl Slot {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            key: format!("batch-{}", RunId::new()),
            batch: Mutex::new(None),
            failed: Mutex::new(None),
            joined: Arc::new(RwLock::new(())),
        })
    }
}

/// The process's curated batches: the open one, and the keys being uploaded (not to be
/// taken for a stopped process's).
pub struct Batches {
    settings: Settings,
    open: Mutex<Arc<Slot>>,
    uploading: Mutex<HashSet<String>>,
    /// Told when the open batch passes [`Settings::max_bytes`].
    full: tokio::sync::Notify,
}

impl Default for Batches {
    fn default() -> Self {
        Batches::new(Settings::default())
    }
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A run's place in the open batch, from before its load begins until its rows are added.
pub struct Ticket {
    slot: Arc<Slot>,
    _joined: OwnedRwLockReadGuard<()>,
}

impl Ticket {
    /// The key the run's `etl_runs` row carries.
    pub fn key(&self) -> &str {
        &self.slot.key
    }
}

impl Batches {
    pub fn new(settings: Settings) -> Self {
        Batches {
            settings,
            open: Mutex::new(Slot::new()),
            uploading: Mutex::new(HashSet::new()),
            full: tokio::sync::Notify::new(),
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// A place in the open batch.
    pub fn join(&self) -> Ticket {
        let open = self.open.lock().expect("not poisoned");
        // Taken under the lock the upload closes the slot with: a run either joins before
        // the slot is closed (and the upload waits for it) or joins the next one.
        let joined = open
            .joined
            .clone()
            .try_read_owned()
            .expect("an open slot is never locked for upload");
        Ticket {
            slot: open.clone(),
            _joined: joined,
        }
    }

    /// Adds a committed run's rows ([`Curated::batched`]) to its batch. A failure leaves
    /// the batch to be written again from its runs: the run's rows are not lost.
    pub fn absorb(&self, ticket: Ticket, mut curated: Curated, stats: &LoadStats) {
        let added = curated
            .finish(&stats.changed)
            .map(drop)
            .and_then(|()| curated.pieces())
            .map(|pieces| {
                let mut batch = ticket.slot.batch.lock().expect("not poisoned");
                let batch = batch.get_or_insert_with(|| Batch::new(&ticket.slot.key));
                batch.absorb(pieces);
                batch.bytes()
            });
        match added {
            Ok(bytes) if bytes >= self.settings.max_bytes => self.full.notify_one(),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(batch = %ticket.slot.key, error = %e, "curated rows not added to the batch; the batch will be written again from its runs' raw payloads");
                *ticket.slot.failed.lock().expect("not poisoned") = Some(e.to_string());
            }
        }
    }

    /// Waits until the open batch passes its byte budget.
    pub async fn full(&self) {
        self.full.notified().await
    }
}

/// A pipeline's language, by its name.
pub type Language<'a> = dyn Fn(&str) -> Option<String> + Sync + 'a;

/// What a flush or a recovery wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub batches: usize,
    pub runs: usize,
    pub files: usize,
    pub rows: usize,
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, w: Written) {
        self.batches += w.batches;
        self.runs += w.runs;
        self.files += w.files;
        self.rows += w.rows;
    }
}

impl Runner {
    /// Uploads the open batch every [`Settings::every`], or sooner once it passes its byte
    /// budget, then writes again any batch a stopped process left, until `stop` is told
    /// (a round under way finishes first), then uploads once more.
    pub async fn curated_loop(&self, language: &Language<'_>, stop: &tokio::sync::Notify) {
        if !self.curated {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.batches.settings.every) => {}
                _ = self.batches.full() => {}
                _ = stop.notified() => break,
            }
            self.curated_round(language, false).await;
        }
        self.curated_round(language, true).await;
    }

    /// Uploads the open batch and writes again batches stopped processes left; failures are
    /// logged (their batches stay marked for a later round). `last`: the process is ending.
    pub async fn curated_round(&self, language: &Language<'_>, last: bool) -> Written {
        let mut total = Written::default();
        if !self.curated {
            return total;
        }
        match self.flush_curated().await {
            Ok(w) => total = w,
            Err(e) => tracing::error!(error = %e, "curated batch"),
        }
        match self.recover_curated(language).await {
            Ok(w) => total += w,
            Err(e) if last => tracing::error!(error = %e, "curated batches left behind"),
            Err(e) => {
                tracing::warn!(error = %e, "curated batches left behind (tried again at the next round)")
            }
        }
        total
    }

    /// Runs the definitions as [`Runner::run_all`] does, with the curated batches uploaded
    /// as they go and once more at the end.
    pub async fn run_all_batched(
        &self,
        defs: &[crate::definitions::Definition],
    ) -> Vec<super::Outcome> {
        let language = |pipeline: &str| {
            defs.iter()
                .find(|d| d.name == pipeline)
                .and_then(|d| d.language.clone())
        };
        let stop = tokio::sync::Notify::new();
        let runs = async {
            let outcomes = self.run_all(defs).await;
            stop.notify_one();
            outcomes
        };
        tokio::join!(runs, self.curated_loop(&language, &stop)).0
    }

    /// Uploads the open curated batch once the runs that joined it have added their rows,
    /// then clears its mark on them. A batch that cannot be uploaded keeps its mark: it is
    /// written again from its runs once it counts as left behind.
    pub async fn flush_curated(&self) -> Result<Written, String> {
        let slot = {
            let mut open = self.batches.open.lock().expect("not poisoned");
            std::mem::replace(&mut *open, Slot::new())
        };
        let _closed = slot.joined.write().await;
        let batch = slot.batch.lock().expect("not poisoned").take();
        let Some(batch) = batch else {
            return Ok(Written::default());
        };
        if let Some(e) = slot.failed.lock().expect("not poisoned").take() {
            return Err(format!(
                "curated batch {} not uploaded ({e}); it will be written again from its runs",
                slot.key
            ));
        }
        self.batches
            .uploading
            .lock()
            .expect("not poisoned")
            .insert(slot.key.clone());
        let written = self.upload_batch(batch).await;
        self.batches
            .uploading
            .lock()
            .expect("not poisoned")
            .remove(&slot.key);
        written
    }

    /// Uploads a batch's files, then clears its mark.
    async fn upload_batch(&self, batch: Batch) -> Result<Written, String> {
        let key = batch.key().to_string();
        let runs = batch.runs().len();
        let failed = |e: &dyn std::fmt::Display| {
            format!(
                "curated batch {key} not uploaded ({e}); it will be written again from its runs"
            )
        };
        let parts = tokio::task::spawn_blocking(move || batch.finish())
            .await
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e))?;
        self.put_parts(&parts.iter().collect::<Vec<_>>())
            .await
            .map_err(|e| failed(&e))?;
        self.warehouse
            .curated_done(&key)
            .await
            .map_err(|e| failed(&e))?;
        let written = Written {
            batches: 1,
            runs,
            files: parts.len(),
            rows: parts.iter().map(|p| p.rows).sum(),
        };
        tracing::info!(batch = %key, runs, files = written.files, rows = written.rows, "curated batch written");
        Ok(written)
    }

    /// Writes again the curated batches that stopped processes left marked on their runs,
    /// from the runs' raw payloads, under the batches' own names. `language` gives a
    /// pipeline's language, as its definition says (`None` for its feed's default).
    pub async fn recover_curated(&self, language: &Language<'_>) -> Result<Written, String> {
        // Also with SQLite: a `run` may go on beside the daemon.
        let finished_before = Utc::now() - self.batches.settings.orphaned_after();
        let keys = self
            .warehouse
            .curated_orphans(finished_before)
            .await
            .map_err(|e| format!("curated batches left behind: {e}"))?;
        let own: HashSet<String> = {
            let mut own = self.batches.uploading.lock().expect("not poisoned").clone();
            own.insert(self.batches.open.lock().expect("not poisoned").key.clone());
            own
        };
        let mut total = Written::default();
        for key in keys.into_iter().filter(|k| !own.contains(k)) {
            let batch = self
                .rebuild_batch(&key, language)
                .await
                .map_err(|e| format!("curated batch {key} left behind: {e}"))?;
            let w = self.upload_batch(batch).await?;
            tracing::warn!(batch = %key, runs = w.runs, files = w.files, "curated batch left behind by a stopped process written again");
            total += w;
        }
        Ok(total)
    }

    /// A batch's rows again: each run's raw payloads through its transform, less what the
    /// warehouse holds from other runs (snapshots stored before, reference rows changed
    /// since).
    async fn rebuild_batch(&self, key: &str, language: &Language<'_>) -> Result<Batch, String> {
        let mut batch = Batch::new(key);
        for run in self
            .warehouse
            .curated_runs(key)
            .await
            .map_err(|e| e.to_string())?
        {
            let id: RunId = run.run_id.parse().map_err(|e| format!("{e}"))?;
            let manifest = Manifest::read(self.raw.as_ref(), &id)
                .await
                .map_err(|e| format!("run {id}: {e}"))?;
            let language = language(&manifest.pipeline);
            let (out, _) = self
                .transform_feed(&manifest, language.as_deref(), Vec::new(), None)
                .await
                .map_err(|e| format!("run {id}: {e}"))?;
            let mut curated = Curated::new(&run.run_id, run.started_at.date_naive()).batched();
            let mut changed = Vec::new();
            for (table, df) in &out.tables {
                let times = observed_at(table, df).map_err(|e| format!("run {id}: {e}"))?;
                let (from, to) = match table.kind {
                    TableKind::Snapshot => {
                        let at = chrono::DateTime::from_timestamp_micros;
                        match (times.iter().min(), times.iter().max()) {
                            (Some(&lo), Some(&hi)) => match (at(lo), at(hi)) {
                                (Some(lo), Some(hi)) => (lo, hi),
                                _ => continue,
                            },
                            _ => continue,
                        }
                    }
                    _ => (run.started_at, run.started_at),
                };
                let kept = self
                    .warehouse
                    .run_rows(table, &manifest.partner, &run.run_id, from, to)
                    .await
                    .map_err(|e| format!("run {id}: {e}"))?;
                let stale: HashSet<i64> = match table.kind {
                    TableKind::Snapshot => {
                        let kept: HashSet<i64> =
                            kept.iter().map(|t| t.timestamp_micros()).collect();
                        times.into_iter().filter(|t| !kept.contains(t)).collect()
                    }
                    _ if kept.is_empty() => continue,
                    _ => HashSet::new(),
                };
                changed.push((table.name, df.height() as u64));
                curated
                    .add(table, df, &stale)
                    .map_err(|e| format!("run {id}: {e}"))?;
            }
            curated
                .finish(&changed)
                .map_err(|e| format!("run {id}: {e}"))?;
            batch.absorb(curated.pieces().map_err(|e| format!("run {id}: {e}"))?);
        }
        Ok(batch)
    }
}
