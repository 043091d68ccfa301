//! A simulated MSP: serves a fixture folder over HTTP on a loopback port, so the demo and
//! the tests exercise the real HTTP path. Discovery documents (`gbfs.json`) are served
//! with their feed URLs pointed at this server (`{name}.json`, or `{name}-1.json` for the
//! specification examples' variants), and `{{base}}` in any file becomes the server's URL.
//! Faults can be set per path: an error status, a delay, an HTML page, a truncated body.
//! Like a static file server or a CDN, it gives each file an `ETag` (a hash of its body)
//! and answers `304 Not Modified` to a request whose `If-None-Match` names it (or whose
//! `If-Modified-Since` repeats the `Last-Modified` of a fixture's `.headers`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status and a short text body.
    Status(u16),
    /// Wait this long before answering.
    Delay(Duration),
    /// Answer 200 with an HTML page (a login or maintenance page).
    Html,
    /// Announce the whole length, send half the body, close.
    Truncate,
    /// Not a fault: serve the file gzip-compressed (`Content-Encoding: gzip`), as CDNs do.
    Gzip,
    /// Answer `status` (with `Retry-After: retry_after` when given) to the next `times`
    /// requests, then serve normally: a partner that recovers.
    Flaky {
        status: u16,
        times: u32,
        retry_after: Option<u64>,
    },
}

/// An OAuth2 client-credentials partner: `POST /oauth/token` issues `tok-1`, `tok-2`, …
/// to the one client it knows (HTTP Basic or form credentials); paths under `protected`
/// need the newest token as a bearer, and `tok-1` can be made to fail (already expired).
#[derive(Debug, Clone)]
struct OAuth2 {
    client_id: String,
    client_secret: String,
    protected: String,
    first_expired: bool,
    issued: u32,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<HashMap<String, Fault>>,
    requests: Mutex<Vec<Request>>,
    oauth2: Mutex<Option<OAuth2>>,
    /// Set: no `ETag`, and no 304 (a server without validators).
    no_validators: std::sync::atomic::AtomicBool,
}

pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// Serves `root` on `bind` (`127.0.0.1:0` picks a free port).
    pub async fn start(root: impl Into<PathBuf>, bind: &str) -> std::io::Result<Simulator> {
        let root: PathBuf = root.into();
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let shared: Arc<Shared> = Arc::default();
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            // Connections kept alive belong to the server: stopping it (dropping the
            // simulator) closes them too, as a dead MSP's would be.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (root, sh) = (root.clone(), sh.clone());
                connections.spawn(async move {
                    let _ = serve(stream, &root, addr, &sh).await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Simulator { addr, shared, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_fault(&self, path: &str, fault: Fault) {
        self.shared
            .faults
            .lock()
            .expect("not poisoned")
            .insert(path.to_string(), fault);
    }

    /// Whether files are served with an `ETag`, and conditional requests answered 304 (the
    /// default), or as by a server that knows no validators.
    pub fn set_validators(&self, on: bool) {
        self.shared
            .no_validators
            .store(!on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Acts as an OAuth2 client-credentials partner (see [`OAuth2`]) for paths under
    /// `protected`; with `first_expired`, the first token issued is refused with 401.
    pub fn require_oauth2(
        &self,
        client_id: &str,
        client_secret: &str,
        protected: &str,
        first_expired: bool,
    ) {
        *self.shared.oauth2.lock().expect("not poisoned") = Some(OAuth2 {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            protected: protected.into(),
            first_expired,
            issued: 0,
        });
    }

    /// (path, User-Agent) of the requests so far, in order.
    pub fn requests_with_agents(&self) -> Vec<(String, String)> {
        self.requests_with_header("user-agent")
    }

    /// (path, value of header `name` or "") of the requests so far, in order.
    pub fn requests_with_header(&self, name: &str) -> Vec<(String, String)> {
        self.shared
            .requests
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(p, headers)| {
                let v = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone());
                (p.clone(), v.unwrap_or_default())
            })
            .collect()
    }
}

/// The simulated OAuth2 partner's answer to a request, if it is its business.
fn oauth2_answer(
    shared: &Shared,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> Option<(u16, Vec<u8>)> {
    let mut guard = shared.oauth2.lock().expect("not poisoned");
    let o = guard.as_mut()?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if path == "/oauth/token" {
        use base64::Engine as _;
        let basic = header("authorization")
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let from_form = form
            .get("client_id")
            .zip(form.get("client_secret"))
            .map(|(i, s)| format!("{i}:{s}"));
        let expected = format!("{}:{}", o.client_id, o.client_secret);
        let granted = form.get("grant_type").map(String::as_str) == Some("client_credentials");
        if !granted || (basic.as_ref() != Some(&expected) && from_form.as_ref() != Some(&expected))
        {
            return Some((401, br#"{"error":"invalid_client"}"#.to_vec()));
        }
        o.issued += 1;
        let token = format!(
            "{{\"access_token\":\"tok-{}\",\"token_type\":\"Bearer\",\"expires_in\":3600}}",
            o.issued
        );
        return Some((200, token.into_bytes()));
    }
    if !path.starts_with(&o.protected) {
        return None;
    }
    let newest = format!("Bearer tok-{}", o.issued);
    let ok =
        header("authorization") == Some(newest.as_str()) && !(o.first_expired && o.issued == 1);
    (!ok).then(|| (401, br#"{"error":"invalid_token"}"#.to_vec()))
}

/// Serves one connection: requests one after the other on it (HTTP/1.1 keep-alive, as MSP
/// servers and CDNs do) until the client closes it or asks to (`Connection: close`), or a
/// fault ends it (a truncated body).
async fn serve(
    mut stream: TcpStream,
    root: &Path,
    addr: SocketAddr,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 || buf.len() > 64 * 1024 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        // A form body (token requests): read as far as Content-Length says.
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
            .min(64 * 1024);
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let rest = buf.split_off(head_end + length);
        let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
        buf = rest;
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let client_closes = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let (header, body, truncate) =
            answer(&target, headers, body, root, addr, shared, client_closes).await?;
        // One write per answer: on a kept-alive connection a second small write would wait
        // for the client's delayed ACK (Nagle).
        let sent = if truncate { body.len() / 2 } else { body.len() };
        let mut out = Vec::with_capacity(header.len() + sent);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&body[..sent]);
        stream.write_all(&out).await?;
        if truncate || client_closes {
            return stream.shutdown().await;
        }
    }
}

/// The answer to one request: the response head, the body, and whether the body is to be
/// cut short (the connection is then closed).
async fn answer(
    target: &str,
    headers: Vec<(String, String)>,
    body: String,
    root: &Path,
    addr: SocketAddr,
    shared: &Shared,
    client_closes: bool,
) -> std::io::Result<(String, Vec<u8>, bool)> {
    let (faults, requests) = (&shared.faults, &shared.requests);
    let target = target.to_string();
    let path = target.split('?').next().unwrap_or("/").to_string();
    let oauth2 = oauth2_answer(shared, &path, &headers, &body);
    let mut seen = headers.clone();
    if !body.is_empty() {
        // The request body, kept as a pseudo-header for the tests to read.
        seen.push(("(body)".into(), body.clone()));
    }
    requests
        .lock()
        .expect("not poisoned")
        .push((path.clone(), seen));
    let base = format!("http://{addr}");
    let fault = {
        let mut faults = faults.lock().expect("not poisoned");
        match faults.get_mut(&path) {
            Some(Fault::Flaky { times, .. }) if *times == 0 => None,
            Some(Fault::Flaky {
                status,
                times,
                retry_after,
            }) => {
                *times -= 1;
                Some(Fault::Flaky {
                    status: *status,
                    times: *times,
                    retry_after: *retry_after,
                })
            }
            other => other.cloned(),
        }
    };
    let retry_after = match fault {
        Some(Fault::Flaky {
            retry_after: Some(r),
            ..
        }) => format!("Retry-After: {r}\r\n"),
        _ => String::new(),
    };
    if let Some(Fault::Delay(d)) = fault {
        tokio::time::sleep(d).await;
    }
    let mut extra = String::new();
    let (status, ctype, body) = match (oauth2, fault.clone()) {
        (Some((status, body)), _) => (status, "application/json", body),
        (None, fault) => match fault {
        // Like many servers, the error page repeats the request target (query included).
        Some(Fault::Status(s) | Fault::Flaky { status: s, .. }) => (s, "text/plain", format!("simulated failure {s} for {target}").into_bytes()),
        Some(Fault::Html) => (
            200,
            "text/html; charset=utf-8",
            b"<!DOCTYPE html><html><head><title>Maintenance</title></head><body>Back soon</body></html>".to_vec(),
        ),
        _ => match target
            .split_once('?')
            .and_then(|(_, q)| {
                let at = format!("{path}@{q}");
                read_fixture(root, &at, &base).map(|b| (b, at))
            })
            .or_else(|| read_fixture(root, &path, &base).map(|b| (b, path.clone())))
        {
            Some((body, served)) => {
                extra = fixture_headers(root, &served, &base);
                if shared.no_validators.load(std::sync::atomic::Ordering::Relaxed) {
                    (200, content_type(&path), body)
                } else {
                    let etag = format!("\"{}\"", &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))[..16]);
                    let unchanged = not_modified(&headers, &etag, &extra);
                    extra.push_str(&format!("ETag: {etag}\r\n"));
                    if unchanged {
                        (304, content_type(&path), Vec::new())
                    } else {
                        (200, content_type(&path), body)
                    }
                }
            }
            None => (404, "text/plain", format!("no fixture at {path}").into_bytes()),
        },
        },
    };
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let (body, encoding) = if fault == Some(Fault::Gzip) && status == 200 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &body)?;
        (gz.finish()?, "Content-Encoding: gzip\r\n")
    } else {
        (body, "")
    };
    let truncate = fault == Some(Fault::Truncate);
    let connection = if truncate || client_closes {
        "close"
    } else {
        "keep-alive"
    };
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n{encoding}{retry_after}{extra}Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    Ok((header, body, truncate))
}

/// Whether a conditional request names the current version of a file: its `If-None-Match`
/// lists `etag` (or `*`), or, without one, its `If-Modified-Since` repeats the file's
/// `Last-Modified` (from the `.headers` lines `extra`).
fn not_modified(request: &[(String, String)], etag: &str, extra: &str) -> bool {
    let header = |name: &str| {
        request
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if let Some(tags) = header("if-none-match") {
        return tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*");
    }
    let last_modified = extra.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("last-modified")
            .then(|| v.trim())
    });
    matches!((header("if-modified-since"), last_modified), (Some(a), Some(b)) if a == b)
}

/// A request seen: its path and headers.
type Request = (String, Vec<(String, String)>);

fn content_type(path: &str) -> &'static str {
    if path.ends_with(".csv") {
        "text/csv"
    } else if path.ends_with(".html") {
        "text/html; charset=utf-8"
    } else {
        "application/json"
    }
}

/// Response headers of a fixture: the lines of `{stem}.headers` beside it (`{{base}}`
/// replaced), e.g. a `Link` header for paging.
fn fixture_headers(root: &Path, path: &str, base: &str) -> String {
    let rel = path.trim_start_matches('/');
    let mut candidates = vec![root.join(rel).with_extension("headers")];
    if let Some((stem, query)) = rel.split_once('@') {
        candidates.push(root.join(format!(
            "{}@{query}.headers",
            stem.trim_end_matches(".json")
        )));
    }
    candidates
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .map(|t| {
            t.replace("{{base}}", base)
                .lines()
                .filter(|l| l.contains(':'))
                .map(|l| format!("{l}\r\n"))
                .collect()
        })
        .unwrap_or_default()
}

fn read_fixture(root: &Path, path: &str, base: &str) -> Option<Vec<u8>> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|p| p == ".." || p.is_empty()) {
        return None;
    }
    let mut file = root.join(rel);
    // REST endpoints without an extension (TOMP's `/operator/available-assets`) are served
    // from the fixture named like them (`available_assets.json`); a request with a query
    // (`/scooters?cursor=b2`) first looks for `scooters@cursor=b2.json`.
    if !file.is_file()
        && let Some(name) = file.file_name().and_then(|n| n.to_str())
        && (!name.contains('.') || name.contains('@'))
    {
        let name = match name.split_once('@') {
            Some((stem, query)) => format!("{}@{query}", stem.trim_end_matches(".json")),
            None => name.replace('-', "_"),
        };
        file = file.with_file_name(format!("{name}.json"));
    }
    let bytes = std::fs::read(&file).ok()?;
    // Files that are not UTF-8 (Latin-1 exports) are served exactly as they are.
    let Ok(text) = String::from_utf8(bytes.clone()) else {
        return Some(bytes);
    };
    let text = text.replace("{{base}}", base);
    if file.file_name().is_some_and(|n| n == "gbfs.json") {
        let dir = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let dir_path = file.parent()?.to_path_buf();
        if let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(&text) {
            point_feeds_here(&mut doc, &dir_path, &format!("{base}/{dir}"));
            return serde_json::to_vec_pretty(&doc).ok();
        }
    }
    Some(text.into_bytes())
}

/// Points each listed feed at this server's copy of it.
fn point_feeds_here(doc: &mut serde_json::Value, dir: &Path, base: &str) {
    let Some(data) = doc.get_mut("data") else {
        return;
    };
    let mut lists: Vec<&mut serde_json::Value> = Vec::new();
    if data.get("feeds").is_some() {
        lists.extend(data.get_mut("feeds"));
    } else if let Some(langs) = data.as_object_mut() {
        lists.extend(langs.values_mut().filter_map(|l| l.get_mut("feeds")));
    }
    for list in lists {
        for feed in list.as_array_mut().into_iter().flatten() {
            let Some(name) = feed
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
            else {
                continue;
            };
            let file = [format!("{name}.json"), format!("{name}-1.json")]
                .into_iter()
                .find(|f| dir.join(f).is_file());
            if let Some(f) = file {
                feed["url"] = serde_json::Value::String(format!("{base}/{f}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one response (head and `Content-Length` body) from the stream.
    async fn response(stream: &mut TcpStream) -> (String, String) {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(
                stream.read(&mut byte).await.unwrap(),
                1,
                "connection closed"
            );
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    #[tokio::test]
    async fn answers_several_requests_on_one_connection_until_asked_to_close() {
        let dir = std::env::temp_dir().join(format!("mobiflux-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.json"), r#"{"a":1}"#).unwrap();
        std::fs::write(dir.join("b.json"), r#"{"b":2}"#).unwrap();
        let sim = Simulator::start(&dir, "127.0.0.1:0").await.unwrap();
        let mut stream = TcpStream::connect(sim.addr).await.unwrap();
        // Two requests in one write (pipelined), then a third asking to close.
        stream
            .write_all(
                b"GET /a.json HTTP/1.1\r\nHost: x\r\n\r\nGET /b.json HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await
            .unwrap();
        let (head, body) = response(&mut stream).await;
        assert!(head.contains("Connection: keep-alive"), "{head}");
        assert_eq!(body, r#"{"a":1}"#);
        assert_eq!(response(&mut stream).await.1, r#"{"b":2}"#);
        stream
            .write_all(b"GET /a.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = response(&mut stream).await;
        assert!(head.contains("Connection: close"), "{head}");
        assert_eq!(body, r#"{"a":1}"#);
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed after the answer");
        assert_eq!(sim.requests(), ["/a.json", "/b.json", "/a.json"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
