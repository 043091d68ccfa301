//! Bounded HTTP GETs. Every failure names the URL (secrets masked), the status when there
//! is one and the first bytes received, so an operator can tell a 500 from a login page.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Digest as _;

use crate::Source;

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Attempts after the first for a transient failure: 429, 502, 503, 504, a timeout, a
    /// refused or reset connection.
    pub retries: u32,
    /// The longest wait before a retry (a longer `Retry-After` is cut to this).
    pub max_retry_wait: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest body accepted, after decompression.
    pub max_body_bytes: u64,
    pub user_agent: String,
    /// At most this many requests per second to one host, across every run of the process
    /// (hundreds of feeds of one MSP never hammer it); `None`: no limit.
    pub host_rate: Option<f64>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            retries: 0,
            max_retry_wait: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024 * 1024,
            user_agent: concat!("mobiflux/", env!("CARGO_PKG_VERSION")).to_string(),
            host_rate: None,
        }
    }
}

/// A fetched response, body read whole (within the bound).
#[derive(Debug, Clone)]
pub struct Response {
    /// `GET` or `POST`.
    pub method: &'static str,
    pub url: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Response {
    /// No response at all (for naming what a failed request was for).
    pub fn empty(url: &str) -> Self {
        Response {
            method: "GET",
            url: url.to_string(),
            status: 0,
            headers: Vec::new(),
            content_type: None,
            body: Bytes::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url} answered {status}; body starts with {head:?}")]
    Status {
        url: String,
        status: u16,
        head: String,
        /// The server's `Retry-After`, in seconds (delay form or HTTP date).
        retry_after: Option<u64>,
    },
    #[error("{url} timed out after {secs:.0} s")]
    Timeout { url: String, secs: f64 },
    #[error("{url} failed: {message}")]
    Connect { url: String, message: String },
    #[error(
        "{url} ({status}): body ended early after {received} bytes ({message}); body starts with {head:?}"
    )]
    Truncated {
        url: String,
        status: u16,
        received: usize,
        message: String,
        head: String,
        partial: Box<Response>,
    },
    #[error("{url} ({status}): body is larger than the limit of {limit} bytes")]
    TooLarge {
        url: String,
        status: u16,
        limit: u64,
    },
    #[error("{url} ({status}, {content_type}) is not JSON: {message}; body starts with {head:?}")]
    NotJson {
        url: String,
        status: u16,
        content_type: String,
        message: String,
        head: String,
    },
}

impl FetchError {
    /// The bytes received before the failure, when there were any worth keeping.
    pub fn partial(&self) -> Option<&Response> {
        match self {
            FetchError::Truncated { partial, .. } => Some(partial),
            _ => None,
        }
    }
}

/// The first bytes of a body, as text for an error message.
pub fn head(body: &[u8]) -> String {
    let cut = &body[..body.len().min(120)];
    String::from_utf8_lossy(cut).into_owned()
}

/// What a client kept of a payload it fetched before: its validators, sent back as
/// `If-None-Match` and `If-Modified-Since` so that an unchanged payload is answered
/// `304 Not Modified`, without its body (RFC 9110 §13.1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    /// The validators among a response's headers (`ETag`, `Last-Modified`), if any.
    pub fn of<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let mut v = Validators::default();
        for (k, value) in headers {
            // A header masked as sensitive in the manifest is no validator to send back.
            let value = Some(value.trim().to_string())
                .filter(|x| !x.is_empty() && x != mobiflux_model::redact::MASK);
            if k.eq_ignore_ascii_case("etag") {
                v.etag = value;
            } else if k.eq_ignore_ascii_case("last-modified") {
                v.last_modified = value;
            }
        }
        (v.etag.is_some() || v.last_modified.is_some()).then_some(v)
    }
}

/// An answer to a GET, kept in memory or downloaded: its status says whether it is a 304.
pub trait Answer {
    fn status(&self) -> u16;
}

impl Answer for Response {
    fn status(&self) -> u16 {
        self.status
    }
}

impl Answer for Download {
    fn status(&self) -> u16 {
        self.status
    }
}

/// A downloaded body in a temporary file (removed when dropped).
pub struct Download {
    pub temp: crate::raw::TempFile,
    pub sha256: String,
    pub bytes: u64,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// Without secrets.
    pub url: String,
}

struct Meta {
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
}

/// Where a body goes as it arrives.
trait Sink: Send {
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<()>;
    fn len(&self) -> u64;
    /// The first bytes, for messages.
    fn head(&self) -> &[u8];
    /// What to keep of a body cut short.
    fn partial(&self) -> Bytes;
}

struct MemorySink(Vec<u8>);

impl Sink for MemorySink {
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(chunk);
        Ok(())
    }
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn head(&self) -> &[u8] {
        &self.0
    }
    fn partial(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0)
    }
}

struct FileSink {
    file: std::fs::File,
    hasher: sha2::Sha256,
    len: u64,
    head: Vec<u8>,
}

impl Sink for FileSink {
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        use sha2::Digest;
        std::io::Write::write_all(&mut self.file, chunk)?;
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        if self.head.len() < 120 {
            let take = (120 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn head(&self) -> &[u8] {
        &self.head
    }
    fn partial(&self) -> Bytes {
        Bytes::new()
    }
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    opts: HttpOptions,
}

impl Http {
    /// A client for one run's options. Runs share the process's connection pool (one
    /// client per connect timeout): a feed polled every minute reuses its MSP connection
    /// instead of opening one, and the TLS set-up is built once.
    pub fn new(opts: HttpOptions) -> Result<Self, reqwest::Error> {
        static CLIENTS: std::sync::Mutex<Vec<(Duration, reqwest::Client)>> =
            std::sync::Mutex::new(Vec::new());
        let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
        let client = match clients.iter().find(|(t, _)| *t == opts.connect_timeout) {
            Some((_, c)) => c.clone(),
            None => {
                let c = reqwest::Client::builder()
                    .connect_timeout(opts.connect_timeout)
                    .gzip(true)
                    .build()?;
                clients.push((opts.connect_timeout, c.clone()));
                c
            }
        };
        Ok(Http { client, opts })
    }

    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    /// How long to wait before attempt `attempt` (1-based) after `e`, or `None` when the
    /// failure is not transient or the retries are spent.
    fn retry_wait(&self, e: &FetchError, attempt: u32) -> Option<Duration> {
        if attempt > self.opts.retries {
            return None;
        }
        let backoff = jittered(Duration::from_secs(1u64 << (attempt - 1).min(6)));
        let wait = match e {
            FetchError::Status {
                status: 429 | 502 | 503 | 504,
                retry_after,
                ..
            } => retry_after.map(Duration::from_secs).unwrap_or(backoff),
            FetchError::Timeout { .. } | FetchError::Connect { .. } => backoff,
            _ => return None,
        };
        Some(wait.min(self.opts.max_retry_wait))
    }

    /// GETs a URL for a source, body in memory: its headers sent, its secrets masked in
    /// every error; transient failures retried as configured.
    pub async fn get(&self, src: &Source, url: &str) -> Result<Response, FetchError> {
        self.get_if(src, url, None).await
    }

    /// Like [`Http::get`], asking the server to answer `304 Not Modified` (status 304, no
    /// body) when the payload still has the given validators.
    pub async fn get_if(
        &self,
        src: &Source,
        url: &str,
        known: Option<&Validators>,
    ) -> Result<Response, FetchError> {
        self.retrying(|| self.send(src, url, Request::Get(known)))
            .await
    }

    /// Runs `call` again while it fails transiently, as configured.
    async fn retrying<T, F: std::future::Future<Output = Result<T, FetchError>>>(
        &self,
        call: impl Fn() -> F,
    ) -> Result<T, FetchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call().await {
                Err(e) => match self.retry_wait(&e, attempt) {
                    Some(wait) => {
                        tracing::warn!(error = %e, attempt, wait_secs = wait.as_secs_f64(), "transient failure; retrying");
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(e),
                },
                ok => return ok,
            }
        }
    }

    /// GETs a URL into a temporary file, hashing as it comes: for files of any size;
    /// transient failures retried as configured.
    pub async fn download(&self, src: &Source, url: &str) -> Result<Download, FetchError> {
        self.download_if(src, url, None).await
    }

    /// Like [`Http::download`], conditional as [`Http::get_if`] (a 304 downloads nothing).
    pub async fn download_if(
        &self,
        src: &Source,
        url: &str,
        known: Option<&Validators>,
    ) -> Result<Download, FetchError> {
        self.retrying(|| self.download_once(src, url, known)).await
    }

    async fn download_once(
        &self,
        src: &Source,
        url: &str,
        known: Option<&Validators>,
    ) -> Result<Download, FetchError> {
        let shown = src.redacted(url);
        let io = |e: std::io::Error| FetchError::Connect {
            url: format!("GET {shown}"),
            message: format!("cannot write the download: {e}"),
        };
        let (temp, file) = crate::raw::TempFile::create("download").map_err(io)?;
        let mut sink = FileSink {
            file,
            hasher: sha2::Sha256::new(),
            len: 0,
            head: Vec::new(),
        };
        let meta = self
            .fetch_into(src, url, Request::Get(known), &mut sink)
            .await?;
        std::io::Write::flush(&mut sink.file).map_err(io)?;
        Ok(Download {
            temp,
            sha256: hex::encode(sink.hasher.finalize()),
            bytes: sink.len,
            status: meta.status,
            headers: meta.headers,
            content_type: meta.content_type,
            url: meta.url,
        })
    }

    /// POSTs a form (an OAuth2 token request), body in memory; never retried, never landed.
    pub async fn post_form(
        &self,
        src: &Source,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Response, FetchError> {
        let post = Post {
            body: PostBody::Form(form),
            basic,
        };
        self.send(src, url, Request::Post(&post)).await
    }

    /// POSTs a JSON body (a partner's search call); transient failures retried as configured.
    pub async fn post_json(
        &self,
        src: &Source,
        url: &str,
        json: &str,
    ) -> Result<Response, FetchError> {
        let post = Post {
            body: PostBody::Json(json),
            basic: None,
        };
        self.retrying(|| self.send(src, url, Request::Post(&post)))
            .await
    }

    async fn send(
        &self,
        src: &Source,
        url: &str,
        request: Request<'_>,
    ) -> Result<Response, FetchError> {
        let mut sink = MemorySink(Vec::new());
        let meta = self.fetch_into(src, url, request, &mut sink).await?;
        Ok(Response {
            method: request.method(),
            url: meta.url,
            status: meta.status,
            headers: meta.headers,
            content_type: meta.content_type,
            body: sink.0.into(),
        })
    }

    async fn fetch_into(
        &self,
        src: &Source,
        url: &str,
        request: Request<'_>,
        sink: &mut dyn Sink,
    ) -> Result<Meta, FetchError> {
        if let Some(rate) = self.opts.host_rate.filter(|r| *r > 0.0)
            && let Ok(u) = url::Url::parse(url)
        {
            let host = format!(
                "{}:{}",
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(0)
            );
            pace(&host, Duration::from_secs_f64(1.0 / rate)).await;
        }
        let shown = src.redacted(url);
        let method = request.method();
        // Errors name the request: method and URL (secrets masked).
        let label = format!("{method} {shown}");
        let mut headers = HeaderMap::new();
        match HeaderValue::from_str(&self.opts.user_agent) {
            Ok(ua) => headers.insert(reqwest::header::USER_AGENT, ua),
            Err(_) => {
                return Err(FetchError::Connect {
                    url: label,
                    message: "the user agent is not a valid HTTP header value".into(),
                });
            }
        };
        for (k, v) in &src.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(FetchError::Connect {
                    url: label,
                    message: format!("header {k} is not a valid HTTP header"),
                });
            };
            headers.insert(name, value);
        }
        let secs = self.opts.timeout.as_secs_f64();
        let fut = async {
            let builder = match request {
                Request::Get(known) => {
                    let mut r = self.client.get(url);
                    if let Some(v) = known {
                        if let Some(etag) = &v.etag {
                            r = r.header(reqwest::header::IF_NONE_MATCH, etag);
                        }
                        if let Some(at) = &v.last_modified {
                            r = r.header(reqwest::header::IF_MODIFIED_SINCE, at);
                        }
                    }
                    r
                }
                Request::Post(p) => {
                    let (ctype, body) = match p.body {
                        PostBody::Form(form) => (
                            "application/x-www-form-urlencoded",
                            url::form_urlencoded::Serializer::new(String::new())
                                .extend_pairs(form.iter())
                                .finish(),
                        ),
                        PostBody::Json(json) => ("application/json", json.to_string()),
                    };
                    let r = self
                        .client
                        .post(url)
                        .header(reqwest::header::CONTENT_TYPE, ctype)
                        .body(body);
                    match p.basic {
                        Some((user, password)) => r.basic_auth(user, Some(password)),
                        None => r,
                    }
                }
            };
            let mut resp = builder
                .headers(headers)
                .send()
                .await
                .map_err(|e| self.classify(&label, e, src))?;
            let meta = Meta {
                url: shown.clone(),
                status: resp.status().as_u16(),
                headers: mobiflux_model::redact::headers(
                    resp.headers()
                        .iter()
                        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
                    &src.sensitive,
                ),
                content_type: resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            };
            let status = meta.status;
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        if sink.len() + chunk.len() as u64 > self.opts.max_body_bytes {
                            return Err(FetchError::TooLarge {
                                url: label.clone(),
                                status,
                                limit: self.opts.max_body_bytes,
                            });
                        }
                        sink.push(&chunk).map_err(|e| FetchError::Connect {
                            url: label.clone(),
                            message: format!("cannot keep the body: {e}"),
                        })?;
                    }
                    Ok(None) => break,
                    Err(e) if e.is_timeout() => {
                        return Err(FetchError::Timeout {
                            url: label.clone(),
                            secs,
                        });
                    }
                    Err(e) => {
                        let message = src.scrub(&error_chain(&e));
                        return Err(FetchError::Truncated {
                            url: label.clone(),
                            status,
                            received: sink.len() as usize,
                            message,
                            head: src.scrub(&head(sink.head())),
                            partial: Box::new(Response {
                                method,
                                url: shown.clone(),
                                status,
                                headers: meta.headers.clone(),
                                content_type: meta.content_type.clone(),
                                body: sink.partial(),
                            }),
                        });
                    }
                }
            }
            // 304 answers a conditional GET: the payload has not changed, and has no body.
            let not_modified = status == 304 && matches!(request, Request::Get(Some(_)));
            if !(200..300).contains(&status) && !not_modified {
                let retry_after = meta
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| retry_after_secs(v));
                return Err(FetchError::Status {
                    url: label.clone(),
                    status,
                    head: src.scrub(&head(sink.head())),
                    retry_after,
                });
            }
            Ok(meta)
        };
        match tokio::time::timeout(self.opts.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout { url: label, secs }),
        }
    }

    fn classify(&self, shown: &str, e: reqwest::Error, src: &Source) -> FetchError {
        if e.is_timeout() {
            FetchError::Timeout {
                url: shown.to_string(),
                secs: self.opts.timeout.as_secs_f64(),
            }
        } else {
            FetchError::Connect {
                url: shown.to_string(),
                message: src.scrub(&error_chain(&e)),
            }
        }
    }
}

/// What is sent: a GET (conditional when validators are given) or a POST.
#[derive(Clone, Copy)]
enum Request<'a> {
    Get(Option<&'a Validators>),
    Post(&'a Post<'a>),
}

impl Request<'_> {
    fn method(&self) -> &'static str {
        match self {
            Request::Get(_) => "GET",
            Request::Post(_) => "POST",
        }
    }
}

/// A form to POST, with optional HTTP Basic credentials.
struct Post<'a> {
    body: PostBody<'a>,
    basic: Option<(&'a str, &'a str)>,
}

enum PostBody<'a> {
    Form(&'a [(&'a str, &'a str)]),
    Json(&'a str),
}

/// The next request slot of each host, shared by every client of the process.
static SLOTS: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
> = std::sync::OnceLock::new();

/// Waits for the host's next slot (`interval` after the previous one) and takes it.
async fn pace(host: &str, interval: Duration) {
    let wait = {
        let mut slots = SLOTS
            .get_or_init(Default::default)
            .lock()
            .expect("not poisoned");
        let now = std::time::Instant::now();
        let slot = slots
            .get(host)
            .map(|last| (*last + interval).max(now))
            .unwrap_or(now);
        slots.insert(host.to_string(), slot);
        slot - now
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// Exponential backoff with "equal jitter": half the delay, plus a random share of the
/// other half, so partners failing together are not retried in lockstep. (`Retry-After`
/// is honoured as given.)
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_nanos())
            .unwrap_or(0),
    );
    let share = (h.finish() % 1_000_001) as f64 / 1_000_000.0;
    d / 2 + d.mul_f64(0.5 * share)
}

/// `Retry-After` in seconds: a delay, or an HTTP date (seconds from now, 0 if past).
fn retry_after_secs(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((at.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64)
}

/// An error with its causes, which is where reqwest keeps the useful part.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    // reqwest repeats the URL (unmasked) in its own message: keep only the causes.
    parts
        .into_iter()
        .map(|p| match p.find(" for url (") {
            Some(i) => p[..i].to_string(),
            None => p,
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// Checks that a response is JSON, as a JSON feed promises, and reads it.
pub fn expect_json(resp: &Response) -> Result<serde_json::Value, FetchError> {
    json_of(resp)
}

/// Checks that a response is JSON without building it (a feed file the transform reads
/// later): the whole syntax is checked, nothing is allocated.
pub fn check_json(resp: &Response) -> Result<(), FetchError> {
    json_of::<serde::de::IgnoredAny>(resp).map(|_| ())
}

fn json_of<T: serde::de::DeserializeOwned>(resp: &Response) -> Result<T, FetchError> {
    serde_json::from_slice(&resp.body).map_err(|e| FetchError::NotJson {
        url: format!("{} {}", resp.method, resp.url),
        status: resp.status,
        content_type: resp
            .content_type
            .clone()
            .unwrap_or_else(|| "no content type".into()),
        message: e.to_string(),
        head: head(&resp.body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_to_one_host_are_paced_across_clients() {
        let start = std::time::Instant::now();
        let both = futures_util::future::join_all((0..6).map(|i| async move {
            let host = if i % 2 == 0 {
                "a.example:443"
            } else {
                "b.example:443"
            };
            pace(host, Duration::from_millis(100)).await;
            (host, start.elapsed())
        }))
        .await;
        let mut a: Vec<Duration> = both
            .iter()
            .filter(|(h, _)| *h == "a.example:443")
            .map(|x| x.1)
            .collect();
        a.sort();
        // Three requests to one host: at 0, 100 and 200 ms; the other host is not slowed.
        assert!(a[2] >= Duration::from_millis(195), "{a:?}");
        assert!(
            a[1] >= Duration::from_millis(95) && a[0] < Duration::from_millis(50),
            "{a:?}"
        );
    }

    #[test]
    fn backoff_is_jittered_between_half_and_the_whole_delay() {
        let d = Duration::from_secs(4);
        let waits: Vec<Duration> = (0..50).map(|_| jittered(d)).collect();
        assert!(waits.iter().all(|w| *w >= d / 2 && *w <= d), "{waits:?}");
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 10, "spread: {distinct:?}");
    }
}
