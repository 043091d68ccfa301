//! Partner REST APIs with their own JSON (`format = "json"`): authentication, then the data
//! call, page after page. Every page is landed unchanged as resource `records`; the
//! declarative mapping reads them from the raw zone.
//!
//! - Authentication: an API key header, a static bearer token, HTTP Basic, or OAuth2 client
//!   credentials (RFC 6749 §4.4) whose token is cached until shortly before it expires and
//!   fetched again, once, when the API answers 401. Credentials and tokens are secrets of
//!   the source: masked in every message, never landed (the token call is not a payload).
//! - Pagination: a next-page URL in the body or in the `Link` header (RFC 8288), a page
//!   number or an offset parameter (until a page holds no records), or a cursor from the
//!   body; never more than `max_pages` pages.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mobiflux_model::RunId;
use serde_json::Value;

use crate::http::expect_json;
use crate::{ExtractError, FetchError, Http, Landing, Manifest, RawStore, Source};

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    /// A header carrying a key (`X-Api-Key: …`).
    ApiKey {
        header: String,
        key: String,
    },
    Bearer(String),
    Basic {
        user: String,
        password: String,
    },
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        /// Send the client credentials in the form body instead of HTTP Basic.
        in_body: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    None,
    /// The next page's URL at this path of the body (`links.next`); absent or null ends.
    NextInBody(String),
    /// `Link: <…>; rel="next"`.
    LinkHeader,
    /// A page-number query parameter, from `from`, until a page holds no records.
    Page {
        param: String,
        from: u64,
    },
    /// An offset query parameter stepping by `size` (sent as `limit`), until a page holds
    /// no records.
    Offset {
        param: String,
        limit: String,
        size: u64,
    },
    /// The next cursor at this path of the body, sent as `param`; absent or null ends.
    Cursor {
        path: String,
        param: String,
    },
}

/// How a partner's API is called.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub auth: Auth,
    pub paging: Paging,
    pub max_pages: usize,
    /// Calls made before the data call, in order.
    pub calls: Vec<Call>,
    /// A JSON body template: the data call is then a POST.
    pub body: Option<String>,
}

/// A call before the data call: its URL and optional JSON body are templates (`{name}`
/// takes a value an earlier call extracted), its response is landed as `call-{name}`, and
/// `extract` names values for the calls after it (`fleet_ids = "data.*.id"`). The data
/// call's URL may name one extracted list: it is then made once per value.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub url: String,
    pub body: Option<String>,
    /// Headers of this call only, added to the definition's (templates too).
    pub headers: Vec<(String, String)>,
    pub extract: Vec<(String, String)>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            auth: Auth::None,
            paging: Paging::None,
            max_pages: 100,
            calls: Vec::new(),
            body: None,
        }
    }
}

/// Counts the records of a page (the definition's record path), to end page/offset paging.
pub type CountRecords<'a> = &'a (dyn Fn(&Value) -> usize + Sync);

/// OAuth2 tokens of this process, by (token URL, client id, client secret): (token, good
/// until). The secret is part of the key: a token is only ever reused with the credentials
/// that obtained it.
type Tokens = Mutex<HashMap<(String, String, String), (String, Instant)>>;

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(Mutex::default)
}

/// A value at a dotted path of a JSON document (`links.next`, `items.0.id`).
fn at_path<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(doc, |v, step| match v {
        Value::Object(m) => m.get(step),
        Value::Array(a) => a.get(step.parse::<usize>().ok()?),
        _ => None,
    })
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &[(String, String)]) -> Option<String> {
    let link = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("link"))?
        .1
        .as_str();
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn with_query(url: &str, pairs: &[(&str, String)]) -> String {
    let mut u = match url::Url::parse(url) {
        Ok(u) => u,
        Err(_) => return url.to_string(),
    };
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| !pairs.iter().any(|(p, _)| p == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    u.to_string()
}

/// The source with its credentials applied: headers added, secret values registered so
/// that every message masks them.
fn authorized(src: &Source, auth: &Auth, token: Option<&str>) -> Source {
    let mut s = src.clone();
    let mut set = |name: &str, value: String, secret: &str| {
        s.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        s.headers.push((name.to_string(), value));
        s.secrets.push(secret.to_string());
    };
    match (auth, token) {
        (Auth::ApiKey { header, key }, _) => set(header, key.clone(), key),
        (Auth::Bearer(t), _) => set("Authorization", format!("Bearer {t}"), t),
        (Auth::OAuth2 { .. }, Some(t)) => set("Authorization", format!("Bearer {t}"), t),
        (Auth::Basic { user, password }, _) => {
            use base64::Engine as _;
            let value =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            set("Authorization", format!("Basic {value}"), password);
            s.secrets.push(value);
        }
        _ => {}
    }
    s
}

/// An OAuth2 client-credentials token: the cached one unless `fresh`.
async fn token(
    http: &Http,
    src: &Source,
    auth: &Auth,
    fresh: bool,
) -> Result<String, ExtractError> {
    let Auth::OAuth2 {
        token_url,
        client_id,
        client_secret,
        scope,
        in_body,
    } = auth
    else {
        unreachable!("only OAuth2 has tokens");
    };
    let key = (token_url.clone(), client_id.clone(), client_secret.clone());
    if !fresh
        && let Some((t, until)) = tokens().lock().expect("not poisoned").get(&key)
        && Instant::now() < *until
    {
        return Ok(t.clone());
    }
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    if *in_body {
        form.push(("client_id", client_id));
        form.push(("client_secret", client_secret));
    }
    let basic = (!in_body).then_some((client_id.as_str(), client_secret.as_str()));
    // The token call carries none of the data call's headers.
    let token_src = Source {
        headers: Vec::new(),
        ..src.clone()
    };
    let fail = |message: String| ExtractError::Discovery {
        url: src.redacted(token_url),
        message: src.scrub(&format!("OAuth2 token request: {message}")),
    };
    let resp = http
        .post_form(&token_src, token_url, &form, basic)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let doc = expect_json(&resp).map_err(|e| fail(e.to_string()))?;
    let access = ["access_token", "accessToken"]
        .iter()
        .find_map(|k| doc.get(*k).and_then(Value::as_str))
        .ok_or_else(|| fail("the answer holds no access_token".into()))?
        .to_string();
    // expires_in: seconds, as a number or a string; renewed a little before the end.
    let lifetime = doc
        .get("expires_in")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(300);
    let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(30).max(1));
    tokens()
        .lock()
        .expect("not poisoned")
        .insert(key, (access.clone(), until));
    Ok(access)
}

/// Calls a partner's API page after page; returns the written manifest.
pub async fn extract(
    http: &Http,
    store: &dyn RawStore,
    run: &RunId,
    src: &Source,
    plan: &Plan,
    count: CountRecords<'_>,
) -> Result<Manifest, ExtractError> {
    // Credentials are secrets from the start, whatever fails first.
    let mut src = src.clone();
    match &plan.auth {
        Auth::OAuth2 { client_secret, .. } => src.secrets.push(client_secret.clone()),
        Auth::Basic { password, .. } => src.secrets.push(password.clone()),
        Auth::ApiKey { key, .. } => src.secrets.push(key.clone()),
        Auth::Bearer(t) => src.secrets.push(t.clone()),
        Auth::None => {}
    }
    let mut landing = Landing::new(store, &src, run);
    let result = call_pages(http, &mut landing, plan, count).await;
    landing.close(result).await
}

/// What one call sends, and the resource its answer is landed as.
struct Req<'a> {
    resource: &'a str,
    url: &'a str,
    body: Option<&'a str>,
    headers: &'a [(String, String)],
}

/// One call of the plan: GET, or POST with a JSON body; landed as `resource`; an OAuth2
/// token the API refuses (401) is replaced once and the call made again.
async fn call(
    http: &Http,
    landing: &mut Landing<'_>,
    plan: &Plan,
    tok: &mut Option<String>,
    req: Req<'_>,
) -> Result<crate::http::Response, ExtractError> {
    let Req {
        resource,
        url,
        body,
        headers,
    } = req;
    let (src, store) = (landing.src, landing.store);
    let with_headers = |mut s: Source| {
        for (k, v) in headers {
            s.headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
            s.headers.push((k.clone(), v.clone()));
        }
        s
    };
    let once = |authed: Source| async move {
        match body {
            None => crate::fetch_and_land(http, store, &authed, resource, url, "json").await,
            Some(json) => match http.post_json(&authed, url, json).await {
                Ok(resp) => {
                    match Landing::land(store, &authed, resource, &resp, "json", true).await {
                        Ok(obj) => (Ok(resp), Some(obj), None),
                        Err(e) => (Err(ExtractError::Raw(e)), None, None),
                    }
                }
                Err(e) => {
                    let e = ExtractError::Fetch(e);
                    let failure = authed.failure(resource, url, &e);
                    (Err(e), None, Some(failure))
                }
            },
        }
    };
    let mut resp = once(with_headers(authorized(src, &plan.auth, tok.as_deref()))).await;
    if matches!(plan.auth, Auth::OAuth2 { .. })
        && let (Err(ExtractError::Fetch(FetchError::Status { status: 401, .. })), _, _) = &resp
    {
        tracing::info!(call = %src.redacted(url), "401 with a cached token; fetching a new one");
        *tok = Some(token(http, src, &plan.auth, true).await?);
        landing.manifest.failures.extend(resp.2.take());
        resp = once(with_headers(authorized(src, &plan.auth, tok.as_deref()))).await;
    }
    let (result, object, failure) = resp;
    landing.manifest.objects.extend(object);
    landing.manifest.failures.extend(failure);
    result
}

/// Every scalar at a path (`data.*.id`: `*` is every element of a list or value of an
/// object), as text.
fn values_at(doc: &Value, path: &str) -> Vec<String> {
    let mut here = vec![doc];
    for step in path.split('.') {
        here = here
            .into_iter()
            .flat_map(|v| -> Vec<&Value> {
                match (step, v) {
                    ("*", Value::Array(items)) => items.iter().collect(),
                    ("*", Value::Object(m)) => m.values().collect(),
                    (k, Value::Object(m)) => m.get(k).into_iter().collect(),
                    (i, Value::Array(items)) => i
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| items.get(i))
                        .into_iter()
                        .collect(),
                    _ => Vec::new(),
                }
            })
            .collect();
    }
    here.into_iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .collect()
}

/// A URL component with everything but unreserved characters percent-encoded.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `{name}` placeholders of a template filled from `values` (encoded for a URL, or as JSON
/// string content for a body).
fn fill(template: &str, values: &[(String, String)], for_url: bool) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        let v = if for_url {
            encode(value)
        } else {
            let quoted = serde_json::to_string(value).expect("a string serializes");
            quoted[1..quoted.len() - 1].to_string()
        };
        out = out.replace(&format!("{{{name}}}"), &v);
    }
    out
}

/// A link (absolute, or relative to the page that gave it) as an absolute URL.
fn resolve_link(page: &str, link: &str) -> String {
    match url::Url::parse(page).and_then(|base| base.join(link)) {
        Ok(u) => u.to_string(),
        Err(_) => link.to_string(),
    }
}

/// Scheme, host and port of a URL.
fn origin(u: &str) -> String {
    url::Url::parse(u)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// The placeholders (`{name}`) a template uses.
fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j)
                if after[..j]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && j > 0 =>
            {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

async fn call_pages(
    http: &Http,
    landing: &mut Landing<'_>,
    plan: &Plan,
    count: CountRecords<'_>,
) -> Result<(), ExtractError> {
    let src = landing.src;
    let mut tok = match plan.auth {
        Auth::OAuth2 { .. } => Some(token(http, src, &plan.auth, false).await?),
        _ => None,
    };
    // Earlier calls, in order, each giving values to the ones after it.
    let mut values: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let scalar = |values: &std::collections::BTreeMap<String, Vec<String>>,
                  who: &str,
                  template: &str| {
        let mut pairs = Vec::new();
        for name in placeholders(template) {
            match values.get(&name).map(Vec::as_slice) {
                Some([one]) => pairs.push((name, one.clone())),
                Some(many) => {
                    return Err(ExtractError::Discovery {
                        url: src.redacted(template),
                        message: format!(
                            "{who} uses {{{name}}}, which holds {} values; only the data call fans out over a list",
                            many.len()
                        ),
                    });
                }
                None => {}
            }
        }
        Ok(pairs)
    };
    for c in &plan.calls {
        let url = fill(&c.url, &scalar(&values, &c.name, &c.url)?, true);
        let body = match &c.body {
            Some(b) => Some(fill(b, &scalar(&values, &c.name, b)?, false)),
            None => None,
        };
        let mut headers = Vec::new();
        for (k, v) in &c.headers {
            headers.push((k.clone(), fill(v, &scalar(&values, &c.name, v)?, false)));
        }
        let resource = format!("call-{}", c.name);
        let req = Req {
            resource: &resource,
            url: &url,
            body: body.as_deref(),
            headers: &headers,
        };
        let resp = call(http, landing, plan, &mut tok, req).await?;
        let doc = expect_json(&resp)?;
        for (name, path) in &c.extract {
            let found = values_at(&doc, path);
            if found.is_empty() {
                return Err(ExtractError::Discovery {
                    url: src.redacted(&url),
                    message: format!("call {} gave no value at {path:?} for {{{name}}}", c.name),
                });
            }
            values.insert(name.clone(), found);
        }
    }
    // The data call: once, or once per value of the one list it names.
    let mut lists: Vec<&String> = placeholders(&src.url)
        .iter()
        .chain(
            plan.body
                .as_deref()
                .map(placeholders)
                .unwrap_or_default()
                .iter(),
        )
        .filter_map(|n| {
            values
                .get_key_value(n)
                .filter(|(_, v)| v.len() > 1)
                .map(|(k, _)| k)
        })
        .collect();
    lists.sort();
    lists.dedup();
    if lists.len() > 1 {
        return Err(ExtractError::Discovery {
            url: src.redacted(&src.url),
            message: format!("the data call fans out over one list at most; it names {lists:?}"),
        });
    }
    let fan: Vec<Vec<(String, String)>> = match lists.first() {
        Some(name) => values[*name]
            .iter()
            .map(|v| {
                let mut pairs: Vec<(String, String)> = values
                    .iter()
                    .filter(|(_, vs)| vs.len() == 1)
                    .map(|(k, vs)| (k.clone(), vs[0].clone()))
                    .collect();
                pairs.push(((*name).clone(), v.clone()));
                pairs
            })
            .collect(),
        None => vec![
            values
                .iter()
                .filter(|(_, vs)| vs.len() == 1)
                .map(|(k, vs)| (k.clone(), vs[0].clone()))
                .collect(),
        ],
    };
    for pairs in fan {
        let base = fill(&src.url, &pairs, true);
        let body = plan.body.as_deref().map(|b| fill(b, &pairs, false));
        pages(http, landing, plan, &mut tok, count, &base, body.as_deref()).await?;
    }
    Ok(())
}

/// The data call page after page.
async fn pages(
    http: &Http,
    landing: &mut Landing<'_>,
    plan: &Plan,
    tok: &mut Option<String>,
    count: CountRecords<'_>,
    base: &str,
    body: Option<&str>,
) -> Result<(), ExtractError> {
    let first = match &plan.paging {
        Paging::Page { param, from } => with_query(base, &[(param, from.to_string())]),
        Paging::Offset { param, limit, size } => {
            with_query(base, &[(param, "0".into()), (limit, size.to_string())])
        }
        _ => base.to_string(),
    };
    let mut url = first;
    let mut page = 0usize;
    loop {
        page += 1;
        let req = Req {
            resource: "records",
            url: &url,
            body,
            headers: &[],
        };
        let resp = call(http, landing, plan, tok, req).await?;
        let doc = expect_json(&resp)?;
        let next = match &plan.paging {
            Paging::None => None,
            Paging::NextInBody(path) => at_path(&doc, path)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| resolve_link(&url, s)),
            Paging::LinkHeader => next_link(&resp.headers).map(|s| resolve_link(&url, &s)),
            Paging::Page { param, from } => (count(&doc) > 0)
                .then(|| with_query(&url, &[(param, (from + page as u64).to_string())])),
            Paging::Offset { param, limit, size } => (count(&doc) > 0).then(|| {
                with_query(
                    &url,
                    &[
                        (param, (page as u64 * size).to_string()),
                        (limit, size.to_string()),
                    ],
                )
            }),
            Paging::Cursor { path, param } => at_path(&doc, path)
                .filter(|v| !v.is_null() && v.as_str() != Some(""))
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .map(|c| with_query(&url, &[(param, c)])),
        };
        // The partner's credentials go to the partner only: a next page on another origin
        // is not followed.
        if let Some(n) = &next
            && origin(n) != origin(&url)
        {
            return Err(ExtractError::Discovery {
                url: landing.src.redacted(&url),
                message: format!(
                    "the next page is on another origin ({}); it is not called with this partner's credentials",
                    landing.src.redacted(&origin(n))
                ),
            });
        }
        match next {
            None => return Ok(()),
            Some(_) if page >= plan.max_pages => {
                tracing::warn!(
                    max_pages = plan.max_pages,
                    "page cap reached; later pages are not fetched"
                );
                return Ok(());
            }
            Some(n) if n == url => return Ok(()),
            Some(n) => url = n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            pipeline: "p".into(),
            partner: "p".into(),
            format: "json".into(),
            url: "https://api.example/v1".into(),
            language: None,
            system_id: None,
            headers: vec![("Accept".into(), "application/json".into())],
            sensitive: Vec::new(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn credentials_become_headers_and_secrets() {
        let key = authorized(
            &source(),
            &Auth::ApiKey {
                header: "X-Api-Key".into(),
                key: "k-123".into(),
            },
            None,
        );
        assert!(key.headers.contains(&("X-Api-Key".into(), "k-123".into())));
        assert_eq!(key.secrets, vec!["k-123".to_string()]);
        let bearer = authorized(&source(), &Auth::Bearer("tok-987654".into()), None);
        assert!(
            bearer
                .headers
                .contains(&("Authorization".into(), "Bearer tok-987654".into()))
        );
        assert_eq!(
            bearer.scrub("token tok-987654 refused"),
            "token *** refused"
        );
        let basic = authorized(
            &source(),
            &Auth::Basic {
                user: "ops".into(),
                password: "pw".into(),
            },
            None,
        );
        // base64("ops:pw")
        assert!(
            basic
                .headers
                .contains(&("Authorization".into(), "Basic b3BzOnB3".into()))
        );
        assert!(basic.secrets.contains(&"pw".to_string()));
        assert!(basic.secrets.contains(&"b3BzOnB3".to_string()));
        assert_eq!(basic.headers.len(), 2, "the definition's headers are kept");
    }

    #[test]
    fn templates_are_filled_for_urls_and_bodies() {
        let v = vec![("id".to_string(), "a b/\"c\"".to_string())];
        assert_eq!(
            fill("https://x/{id}/v", &v, true),
            "https://x/a%20b%2F%22c%22/v"
        );
        assert_eq!(
            fill(r#"{"id": "{id}"}"#, &v, false),
            r#"{"id": "a b/\"c\""}"#
        );
        assert_eq!(placeholders("{a}/x/{b_2}/{not valid}"), vec!["a", "b_2"]);
        let doc = serde_json::json!({"data": [{"id": 1}, {"id": "two"}, {"x": 3}]});
        assert_eq!(values_at(&doc, "data.*.id"), vec!["1", "two"]);
    }

    #[test]
    fn links_resolve_against_their_page_and_origins_compare() {
        assert_eq!(
            resolve_link("https://api.x/v2/items?page=1", "?page=2"),
            "https://api.x/v2/items?page=2"
        );
        assert_eq!(
            resolve_link("https://api.x/v2/items", "/v2/items/p2"),
            "https://api.x/v2/items/p2"
        );
        assert_eq!(origin("https://api.x/a"), origin("https://api.x:443/b"));
        assert_ne!(origin("https://api.x/a"), origin("https://evil.example/a"));
        assert_ne!(origin("https://api.x/a"), origin("http://api.x/a"));
    }

    #[test]
    fn link_headers_paths_and_queries() {
        let h = vec![(
            "Link".to_string(),
            r#"<https://api.x/v?page=1>; rel="prev", <https://api.x/v?page=3>; rel="next""#
                .to_string(),
        )];
        assert_eq!(next_link(&h).as_deref(), Some("https://api.x/v?page=3"));
        let doc: Value = serde_json::json!({"links": {"next": "p2"}, "items": [{"id": 7}]});
        assert_eq!(at_path(&doc, "links.next"), Some(&Value::from("p2")));
        assert_eq!(at_path(&doc, "items.0.id"), Some(&Value::from(7)));
        assert_eq!(
            with_query("https://api.x/v?page=1&lang=fr", &[("page", "2".into())]),
            "https://api.x/v?lang=fr&page=2"
        );
    }
}
