//! Runs pipelines: extract to the raw zone, transform from the raw zone, load the
//! warehouse. A failing pipeline fails alone; every run leaves an `etl_runs` row, and a
//! replay goes through the same transform-and-load path from the stored raw objects.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use mobiflux_extractors::raw::{Manifest, manifest_key};
use mobiflux_extractors::{Http, HttpOptions, RawStore, Source};
use mobiflux_loaders::cache::{EntryMeta, GatewayCache, Publication, Resource, pivot};
use mobiflux_loaders::curated::{Content, Curated, Part};
use mobiflux_loaders::{Latest, RunRecord, Warehouse};
use mobiflux_model::RunId;
use mobiflux_transforms::fixed::FixedMap;
use mobiflux_transforms::html::PageSpec;
use mobiflux_transforms::logs::LogMap;
use mobiflux_transforms::mapped::MappedTable;
use mobiflux_transforms::tableschema::Schema;
use mobiflux_transforms::tabular::{self, Mapping};
use mobiflux_transforms::text::{Encoding, TextOptions};
use mobiflux_transforms::{Context, Output, Payload, quarantine};
use tracing::Instrument;

use crate::definitions::{Definition, resolve};

/// Rows per chunk when files are streamed into the warehouse (`MOBIFLUX_CHUNK_ROWS`).
const CHUNK_ROWS: usize = 25_000;
/// Chunks waiting between the reader and the loader (`MOBIFLUX_CHUNK_QUEUE`).
const CHUNK_QUEUE: usize = 2;
static ROWS_KNOB: OnceLock<usize> = OnceLock::new();
static QUEUE_KNOB: OnceLock<usize> = OnceLock::new();
static INLINE_KNOB: OnceLock<usize> = OnceLock::new();

/// A tuning knob from the environment, read once per process: `default` when unset; a value
/// that is not a whole number of at least `min` is refused with a warning, and the default
/// kept.
fn tuning(knob: &'static OnceLock<usize>, var: &str, default: usize, min: usize) -> usize {
    *knob.get_or_init(|| knob_value(var, std::env::var(var).ok().as_deref(), default, min))
}

fn knob_value(var: &str, value: Option<&str>, default: usize, min: usize) -> usize {
    let Some(value) = value else {
        return default;
    };
    match value.trim().parse::<usize>() {
        Ok(n) if n >= min => n,
        _ => {
            tracing::warn!(
                "{var}={value:?} refused: a whole number of at least {min} is expected; {default} is used"
            );
            default
        }
    }
}

pub mod curated_batches;
pub use curated_batches::Batches;

/// At most this many pipelines run at once in one `mobiflux run`.
const CONCURRENT_PIPELINES: usize = 4;

pub struct Runner {
    pub raw: Arc<dyn RawStore>,
    pub warehouse: Arc<dyn Warehouse>,
    /// The gateway cache, published after each successful run of a feed the gateway serves.
    pub cache: Option<Arc<dyn GatewayCache>>,
    /// Consulted before the environment when resolving `${VAR}` (the demo's simulator URL).
    pub vars: BTreeMap<String, String>,
    /// Requests per second per MSP host across the process's runs (`MOBIFLUX_HOST_RATE`).
    pub host_rate: Option<f64>,
    /// Whether loads also write the curated Parquet zone (`curated/` beside the raw zone).
    pub curated: bool,
    /// The curated zone's batches of feed polls (see [`curated_batches`]).
    pub batches: Batches,
}

/// What became of one pipeline run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub pipeline: String,
    pub run_id: RunId,
    /// `None` when the run succeeded; the message (secrets masked) otherwise.
    pub error: Option<String>,
    pub tables: Vec<(&'static str, u64)>,
    pub quarantined: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The gateway cache step: resources published, or why publishing failed (the
    /// warehouse load stands either way; the next run publishes again). `None` when the
    /// run publishes nothing.
    pub cache: Option<Result<usize, String>>,
}

impl Outcome {
    fn new(pipeline: &str, run_id: RunId) -> Self {
        Outcome {
            pipeline: pipeline.to_string(),
            run_id,
            error: None,
            tables: Vec::new(),
            quarantined: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            cache: None,
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A run's `etl_runs` row as it starts.
pub(crate) fn new_record(
    run_id: &RunId,
    pipeline: &str,
    partner: &str,
    format: &str,
    trigger: &str,
) -> RunRecord {
    RunRecord {
        run_id: run_id.to_string(),
        pipeline: pipeline.to_string(),
        partner: partner.to_string(),
        format: format.to_string(),
        trigger: trigger.to_string(),
        scheduled_for: None,
        started_at: run_id.started_at(),
        finished_at: None,
        status: "running".into(),
        rows_loaded: 0,
        rows_quarantined: 0,
        bytes: 0,
        error: None,
        manifest: Some(manifest_key(run_id)),
        curated_batch: None,
    }
}

/// What a format keeps in its definition (a mapping, scraping rules): a run, and a replay
/// too, needs the pipeline's definition to read its raw objects.
fn from_definition<T>(
    manifest: &Manifest,
    def: Option<&Definition>,
    part: impl FnOnce(&Definition) -> Option<T>,
    what: &str,
) -> Result<T, String> {
    def.and_then(part).ok_or_else(|| {
        format!(
            "no definition of pipeline {} with its {what} in the pipelines folder",
            manifest.pipeline
        )
    })
}

/// The key of the keyed hashes that replace personal identifiers (`MOBIFLUX_PSEUDONYM_KEY`):
/// a secret, the same from run to run so a person keeps one hash.
fn pseudonym_key(vars: &BTreeMap<String, String>) -> Result<String, String> {
    vars.get("MOBIFLUX_PSEUDONYM_KEY")
        .cloned()
        .or_else(|| std::env::var("MOBIFLUX_PSEUDONYM_KEY").ok())
        .filter(|k| k.len() >= 16)
        .ok_or_else(|| {
            "carpooling answers carry personal data: set MOBIFLUX_PSEUDONYM_KEY (a secret of at least 16 characters, the same from run to run) so it can be pseudonymized before it is stored".to_string()
        })
}

impl DocReader {
    /// Whether the stored objects of this resource hold rows (a call plan's earlier calls
    /// are landed too, as `call-…`, but only its data call's pages are read).
    fn reads(&self, resource: &str) -> bool {
        match self {
            DocReader::Page(_) => resource == "page",
            DocReader::Json { .. } => resource == "records",
        }
    }
}

/// A call plan with its `${VAR}` references resolved.
fn resolve_plan(
    plan: &mobiflux_extractors::rest::Plan,
    vars: &BTreeMap<String, String>,
) -> Result<mobiflux_extractors::rest::Plan, String> {
    use mobiflux_extractors::rest::Auth;
    let r = |v: &str, key: &str| resolve(v, &format!("auth.{key}"), vars).map(|(v, _)| v);
    let auth = match &plan.auth {
        Auth::None => Auth::None,
        Auth::ApiKey { header, key } => Auth::ApiKey {
            header: header.clone(),
            key: r(key, "key")?,
        },
        Auth::Bearer(t) => Auth::Bearer(r(t, "token")?),
        Auth::Basic { user, password } => Auth::Basic {
            user: r(user, "user")?,
            password: r(password, "password")?,
        },
        Auth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
            in_body,
        } => Auth::OAuth2 {
            token_url: r(token_url, "token_url")?,
            client_id: r(client_id, "client_id")?,
            client_secret: r(client_secret, "client_secret")?,
            scope: scope.clone(),
            in_body: *in_body,
        },
    };
    let calls = plan
        .calls
        .iter()
        .map(|c| {
            let key = format!("calls.{}", c.name);
            Ok(mobiflux_extractors::rest::Call {
                url: resolve(&c.url, &key, vars)?.0,
                body: c
                    .body
                    .as_deref()
                    .map(|b| resolve(b, &key, vars).map(|r| r.0))
                    .transpose()?,
                headers: c
                    .headers
                    .iter()
                    .map(|(k, v)| resolve(v, &key, vars).map(|r| (k.clone(), r.0)))
                    .collect::<Result<Vec<_>, String>>()?,
                ..c.clone()
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let body = plan
        .body
        .as_deref()
        .map(|b| resolve(b, "body", vars).map(|r| r.0))
        .transpose()?;
    Ok(mobiflux_extractors::rest::Plan {
        auth,
        calls,
        body,
        ..plan.clone()
    })
}

/// How the stored documents of a run (pages, JSON responses) become unified rows.
enum DocReader {
    /// An `html` definition's scraping rules.
    Page(Arc<PageSpec>),
    /// A `json` definition's record path and mapping.
    Json {
        records: String,
        mapping: Arc<MappedTable>,
    },
}

/// A definition's `schema.json`.
fn read_schema(path: &std::path::Path) -> Result<Schema, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("schema {}: {e}", path.display()))?;
    Schema::from_json(&bytes, &path.display().to_string()).map_err(|e| e.to_string())
}

/// How a file's rows become unified rows.
#[derive(Clone)]
enum FileMap {
    /// A published Table Schema (bundled or from the definition) and the format's mapping.
    Schema {
        schema: Arc<Schema>,
        mapping: &'static Mapping,
    },
    /// A definition's declarative `[columns]` mapping.
    Declared(Arc<MappedTable>),
    /// A definition's Table Schema, enforced before its declarative mapping.
    Checked {
        schema: Arc<Schema>,
        mapping: Arc<MappedTable>,
    },
    /// A log line pattern and the mapping of its groups.
    Log(Arc<LogMap>),
    /// Fixed-width field positions and their mapping.
    Fixed(Arc<FixedMap>),
}

/// What the transform-and-load step produced.
struct Loaded {
    tables: Vec<(&'static str, u64)>,
    quarantined: u64,
    /// The gateway's documents of the run, when it publishes to the cache.
    pivot: Option<Vec<Resource>>,
}

/// The metadata of a run's cache entries: expiries count from the fetch.
fn entry_meta(def: &Definition, manifest: &Manifest) -> EntryMeta {
    use sha2::Digest as _;
    let fetched = fetched_at(manifest);
    let (soft, hard) = def
        .cache
        .as_ref()
        .map(|c| (c.soft_ttl, c.hard_ttl))
        .unwrap_or_default();
    let mut h = sha2::Sha256::new();
    for o in manifest.objects.iter().filter(|o| o.usable()) {
        h.update(o.sha256.as_bytes());
        h.update(b"\n");
    }
    let at = |d: Duration| fetched + chrono::Duration::from_std(d).unwrap_or_default();
    EntryMeta {
        pipeline: def.name.clone(),
        run_id: manifest.run_id.clone(),
        fetched_at: fetched,
        source_hash: hex::encode(h.finalize()),
        published_at: Utc::now(),
        soft_expires_at: at(soft),
        hard_expires_at: at(hard),
    }
}

/// Inputs up to this size (`MOBIFLUX_INLINE_BYTES`) are parsed and normalized on the task's
/// own thread: for a feed's few kilobytes, handing the work to the blocking pool (a thread
/// woken, then the task) costs more CPU than the work, a few hundred microseconds.
const INLINE_BYTES: usize = 256 * 1024;

/// CPU work on `size` bytes of input: kept off the threads that serve I/O unless small.
async fn cpu_work<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    // 0: every transform of a non-empty input goes to the blocking pool.
    if size <= tuning(&INLINE_KNOB, "MOBIFLUX_INLINE_BYTES", INLINE_BYTES, 0) {
        Ok(work())
    } else {
        tokio::task::spawn_blocking(work).await
    }
}

/// When a run's payloads were fetched: its latest object.
fn fetched_at(manifest: &Manifest) -> chrono::DateTime<Utc> {
    manifest
        .objects
        .iter()
        .filter(|o| o.usable())
        .map(|o| o.fetched_at)
        .max()
        .unwrap_or(manifest.started_at)
}

/// The gateway documents of a run's frames (and raw documents), for a definition whose
/// feed the gateway serves.
fn gateway_documents(
    def: Option<&Definition>,
    partner: &str,
    fetched_at: chrono::DateTime<Utc>,
    out: &Output,
    raw: pivot::RawDocs,
) -> Result<Option<Vec<Resource>>, String> {
    let Some(settings) = def.and_then(|d| d.cache.as_ref()) else {
        return Ok(None);
    };
    let p = pivot::Partner {
        id: &settings.partner_id,
        name: partner,
    };
    pivot::build(&p, fetched_at, &out.tables, raw)
        .map(Some)
        .map_err(|e| format!("gateway documents: {e}"))
}

impl Runner {
    /// The definition whose run builds gateway documents: one the gateway serves, when this
    /// runner has a cache to publish them to.
    fn publishing(&self, def: Option<&Definition>) -> Option<Definition> {
        def.filter(|d| d.cache.is_some() && self.cache.is_some())
            .cloned()
    }

    /// The run's curated parts, written beside the load when the zone is on.
    fn curated(&self, record: &RunRecord) -> Option<Curated> {
        self.curated
            .then(|| Curated::new(&record.run_id, record.started_at.date_naive()))
    }

    /// A usable object's payload: the bytes the run landed, or, for a replay or a streamed
    /// file, the object read back from the raw zone.
    async fn payload(&self, o: &mobiflux_extractors::raw::ManifestObject) -> Result<Bytes, String> {
        match &o.landed.0 {
            Some(b) => Ok(b.clone()),
            None => self.raw.get(&o.key).await.map_err(|e| e.to_string()),
        }
    }

    /// Uploads curated parts to the zone beside the raw zone.
    async fn put_parts(&self, parts: &[&Part]) -> Result<(), mobiflux_extractors::raw::RawError> {
        const PARQUET: &str = "application/vnd.apache.parquet";
        for p in parts {
            match &p.content {
                Content::Memory(bytes) => self.raw.put(&p.key, bytes.clone(), PARQUET).await,
                Content::File(file) => self.raw.put_file(&p.key, file, PARQUET).await,
            }?;
        }
        Ok(())
    }

    /// Uploads the run's curated parts, once the warehouse has committed the load.
    async fn publish_curated(
        &self,
        curated: Option<Curated>,
        stats: &mobiflux_loaders::LoadStats,
    ) -> Result<(), String> {
        let Some(mut c) = curated else { return Ok(()) };
        let failed = |e: &dyn std::fmt::Display| {
            format!("loaded into the warehouse, but the curated zone could not be written: {e}")
        };
        let parts = c.finish(&stats.changed).map_err(|e| failed(&e))?;
        self.put_parts(&parts).await.map_err(|e| failed(&e))?;
        if !parts.is_empty() {
            tracing::info!(
                parts = parts.len(),
                rows = parts.iter().map(|p| p.rows).sum::<usize>(),
                "curated zone written"
            );
        }
        Ok(())
    }

    /// Runs the definitions, a few at a time; one failing never stops the others.
    pub async fn run_all(&self, defs: &[Definition]) -> Vec<Outcome> {
        futures_util::stream::iter(defs)
            .map(|d| self.run_one(d))
            .buffered(CONCURRENT_PIPELINES)
            .collect()
            .await
    }

    pub async fn run_one(&self, def: &Definition) -> Outcome {
        self.run_tick(def, None).await
    }

    /// One run, for a tick of the schedule when `scheduled_for` is given (`etl_runs.trigger`
    /// is then `schedule`).
    pub async fn run_tick(
        &self,
        def: &Definition,
        scheduled_for: Option<chrono::DateTime<Utc>>,
    ) -> Outcome {
        let run_id = RunId::new();
        let span = tracing::info_span!("run", pipeline = %def.name, run_id = %run_id);
        self.run_in_span(def, run_id, scheduled_for)
            .instrument(span)
            .await
    }

    async fn run_in_span(
        &self,
        def: &Definition,
        run_id: RunId,
        scheduled_for: Option<chrono::DateTime<Utc>>,
    ) -> Outcome {
        let started = Instant::now();
        let trigger = if scheduled_for.is_some() {
            "schedule"
        } else {
            "run"
        };
        let mut record = new_record(&run_id, &def.name, &def.partner, &def.format, trigger);
        record.scheduled_for = scheduled_for;
        let mut outcome = Outcome::new(&def.name, run_id);
        if self.raw.wants_run(&def.name) {
            self.recall_run(&def.name).await;
        }
        let result: Result<(Loaded, Option<EntryMeta>), String> = async {
            let latest = self
                .warehouse
                .start_run(&record)
                .await
                .map_err(|e| e.to_string())?;
            let src = self.source(def)?;
            let mut options = HttpOptions {
                timeout: def.timeout,
                max_body_bytes: def.max_body_bytes,
                retries: def.retries,
                host_rate: self.host_rate,
                ..HttpOptions::default()
            };
            if let Some(ua) = &def.user_agent {
                options.user_agent = ua.clone();
            }
            let http = Http::new(options).map_err(|e| format!("HTTP client: {e}"))?;
            let manifest = match def.format.as_str() {
                "gbfs" => {
                    mobiflux_extractors::gbfs::extract(&http, self.raw.as_ref(), &run_id, &src)
                        .await
                }
                "tomp" => {
                    mobiflux_extractors::tomp::extract(&http, self.raw.as_ref(), &run_id, &src)
                        .await
                }
                "covoiturage" => {
                    let key = pseudonym_key(&self.vars)?;
                    let mut search = def.carpool.clone().expect("validated");
                    search.departure =
                        Utc::now() + chrono::Duration::minutes(def.departure_in_minutes);
                    let pseudo = |body: &[u8]| {
                        mobiflux_transforms::covoiturage::pseudonymize(body, key.as_bytes())
                    };
                    mobiflux_extractors::covoiturage::extract(
                        &http,
                        self.raw.as_ref(),
                        &run_id,
                        &src,
                        &search,
                        &pseudo,
                    )
                    .await
                }
                "json" => {
                    let plan = resolve_plan(&def.plan, &self.vars)?;
                    let records = def.records.clone().unwrap_or_default();
                    let count = |page: &serde_json::Value| {
                        mobiflux_transforms::jsonmap::count(page, &records)
                    };
                    mobiflux_extractors::rest::extract(
                        &http,
                        self.raw.as_ref(),
                        &run_id,
                        &src,
                        &plan,
                        &count,
                    )
                    .await
                }
                "html" => {
                    let urls = def
                        .page_urls
                        .iter()
                        .map(|u| resolve(u, "url", &self.vars).map(|(u, _)| u))
                        .collect::<Result<Vec<_>, _>>()?;
                    let politeness = mobiflux_extractors::pages::Politeness {
                        min_interval: def.min_interval,
                        robots: def.robots,
                        agent: mobiflux_extractors::pages::product_token(def.user_agent.as_deref()),
                    };
                    let next = |page: &[u8]| match &def.next_page {
                        Some((css, _)) => mobiflux_transforms::html::next_link(page, css),
                        None => Ok(None),
                    };
                    let follow =
                        def.next_page
                            .as_ref()
                            .map(|(_, max)| mobiflux_extractors::pages::Follow {
                                next: &next,
                                max_pages: *max,
                            });
                    mobiflux_extractors::pages::extract(
                        &http,
                        self.raw.as_ref(),
                        &run_id,
                        &src,
                        &urls,
                        follow,
                        &politeness,
                    )
                    .await
                }
                _ if def.is_file_format() => {
                    mobiflux_extractors::files::extract(&http, self.raw.as_ref(), &run_id, &src)
                        .await
                }
                other => unreachable!("validated format {other}"),
            };
            let manifest = manifest.map_err(|e| src.scrub(&e.to_string()))?;
            outcome.bytes = manifest.bytes();
            record.bytes = manifest.bytes() as i64;
            tracing::info!(
                objects = manifest.objects.len(),
                bytes = manifest.bytes(),
                "extracted"
            );
            let loaded = self
                .transform_and_load(&manifest, Some(def), &mut record, &latest, false)
                .await?;
            // Only a run that publishes needs its entries' metadata (a hash over its objects).
            let meta = loaded.pivot.is_some().then(|| entry_meta(def, &manifest));
            Ok((loaded, meta))
        }
        .await;
        outcome.elapsed = started.elapsed();
        match result {
            Ok((loaded, meta)) => {
                if let (Some(cache), Some(docs), Some(meta)) = (&self.cache, loaded.pivot, meta) {
                    outcome.cache = Some(self.publish(cache.as_ref(), def, meta, docs).await);
                }
                tracing::info!(
                    rows = loaded.tables.iter().map(|t| t.1).sum::<u64>(),
                    quarantined = loaded.quarantined,
                    "loaded"
                );
                outcome.tables = loaded.tables;
                outcome.quarantined = loaded.quarantined;
            }
            Err(message) => {
                let message = format!("pipeline {}: {message}", def.name);
                tracing::error!(error = %message, "run failed");
                record.status = "failed".into();
                record.finished_at = Some(Utc::now());
                record.error = Some(message.clone());
                // Its load rolled back: no curated rows of it are owed.
                record.curated_batch = None;
                if let Err(e) = self.warehouse.fail_run(&record).await {
                    tracing::error!(error = %e, "could not record the failure in etl_runs");
                }
                outcome.error = Some(message);
            }
        }
        outcome
    }

    /// Hands the raw zone what the pipeline's latest run fetched, when that run is of
    /// today: this process's first run of the pipeline then fetches conditionally, as the
    /// later ones do (a pipeline run from cron, a daemon restarted). At most once per
    /// pipeline and process; a warehouse or a manifest that cannot tell only means whole
    /// fetches.
    async fn recall_run(&self, pipeline: &str) {
        let found = async {
            let Some(id) = self
                .warehouse
                .last_run(pipeline)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let run: RunId = id.parse().map_err(|e| format!("run id {id:?}: {e}"))?;
            if run.date() != mobiflux_extractors::raw::today() {
                return Ok(None);
            }
            Manifest::read(self.raw.as_ref(), &run)
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        }
        .await;
        let objects = match found {
            Ok(manifest) => manifest.map(|m| m.objects).unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "no earlier run to fetch conditionally from");
                Vec::new()
            }
        };
        self.raw.remember_run(pipeline, &objects);
    }

    /// Records a tick that was not run because its MSP host's circuit is open: a failed
    /// `etl_runs` row saying why, and no request to the MSP.
    pub async fn refuse_tick(
        &self,
        def: &Definition,
        scheduled_for: chrono::DateTime<Utc>,
        reason: &str,
    ) -> Outcome {
        let run_id = RunId::new();
        let mut record = new_record(&run_id, &def.name, &def.partner, &def.format, "schedule");
        record.scheduled_for = Some(scheduled_for);
        record.manifest = None;
        record.status = "failed".into();
        record.finished_at = Some(Utc::now());
        let message = format!("pipeline {}: {reason}", def.name);
        record.error = Some(message.clone());
        if let Err(e) = self.warehouse.fail_run(&record).await {
            tracing::error!(error = %e, "could not record the refused tick in etl_runs");
        }
        let mut outcome = Outcome::new(&def.name, run_id);
        outcome.error = Some(message);
        outcome
    }

    /// The MSP host a definition's runs call (`host:port`), for per-host limits and circuit
    /// breakers; `None` for local files and S3 objects.
    pub fn msp_host(&self, def: &Definition) -> Option<String> {
        let (url, _) = resolve(&def.url, "url", &self.vars).ok()?;
        let u = url::Url::parse(&url).ok()?;
        matches!(u.scheme(), "http" | "https").then(|| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(0)
            )
        })
    }

    /// Publishes a run's gateway documents; a failure is reported, never raised: the
    /// warehouse load stands and the entries already in the cache stay as they were.
    async fn publish(
        &self,
        cache: &dyn GatewayCache,
        def: &Definition,
        meta: EntryMeta,
        docs: Vec<Resource>,
    ) -> Result<usize, String> {
        let settings = def
            .cache
            .as_ref()
            .expect("publishing definitions have cache settings");
        let n = docs.len();
        let p = Publication {
            partner: settings.partner_id.clone(),
            territory: def.territory.clone(),
            meta,
            resources: docs,
        };
        match cache.publish(&p).await {
            Ok(()) => {
                tracing::info!(resources = n, cache = %cache.describe(), "published to the gateway cache");
                Ok(n)
            }
            Err(e) => {
                let message = format!(
                    "pipeline {}: gateway cache not updated (the warehouse load stands; the next run publishes again): {e}",
                    def.name
                );
                tracing::error!(error = %message, "cache step failed");
                Err(message)
            }
        }
    }

    /// Re-transforms and reloads a run from the raw zone alone, under its own run id.
    pub async fn replay(&self, run_id: RunId, defs: &[Definition]) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome::new("", run_id);
        let result: Result<Loaded, String> = async {
            let manifest = Manifest::read(self.raw.as_ref(), &run_id)
                .await
                .map_err(|e| format!("replay {run_id}: {e}"))?;
            outcome.pipeline = manifest.pipeline.clone();
            outcome.bytes = manifest.bytes();
            if manifest.status != "complete" {
                return Err(format!(
                    "replay {run_id}: the run's extraction failed ({}); there is nothing complete to replay",
                    manifest.error.as_deref().unwrap_or("no reason recorded")
                ));
            }
            let def = defs.iter().find(|d| d.name == manifest.pipeline);
            let mut record = new_record(&run_id, &manifest.pipeline, &manifest.partner, &manifest.format, "replay");
            record.bytes = manifest.bytes() as i64;
            let latest = self.warehouse.start_run(&record).await.map_err(|e| e.to_string())?;
            // A replay reloads its files even though the ledger knows their content.
            self.transform_and_load(&manifest, def, &mut record, &latest, true).await
        }
        .await;
        outcome.elapsed = started.elapsed();
        match result {
            Ok(l) => {
                outcome.tables = l.tables;
                outcome.quarantined = l.quarantined;
            }
            Err(e) => outcome.error = Some(e),
        }
        outcome
    }

    fn source(&self, def: &Definition) -> Result<Source, String> {
        let (url, used) = resolve(&def.url, "url", &self.vars)?;
        // A value placed in the query or the userinfo is a credential; one forming the
        // scheme and host (a base URL) is not, so it stays readable in messages.
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let userinfo = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|auth| auth.rsplit_once('@'))
            .map(|(u, _)| u)
            .unwrap_or("");
        let mut secrets: Vec<String> = used
            .into_iter()
            .filter(|v| query.contains(v.as_str()) || userinfo.contains(v.as_str()))
            .collect();
        let mut headers = Vec::new();
        for (k, v) in &def.headers {
            let (value, used) = resolve(v, &format!("headers.{k}"), &self.vars)?;
            secrets.extend(used);
            headers.push((k.clone(), value));
        }
        Ok(Source {
            pipeline: def.name.clone(),
            partner: def.partner.clone(),
            format: def.format.clone(),
            url,
            language: def.language.clone(),
            system_id: def.system_id.clone(),
            headers,
            sensitive: def.sensitive.clone(),
            secrets,
        })
    }

    /// Reads the run's usable objects back from the raw zone (the path a replay takes too),
    /// transforms them and loads the result in one transaction.
    async fn transform_and_load(
        &self,
        manifest: &Manifest,
        def: Option<&Definition>,
        record: &mut RunRecord,
        latest: &Latest,
        reload: bool,
    ) -> Result<Loaded, String> {
        match manifest.format.as_str() {
            "gbfs" | "tomp" | "covoiturage" => {
                self.load_feed(manifest, def.filter(|_| !reload), record, latest, reload)
                    .await
            }
            "irve" | "irve-dynamic" | "bnls" => {
                let (mapping, bundled) = match manifest.format.as_str() {
                    "irve" => (
                        &mobiflux_transforms::irve::STATIC,
                        mobiflux_transforms::irve::STATIC_SCHEMA,
                    ),
                    "irve-dynamic" => (
                        &mobiflux_transforms::irve::DYNAMIC,
                        mobiflux_transforms::irve::DYNAMIC_SCHEMA,
                    ),
                    _ => (
                        &mobiflux_transforms::bnls::MAPPING,
                        mobiflux_transforms::bnls::SCHEMA,
                    ),
                };
                let schema = match def.and_then(|d| d.schema.as_ref()) {
                    Some(path) => read_schema(path)?,
                    None => {
                        Schema::from_json(bundled, &format!("bundled {} schema", manifest.format))
                            .map_err(|e| e.to_string())?
                    }
                };
                let map = FileMap::Schema {
                    schema: Arc::new(schema),
                    mapping,
                };
                self.load_files(manifest, def, map, record, reload).await
            }
            "fixed_width" => {
                let fixed =
                    from_definition(manifest, def, |d| d.fixed.clone(), "[fields] and [columns]")?;
                self.load_files(manifest, def, FileMap::Fixed(fixed), record, reload)
                    .await
            }
            "access_log" => {
                let log = from_definition(
                    manifest,
                    def,
                    |d| d.log.clone(),
                    "log pattern and [columns]",
                )?;
                self.load_files(manifest, def, FileMap::Log(log), record, reload)
                    .await
            }
            "html" => {
                let spec = from_definition(manifest, def, |d| d.page.clone(), "scraping rules")?;
                self.load_documents(manifest, None, DocReader::Page(spec), record)
                    .await
            }
            "json" => {
                let mapping =
                    from_definition(manifest, def, |d| d.mapping.clone(), "[columns] mapping")?;
                let records = def.and_then(|d| d.records.clone()).unwrap_or_default();
                self.load_documents(
                    manifest,
                    def.filter(|_| !reload),
                    DocReader::Json { records, mapping },
                    record,
                )
                .await
            }
            "csv" => {
                let mapping =
                    from_definition(manifest, def, |d| d.mapping.clone(), "[columns] mapping")?;
                let map = match def.and_then(|d| d.schema.as_ref()) {
                    Some(path) => FileMap::Checked {
                        schema: Arc::new(read_schema(path)?),
                        mapping,
                    },
                    None => FileMap::Declared(mapping),
                };
                self.load_files(manifest, def, map, record, reload).await
            }
            other => Err(format!("no transform for format {other}")),
        }
    }

    /// Published files, streamed: each file is validated and mapped in a blocking task that
    /// hands chunks over a bounded channel to the load transaction, so memory stays flat.
    /// A file whose content this pipeline already loaded is skipped (unless reloading).
    async fn load_files(
        &self,
        manifest: &Manifest,
        def: Option<&Definition>,
        map: FileMap,
        record: &mut RunRecord,
        reload: bool,
    ) -> Result<Loaded, String> {
        let text = match &map {
            FileMap::Log(_) => TextOptions {
                encoding: def.map(|d| d.encoding).unwrap_or(Encoding::Auto),
                ..mobiflux_transforms::logs::text_options()
            },
            FileMap::Fixed(f) => TextOptions {
                encoding: def.map(|d| d.encoding).unwrap_or(Encoding::Auto),
                ..f.text_options()
            },
            _ => TextOptions {
                delimiter: def.map(|d| d.delimiter).unwrap_or(b','),
                encoding: def.map(|d| d.encoding).unwrap_or(Encoding::Auto),
                ..TextOptions::default()
            },
        };
        // Which files to load is decided before the transaction opens: a connection held by
        // an open load must never wait for a second one from the same pool.
        let mut todo = Vec::new();
        for obj in manifest.objects.iter().filter(|o| o.usable()) {
            let earlier = if reload {
                None
            } else {
                self.warehouse
                    .loaded_by(&manifest.pipeline, &obj.sha256)
                    .await
                    .map_err(|e| e.to_string())?
            };
            match earlier {
                Some(run) => {
                    tracing::info!(file = %obj.url, earlier_run = %run, "same content already loaded; skipped")
                }
                None => todo.push(obj),
            }
        }
        record.finished_at = Some(Utc::now());
        let mut curated = self.curated(record);
        let mut tx = self
            .warehouse
            .begin(record, &[])
            .await
            .map_err(|e| e.to_string())?;
        // Natural keys of the whole run: a key repeated in a later file is quarantined too.
        let mut keys = Some(tabular::RunKeys::default());
        for obj in todo {
            let reader = self
                .raw
                .open_read(&obj.key)
                .await
                .map_err(|e| e.to_string())?;
            let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel::<Output>(tuning(
                &QUEUE_KNOB,
                "MOBIFLUX_CHUNK_QUEUE",
                CHUNK_QUEUE,
                1,
            ));
            let (map, text) = (map.clone(), text.clone());
            let (pipeline, partner, run_id) = (
                manifest.pipeline.clone(),
                manifest.partner.clone(),
                record.run_id.clone(),
            );
            let (key, fetched) = (obj.key.clone(), obj.fetched_at);
            let mut run_keys = keys.take().expect("returned by the previous file");
            let chunk_rows = tuning(&ROWS_KNOB, "MOBIFLUX_CHUNK_ROWS", CHUNK_ROWS, 1);
            let task = tokio::task::spawn_blocking(move || {
                let ctx = Context {
                    pipeline: &pipeline,
                    partner: &partner,
                    run_id: &run_id,
                    language: None,
                };
                let (schema_map, checked);
                let row_map: &dyn tabular::RowMap = match &map {
                    FileMap::Schema { schema, mapping } => {
                        schema_map = tabular::SchemaMap { schema, mapping };
                        &schema_map
                    }
                    FileMap::Declared(table) => table.as_ref(),
                    FileMap::Checked { schema, mapping } => {
                        checked = tabular::Checked {
                            schema,
                            inner: mapping.as_ref(),
                        };
                        &checked
                    }
                    FileMap::Log(log) => log.as_ref(),
                    FileMap::Fixed(fixed) => fixed.as_ref(),
                };
                let result = tabular::read(
                    &ctx,
                    reader,
                    &key,
                    fetched,
                    row_map,
                    &text,
                    chunk_rows,
                    &mut run_keys,
                    &mut |chunk| {
                        chunks_tx
                            .blocking_send(chunk)
                            .map_err(|_| "the load stopped".to_string())
                    },
                );
                (result, run_keys)
            });
            while let Some(chunk) = chunks.recv().await {
                for (table, df) in &chunk.tables {
                    tx.frame(table, df).await.map_err(|e| e.to_string())?;
                    if let Some(c) = curated.as_mut() {
                        c.add(table, df, tx.stale_snapshots())
                            .map_err(|e| e.to_string())?;
                    }
                }
                let q = quarantine::to_frame(
                    &chunk.quarantine,
                    &record.run_id,
                    &manifest.pipeline,
                    &manifest.partner,
                );
                tx.quarantine(&q).await.map_err(|e| e.to_string())?;
            }
            let (result, run_keys) = task.await.map_err(|e| format!("transform task: {e}"))?;
            keys = Some(run_keys);
            let stats = result.map_err(|e| format!("{}: {e}", obj.url))?;
            tracing::info!(file = %obj.url, rows = stats.rows, quarantined = stats.quarantined_rows, "file read");
            tx.record_object(&obj.sha256, &obj.key);
        }
        let stats = tx.commit().await.map_err(|e| e.to_string())?;
        self.publish_curated(curated, &stats).await?;
        Ok(Loaded {
            tables: stats.tables,
            quarantined: stats.quarantined,
            pivot: None,
        })
    }

    /// Scraped pages: each stored page is scraped (off the I/O threads unless small) and its
    /// rows loaded, all pages of the run in one transaction.
    async fn load_documents(
        &self,
        manifest: &Manifest,
        def: Option<&Definition>,
        reader: DocReader,
        record: &mut RunRecord,
    ) -> Result<Loaded, String> {
        let publishing = self.publishing(def);
        let fetched_at = fetched_at(manifest);
        let mut pages = Vec::new();
        for obj in manifest
            .objects
            .iter()
            .filter(|o| o.usable() && reader.reads(&o.resource))
        {
            let bytes = self.payload(obj).await?;
            pages.push((obj.url.clone(), obj.key.clone(), obj.fetched_at, bytes));
        }
        let (pipeline, partner, run_id) = (
            manifest.pipeline.clone(),
            manifest.partner.clone(),
            record.run_id.clone(),
        );
        let size: usize = pages.iter().map(|p| p.3.len()).sum();
        let chunks = cpu_work(size, move || {
            let ctx = Context {
                pipeline: &pipeline,
                partner: &partner,
                run_id: &run_id,
                language: None,
            };
            let mut keys = tabular::RunKeys::default();
            let mut chunks = Vec::new();
            for (url, key, fetched, bytes) in &pages {
                let mut emit = |c| {
                    chunks.push(c);
                    Ok(())
                };
                match &reader {
                    DocReader::Page(spec) => mobiflux_transforms::html::read(
                        &ctx, bytes, key, *fetched, spec, &mut keys, &mut emit,
                    )
                    .map_err(|e| format!("page {url}: {e}"))?,
                    DocReader::Json { records, mapping } => mobiflux_transforms::jsonmap::read(
                        &ctx, bytes, key, *fetched, records, mapping, &mut keys, &mut emit,
                    )
                    .map_err(|e| format!("document {url}: {e}"))?,
                };
            }
            let docs = match &publishing {
                Some(_) => {
                    let all =
                        Output::stack(&chunks).map_err(|e| format!("gateway documents: {e}"))?;
                    gateway_documents(
                        publishing.as_ref(),
                        &partner,
                        fetched_at,
                        &all,
                        pivot::RawDocs {
                            format: "json",
                            docs: &[],
                        },
                    )?
                }
                None => None,
            };
            Ok::<_, String>((chunks, docs))
        })
        .await
        .map_err(|e| format!("scraping task: {e}"))??;
        let (chunks, pivot) = chunks;
        record.finished_at = Some(Utc::now());
        let mut tx = self
            .warehouse
            .begin(record, &[])
            .await
            .map_err(|e| e.to_string())?;
        let mut curated = self.curated(record);
        for chunk in &chunks {
            for (table, df) in &chunk.tables {
                tx.frame(table, df).await.map_err(|e| e.to_string())?;
                if let Some(c) = curated.as_mut() {
                    c.add(table, df, tx.stale_snapshots())
                        .map_err(|e| e.to_string())?;
                }
            }
            let q = quarantine::to_frame(
                &chunk.quarantine,
                &record.run_id,
                &manifest.pipeline,
                &manifest.partner,
            );
            tx.quarantine(&q).await.map_err(|e| e.to_string())?;
        }
        let stats = tx.commit().await.map_err(|e| e.to_string())?;
        self.publish_curated(curated, &stats).await?;
        Ok(Loaded {
            tables: stats.tables,
            quarantined: stats.quarantined,
            pivot,
        })
    }

    /// A feed run's payloads through its format's transform: the unified tables and the
    /// quarantine, and the gateway documents when `publishing`. `not_read` are reference
    /// resources the warehouse holds already (not read back from the raw zone unless the
    /// documents need them).
    async fn transform_feed(
        &self,
        manifest: &Manifest,
        language: Option<&str>,
        not_read: Vec<String>,
        publishing: Option<Definition>,
    ) -> Result<(Output, Option<Vec<Resource>>), String> {
        let mut blobs: Vec<(String, String, Bytes, chrono::DateTime<Utc>)> = Vec::new();
        let not_read_names: Vec<&str> = not_read.iter().map(String::as_str).collect();
        for o in manifest.objects.iter().filter(|o| o.usable()) {
            // What the transform will not read (a reference payload the MSP confirmed
            // unchanged, not landed by this run) is not read back from the raw zone either.
            let unread = o.landed.0.is_none()
                && publishing.is_none()
                && !mobiflux_transforms::reads(&manifest.format, &o.resource, &not_read_names);
            let bytes = if unread {
                Bytes::new()
            } else {
                self.payload(o).await?
            };
            blobs.push((o.resource.clone(), o.key.clone(), bytes, o.fetched_at));
        }
        let run_id = manifest.run_id.clone();
        let (pipeline, partner, format) = (
            manifest.pipeline.clone(),
            manifest.partner.clone(),
            manifest.format.clone(),
        );
        let language = language.map(str::to_string);
        let fetched_at = fetched_at(manifest);
        let (ctx_run, ctx_pipeline, ctx_partner) =
            (run_id.clone(), pipeline.clone(), partner.clone());
        let size: usize = blobs.iter().map(|b| b.2.len()).sum();
        cpu_work(size, move || {
            let payloads: Vec<Payload> = blobs
                .iter()
                .map(|(resource, key, bytes, at)| Payload {
                    resource,
                    source_object: key,
                    bytes,
                    fetched_at: *at,
                })
                .collect();
            let ctx = Context {
                pipeline: &ctx_pipeline,
                partner: &ctx_partner,
                run_id: &ctx_run,
                language: language.as_deref(),
            };
            let not_read: Vec<&str> = not_read.iter().map(String::as_str).collect();
            let out = match format.as_str() {
                "gbfs" => mobiflux_transforms::gbfs::transform_changed(&ctx, &payloads, &not_read)
                    .map_err(|e| e.to_string()),
                "tomp" => {
                    mobiflux_transforms::tomp::transform(&ctx, &payloads).map_err(|e| e.to_string())
                }
                "covoiturage" => mobiflux_transforms::covoiturage::transform(&ctx, &payloads)
                    .map_err(|e| e.to_string()),
                other => Err(format!("no transform for format {other}")),
            }?;
            let docs: Vec<(&str, &[u8])> = payloads.iter().map(|p| (p.resource, p.bytes)).collect();
            let raw = pivot::RawDocs {
                format: &format,
                docs: &docs,
            };
            let docs = gateway_documents(publishing.as_ref(), &ctx_partner, fetched_at, &out, raw)?;
            Ok::<_, String>((out, docs))
        })
        .await
        .map_err(|e| format!("transform task: {e}"))?
    }

    /// JSON feeds: the run's payloads are small; read them whole and transform them together.
    /// A reference payload whose content is the last one the pipeline loaded is not loaded
    /// again (unless replaying), nor transformed again unless the run publishes gateway
    /// documents, which are built from every table. A poll's curated rows join the open
    /// batch ([`curated_batches`]).
    async fn load_feed(
        &self,
        manifest: &Manifest,
        def: Option<&Definition>,
        record: &mut RunRecord,
        latest: &Latest,
        reload: bool,
    ) -> Result<Loaded, String> {
        let language = def.and_then(|d| d.language.as_deref());
        let publishing = self.publishing(def);
        let reference = mobiflux_transforms::reference_resources(&manifest.format);
        let table_of = |o: &mobiflux_extractors::raw::ManifestObject| {
            reference
                .iter()
                .find(|(r, _)| *r == o.resource)
                .map(|(_, t)| *t)
        };
        let usable = || manifest.objects.iter().filter(|o| o.usable());
        // What a reference payload's rows depend on besides its bytes: who they belong to,
        // the language picked, and this build's transforms.
        let content = |o: &mobiflux_extractors::raw::ManifestObject| {
            use sha2::Digest as _;
            let mut h = sha2::Sha256::new();
            for part in [
                o.sha256.as_str(),
                &manifest.partner,
                language.unwrap_or(""),
                env!("CARGO_PKG_VERSION"),
            ] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            hex::encode(h.finalize())
        };
        // Each reference payload, its table, its content key, and whether the warehouse
        // holds that content already.
        let references: Vec<_> = usable()
            .filter_map(|o| {
                let table = table_of(o)?;
                let c = content(o);
                let known = !reload && latest.get(&o.resource) == Some(&c);
                Some((o, table, c, known))
            })
            .collect();
        let known: Vec<_> = references.iter().filter(|r| r.3).collect();
        let known_tables: Vec<&str> = known.iter().map(|r| r.1).collect();
        let known_keys: Vec<&str> = known.iter().map(|r| r.0.key.as_str()).collect();
        if !known.is_empty() {
            tracing::debug!(tables = ?known_tables, "same content as last loaded; not loaded again");
        }
        let not_read: Vec<String> = match publishing {
            Some(_) => Vec::new(),
            None => known.iter().map(|r| r.0.resource.clone()).collect(),
        };
        let (mut out, pivot) = self
            .transform_feed(manifest, language, not_read, publishing)
            .await?;
        // What was read only for the gateway documents: the warehouse holds it already.
        out.tables.retain(|(t, _)| !known_tables.contains(&t.name));
        out.quarantine
            .retain(|q| !known_keys.contains(&q.source_object.as_str()));
        let qframe = quarantine::to_frame(
            &out.quarantine,
            &record.run_id,
            &manifest.pipeline,
            &manifest.partner,
        );
        record.finished_at = Some(Utc::now());
        // A poll's curated rows join the process's open batch (a replay writes files of its
        // own): its `etl_runs` row carries the batch's key from the commit on.
        let ticket = (self.curated && !reload).then(|| self.batches.join());
        record.curated_batch = ticket.as_ref().map(|t| t.key().to_string());
        let mut curated = self
            .curated(record)
            .map(|c| if ticket.is_some() { c.batched() } else { c });
        let tables: Vec<_> = out.tables.iter().map(|t| t.0).collect();
        let mut tx = self
            .warehouse
            .begin(record, &tables)
            .await
            .map_err(|e| e.to_string())?;
        for (table, df) in &out.tables {
            tx.frame(table, df).await.map_err(|e| e.to_string())?;
            if let Some(c) = curated.as_mut() {
                c.add(table, df, tx.stale_snapshots())
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.quarantine(&qframe).await.map_err(|e| e.to_string())?;
        for (o, _, c, _) in &references {
            if latest.get(&o.resource) != Some(c) {
                tx.record_latest(&o.resource, c, &o.key);
            }
        }
        let stats = tx.commit().await.map_err(|e| e.to_string())?;
        match (ticket, curated) {
            (Some(ticket), Some(curated)) => self.batches.absorb(ticket, curated, &stats),
            (_, curated) => self.publish_curated(curated, &stats).await?,
        }
        Ok(Loaded {
            tables: stats.tables,
            quarantined: stats.quarantined,
            pivot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::knob_value;

    #[test]
    fn a_tuning_knob_takes_whole_numbers_from_its_minimum_and_keeps_its_default_otherwise() {
        assert_eq!(knob_value("K", None, 7, 0), 7);
        assert_eq!(knob_value("K", Some("0"), 7, 0), 0);
        assert_eq!(knob_value("K", Some(" 12 "), 7, 1), 12);
        assert_eq!(knob_value("K", Some("0"), 7, 1), 7);
        assert_eq!(knob_value("K", Some("-3"), 7, 0), 7);
        assert_eq!(knob_value("K", Some("64k"), 7, 0), 7);
    }
}
