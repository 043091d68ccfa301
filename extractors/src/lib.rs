//! mobiflux extractors: fetch MSP feeds and land every payload unchanged in the raw zone,
//! with one manifest per run. Knows nothing of the unified schemas.
//!
//! - [`raw`]: the raw zone (local folder, S3, in-memory) behind one trait, its key layout
//!   and the run manifest.
//! - [`http`]: bounded, timed HTTP GETs whose errors name the URL (without secrets),
//!   the status and the first bytes received.
//! - [`gbfs`]: GBFS auto-discovery (1.x to 3.0) and fetching of every listed file.

pub mod covoiturage;
pub mod files;
pub mod gbfs;
pub mod http;
pub mod pages;
pub mod raw;
pub mod rest;
pub mod tomp;

pub use http::{FetchError, Http, HttpOptions};
pub use raw::{Manifest, ManifestObject, RawError, RawStore};

/// What an extractor needs to know about a feed; filled by the binary from a definition.
#[derive(Debug, Clone)]
pub struct Source {
    pub pipeline: String,
    pub partner: String,
    pub format: String,
    /// The URL with `${ENV}` references already resolved (it may hold secrets: never log it raw).
    pub url: String,
    /// Preferred language among a GBFS 1.x/2.x feed's languages.
    pub language: Option<String>,
    /// Which system of a GBFS 3.x manifest to follow, when it lists several.
    pub system_id: Option<String>,
    /// Extra request headers (name, value); values may be secrets.
    pub headers: Vec<(String, String)>,
    /// Header and query-parameter names to mask beyond the built-in list.
    pub sensitive: Vec<String>,
    /// Resolved secret values, masked wherever they would appear in text.
    pub secrets: Vec<String>,
}

impl Source {
    /// A URL as it may appear in logs, errors and manifests.
    pub fn redacted(&self, url: &str) -> String {
        self.scrub(&mobiflux_model::redact::url(url, &self.sensitive))
    }

    /// The manifest's record of a request that gave no usable payload, secrets masked.
    pub fn failure(&self, resource: &str, url: &str, e: &ExtractError) -> raw::ManifestFailure {
        raw::ManifestFailure {
            resource: resource.to_string(),
            url: self.redacted(url),
            error: self.scrub(&e.to_string()),
        }
    }

    /// Any other text (messages, bodies quoted in errors) with the secret values masked.
    pub fn scrub(&self, text: &str) -> String {
        mobiflux_model::redact::values(text, &self.secrets)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{url}: {message}")]
    Discovery { url: String, message: String },
    #[error("raw zone: {0}")]
    Raw(#[from] RawError),
    #[error("{count} of {total} files failed: {first}")]
    Files {
        count: usize,
        total: usize,
        first: Box<ExtractError>,
    },
}

impl ExtractError {
    /// The outcome of `total` fetches that gave these errors: none, the one, or how many
    /// failed with the first.
    pub fn of_many(mut errors: Vec<ExtractError>, total: usize) -> Result<(), ExtractError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            count => Err(ExtractError::Files {
                count,
                total,
                first: Box::new(errors.remove(0)),
            }),
        }
    }
}

/// At most this many files of one feed are fetched at once.
const CONCURRENT_FILES: usize = 4;

/// Lands payloads of one run in the raw zone and keeps its manifest.
pub struct Landing<'a> {
    pub store: &'a dyn RawStore,
    pub src: &'a Source,
    pub manifest: Manifest,
}

impl<'a> Landing<'a> {
    pub fn new(store: &'a dyn RawStore, src: &'a Source, run: &mobiflux_model::RunId) -> Self {
        Landing {
            store,
            src,
            manifest: Manifest {
                run_id: run.to_string(),
                pipeline: src.pipeline.clone(),
                partner: src.partner.clone(),
                format: src.format.clone(),
                source_url: src.redacted(&src.url),
                started_at: chrono::Utc::now(),
                finished_at: None,
                status: "running".into(),
                error: None,
                objects: Vec::new(),
                failures: Vec::new(),
                pseudonymized: Vec::new(),
            },
        }
    }

    /// Writes a response body unchanged and describes it; returns the manifest entry. A body
    /// the store landed already that day for the same pipeline and resource is not written
    /// again: the entry names that object ([`raw::Reusing`]).
    pub async fn land(
        store: &dyn RawStore,
        src: &Source,
        resource: &str,
        resp: &http::Response,
        ext: &str,
        complete: bool,
    ) -> Result<ManifestObject, RawError> {
        let fetched_at = chrono::Utc::now();
        let sha256 = raw::sha256_hex(&resp.body);
        let mut key = raw::object_key(&src.pipeline, resource, fetched_at, &sha256, ext);
        match store.landed_before(&key, &sha256) {
            Some(earlier) => key = earlier,
            None => {
                let content_type = resp
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into());
                store.put(&key, resp.body.clone(), &content_type).await?;
                store.remember(&key, &sha256);
            }
        }
        Ok(ManifestObject {
            resource: resource.to_string(),
            url: resp.url.clone(),
            key,
            status: resp.status,
            headers: resp.headers.iter().cloned().collect(),
            content_type: resp.content_type.clone(),
            bytes: resp.body.len() as u64,
            sha256,
            fetched_at,
            complete,
            landed: raw::Landed(Some(resp.body.clone())),
        })
    }

    /// Fetches a URL and lands what came back, even a failing answer's body, so the
    /// operator can see what the MSP sent. Only a complete 2xx answer is returned.
    pub async fn fetch(
        &mut self,
        http: &Http,
        resource: &str,
        url: &str,
        ext: &str,
    ) -> Result<http::Response, ExtractError> {
        self.fetch_as(http, &|_| resource.to_string(), url, ext)
            .await
    }

    /// Writes the manifest whatever the outcome of the run's fetching, then returns that
    /// outcome with the written manifest.
    pub async fn close(self, result: Result<(), ExtractError>) -> Result<Manifest, ExtractError> {
        let manifest = self.finish(result.as_ref().err()).await?;
        result.map(|()| manifest)
    }

    /// Fetches JSON files, a few at once, landing each one; a file that fails does not stop
    /// the others from being landed, but fails the run, unless `missing` says its error
    /// only means the partner does not offer it (recorded in the manifest, logged).
    pub async fn fetch_json_files(
        &mut self,
        http: &Http,
        files: &[gbfs::Feed],
        missing: impl Fn(&ExtractError) -> bool,
    ) -> Result<(), ExtractError> {
        use futures_util::StreamExt;
        let (store, src) = (self.store, self.src);
        // The futures are made first: a stream holding a closure over borrowed feeds would not
        // be provably `Send`, and runs are spawned on the scheduler's threads.
        let fetches: Vec<_> = files
            .iter()
            .map(|f| fetch_json_file(http, store, src, f))
            .collect();
        let results: Vec<_> = futures_util::stream::iter(fetches)
            .buffered(CONCURRENT_FILES)
            .collect()
            .await;
        let total = results.len();
        let mut errors = Vec::new();
        for (f, r, obj, fail) in results {
            self.manifest.objects.extend(obj);
            self.manifest.failures.extend(fail);
            match r {
                Err(e) if missing(&e) => {
                    tracing::warn!(resource = %f.name, error = %src.scrub(&e.to_string()), "not offered by the partner; skipped")
                }
                Err(e) => errors.push(e),
                Ok(()) => {}
            }
        }
        ExtractError::of_many(errors, total)
    }

    /// Like [`Landing::fetch`], with the resource named from the response (a discovery URL
    /// may answer a GBFS 3.x manifest or a gbfs.json).
    pub async fn fetch_as(
        &mut self,
        http: &Http,
        resource_of: &ResourceOf<'_>,
        url: &str,
        ext: &str,
    ) -> Result<http::Response, ExtractError> {
        let (result, object, failure) =
            fetch_and_land_as(http, self.store, self.src, resource_of, url, ext).await;
        self.manifest.objects.extend(object);
        self.manifest.failures.extend(failure);
        result
    }

    /// Closes the manifest (complete or failed) and writes it.
    pub async fn finish(mut self, error: Option<&ExtractError>) -> Result<Manifest, RawError> {
        self.manifest.finished_at = Some(chrono::Utc::now());
        self.manifest.status = if error.is_some() {
            "failed"
        } else {
            "complete"
        }
        .into();
        self.manifest.error = error.map(|e| self.src.scrub(&e.to_string()));
        self.manifest.write(self.store).await?;
        self.store
            .remember_run(&self.src.pipeline, &self.manifest.objects);
        Ok(self.manifest)
    }
}

/// Names the resource of a response.
pub type ResourceOf<'a> = dyn Fn(&http::Response) -> String + Send + Sync + 'a;

/// The outcome of one fetch, the landed object if any bytes came, the failure if any.
pub type Fetched = (
    Result<http::Response, ExtractError>,
    Option<ManifestObject>,
    Option<raw::ManifestFailure>,
);

/// One JSON file of [`Landing::fetch_json_files`]: fetched, landed, checked to be JSON.
async fn fetch_json_file<'a>(
    http: &Http,
    store: &dyn RawStore,
    src: &Source,
    f: &'a gbfs::Feed,
) -> (
    &'a gbfs::Feed,
    Result<(), ExtractError>,
    Option<raw::ManifestObject>,
    Option<raw::ManifestFailure>,
) {
    let (r, obj, mut fail) = fetch_landing(
        http,
        store,
        src,
        &|_| f.name.clone(),
        &f.url,
        "json",
        Body::NotNeeded,
    )
    .await;
    // A body that is not JSON was landed whole; the failure says why it is unusable. (A
    // 304 confirms an object that was JSON when it came.)
    let r = r.and_then(|resp| match resp.status {
        raw::NOT_MODIFIED => Ok(()),
        _ => http::check_json(&resp).map_err(ExtractError::from),
    });
    if let (Err(e), None) = (&r, &fail) {
        fail = Some(src.failure(&f.name, &f.url, e));
    }
    (f, r, obj, fail)
}

pub async fn fetch_and_land(
    http: &Http,
    store: &dyn RawStore,
    src: &Source,
    resource: &str,
    url: &str,
    ext: &str,
) -> Fetched {
    fetch_and_land_as(http, store, src, &|_| resource.to_string(), url, ext).await
}

/// One fetch; the resource is named from the response (or from an empty one on failure).
/// The fetch is conditional when the pipeline's last run landed the URL's payload today
/// with validators: a `304 Not Modified` is recorded under the key of that object (status
/// 304), and the response returned carries its body, read back from the raw zone.
pub async fn fetch_and_land_as(
    http: &Http,
    store: &dyn RawStore,
    src: &Source,
    resource_of: &ResourceOf<'_>,
    url: &str,
    ext: &str,
) -> Fetched {
    fetch_landing(http, store, src, resource_of, url, ext, Body::Needed).await
}

/// Whether the caller reads the body of a payload the MSP confirmed unchanged (304).
#[derive(Clone, Copy, PartialEq)]
enum Body {
    Needed,
    /// The response of a 304 is returned without a body (the manifest entry's object has it).
    NotNeeded,
}

async fn fetch_landing(
    http: &Http,
    store: &dyn RawStore,
    src: &Source,
    resource_of: &ResourceOf<'_>,
    url: &str,
    ext: &str,
    body: Body,
) -> Fetched {
    let answer = conditionally(
        store,
        src,
        url,
        |known| async move { http.get_if(src, url, known.as_ref()).await },
        |resp, k| confirmed(store, resp, k, body),
    )
    .await;
    let answer = match answer {
        Ok(Conditional::Confirmed(fetched)) => return fetched,
        Ok(Conditional::Whole(resp)) => Ok(resp),
        Err(e) => Err(e),
    };
    match answer {
        Ok(resp) => match Landing::land(store, src, &resource_of(&resp), &resp, ext, true).await {
            Ok(obj) => (Ok(resp), Some(obj), None),
            Err(e) => {
                let e = ExtractError::Raw(e);
                let f = src.failure(&resource_of(&resp), url, &e);
                (Err(e), None, Some(f))
            }
        },
        Err(e) => {
            // Keep whatever was received: a cut-short body is evidence too.
            let (object, resource) = match e.partial() {
                Some(partial) => {
                    let r = resource_of(partial);
                    let landed = Landing::land(store, src, &r, partial, ext, false)
                        .await
                        .ok();
                    (landed, r)
                }
                None => (None, resource_of(&http::Response::empty(url))),
            };
            let e = ExtractError::Fetch(e);
            let f = src.failure(&resource, url, &e);
            (Err(e), object, Some(f))
        }
    }
}

/// What a conditional fetch gave: the whole answer, or what a 304 confirmed.
pub(crate) enum Conditional<T, R> {
    Whole(T),
    Confirmed(R),
}

/// Fetches `url` conditionally on what the pipeline's last run landed from it today
/// ([`RawStore::validated`]): `fetch` asks with those validators (none when there are
/// none); a 304 goes to `confirm` with the object it confirms, which returns what the caller
/// records, or `None` when that object cannot be named (the day turned since it was
/// landed, or the raw zone no longer has it): the URL is then fetched again whole.
/// (Closures returning futures rather than async closures: the latter's futures cannot yet
/// be proven `Send`, and runs are spawned on the scheduler's threads.)
pub(crate) async fn conditionally<T, R, F, C>(
    store: &dyn RawStore,
    src: &Source,
    url: &str,
    fetch: impl Fn(Option<http::Validators>) -> F,
    confirm: impl Fn(T, raw::Validated) -> C,
) -> Result<Conditional<T, R>, http::FetchError>
where
    T: http::Answer,
    F: std::future::Future<Output = Result<T, http::FetchError>>,
    C: std::future::Future<Output = Option<R>>,
{
    let mut known = store.validated(&src.pipeline, &src.redacted(url), &raw::today());
    loop {
        let answer = fetch(known.as_ref().map(|k| k.validators.clone())).await?;
        match known.take() {
            Some(k) if answer.status() == raw::NOT_MODIFIED => {
                if let Some(r) = confirm(answer, k).await {
                    return Ok(Conditional::Confirmed(r));
                }
            }
            _ => return Ok(Conditional::Whole(answer)),
        }
    }
}

/// The outcome of a 304: the object landed earlier from the URL, fetched again as it is,
/// with its body when needed; `None` when that object cannot be named (the day turned since
/// it was landed, or the raw zone no longer has it), so the URL is to be fetched whole.
async fn confirmed(
    store: &dyn RawStore,
    mut resp: http::Response,
    k: raw::Validated,
    body: Body,
) -> Option<Fetched> {
    resp.content_type = k.content_type.clone();
    let mut object = k.confirmed(&resp.url, &resp.headers, &raw::today())?;
    if body == Body::Needed {
        match store.get(&object.key).await {
            Ok(bytes) => {
                object.landed = raw::Landed(Some(bytes.clone()));
                resp.body = bytes;
            }
            Err(e) => {
                tracing::warn!(key = %object.key, error = %e, "the payload the MSP confirmed unchanged is not in the raw zone; fetching it again");
                return None;
            }
        }
    }
    Some((Ok(resp), Some(object), None))
}
