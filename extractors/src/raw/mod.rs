//! The raw zone: every payload exactly as received, under the key layout of DESIGN.md §4,
//! and one manifest per run, so any run can be replayed without calling the MSP.
//!
//! ```text
//! raw/{pipeline}/{resource}/date=YYYY-MM-DD/{fetched_at}_{sha256 prefix}.{ext}
//! raw/_runs/date=YYYY-MM-DD/{run_id}.json        (the run's manifest; the date is the run's)
//! ```
//!
//! A payload fetched again unchanged on the same day is stored once: the run's manifest
//! records the fetch (its own time, status, headers) under the key of the object landed
//! earlier that day for the same pipeline and resource ([`Reusing`]). The same store
//! remembers the validators (`ETag`, `Last-Modified`) of each pipeline's last run, so its
//! next run asks the MSP for a file only if it changed: a `304 Not Modified` is recorded
//! with status 304 under the key of the object it confirms.

mod folder;
mod memory;
mod s3;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use mobiflux_model::RunId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use folder::FolderStore;
pub use memory::MemoryStore;
pub use s3::{S3Config, S3Store};

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("{location}: {message}")]
    Io { location: String, message: String },
    #[error("{location}: no such object")]
    NotFound { location: String },
    #[error("raw zone URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("manifest {location}: {message}")]
    BadManifest { location: String, message: String },
}

/// Where raw objects live. Implementations: local folder (embedded default), S3, memory.
pub trait RawStore: Send + Sync {
    /// Writes an object whole; readers never see a partial object.
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>>;
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes, RawError>>;
    /// Writes an object from a local file, streamed (never read whole into memory).
    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>>;
    /// A reader over an object, streamed (S3 objects are spooled to a temporary file).
    fn open_read<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Read + Send>, RawError>>;
    /// Keys under a prefix, sorted.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, RawError>>;
    /// Where the store is, for messages (`file:///…`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
    /// The key of an object with this content that this store landed under the same
    /// pipeline, resource and day as `key` (only [`Reusing`] remembers; others say none).
    fn landed_before(&self, _key: &str, _sha256: &str) -> Option<String> {
        None
    }
    /// Remembers the payload just landed under `key` (see [`RawStore::landed_before`]).
    fn remember(&self, _key: &str, _sha256: &str) {}
    /// What the pipeline's last run landed from `url` (secrets masked), with the validators
    /// the MSP gave it, when that object is in the partition of `day` (`YYYY-MM-DD`): a
    /// fetch may then be conditional (only [`Reusing`] remembers; others say none).
    fn validated(&self, _pipeline: &str, _url: &str, _day: &str) -> Option<Validated> {
        None
    }
    /// Remembers the validated objects of a pipeline's run, in place of its previous run's
    /// (see [`RawStore::validated`]).
    fn remember_run(&self, _pipeline: &str, _objects: &[ManifestObject]) {}
    /// Whether this store remembers runs but has none of the pipeline's yet (this process
    /// has not run it): the runner may then hand it an earlier run's objects.
    fn wants_run(&self, _pipeline: &str) -> bool {
        false
    }
}

/// An object landed from a URL, with the validators its answer carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub validators: crate::http::Validators,
    pub resource: String,
    pub key: String,
    pub sha256: String,
    pub bytes: u64,
    pub content_type: Option<String>,
}

impl Validated {
    /// The manifest entry of a `304 Not Modified` confirming this object (`url` without
    /// secrets, the 304's own headers), when the object is in the partition of `day`: an
    /// answer received after midnight must not name the day before's object.
    pub fn confirmed(
        self,
        url: &str,
        headers: &[(String, String)],
        day: &str,
    ) -> Option<ManifestObject> {
        if Reusing::split(&self.key)?.1 != day {
            return None;
        }
        Some(ManifestObject {
            resource: self.resource,
            url: url.to_string(),
            key: self.key,
            status: NOT_MODIFIED,
            headers: headers.iter().cloned().collect(),
            content_type: self.content_type,
            bytes: self.bytes,
            sha256: self.sha256,
            fetched_at: Utc::now(),
            complete: true,
            landed: Landed(None),
        })
    }
}

/// Today's partition (`YYYY-MM-DD`, UTC), as [`object_key`] names it.
pub fn today() -> String {
    Utc::now().format("%Y-%m-%d").to_string()
}

/// A raw zone that stores a payload fetched again unchanged once a day: for each pipeline
/// and resource it remembers the last payload landed (its day, content and key), and
/// [`crate::Landing::land`] records an unchanged fetch under that key instead of writing a
/// copy. A GBFS system's `station_information` polled every minute is one object a day,
/// not 1,440. Reused keys stay within their day's partition, so expiring old partitions
/// (an S3 lifecycle rule on `date=`) never removes an object a newer manifest names. The
/// memory is this process's own; another instance, or a restart, writes its own copy.
///
/// It also keeps, for each pipeline, the validators of what its last run landed
/// ([`RawStore::validated`]): as many entries as one run fetched, replaced by each run;
/// before the process's first run of a pipeline, from its latest run's manifest.
pub struct Reusing {
    inner: Box<dyn RawStore>,
    /// `raw/{pipeline}/{resource}` → (`YYYY-MM-DD`, sha256, key) of its last payload.
    last: std::sync::Mutex<std::collections::HashMap<String, (String, String, String)>>,
    /// pipeline → URL (secrets masked) → what its last run landed from there.
    validated: std::sync::Mutex<
        std::collections::HashMap<String, std::collections::HashMap<String, Validated>>,
    >,
}

impl Reusing {
    pub fn new(inner: Box<dyn RawStore>) -> Self {
        Reusing {
            inner,
            last: Default::default(),
            validated: Default::default(),
        }
    }

    /// `raw/{pipeline}/{resource}` and the day of an object key.
    fn split(key: &str) -> Option<(&str, &str)> {
        let (stem, rest) = key.rsplit_once("/date=")?;
        Some((stem, rest.split('/').next()?))
    }
}

impl RawStore for Reusing {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>> {
        self.inner.put(key, bytes, content_type)
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes, RawError>> {
        self.inner.get(key)
    }
    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>> {
        self.inner.put_file(key, path, content_type)
    }
    fn open_read<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Read + Send>, RawError>> {
        self.inner.open_read(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, RawError>> {
        self.inner.list(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn landed_before(&self, key: &str, sha256: &str) -> Option<String> {
        let (stem, day) = Self::split(key)?;
        let last = self.last.lock().expect("not poisoned");
        match last.get(stem) {
            Some((d, sha, earlier)) if d == day && sha == sha256 => Some(earlier.clone()),
            _ => None,
        }
    }
    fn remember(&self, key: &str, sha256: &str) {
        if let Some((stem, day)) = Self::split(key) {
            self.last.lock().expect("not poisoned").insert(
                stem.to_string(),
                (day.to_string(), sha256.to_string(), key.to_string()),
            );
        }
    }
    fn validated(&self, pipeline: &str, url: &str, day: &str) -> Option<Validated> {
        let all = self.validated.lock().expect("not poisoned");
        let v = all.get(pipeline)?.get(url)?;
        // Within the day's partition only: a manifest never names an object of an earlier
        // day, which a lifecycle rule may have expired.
        (Self::split(&v.key)?.1 == day).then(|| v.clone())
    }
    fn remember_run(&self, pipeline: &str, objects: &[ManifestObject]) {
        let mut all = self.validated.lock().expect("not poisoned");
        let previous = all.remove(pipeline).unwrap_or_default();
        let run: std::collections::HashMap<String, Validated> = objects
            .iter()
            .filter(|o| o.usable() && o.status != 0)
            .filter_map(|o| {
                // A 304 that does not repeat the validators keeps the ones it confirmed.
                let validators = crate::http::Validators::of(
                    o.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .or_else(|| {
                    (o.status == NOT_MODIFIED)
                        .then(|| previous.get(&o.url).map(|v| v.validators.clone()))
                        .flatten()
                })?;
                Some((
                    o.url.clone(),
                    Validated {
                        validators,
                        resource: o.resource.clone(),
                        key: o.key.clone(),
                        sha256: o.sha256.clone(),
                        bytes: o.bytes,
                        content_type: o.content_type.clone(),
                    },
                ))
            })
            .collect();
        // Kept even when empty: the pipeline's runs are known to carry no validators.
        all.insert(pipeline.to_string(), run);
    }
    fn wants_run(&self, pipeline: &str) -> bool {
        !self
            .validated
            .lock()
            .expect("not poisoned")
            .contains_key(pipeline)
    }
}

/// The status of a conditional fetch answered "not modified": the object it names is the
/// one landed earlier with the same validators.
pub const NOT_MODIFIED: u16 = 304;

/// Opens the raw zone named by a URL: `file:///path`, a plain path, or `s3://bucket/prefix`.
pub async fn open(url: &str, s3: Option<S3Config>) -> Result<Box<dyn RawStore>, RawError> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(RawError::BadUrl {
                url: url.into(),
                message: "no bucket name".into(),
            });
        }
        let cfg = s3.unwrap_or_else(S3Config::from_env);
        Ok(Box::new(Reusing::new(Box::new(
            S3Store::new(bucket, prefix, cfg).await?,
        ))))
    } else if let Some(path) = url.strip_prefix("file://") {
        Ok(Box::new(Reusing::new(Box::new(FolderStore::new(path)))))
    } else if url.contains("://") {
        Err(RawError::BadUrl {
            url: url.into(),
            message: "expected file:///path or s3://bucket/prefix".into(),
        })
    } else {
        Ok(Box::new(Reusing::new(Box::new(FolderStore::new(url)))))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 and size of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(h.finalize()), total))
}

/// A temporary file removed when dropped; reads like the file.
pub struct TempFile {
    file: std::fs::File,
    path: PathBuf,
}

impl TempFile {
    /// A new empty file in the system's temporary folder.
    pub fn create(tag: &str) -> std::io::Result<(TempFile, std::fs::File)> {
        let path = std::env::temp_dir().join(format!(
            "mobiflux-{tag}-{}-{}",
            std::process::id(),
            mobiflux_model::RunId::new()
        ));
        let write = std::fs::File::create(&path)?;
        let file = std::fs::File::open(&path)?;
        Ok((TempFile { file, path }, write))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Read for TempFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The key of a raw payload.
pub fn object_key(
    pipeline: &str,
    resource: &str,
    fetched_at: DateTime<Utc>,
    sha256: &str,
    ext: &str,
) -> String {
    format!(
        "raw/{pipeline}/{resource}/date={}/{}_{}.{ext}",
        fetched_at.format("%Y-%m-%d"),
        fetched_at.format("%Y%m%dT%H%M%S%.3fZ"),
        &sha256[..16.min(sha256.len())],
    )
}

/// The key of a run's manifest: derived from the run id alone.
pub fn manifest_key(run: &RunId) -> String {
    format!("raw/_runs/date={}/{run}.json", run.date())
}

/// One landed payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestObject {
    pub resource: String,
    /// Without secrets.
    pub url: String,
    pub key: String,
    pub status: u16,
    /// Response headers, sensitive ones masked.
    pub headers: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub bytes: u64,
    pub sha256: String,
    pub fetched_at: DateTime<Utc>,
    /// False when the body was cut short: kept for diagnosis, never transformed.
    #[serde(default = "yes")]
    pub complete: bool,
    /// The payload as landed, for the run that landed it: its transform reads these bytes
    /// instead of reading the object back (a replay reads the raw zone).
    #[serde(skip)]
    pub landed: Landed,
}

/// A payload held in memory beside its manifest entry; not part of the manifest (never
/// written, and equal whatever it holds, so a manifest read back equals the one written).
#[derive(Clone, Default)]
pub struct Landed(pub Option<Bytes>);

impl PartialEq for Landed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Landed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(b) => write!(f, "Landed({} bytes)", b.len()),
            None => f.write_str("Landed(none)"),
        }
    }
}

fn yes() -> bool {
    true
}

/// A request that produced no usable payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestFailure {
    pub resource: String,
    pub url: String,
    pub error: String,
}

/// Everything a run fetched, written once the extraction ends (also when it fails).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub run_id: String,
    pub pipeline: String,
    pub partner: String,
    pub format: String,
    /// Without secrets.
    pub source_url: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `complete` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub objects: Vec<ManifestObject>,
    pub failures: Vec<ManifestFailure>,
    /// For formats carrying personal data: what was dropped or replaced by a keyed hash
    /// before the objects were written (the objects are the payloads *after* that).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pseudonymized: Vec<String>,
}

impl ManifestObject {
    /// Whole, and a success: a 2xx answer, a 304 confirming an object landed before, or a
    /// file read from a folder or S3 (status 0).
    pub fn usable(&self) -> bool {
        self.complete
            && (self.status == 0
                || (200..300).contains(&self.status)
                || self.status == NOT_MODIFIED)
    }
}

impl Manifest {
    /// Bytes received: a 304 names an object landed before, whose bytes did not come again.
    pub fn bytes(&self) -> u64 {
        self.objects
            .iter()
            .filter(|o| o.status != NOT_MODIFIED)
            .map(|o| o.bytes)
            .sum()
    }

    pub async fn write(&self, store: &dyn RawStore) -> Result<String, RawError> {
        let run: RunId = self
            .run_id
            .parse()
            .map_err(|e: mobiflux_model::run::BadRunId| RawError::BadManifest {
                location: self.run_id.clone(),
                message: e.to_string(),
            })?;
        let key = manifest_key(&run);
        let body = serde_json::to_vec_pretty(self).expect("manifest serializes");
        store.put(&key, body.into(), "application/json").await?;
        Ok(key)
    }

    pub async fn read(store: &dyn RawStore, run: &RunId) -> Result<Manifest, RawError> {
        let key = manifest_key(run);
        let bytes = store.get(&key).await?;
        serde_json::from_slice(&bytes).map_err(|e| RawError::BadManifest {
            location: format!("{}/{key}", store.describe()),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keys_follow_the_design_layout() {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 8, 5, 3).unwrap();
        let sha = sha256_hex(b"{}");
        assert_eq!(
            object_key("velo-city", "station_status", t, &sha, "json"),
            "raw/velo-city/station_status/date=2026-11-21/20261121T080503.000Z_44136fa355b3678a.json"
        );
        let run = RunId::new();
        assert_eq!(
            manifest_key(&run),
            format!("raw/_runs/date={}/{run}.json", run.date())
        );
    }

    #[tokio::test]
    async fn an_unchanged_payload_is_stored_once_a_day_and_each_fetch_recorded() {
        let store = Reusing::new(Box::new(MemoryStore::default()));
        let src = crate::Source {
            pipeline: "oslo".into(),
            partner: "oslo".into(),
            format: "gbfs".into(),
            url: "http://msp.test/gbfs.json".into(),
            language: None,
            system_id: None,
            headers: Vec::new(),
            sensitive: Vec::new(),
            secrets: Vec::new(),
        };
        let answer = |body: &'static [u8]| crate::http::Response {
            method: "GET",
            url: "http://msp.test/station_information.json".into(),
            status: 200,
            headers: Vec::new(),
            content_type: Some("application/json".into()),
            body: Bytes::from_static(body),
        };
        let land = |body| {
            let (store, src) = (&store, &src);
            async move {
                crate::Landing::land(
                    store,
                    src,
                    "station_information",
                    &answer(body),
                    "json",
                    true,
                )
                .await
                .unwrap()
            }
        };
        let first = land(b"{\"v\":1}").await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let again = land(b"{\"v\":1}").await;
        // Recorded as its own fetch, under the object landed first.
        assert_eq!(again.key, first.key);
        assert!(again.fetched_at > first.fetched_at);
        assert_eq!(again.landed.0.as_deref(), Some(&b"{\"v\":1}"[..]));
        let changed = land(b"{\"v\":2}").await;
        assert_ne!(changed.key, first.key);
        // Back to the first content: the last payload is what is remembered, so it is
        // stored again (one more object, never a wrong one).
        let back = land(b"{\"v\":1}").await;
        assert_ne!(back.key, first.key);
        let keys = store.list("raw/oslo/station_information/").await.unwrap();
        assert_eq!(keys.len(), 3, "{keys:?}");
        for o in [&first, &changed, &back] {
            assert_eq!(
                store.get(&o.key).await.unwrap(),
                o.landed.0.clone().unwrap()
            );
        }
        // Another day's partition, another pipeline or resource: never reused across them.
        let tomorrow = first.key.replace(
            &format!("date={}", first.fetched_at.format("%Y-%m-%d")),
            "date=2999-01-01",
        );
        assert_eq!(store.landed_before(&tomorrow, &first.sha256), None);
        let other = back.key.replace("raw/oslo/", "raw/bergen/");
        assert_eq!(store.landed_before(&other, &back.sha256), None);
        assert_eq!(
            store.landed_before(&back.key, &back.sha256),
            Some(back.key.clone())
        );
    }

    #[test]
    fn validators_are_remembered_per_pipeline_run_within_their_day() {
        let store = Reusing::new(Box::new(MemoryStore::default()));
        let today = today();
        let object = |url: &str, status: u16, headers: &[(&str, &str)], day: &str| ManifestObject {
            resource: "station_information".into(),
            url: url.into(),
            key: format!("raw/oslo/station_information/date={day}/x_0123.json"),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: Some("application/json".into()),
            bytes: 7,
            sha256: "0123".into(),
            fetched_at: Utc::now(),
            complete: true,
            landed: Landed(None),
        };
        assert!(store.wants_run("oslo"));
        store.remember_run(
            "oslo",
            &[
                object("http://m/a", 200, &[("etag", "\"a1\"")], &today),
                object(
                    "http://m/b",
                    200,
                    &[("last-modified", "Mon, 07 Dec 2026 10:00:00 GMT")],
                    &today,
                ),
                // Masked as sensitive in the manifest: nothing to send back.
                object(
                    "http://m/c",
                    200,
                    &[("etag", mobiflux_model::redact::MASK)],
                    &today,
                ),
                object("http://m/d", 200, &[], &today),
                object("http://m/e", 503, &[("etag", "\"e1\"")], &today),
                object("http://m/y", 200, &[("etag", "\"y1\"")], "2001-01-01"),
            ],
        );
        assert!(!store.wants_run("oslo"));
        let etag = |url: &str| {
            store
                .validated("oslo", url, &today)
                .map(|v| v.validators.etag.unwrap_or_default())
        };
        assert_eq!(etag("http://m/a").as_deref(), Some("\"a1\""));
        let b = store.validated("oslo", "http://m/b", &today).unwrap();
        assert_eq!(
            (
                b.validators.etag.as_deref(),
                b.validators.last_modified.as_deref()
            ),
            (None, Some("Mon, 07 Dec 2026 10:00:00 GMT"))
        );
        assert_eq!(
            (b.key.as_str(), b.bytes),
            (object("", 0, &[], &today).key.as_str(), 7)
        );
        // A 304 names the object only within its day (an answer after midnight does not).
        let confirmed = b.clone().confirmed("http://m/b", &[], &today).unwrap();
        assert_eq!(
            (confirmed.status, &confirmed.key, confirmed.usable()),
            (NOT_MODIFIED, &b.key, true)
        );
        assert_eq!(b.clone().confirmed("http://m/b", &[], "2999-01-01"), None);
        for none in [
            "http://m/c",
            "http://m/d",
            "http://m/e",
            "http://m/y",
            "http://m/z",
        ] {
            assert_eq!(etag(none), None, "{none}");
        }
        assert_eq!(store.validated("bergen", "http://m/a", &today), None);
        // A 304 that does not repeat its validators keeps those it confirmed; the next run
        // replaces the pipeline's memory whole (b, not fetched, is forgotten).
        store.remember_run("oslo", &[object("http://m/a", 304, &[], &today)]);
        assert_eq!(etag("http://m/a").as_deref(), Some("\"a1\""));
        assert_eq!(etag("http://m/b"), None);
        // A run without validators leaves the pipeline known, with nothing to ask with.
        store.remember_run("oslo", &[object("http://m/a", 200, &[], &today)]);
        assert_eq!(etag("http://m/a"), None);
        assert!(!store.wants_run("oslo"));
        // Stores that do not remember never ask for a run.
        assert!(!MemoryStore::default().wants_run("oslo"));
    }

    #[tokio::test]
    async fn folder_and_memory_stores_round_trip_and_list_sorted() {
        let dir = std::env::temp_dir().join(format!("mobiflux-raw-{}", RunId::new()));
        let folder = FolderStore::new(dir.to_str().unwrap());
        let memory = MemoryStore::default();
        for store in [&folder as &dyn RawStore, &memory] {
            store
                .put(
                    "raw/p/b/x.json",
                    Bytes::from_static(b"2"),
                    "application/json",
                )
                .await
                .unwrap();
            store
                .put(
                    "raw/p/a/x.json",
                    Bytes::from_static(b"1"),
                    "application/json",
                )
                .await
                .unwrap();
            store
                .put(
                    "raw/q/a/x.json",
                    Bytes::from_static(b"3"),
                    "application/json",
                )
                .await
                .unwrap();
            assert_eq!(
                store.get("raw/p/a/x.json").await.unwrap(),
                Bytes::from_static(b"1")
            );
            assert_eq!(
                store.list("raw/p/").await.unwrap(),
                vec!["raw/p/a/x.json", "raw/p/b/x.json"]
            );
            let err = store.get("raw/p/zzz.json").await.unwrap_err();
            assert!(matches!(err, RawError::NotFound { .. }), "{err}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Many writers landing at once in folders none of them has seen (a run's manifest and
    /// its objects, several runs of one day): every object is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_into_new_folders_all_land() {
        let dir = std::env::temp_dir().join(format!("mobiflux-raw-{}", RunId::new()));
        let folder = std::sync::Arc::new(FolderStore::new(dir.to_str().unwrap()));
        for round in 0..100 {
            let writes: Vec<_> = (0..16)
                .map(|i| {
                    let folder = folder.clone();
                    tokio::spawn(async move {
                        let key = format!("raw/_runs/date=2026-11-{round:02}/r{i}.json");
                        folder
                            .put(&key, Bytes::from(format!("{i}")), "application/json")
                            .await
                    })
                })
                .collect();
            for w in writes {
                w.await.unwrap().unwrap();
            }
        }
        let listed = folder.list("raw/_runs/").await.unwrap();
        assert_eq!(listed.len(), 100 * 16);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
