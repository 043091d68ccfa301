//! Web pages with no API, fetched politely: a configurable User-Agent, a minimum interval
//! between requests to one host, and `robots.txt` obeyed (RFC 9309) unless the definition
//! says otherwise. Each page is landed unchanged as resource `page`; scraping is a
//! transform of the stored page, so a changed layout can be fixed and replayed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use mobiflux_model::RunId;

use crate::{ExtractError, Http, Landing, Manifest, RawStore, Source};

#[derive(Debug, Clone)]
pub struct Politeness {
    /// At least this long between two requests to the same host.
    pub min_interval: Duration,
    /// Obey the host's `robots.txt`.
    pub robots: bool,
    /// The product token matched against `robots.txt` groups.
    pub agent: String,
}

/// The product token of a User-Agent (`mobiflux-test/1.0 (ops@…)` → `mobiflux-test`): what
/// `robots.txt` groups are matched against.
pub fn product_token(user_agent: Option<&str>) -> String {
    user_agent
        .and_then(|ua| ua.split(['/', ' ']).find(|t| !t.is_empty()))
        .unwrap_or("mobiflux")
        .to_string()
}

/// The rules of `robots.txt` that apply to one agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Robots {
    /// (allow, path pattern)
    rules: Vec<(bool, String)>,
}

impl Robots {
    /// The group naming `agent` (case-insensitive) if there is one, else the `*` group.
    pub fn parse(text: &str, agent: &str) -> Robots {
        let agent = agent.to_ascii_lowercase();
        let (mut mine, mut star) = (Vec::new(), Vec::new());
        let (mut found_mine, mut group_agents, mut in_rules) = (false, Vec::<String>::new(), false);
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().to_string());
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        group_agents.clear();
                        in_rules = false;
                    }
                    group_agents.push(value.to_ascii_lowercase());
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if value.is_empty() {
                        continue; // "Disallow:" allows everything
                    }
                    let rule = (key == "allow", value);
                    if group_agents
                        .iter()
                        .any(|a| a != "*" && agent.contains(a.as_str()))
                    {
                        found_mine = true;
                        mine.push(rule.clone());
                    }
                    if group_agents.iter().any(|a| a == "*") {
                        star.push(rule);
                    }
                }
                _ => {}
            }
        }
        Robots {
            rules: if found_mine { mine } else { star },
        }
    }

    /// The longest matching rule decides; allow wins a tie; no rule allows.
    pub fn allows(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches(pattern, path) {
                let len = pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// A robots.txt path pattern: a prefix, with `*` for any run of characters and `$` for the end.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = path;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 && anchored {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    !anchored || rest.is_empty() || pattern.ends_with('*')
}

/// Finds the "next page" link in a fetched page: `Ok(None)` on the last page.
pub type NextLink<'a> = &'a (dyn Fn(&[u8]) -> Result<Option<String>, String> + Sync);

/// Next-link pagination: after each page, its next link (resolved against the page's URL)
/// is fetched, until a page has none, links back to a page already fetched, or `max_pages`
/// pages were fetched from this rule.
pub struct Follow<'a> {
    pub next: NextLink<'a>,
    pub max_pages: usize,
}

/// Fetches pages one by one, politely; returns the written manifest.
pub async fn extract(
    http: &Http,
    store: &dyn RawStore,
    run: &RunId,
    src: &Source,
    urls: &[String],
    follow: Option<Follow<'_>>,
    politeness: &Politeness,
) -> Result<Manifest, ExtractError> {
    let mut landing = Landing::new(store, src, run);
    let result = fetch_all(http, &mut landing, urls, follow, politeness).await;
    landing.close(result).await
}

async fn fetch_all(
    http: &Http,
    landing: &mut Landing<'_>,
    urls: &[String],
    follow: Option<Follow<'_>>,
    p: &Politeness,
) -> Result<(), ExtractError> {
    let src = landing.src;
    let mut robots: HashMap<String, Robots> = HashMap::new();
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut queue: VecDeque<String> = urls.iter().cloned().collect();
    let mut fetched: HashSet<String> = HashSet::new();
    let mut followed = 0usize;
    while let Some(url) = queue.pop_front() {
        let url = &url;
        let parsed = url::Url::parse(url).map_err(|e| ExtractError::Discovery {
            url: src.redacted(url),
            message: format!("not a URL: {e}"),
        })?;
        let origin = parsed.origin().ascii_serialization();
        let mut wait = |host: &str| {
            let now = Instant::now();
            let due = last
                .get(host)
                .map(|t| *t + p.min_interval)
                .filter(|d| *d > now);
            last.insert(host.to_string(), due.unwrap_or(now));
            due.map(|d| d - now)
        };
        if p.robots && !robots.contains_key(&origin) {
            if let Some(d) = wait(&origin) {
                tokio::time::sleep(d).await;
            }
            let rules = match http.get(src, &format!("{origin}/robots.txt")).await {
                Ok(resp) => Robots::parse(&String::from_utf8_lossy(&resp.body), &p.agent),
                // No robots.txt (4xx): everything is allowed.
                Err(crate::FetchError::Status { status, .. }) if (400..500).contains(&status) => {
                    Robots::default()
                }
                // RFC 9309: an unreachable robots.txt means no crawling at all.
                Err(e) => {
                    return Err(ExtractError::Discovery {
                        url: src.redacted(url),
                        message: format!(
                            "robots.txt could not be read ({e}); not fetching (set robots = false if the site owner agrees)"
                        ),
                    });
                }
            };
            robots.insert(origin.clone(), rules);
        }
        let path = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        if p.robots && !robots[&origin].allows(&path) {
            return Err(ExtractError::Discovery {
                url: src.redacted(url),
                message: format!(
                    "{origin}/robots.txt disallows {path} for {}; set robots = false if the site owner agrees",
                    p.agent
                ),
            });
        }
        if let Some(d) = wait(&origin) {
            tokio::time::sleep(d).await;
        }
        let page = landing.fetch(http, "page", url, "html").await?;
        fetched.insert(parsed.to_string());
        let Some(f) = &follow else { continue };
        let next = (f.next)(&page.body).map_err(|message| ExtractError::Discovery {
            url: src.redacted(url),
            message,
        })?;
        let Some(href) = next else { continue };
        let next = parsed.join(&href).map_err(|e| ExtractError::Discovery {
            url: src.redacted(url),
            message: format!("its next-page link {href:?} is not a URL: {e}"),
        })?;
        if fetched.contains(next.as_str()) {
            tracing::info!(page = %src.redacted(url), next = %src.redacted(next.as_str()), "next-page link leads back to a fetched page; pagination ends");
        } else if next.origin() != parsed.origin() {
            // The definition's headers (and its politeness) are for this site only.
            tracing::warn!(page = %src.redacted(url), next = %src.redacted(next.as_str()), "next-page link leaves the site; pagination ends");
        } else if followed + 1 >= f.max_pages {
            tracing::warn!(page = %src.redacted(url), next = %src.redacted(next.as_str()), max_pages = f.max_pages, "page cap reached; later pages are not fetched");
        } else {
            followed += 1;
            queue.push_front(next.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROBOTS: &str = "# example\nUser-agent: *\nDisallow: /private/\nAllow: /private/open$\nDisallow: /*.pdf$\n\nUser-agent: badbot\nDisallow: /\n";

    #[test]
    fn robots_rules_longest_match_wins() {
        let r = Robots::parse(ROBOTS, "mobiflux");
        assert!(r.allows("/parkhaus/am-bahnhof-8"));
        assert!(!r.allows("/private/data"));
        assert!(r.allows("/private/open"));
        assert!(!r.allows("/docs/plan.pdf"));
        assert!(r.allows("/docs/plan.pdfx"));
        let bad = Robots::parse(ROBOTS, "BadBot/2.0");
        assert!(!bad.allows("/parkhaus"));
        assert!(Robots::parse("", "mobiflux").allows("/anything"));
        assert_eq!(product_token(Some("BadBot/2.0 (x)")), "BadBot");
        assert_eq!(product_token(None), "mobiflux");
    }
}
