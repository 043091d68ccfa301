//! A small read-only HTTP/1.1 endpoint: one GET (or HEAD) per connection, answered whole.
//! It serves the daemon's `/metrics` and `/health`, and `mobiflux serve`'s dashboard:
//! enough for a Prometheus scraper, a browser or curl on a trusted network, nothing more.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What was asked: the path, and the query string as sent (not decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// The request line of a request head: `GET /path?query HTTP/1.1`.
pub fn parse(head: &str) -> Option<Request> {
    let mut words = head.lines().next()?.split_whitespace();
    let method = words.next()?.to_string();
    let target = words.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
    })
}

/// Serves `handler` on `addr` (port 0 picks a free one) until the process ends; returns the
/// bound address.
pub async fn serve<H, F>(addr: &str, handler: H) -> std::io::Result<SocketAddr>
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                // The head only: these endpoints take no body.
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
                let request = parse(&String::from_utf8_lossy(&buf));
                let (head_only, response) = match request {
                    None => (false, Response::text(400, "bad request\n")),
                    Some(r) if r.method != "GET" && r.method != "HEAD" => {
                        (false, Response::text(405, "GET only\n"))
                    }
                    Some(r) => (r.method == "HEAD", handler(r).await),
                };
                let head = format!(
                    "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                    response.status,
                    reason(response.status),
                    response.content_type,
                    response.body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                if !head_only {
                    let _ = stream.write_all(&response.body).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_split_path_and_query() {
        assert_eq!(
            parse(
                "GET /api/stats/fleet-daily?from=2026-11-01&partner=a%20b HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            Some(Request {
                method: "GET".into(),
                path: "/api/stats/fleet-daily".into(),
                query: "from=2026-11-01&partner=a%20b".into(),
            })
        );
        assert_eq!(parse(""), None);
    }
}
