//! Runs pipelines: extract to the raw zone, transform from the raw zone, load the
//! warehouse. A failing pipeline fails alone; every run leaves an `etl_runs` row, and a
//! replay goes through the same transform-and-load path from the stored raw objects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use mobiflux_extractors::raw::{Manifest, manifest_key};
use mobiflux_extractors::{Http, HttpOptions, RawStore, Source};
use mobiflux_loaders::{Batch, RunRecord, Warehouse};
use mobiflux_model::RunId;
use mobiflux_transforms::{Context, Payload, quarantine};
use tracing::Instrument;

use crate::definitions::{Definition, resolve};

/// At most this many pipelines run at once in one `mobiflux run`.
const CONCURRENT_PIPELINES: usize = 4;

pub struct Runner {
    pub raw: Arc<dyn RawStore>,
    pub warehouse: Arc<dyn Warehouse>,
    /// Consulted before the environment when resolving `${VAR}` (the demo's simulator URL).
    pub vars: BTreeMap<String, String>,
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
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A run's `etl_runs` row as it starts.
fn new_record(
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
    }
}

/// What the transform-and-load step produced.
struct Loaded {
    tables: Vec<(&'static str, u64)>,
    quarantined: u64,
}

impl Runner {
    /// Runs the definitions, a few at a time; one failing never stops the others.
    pub async fn run_all(&self, defs: &[Definition]) -> Vec<Outcome> {
        futures_util::stream::iter(defs)
            .map(|d| self.run_one(d))
            .buffered(CONCURRENT_PIPELINES)
            .collect()
            .await
    }

    pub async fn run_one(&self, def: &Definition) -> Outcome {
        let run_id = RunId::new();
        let span = tracing::info_span!("run", pipeline = %def.name, run_id = %run_id);
        self.run_in_span(def, run_id).instrument(span).await
    }

    async fn run_in_span(&self, def: &Definition, run_id: RunId) -> Outcome {
        let started = Instant::now();
        let mut record = new_record(&run_id, &def.name, &def.partner, &def.format, "run");
        let mut outcome = Outcome::new(&def.name, run_id);
        let result: Result<Loaded, String> = async {
            self.warehouse
                .start_run(&record)
                .await
                .map_err(|e| e.to_string())?;
            let src = self.source(def)?;
            let http = Http::new(HttpOptions {
                timeout: def.timeout,
                max_body_bytes: def.max_body_bytes,
                ..HttpOptions::default()
            })
            .map_err(|e| format!("HTTP client: {e}"))?;
            let manifest = match def.format.as_str() {
                "gbfs" => {
                    mobiflux_extractors::gbfs::extract(&http, self.raw.as_ref(), &run_id, &src)
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
            self.transform_and_load(&manifest, def.language.as_deref(), &mut record)
                .await
        }
        .await;
        outcome.elapsed = started.elapsed();
        match result {
            Ok(loaded) => {
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
                if let Err(e) = self.warehouse.fail_run(&record).await {
                    tracing::error!(error = %e, "could not record the failure in etl_runs");
                }
                outcome.error = Some(message);
            }
        }
        outcome
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
            let language = defs
                .iter()
                .find(|d| d.name == manifest.pipeline)
                .and_then(|d| d.language.clone());
            let mut record = new_record(&run_id, &manifest.pipeline, &manifest.partner, &manifest.format, "replay");
            record.bytes = manifest.bytes() as i64;
            self.warehouse.start_run(&record).await.map_err(|e| e.to_string())?;
            self.transform_and_load(&manifest, language.as_deref(), &mut record).await
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

    /// Reads the run's complete objects back from the raw zone, transforms them and loads
    /// the result in one transaction.
    async fn transform_and_load(
        &self,
        manifest: &Manifest,
        language: Option<&str>,
        record: &mut RunRecord,
    ) -> Result<Loaded, String> {
        let mut blobs: Vec<(String, String, Bytes, chrono::DateTime<Utc>)> = Vec::new();
        for o in manifest
            .objects
            .iter()
            .filter(|o| o.complete && (200..300).contains(&o.status))
        {
            let bytes = self.raw.get(&o.key).await.map_err(|e| e.to_string())?;
            blobs.push((o.resource.clone(), o.key.clone(), bytes, o.fetched_at));
        }
        let run_id = record.run_id.clone();
        let (pipeline, partner, format) = (
            manifest.pipeline.clone(),
            manifest.partner.clone(),
            manifest.format.clone(),
        );
        let language = language.map(str::to_string);
        // Parsing and normalizing is CPU work: keep it off the threads that serve I/O.
        let (ctx_run, ctx_pipeline, ctx_partner) =
            (run_id.clone(), pipeline.clone(), partner.clone());
        let out = tokio::task::spawn_blocking(move || {
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
            match format.as_str() {
                "gbfs" => {
                    mobiflux_transforms::gbfs::transform(&ctx, &payloads).map_err(|e| e.to_string())
                }
                other => Err(format!("no transform for format {other}")),
            }
        })
        .await
        .map_err(|e| format!("transform task: {e}"))??;
        let qframe = quarantine::to_frame(
            &out.quarantine,
            &run_id,
            &manifest.pipeline,
            &manifest.partner,
        );
        record.finished_at = Some(Utc::now());
        let stats = self
            .warehouse
            .load(Batch {
                run: record,
                tables: &out.tables,
                quarantine: &qframe,
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(Loaded {
            tables: stats.tables,
            quarantined: stats.quarantined,
        })
    }
}
