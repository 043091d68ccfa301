//! Pipeline definitions: one TOML file per feed in the pipelines folder.
//!
//! A GBFS feed needs five keys (`name`, `partner`, `format`, `url`, `schedule`); everything
//! else has a default. Every error names the file, the line and the key. `${VAR}`
//! references are resolved at run time from the environment, never stored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use mobiflux_extractors::covoiturage::{OdPair, Search};
use mobiflux_extractors::rest::{Auth, Paging, Plan};
use mobiflux_schedules::{DEFAULT_TIMEZONE, Schedule};
use mobiflux_transforms::fixed::FixedMap;
use mobiflux_transforms::html::{Field, PageSpec};
use mobiflux_transforms::logs::LogMap;
use mobiflux_transforms::mapped::{
    ColumnSpec, Convert, DEFAULT_NO, DEFAULT_YES, MappedTable, Source, TimeSpec,
};
use serde::Deserialize;
use toml::Spanned;

/// Formats this version reads.
pub const FORMATS: &[&str] = &[
    "gbfs",
    "tomp",
    "irve",
    "irve-dynamic",
    "bnls",
    "csv",
    "fixed_width",
    "access_log",
    "html",
    "json",
    "covoiturage",
];

/// Formats read from published files (a path, glob, `s3://` prefix or HTTP URL).
pub const FILE_FORMATS: &[&str] = &[
    "irve",
    "irve-dynamic",
    "bnls",
    "csv",
    "fixed_width",
    "access_log",
];

/// One `[columns]` entry of a `csv` definition: a source column name, or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ColumnRaw {
    Name(String),
    Spec(Box<SpecRaw>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecRaw {
    from: Option<String>,
    value: Option<String>,
    time: Option<String>,
    timezone: Option<String>,
    date: Option<String>,
    geometry: Option<String>,
    decimal: Option<String>,
    group: Option<String>,
    #[serde(rename = "true")]
    yes: Option<Vec<String>>,
    #[serde(rename = "false")]
    no: Option<Vec<String>>,
    map: Option<BTreeMap<String, String>>,
    scale: Option<f64>,
    default: Option<String>,
    css: Option<String>,
    attr: Option<String>,
    regex: Option<String>,
}

fn one_char(s: &str, what: &str) -> Result<char, String> {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(format!("{what} must be one character, not {s:?}")),
    }
}

/// An `html` `[columns]` entry: where its text is in a row element, and its mapping step
/// (whose source is the field of that name, or a constant).
fn page_column(
    column: &'static str,
    raw: ColumnRaw,
) -> Result<(Option<Field>, ColumnSpec), String> {
    let mut spec = match raw {
        ColumnRaw::Name(css) => {
            let f = Field {
                name: column.to_string(),
                css: Some(css),
                attr: None,
                regex: None,
            };
            let c = ColumnSpec {
                column,
                source: Source::Column(column.to_string()),
                convert: Convert::Auto,
                regex: None,
                default: None,
            };
            return Ok((Some(f), c));
        }
        ColumnRaw::Spec(s) => *s,
    };
    if spec.from.is_some() {
        return Err("html columns take css (and attr, regex), not from".into());
    }
    let field = if spec.value.is_some() {
        if spec.css.is_some() || spec.attr.is_some() || spec.regex.is_some() {
            return Err("a constant value takes no css, attr or regex".into());
        }
        None
    } else {
        if spec.css.is_none() && spec.attr.is_none() {
            return Err(
                "give css = \"selector\" (text), attr = \"name\" (of the row element) or both"
                    .into(),
            );
        }
        if let Some(css) = &spec.css {
            mobiflux_transforms::html::check_selector(css)?;
        }
        let regex = match spec.regex.take() {
            Some(r) => Some(regex::Regex::new(&r).map_err(|e| format!("regex {r:?}: {e}"))?),
            None => None,
        };
        spec.from = Some(column.to_string());
        Some(Field {
            name: column.to_string(),
            css: spec.css.take(),
            attr: spec.attr.take(),
            regex,
        })
    };
    let c = column_spec(column, ColumnRaw::Spec(Box::new(spec)))?;
    Ok((field, c))
}

/// A `[columns]` entry as a mapping step.
fn column_spec(column: &'static str, raw: ColumnRaw) -> Result<ColumnSpec, String> {
    let mut spec = match raw {
        ColumnRaw::Name(from) => {
            return Ok(ColumnSpec {
                column,
                source: Source::Column(from),
                convert: Convert::Auto,
                regex: None,
                default: None,
            });
        }
        ColumnRaw::Spec(s) => *s,
    };
    if spec.css.is_some() || spec.attr.is_some() {
        return Err("css and attr are for html definitions".into());
    }
    let regex = match spec.regex.take() {
        Some(r) => Some(regex::Regex::new(&r).map_err(|e| format!("regex {r:?}: {e}"))?),
        None => None,
    };
    if spec.default.is_some() && spec.value.is_some() {
        return Err("a constant value takes no default".into());
    }
    let source = match (spec.from, spec.value) {
        (Some(f), None) => Source::Column(f),
        (None, Some(v)) => Source::Constant(v),
        _ => return Err("give either from = \"source column\" or value = \"constant\"".into()),
    };
    let mut converts = Vec::new();
    if let Some(t) = spec.time {
        let tz: chrono_tz::Tz =
            spec.timezone
                .as_deref()
                .unwrap_or("UTC")
                .parse()
                .map_err(|_| {
                    format!(
                        "timezone {:?} is not an IANA timezone",
                        spec.timezone.unwrap_or_default()
                    )
                })?;
        converts.push(Convert::Time(match t.as_str() {
            "epoch_s" => TimeSpec::EpochSeconds,
            "epoch_ms" => TimeSpec::EpochMillis,
            "rfc3339" | "iso8601" => TimeSpec::Rfc3339,
            f if f.contains('%') => TimeSpec::Format {
                format: f.to_string(),
                tz,
            },
            other => {
                return Err(format!(
                    "time {other:?}: use epoch_s, epoch_ms, rfc3339 or a %-format"
                ));
            }
        }));
    } else if spec.timezone.is_some() {
        return Err("timezone goes with time".into());
    }
    if let Some(d) = spec.date {
        converts.push(Convert::Date(d));
    }
    if let Some(g) = spec.geometry {
        converts.push(match g.as_str() {
            "lat" => Convert::Lat,
            "lon" => Convert::Lon,
            other => return Err(format!("geometry {other:?}: use \"lat\" or \"lon\"")),
        });
    }
    if spec.decimal.is_some() || spec.group.is_some() || spec.scale.is_some() {
        converts.push(Convert::Number {
            scale: spec.scale.unwrap_or(1.0),
            decimal: spec
                .decimal
                .as_deref()
                .map(|d| one_char(d, "decimal"))
                .transpose()?
                .unwrap_or('.'),
            group: spec
                .group
                .as_deref()
                .map(|g| one_char(g, "group"))
                .transpose()?,
        });
    }
    if spec.yes.is_some() || spec.no.is_some() {
        converts.push(Convert::Bool {
            yes: spec
                .yes
                .unwrap_or_else(|| DEFAULT_YES.iter().map(|s| s.to_string()).collect()),
            no: spec
                .no
                .unwrap_or_else(|| DEFAULT_NO.iter().map(|s| s.to_string()).collect()),
        });
    }
    if let Some(m) = spec.map {
        converts.push(Convert::Map(m));
    }
    if converts.len() > 1 {
        return Err(
            "one conversion per column (time, date, geometry, decimal, true/false or map)".into(),
        );
    }
    Ok(ColumnSpec {
        column,
        source,
        convert: converts.pop().unwrap_or(Convert::Auto),
        regex,
        default: spec.default,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionError {
    pub file: PathBuf,
    pub line: usize,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for DefinitionError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    name: Spanned<String>,
    partner: Spanned<String>,
    format: Spanned<String>,
    url: Spanned<String>,
    schedule: Spanned<String>,
    territory: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    language: Option<String>,
    system_id: Option<String>,
    timeout_secs: Option<Spanned<u64>>,
    max_body_mb: Option<Spanned<u64>>,
    retries: Option<Spanned<u32>>,
    auth: Option<Spanned<AuthRaw>>,
    calls: Option<Spanned<Vec<CallRaw>>>,
    body: Option<String>,
    od: Option<Spanned<Vec<OdRaw>>>,
    grid: Option<Spanned<GridRaw>>,
    departure_in_minutes: Option<i64>,
    time_delta_mins: Option<u64>,
    radius_km: Option<f64>,
    regular_time_of_day: Option<Spanned<String>>,
    count: Option<u64>,
    paging: Option<Spanned<PagingRaw>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    sensitive: Vec<String>,
    schema: Option<Spanned<String>>,
    delimiter: Option<Spanned<String>>,
    encoding: Option<Spanned<String>>,
    table: Option<Spanned<String>>,
    nulls: Option<Vec<String>>,
    columns: Option<Spanned<BTreeMap<String, ColumnRaw>>>,
    rows: Option<Spanned<String>>,
    records: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    pattern: Option<Spanned<String>>,
    fields: Option<Spanned<BTreeMap<String, Vec<usize>>>>,
    header: Option<bool>,
    urls: Option<Vec<String>>,
    pages: Option<Spanned<PagesRaw>>,
    user_agent: Option<String>,
    rate_per_second: Option<Spanned<f64>>,
    robots: Option<bool>,
    soft_ttl: Option<Spanned<u64>>,
    hard_ttl: Option<Spanned<u64>>,
    jitter_secs: Option<Spanned<u64>>,
    gateway_partner_id: Option<Spanned<String>>,
}

/// An origin–destination pair of a `covoiturage` definition, as `[lat, lon]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OdRaw {
    from: [f64; 2],
    to: [f64; 2],
}

/// A grid of a `covoiturage` definition: every cell centre to every other one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridRaw {
    south: f64,
    west: f64,
    north: f64,
    east: f64,
    step_km: f64,
}

/// At most this many origin–destination pairs are searched per run.
const MAX_PAIRS: usize = 400;

fn grid_pairs(g: &GridRaw) -> Result<Vec<OdPair>, String> {
    if !(g.south < g.north && g.west < g.east && g.step_km > 0.0) {
        return Err("grid needs south < north, west < east and step_km > 0".into());
    }
    let lat_step = g.step_km / 111.32;
    let mid = ((g.south + g.north) / 2.0).to_radians().cos().max(0.01);
    let lon_step = g.step_km / (111.32 * mid);
    let mut centres = Vec::new();
    let mut lat = g.south + lat_step / 2.0;
    while lat < g.north {
        let mut lon = g.west + lon_step / 2.0;
        while lon < g.east {
            centres.push(((lat * 1e5).round() / 1e5, (lon * 1e5).round() / 1e5));
            lon += lon_step;
        }
        lat += lat_step;
    }
    let n = centres.len();
    if n * n.saturating_sub(1) > MAX_PAIRS {
        return Err(format!(
            "the grid has {n} cells, {} pairs; at most {MAX_PAIRS} pairs per run (raise step_km)",
            n * n.saturating_sub(1)
        ));
    }
    let mut pairs = Vec::new();
    for a in &centres {
        for b in &centres {
            if a != b {
                pairs.push((*a, *b));
            }
        }
    }
    Ok(pairs)
}

/// A `[[calls]]` entry of a `json` definition: a call before the data call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRaw {
    name: String,
    url: String,
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    extract: BTreeMap<String, String>,
}

/// A body template with its placeholders replaced by a sample value, to check it is JSON.
fn fill_for_check(t: &str) -> String {
    let mut out = t.to_string();
    for n in template_names(t) {
        out = out.replace(&format!("{{{n}}}"), "x");
    }
    out
}

/// `{name}` placeholders of a template (URL or body).
fn template_names(t: &str) -> Vec<String> {
    // `${VAR}` is an environment reference, not a placeholder.
    let re = regex::Regex::new(r"(?:^|[^$])\{([A-Za-z0-9_]+)\}").expect("a valid pattern");
    re.captures_iter(t).map(|c| c[1].to_string()).collect()
}

/// `[auth]` of a `json` definition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthRaw {
    #[serde(rename = "type")]
    kind: String,
    header: Option<String>,
    key: Option<String>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    client_auth: Option<String>,
}

/// `[paging]` of a `json` definition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagingRaw {
    next: Option<String>,
    link_header: Option<bool>,
    page: Option<String>,
    from: Option<u64>,
    offset: Option<String>,
    limit: Option<String>,
    size: Option<u64>,
    cursor: Option<String>,
    param: Option<String>,
    max_pages: Option<usize>,
}

fn auth_of(a: AuthRaw) -> Result<Auth, String> {
    let need =
        |v: Option<String>, key: &str| v.ok_or_else(|| format!("auth type {} needs {key}", a.kind));
    let unused = |keys: &[(&str, bool)]| match keys.iter().find(|(_, present)| *present) {
        Some((k, _)) => Err(format!("auth type {} takes no {k}", a.kind)),
        None => Ok(()),
    };
    Ok(match a.kind.as_str() {
        "api_key" => {
            unused(&[
                ("token", a.token.is_some()),
                ("user", a.user.is_some()),
                ("token_url", a.token_url.is_some()),
            ])?;
            Auth::ApiKey {
                header: a.header.clone().unwrap_or_else(|| "X-Api-Key".into()),
                key: need(a.key.clone(), "key")?,
            }
        }
        "bearer" => {
            unused(&[
                ("key", a.key.is_some()),
                ("user", a.user.is_some()),
                ("token_url", a.token_url.is_some()),
            ])?;
            Auth::Bearer(need(a.token.clone(), "token")?)
        }
        "basic" => {
            unused(&[
                ("key", a.key.is_some()),
                ("token", a.token.is_some()),
                ("token_url", a.token_url.is_some()),
            ])?;
            Auth::Basic {
                user: need(a.user.clone(), "user")?,
                password: need(a.password.clone(), "password")?,
            }
        }
        "oauth2" => {
            unused(&[
                ("key", a.key.is_some()),
                ("token", a.token.is_some()),
                ("user", a.user.is_some()),
            ])?;
            let in_body = match a.client_auth.as_deref() {
                None | Some("basic") => false,
                Some("body") => true,
                Some(o) => return Err(format!("client_auth {o:?}: use \"basic\" or \"body\"")),
            };
            Auth::OAuth2 {
                token_url: need(a.token_url.clone(), "token_url")?,
                client_id: need(a.client_id.clone(), "client_id")?,
                client_secret: need(a.client_secret.clone(), "client_secret")?,
                scope: a.scope.clone(),
                in_body,
            }
        }
        other => {
            return Err(format!(
                "auth type {other:?}: use api_key, bearer, basic or oauth2"
            ));
        }
    })
}

fn paging_of(p: PagingRaw) -> Result<(Paging, usize), String> {
    let max = p.max_pages.unwrap_or(100);
    if !(1..=10_000).contains(&max) {
        return Err(format!("max_pages {max} must be between 1 and 10000"));
    }
    let paging = match (
        &p.next,
        p.link_header.unwrap_or(false),
        &p.page,
        &p.offset,
        &p.cursor,
    ) {
        (Some(n), false, None, None, None) => Paging::NextInBody(n.clone()),
        (None, true, None, None, None) => Paging::LinkHeader,
        (None, false, Some(param), None, None) => Paging::Page {
            param: param.clone(),
            from: p.from.unwrap_or(1),
        },
        (None, false, None, Some(param), None) => Paging::Offset {
            param: param.clone(),
            limit: p.limit.clone().unwrap_or_else(|| "limit".into()),
            size: p
                .size
                .filter(|s| *s > 0)
                .ok_or("offset paging needs size (records per page)")?,
        },
        (None, false, None, None, Some(path)) => Paging::Cursor {
            path: path.clone(),
            param: p
                .param
                .clone()
                .ok_or("cursor paging needs param (the query parameter)")?,
        },
        _ => {
            return Err(
                "give one of next = \"path\", link_header = true, page = \"param\", offset = \"param\" or cursor = \"path\""
                    .into(),
            );
        }
    };
    Ok((paging, max))
}

/// Pagination of an `html` definition, one of:
/// `pages = { template = "https://…?page={page}", from = 1, to = 5 }` (page numbers), or
/// `pages = { next = "a[rel=next]", max = 20 }` (follow the next-page link, at most `max`
/// pages in all).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagesRaw {
    template: Option<String>,
    from: Option<u32>,
    to: Option<u32>,
    next: Option<String>,
    max: Option<u32>,
}

/// At most this many pages from one pagination rule.
const MAX_PAGES: u32 = 100;

#[derive(Debug, Clone)]
pub struct Definition {
    pub file: PathBuf,
    pub name: String,
    pub partner: String,
    pub territory: Option<String>,
    pub format: String,
    /// As written: may hold `${VAR}` references.
    pub url: String,
    pub schedule: String,
    pub timezone: String,
    /// The schedule's longest wait between two ticks (seconds, over the 8 days after the
    /// definition was read).
    pub longest_gap: Option<u64>,
    pub language: Option<String>,
    pub system_id: Option<String>,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    /// Retries of a transient HTTP failure (429, 502–504, timeouts, connection errors).
    pub retries: u32,
    /// As written: values may hold `${VAR}` references, and are treated as secrets when they do.
    pub headers: BTreeMap<String, String>,
    pub sensitive: Vec<String>,
    /// A Table Schema (`schema.json`): for irve and bnls, replacing the bundled one; for
    /// csv, enforced before the `[columns]` mapping.
    pub schema: Option<PathBuf>,
    pub delimiter: u8,
    pub encoding: mobiflux_transforms::text::Encoding,
    /// The declarative mapping of a `csv` definition.
    pub mapping: Option<Arc<MappedTable>>,
    /// The scraping rules of an `html` definition.
    pub page: Option<Arc<PageSpec>>,
    /// The line pattern and mapping of an `access_log` definition.
    pub log: Option<Arc<LogMap>>,
    /// The field positions and mapping of a `fixed_width` definition.
    pub fixed: Option<Arc<FixedMap>>,
    /// Where a `json` definition's records are in the document (`data.items.*`).
    pub records: Option<String>,
    /// How a `json` definition's API is called (values may hold `${VAR}`).
    pub plan: Plan,
    /// The searches of a `covoiturage` definition (the departure is set at run time,
    /// `departure_in_minutes` after the run starts).
    pub carpool: Option<Search>,
    pub departure_in_minutes: i64,
    /// Every page an `html` definition fetches, in order (may hold `${VAR}`).
    pub page_urls: Vec<String>,
    /// Next-link pagination of an `html` definition: the link's CSS selector, and the most
    /// pages it may lead to.
    pub next_page: Option<(String, usize)>,
    pub user_agent: Option<String>,
    /// At least this long between two requests to one host (`html`).
    pub min_interval: Duration,
    /// Obey `robots.txt` (`html`).
    pub robots: bool,
    /// What the gateway cache holds of this feed; `None` for feeds the gateway does not
    /// serve (published files, scraped pages: they feed the warehouse only).
    pub cache: Option<CacheSettings>,
    /// Each scheduled run starts up to this long after its tick (a fixed share per pipeline).
    pub jitter: Duration,
}

/// How a feed's gateway-cache entries live.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// After this long an entry is stale (still served).
    pub soft_ttl: Duration,
    /// After this long an entry is gone.
    pub hard_ttl: Duration,
    /// The partner as the gateway knows it (`gateway_partner_id`, else `partner`).
    pub partner_id: String,
}

/// Formats whose runs the gateway serves, with their default (soft, hard) TTLs in seconds:
/// refreshed by the examples' schedules well before they turn stale.
pub const CACHE_DEFAULTS: &[(&str, u64, u64)] = &[
    ("gbfs", 120, 600),
    ("tomp", 300, 900),
    ("json", 600, 1800),
    ("covoiturage", 1200, 3600),
];

/// The DAT's rule for a cache entry refreshed by a schedule: the soft TTL is below the hard
/// one, and the schedule refreshes before the soft TTL runs out, twice per soft TTL unless
/// the hard TTL is at least twice the soft one.
pub fn check_ttls(soft: u64, hard: u64, longest_gap: Option<u64>) -> Result<(), String> {
    if soft == 0 || soft >= hard {
        return Err(format!(
            "soft_ttl {soft} s must be above 0 and below hard_ttl {hard} s"
        ));
    }
    let Some(gap) = longest_gap else {
        return Ok(());
    };
    let (needed, why) = if hard >= 2 * soft {
        (soft, "before the soft TTL runs out")
    } else {
        (
            soft / 2,
            "twice per soft TTL (hard_ttl is less than twice soft_ttl)",
        )
    };
    if gap > needed {
        return Err(format!(
            "the schedule waits up to {gap} s between runs, but with soft_ttl {soft} s and hard_ttl {hard} s it must refresh {why}, at least every {needed} s"
        ));
    }
    Ok(())
}

impl Definition {
    pub fn is_file_format(&self) -> bool {
        FILE_FORMATS.contains(&self.format.as_str())
    }

    /// What the warehouse's `pipelines` registry holds of this definition.
    pub fn pipeline_info(&self) -> mobiflux_loaders::PipelineInfo {
        mobiflux_loaders::PipelineInfo {
            pipeline: self.name.clone(),
            partner: self.partner.clone(),
            territory: self.territory.clone(),
            format: self.format.clone(),
            schedule: (!self.schedule.is_empty()).then(|| self.schedule.clone()),
            interval_s: self.longest_gap.map(|g| g as i64),
        }
    }
}

/// Registers the definitions in the warehouse's `pipelines` (partners, territories,
/// schedules), which the statistics views and territory policies read.
pub async fn register(
    warehouse: &dyn mobiflux_loaders::Warehouse,
    defs: &[Definition],
) -> Result<(), mobiflux_loaders::LoadError> {
    let infos: Vec<_> = defs.iter().map(Definition::pipeline_info).collect();
    warehouse.register_pipelines(&infos).await
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Parses one definition file's text.
pub fn parse(file: &Path, text: &str) -> Result<Definition, Vec<DefinitionError>> {
    let err = |span: Option<std::ops::Range<usize>>, key: Option<&str>, message: String| {
        DefinitionError {
            file: file.to_path_buf(),
            line: span.map(|s| line_of(text, s.start)).unwrap_or(1),
            key: key.map(str::to_string),
            message,
        }
    };
    let mut raw: RawDefinition = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        let key = msg
            .strip_prefix("missing field `")
            .or_else(|| msg.strip_prefix("unknown field `"))
            .and_then(|r| r.split('`').next());
        vec![err(e.span(), key, msg.clone())]
    })?;
    let mut errors = Vec::new();
    // Keys that only some formats take: an error for each one given to another format.
    let only_for = |allowed: bool, who: &str, keys: &[(&str, bool)]| -> Vec<DefinitionError> {
        keys.iter()
            .filter(|(_, present)| *present && !allowed)
            .map(|(key, _)| err(None, Some(key), format!("only {who} take {key}")))
            .collect()
    };
    for (key, value) in [
        ("name", Some(&raw.name)),
        ("partner", Some(&raw.partner)),
        ("territory", raw.territory.as_ref()),
    ] {
        if let Some(v) = value
            && !valid_slug(v.get_ref())
        {
            errors.push(err(
                Some(v.span()),
                Some(key),
                format!(
                    "{:?} must be 1-63 characters of a-z, 0-9 and '-'",
                    v.get_ref()
                ),
            ));
        }
    }
    if !FORMATS.contains(&raw.format.get_ref().as_str()) {
        errors.push(err(
            Some(raw.format.span()),
            Some("format"),
            format!(
                "unknown format {:?}; this version reads {FORMATS:?}",
                raw.format.get_ref()
            ),
        ));
    }
    let url = raw.url.get_ref();
    let file_format = FILE_FORMATS.contains(&raw.format.get_ref().as_str());
    if let Err(m) = check_refs(url) {
        errors.push(err(Some(raw.url.span()), Some("url"), m));
    } else if file_format {
        if url.trim().is_empty() {
            errors.push(err(
                Some(raw.url.span()),
                Some("url"),
                "a path, glob, s3:// prefix or http(s):// URL is needed".into(),
            ));
        }
    } else if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("${"))
    {
        errors.push(err(
            Some(raw.url.span()),
            Some("url"),
            format!(
                "{:?} must be an http:// or https:// URL",
                mobiflux_model::redact::url(url, &[])
            ),
        ));
    }
    for (k, v) in &raw.headers {
        if let Err(m) = check_refs(v) {
            errors.push(err(None, Some(&format!("headers.{k}")), m));
        }
    }
    let timezone = raw
        .timezone
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_else(|| DEFAULT_TIMEZONE.to_string());
    if let Err(e) = Schedule::parse(raw.schedule.get_ref(), &timezone) {
        let (span, key) = match e {
            mobiflux_schedules::ScheduleError::BadTimezone(_) => {
                (raw.timezone.as_ref().map(|t| t.span()), "timezone")
            }
            _ => (Some(raw.schedule.span()), "schedule"),
        };
        errors.push(err(span, Some(key), e.to_string()));
    }
    // Files can be large: they get more time and a larger bound by default.
    let mut bounded = |key: &str, value: &Option<Spanned<u64>>, default: u64, max: u64| {
        let v = value.as_ref().map(|t| *t.get_ref()).unwrap_or(default);
        if !(1..=max).contains(&v) {
            errors.push(err(
                value.as_ref().map(|t| t.span()),
                Some(key),
                format!("{v} must be between 1 and {max}"),
            ));
        }
        v
    };
    let timeout = bounded(
        "timeout_secs",
        &raw.timeout_secs,
        if file_format { 300 } else { 30 },
        3600,
    );
    let max_mb = bounded(
        "max_body_mb",
        &raw.max_body_mb,
        if file_format { 4096 } else { 64 },
        4096,
    );
    let retries = raw.retries.as_ref().map(|r| *r.get_ref()).unwrap_or(0);
    if retries > 10 {
        errors.push(err(
            raw.retries.as_ref().map(|r| r.span()),
            Some("retries"),
            format!("{retries} must be between 0 and 10"),
        ));
    }
    let mut delimiter = b',';
    if let Some(d) = &raw.delimiter {
        match d.get_ref().as_bytes() {
            [b] if b.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r' => delimiter = *b,
            _ if d.get_ref() == "\\t" => delimiter = b'\t',
            _ => errors.push(err(
                Some(d.span()),
                Some("delimiter"),
                format!(
                    "{:?} must be one ASCII character (\"\\t\" for a tab)",
                    d.get_ref()
                ),
            )),
        }
    }
    let mut encoding = mobiflux_transforms::text::Encoding::Auto;
    if let Some(e) = &raw.encoding {
        match mobiflux_transforms::text::Encoding::parse(e.get_ref()) {
            Some(enc) => encoding = enc,
            None => errors.push(err(
                Some(e.span()),
                Some("encoding"),
                format!(
                    "{:?} is not one of auto, utf-8, iso-8859-1, windows-1252",
                    e.get_ref()
                ),
            )),
        }
    }
    if let Some(sc) = &raw.schema
        && !Path::new(sc.get_ref()).is_file()
    {
        errors.push(err(
            Some(sc.span()),
            Some("schema"),
            format!("no file at {:?}", sc.get_ref()),
        ));
    }
    let mut mapping = None;
    let mut page_fields = Vec::new();
    let is_html = raw.format.get_ref() == "html";
    let is_log = raw.format.get_ref() == "access_log";
    let is_fixed = raw.format.get_ref() == "fixed_width";
    let is_json = raw.format.get_ref() == "json";
    let is_csv = raw.format.get_ref() == "csv" || is_html || is_log || is_fixed || is_json;
    let is_carpool = raw.format.get_ref() == "covoiturage";
    let mut carpool = None;
    if is_carpool {
        let mut pairs: Vec<OdPair> = Vec::new();
        if let Some(od) = &raw.od {
            for p in od.get_ref() {
                let ok = |c: [f64; 2]| {
                    (-90.0..=90.0).contains(&c[0]) && (-180.0..=180.0).contains(&c[1])
                };
                if !ok(p.from) || !ok(p.to) {
                    errors.push(err(
                        Some(od.span()),
                        Some("od"),
                        format!("{:?} → {:?}: points are [lat, lon] in WGS84", p.from, p.to),
                    ));
                }
                pairs.push(((p.from[0], p.from[1]), (p.to[0], p.to[1])));
            }
        }
        if let Some(g) = &raw.grid {
            match grid_pairs(g.get_ref()) {
                Ok(more) => pairs.extend(more),
                Err(m) => errors.push(err(Some(g.span()), Some("grid"), m)),
            }
        }
        if pairs.is_empty() {
            errors.push(err(None, Some("od"), "a covoiturage definition searches origin–destination pairs: od = [{ from = [lat, lon], to = [lat, lon] }] or a grid".into()));
        }
        if pairs.len() > MAX_PAIRS {
            errors.push(err(
                None,
                Some("od"),
                format!("{} pairs; at most {MAX_PAIRS} per run", pairs.len()),
            ));
        }
        if let Some(t) = &raw.regular_time_of_day
            && chrono::NaiveTime::parse_from_str(t.get_ref(), "%H:%M:%S").is_err()
        {
            errors.push(err(
                Some(t.span()),
                Some("regular_time_of_day"),
                format!("{:?} must be HH:MM:SS", t.get_ref()),
            ));
        }
        carpool = Some(Search {
            pairs,
            departure: chrono::DateTime::UNIX_EPOCH,
            regular_time_of_day: raw
                .regular_time_of_day
                .as_ref()
                .map(|t| t.get_ref().clone()),
            time_delta_secs: raw.time_delta_mins.unwrap_or(15) * 60,
            radius_km: raw.radius_km.unwrap_or(1.0),
            count: raw.count,
        });
    }
    errors.extend(only_for(
        is_carpool,
        "covoiturage definitions",
        &[
            ("od", raw.od.is_some()),
            ("grid", raw.grid.is_some()),
            ("departure_in_minutes", raw.departure_in_minutes.is_some()),
            ("time_delta_mins", raw.time_delta_mins.is_some()),
            ("radius_km", raw.radius_km.is_some()),
            ("regular_time_of_day", raw.regular_time_of_day.is_some()),
            ("count", raw.count.is_some()),
        ],
    ));
    let mut plan = Plan::default();
    let mut known: Vec<String> = Vec::new();
    if let Some(calls) = raw.calls.take() {
        let span = calls.span();
        if !is_json {
            errors.push(err(
                Some(span.clone()),
                Some("calls"),
                "only json definitions take [[calls]]".into(),
            ));
        }
        for c in calls.into_inner() {
            let key = format!("calls.{}", c.name);
            if !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                || c.name.is_empty()
            {
                errors.push(err(
                    Some(span.clone()),
                    Some(&key),
                    "a call's name is made of a-z, 0-9 and '-'".into(),
                ));
            }
            if !(c.url.starts_with("http://")
                || c.url.starts_with("https://")
                || c.url.starts_with("${"))
            {
                errors.push(err(
                    Some(span.clone()),
                    Some(&key),
                    format!("{:?} must be an http:// or https:// URL", c.url),
                ));
            }
            for name in template_names(&c.url)
                .into_iter()
                .chain(c.body.as_deref().map(template_names).unwrap_or_default())
            {
                if !known.contains(&name) {
                    errors.push(err(
                        Some(span.clone()),
                        Some(&key),
                        format!("{{{name}}} is not extracted by an earlier call"),
                    ));
                }
            }
            if let Some(b) = &c.body
                && serde_json::from_str::<serde_json::Value>(&fill_for_check(b)).is_err()
            {
                errors.push(err(
                    Some(span.clone()),
                    Some(&key),
                    "body must be a JSON template".into(),
                ));
            }
            known.extend(c.extract.keys().cloned());
            plan.calls.push(mobiflux_extractors::rest::Call {
                name: c.name,
                url: c.url,
                body: c.body,
                headers: c.headers.into_iter().collect(),
                extract: c.extract.into_iter().collect(),
            });
        }
    }
    if let Some(b) = raw.body.take() {
        if !is_json {
            errors.push(err(
                None,
                Some("body"),
                "only json definitions take body".into(),
            ));
        } else if serde_json::from_str::<serde_json::Value>(&fill_for_check(&b)).is_err() {
            errors.push(err(
                None,
                Some("body"),
                "body must be a JSON template".into(),
            ));
        }
        plan.body = Some(b);
    }
    if is_json {
        for name in template_names(raw.url.get_ref())
            .into_iter()
            .chain(plan.body.as_deref().map(template_names).unwrap_or_default())
        {
            if !known.contains(&name) {
                errors.push(err(
                    Some(raw.url.span()),
                    Some("url"),
                    format!("{{{name}}} is not extracted by a [[calls]] entry"),
                ));
            }
        }
    }
    if let Some(a) = raw.auth.take() {
        let span = a.span();
        match (is_json, auth_of(a.into_inner())) {
            (false, _) => errors.push(err(
                Some(span),
                Some("auth"),
                "only json definitions take [auth]; other formats send [headers]".into(),
            )),
            (true, Ok(auth)) => plan.auth = auth,
            (true, Err(m)) => errors.push(err(Some(span), Some("auth"), m)),
        }
    }
    if let Some(p) = raw.paging.take() {
        let span = p.span();
        match (is_json, paging_of(p.into_inner())) {
            (false, _) => errors.push(err(
                Some(span),
                Some("paging"),
                "only json definitions take [paging]".into(),
            )),
            (true, Ok((paging, max))) => {
                plan.paging = paging;
                plan.max_pages = max;
            }
            (true, Err(m)) => errors.push(err(Some(span), Some("paging"), m)),
        }
    }
    // `${VAR}` references of the plan, checked like the URL's.
    {
        let mut texts: Vec<(String, &str)> = Vec::new();
        match &plan.auth {
            Auth::None => {}
            Auth::ApiKey { key, .. } => texts.push(("auth.key".into(), key)),
            Auth::Bearer(t) => texts.push(("auth.token".into(), t)),
            Auth::Basic { user, password } => {
                texts.push(("auth.user".into(), user));
                texts.push(("auth.password".into(), password));
            }
            Auth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                ..
            } => {
                texts.push(("auth.token_url".into(), token_url));
                texts.push(("auth.client_id".into(), client_id));
                texts.push(("auth.client_secret".into(), client_secret));
            }
        }
        for c in &plan.calls {
            texts.push((format!("calls.{}.url", c.name), &c.url));
            if let Some(b) = &c.body {
                texts.push((format!("calls.{}.body", c.name), b));
            }
            for (k, v) in &c.headers {
                texts.push((format!("calls.{}.headers.{k}", c.name), v));
            }
        }
        if let Some(b) = &plan.body {
            texts.push(("body".into(), b));
        }
        for (key, text) in texts {
            if let Err(m) = check_refs(text) {
                errors.push(err(None, Some(&key), m));
            }
        }
    }
    match (&raw.records, is_json) {
        (None, true) => errors.push(err(
            None,
            Some("records"),
            "a json definition names the path of its records (records = \"data.items.*\")".into(),
        )),
        (Some(r), true) => {
            if let Err(m) = mobiflux_transforms::jsonmap::check_path(r.get_ref()) {
                errors.push(err(Some(r.span()), Some("records"), m));
            }
        }
        (Some(r), false) => errors.push(err(
            Some(r.span()),
            Some("records"),
            "only json definitions take records".into(),
        )),
        (None, false) => {}
    }
    match (&raw.table, &raw.columns) {
        (Some(table), Some(columns)) if is_csv => {
            let line = Some(columns.span());
            match mobiflux_model::schema::table(table.get_ref()).filter(|t| t.name != "quarantine")
            {
                None => errors.push(err(
                    Some(table.span()),
                    Some("table"),
                    format!(
                        "{:?} is not a unified table; one of {:?}",
                        table.get_ref(),
                        mobiflux_model::schema::UNIFIED_TABLES
                            .iter()
                            .map(|t| t.name)
                            .collect::<Vec<_>>()
                    ),
                )),
                Some(target) => {
                    let mut specs = Vec::new();
                    let mut raw_columns = columns.get_ref().iter().collect::<Vec<_>>();
                    raw_columns
                        .sort_by_key(|(k, _)| target.columns.iter().position(|c| &c.name == k));
                    for (name, _) in &raw_columns {
                        if target.column(name).is_none() {
                            errors.push(err(
                                line.clone(),
                                Some(&format!("columns.{name}")),
                                format!("table {} has no column {name}", target.name),
                            ));
                        }
                    }
                    let owned = raw
                        .columns
                        .take()
                        .map(Spanned::into_inner)
                        .unwrap_or_default();
                    for (name, spec) in owned {
                        let Some(c) = target.columns.iter().find(|c| c.name == name) else {
                            continue;
                        };
                        let step = if is_html {
                            page_column(c.name, spec).map(|(field, s)| {
                                page_fields.extend(field);
                                s
                            })
                        } else {
                            column_spec(c.name, spec)
                        };
                        match step {
                            Ok(s) => specs.push(s),
                            Err(m) => {
                                errors.push(err(line.clone(), Some(&format!("columns.{name}")), m))
                            }
                        }
                    }
                    let table = MappedTable {
                        target,
                        columns: specs,
                        nulls: raw.nulls.clone().unwrap_or_else(|| vec![String::new()]),
                    };
                    match table.check() {
                        Ok(()) => mapping = Some(Arc::new(table)),
                        Err(m) => errors.push(err(line, Some("columns"), m)),
                    }
                }
            }
        }
        _ if is_csv => errors.push(err(
            None,
            Some(if raw.table.is_none() {
                "table"
            } else {
                "columns"
            }),
            format!(
                "a {} definition names its target table and maps its [columns]",
                raw.format.get_ref()
            ),
        )),
        (Some(t), _) => errors.push(err(
            Some(t.span()),
            Some("table"),
            "only csv, fixed_width, access_log, html and json definitions name a table".into(),
        )),
        (None, Some(c)) => errors.push(err(
            Some(c.span()),
            Some("columns"),
            "only csv, fixed_width, access_log, html and json definitions map columns".into(),
        )),
        (None, None) => {}
    }
    let mut fixed = None;
    if is_fixed {
        match &raw.fields {
            None => errors.push(err(
                None,
                Some("fields"),
                "a fixed_width definition gives [fields] name = [first, last] positions".into(),
            )),
            Some(f) => {
                let mut fields = Vec::new();
                for (name, pos) in f.get_ref() {
                    match pos.as_slice() {
                        [a, b] => fields.push((name.clone(), *a, *b)),
                        _ => errors.push(err(
                            Some(f.span()),
                            Some(&format!("fields.{name}")),
                            "give [first, last] character positions".into(),
                        )),
                    }
                }
                fields.sort_by_key(|f| f.1);
                if let Some(m) = mapping.take() {
                    let map = FixedMap {
                        fields,
                        header: raw.header.unwrap_or(false),
                        mapping: MappedTable::clone(&m),
                    };
                    match map.check() {
                        Ok(()) => fixed = Some(Arc::new(map)),
                        Err(e) => errors.push(err(Some(f.span()), Some("fields"), e)),
                    }
                }
            }
        }
    } else if raw.fields.is_some() || raw.header.is_some() {
        errors.push(err(
            None,
            Some("fields"),
            "only fixed_width definitions take fields and header".into(),
        ));
    }
    let mut log = None;
    if is_log {
        let pattern = match (&raw.log_format, &raw.pattern) {
            (Some(name), None) => match mobiflux_transforms::logs::named_pattern(name.get_ref()) {
                Some(p) => Some((name.get_ref().clone(), p)),
                None => {
                    errors.push(err(
                        Some(name.span()),
                        Some("log_format"),
                        format!("{:?} is not a known log format (combined, combined_timed); give pattern = '…' instead", name.get_ref()),
                    ));
                    None
                }
            },
            (None, Some(p)) => Some(("pattern".to_string(), p.get_ref().clone())),
            _ => {
                errors.push(err(
                    None,
                    Some("log_format"),
                    "an access_log definition gives log_format or pattern (not both)".into(),
                ));
                None
            }
        };
        if let Some((name, p)) = pattern {
            match regex::Regex::new(&p) {
                Err(e) => errors.push(err(
                    raw.pattern.as_ref().map(|s| s.span()),
                    Some("pattern"),
                    format!("{e}"),
                )),
                Ok(re) => {
                    if let Some(m) = mapping.take() {
                        log = Some(Arc::new(LogMap {
                            name,
                            pattern: re,
                            mapping: MappedTable::clone(&m),
                        }));
                    }
                }
            }
        }
    } else if raw.log_format.is_some() || raw.pattern.is_some() {
        errors.push(err(
            None,
            Some("log_format"),
            "only access_log definitions take log_format or pattern".into(),
        ));
    }
    let mut page = None;
    let mut page_urls = Vec::new();
    let mut next_page = None;
    if is_html {
        match &raw.rows {
            None => errors.push(err(
                None,
                Some("rows"),
                "an html definition names the CSS selector of its rows".into(),
            )),
            Some(rows) => match mobiflux_transforms::html::check_selector(rows.get_ref()) {
                Err(m) => errors.push(err(Some(rows.span()), Some("rows"), m)),
                Ok(()) => {
                    if let Some(m) = &mapping {
                        page = Some(Arc::new(PageSpec {
                            rows: rows.get_ref().clone(),
                            fields: std::mem::take(&mut page_fields),
                            mapping: MappedTable::clone(m),
                        }));
                        mapping = None;
                    }
                }
            },
        }
        page_urls.push(raw.url.get_ref().clone());
        page_urls.extend(raw.urls.clone().unwrap_or_default());
        if let Some(p) = &raw.pages {
            let mut bad = |m: String| errors.push(err(Some(p.span()), Some("pages"), m));
            match p.get_ref() {
                PagesRaw {
                    template: Some(t),
                    from: Some(from),
                    to: Some(to),
                    next: None,
                    max: None,
                } => {
                    if !t.contains("{page}") || to < from || to - from >= MAX_PAGES {
                        bad(format!(
                            "template must hold {{page}} and from..to cover 1 to {MAX_PAGES} pages"
                        ));
                    } else {
                        page_urls.extend((*from..=*to).map(|n| t.replace("{page}", &n.to_string())));
                    }
                }
                PagesRaw {
                    template: None,
                    from: None,
                    to: None,
                    next: Some(css),
                    max,
                } => {
                    let max = max.unwrap_or(MAX_PAGES);
                    if let Err(m) = mobiflux_transforms::html::check_selector(css) {
                        bad(m);
                    } else if !(1..=MAX_PAGES).contains(&max) {
                        bad(format!("max must be 1 to {MAX_PAGES} pages"));
                    } else {
                        next_page = Some((css.clone(), max as usize));
                    }
                }
                _ => bad(
                    "either { template, from, to } (page numbers) or { next, max } (a next-page link selector)"
                        .into(),
                ),
            }
        }
        for u in &page_urls {
            if !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("${")) {
                errors.push(err(
                    None,
                    Some("urls"),
                    format!("{u:?} must be an http:// or https:// URL"),
                ));
            }
        }
    }
    errors.extend(only_for(
        is_html,
        "html definitions",
        &[
            ("rows", raw.rows.is_some()),
            ("urls", raw.urls.is_some()),
            ("pages", raw.pages.is_some()),
            ("user_agent", raw.user_agent.is_some()),
            ("rate_per_second", raw.rate_per_second.is_some()),
            ("robots", raw.robots.is_some()),
        ],
    ));
    let rate = raw
        .rate_per_second
        .as_ref()
        .map(|r| *r.get_ref())
        .unwrap_or(1.0);
    if !(rate > 0.0 && rate <= 100.0) {
        errors.push(err(
            raw.rate_per_second.as_ref().map(|r| r.span()),
            Some("rate_per_second"),
            format!("{rate} must be above 0 and at most 100"),
        ));
    }
    if raw.nulls.is_some() && !is_csv {
        errors.push(err(
            None,
            Some("nulls"),
            "only csv, fixed_width, access_log, html and json definitions take nulls".into(),
        ));
    }
    if raw.schema.is_some() && is_csv && raw.format.get_ref() != "csv" {
        errors.push(err(
            None,
            Some("schema"),
            "a Table Schema is for irve, irve-dynamic, bnls and csv definitions".into(),
        ));
    }
    errors.extend(only_for(
        file_format,
        &format!("file formats {FILE_FORMATS:?}"),
        &[
            ("schema", raw.schema.is_some()),
            ("delimiter", raw.delimiter.is_some()),
            ("encoding", raw.encoding.is_some()),
        ],
    ));
    // The schedule's longest wait between two ticks over the next 8 days, once: the cache
    // TTL rule and the warehouse's `pipelines` registry both read it.
    let longest_gap = Schedule::parse(raw.schedule.get_ref(), &timezone)
        .ok()
        .and_then(|s| s.longest_gap(chrono::Utc::now()))
        .map(|g| g.num_seconds().max(0) as u64);
    let cache = match CACHE_DEFAULTS
        .iter()
        .find(|(f, _, _)| f == raw.format.get_ref())
    {
        Some(&(_, soft_default, hard_default)) => {
            let soft = raw
                .soft_ttl
                .as_ref()
                .map(|v| *v.get_ref())
                .unwrap_or(soft_default);
            let hard = raw
                .hard_ttl
                .as_ref()
                .map(|v| *v.get_ref())
                .unwrap_or(hard_default);
            if let Err(m) = check_ttls(soft, hard, longest_gap) {
                let (span, key) = match (&raw.soft_ttl, &raw.hard_ttl) {
                    (Some(v), _) => (Some(v.span()), "soft_ttl"),
                    (None, Some(v)) => (Some(v.span()), "hard_ttl"),
                    (None, None) => (Some(raw.schedule.span()), "schedule"),
                };
                let defaults = if raw.soft_ttl.is_none() && raw.hard_ttl.is_none() {
                    format!(
                        " (the {} defaults; set soft_ttl and hard_ttl)",
                        raw.format.get_ref()
                    )
                } else {
                    String::new()
                };
                errors.push(err(span, Some(key), format!("{m}{defaults}")));
            }
            let partner_id = match &raw.gateway_partner_id {
                Some(id)
                    if id.get_ref().trim().is_empty() || id.get_ref().contains([':', '/', ' ']) =>
                {
                    errors.push(err(
                        Some(id.span()),
                        Some("gateway_partner_id"),
                        format!(
                            "{:?} must be non-empty, without ':', '/' or spaces",
                            id.get_ref()
                        ),
                    ));
                    String::new()
                }
                Some(id) => id.get_ref().clone(),
                None => raw.partner.get_ref().clone(),
            };
            Some(CacheSettings {
                soft_ttl: Duration::from_secs(soft),
                hard_ttl: Duration::from_secs(hard),
                partner_id,
            })
        }
        None => {
            errors.extend(only_for(
                false,
                &format!(
                    "formats the gateway serves ({:?})",
                    CACHE_DEFAULTS.iter().map(|d| d.0).collect::<Vec<_>>()
                ),
                &[
                    ("soft_ttl", raw.soft_ttl.is_some()),
                    ("hard_ttl", raw.hard_ttl.is_some()),
                    ("gateway_partner_id", raw.gateway_partner_id.is_some()),
                ],
            ));
            None
        }
    };
    let jitter = raw.jitter_secs.as_ref().map(|v| *v.get_ref()).unwrap_or(0);
    if let Some(v) = &raw.jitter_secs
        && jitter > 3600
    {
        errors.push(err(
            Some(v.span()),
            Some("jitter_secs"),
            format!("{jitter} must be at most 3600"),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Definition {
        file: file.to_path_buf(),
        name: raw.name.into_inner(),
        partner: raw.partner.into_inner(),
        territory: raw.territory.map(Spanned::into_inner),
        format: raw.format.into_inner(),
        url: raw.url.into_inner(),
        schedule: raw.schedule.into_inner(),
        timezone,
        longest_gap,
        language: raw.language,
        system_id: raw.system_id,
        timeout: Duration::from_secs(timeout),
        max_body_bytes: max_mb * 1024 * 1024,
        retries,
        headers: raw.headers,
        sensitive: raw
            .sensitive
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        schema: raw.schema.map(|s| PathBuf::from(s.into_inner())),
        delimiter,
        encoding,
        mapping,
        log,
        fixed,
        page,
        page_urls,
        next_page,
        records: raw.records.map(Spanned::into_inner),
        plan,
        carpool,
        departure_in_minutes: raw.departure_in_minutes.unwrap_or(0),
        user_agent: raw.user_agent,
        min_interval: Duration::from_secs_f64(1.0 / rate),
        robots: raw.robots.unwrap_or(true),
        cache,
        jitter: Duration::from_secs(jitter),
    })
}

/// Checks `${VAR}` syntax without resolving.
fn check_refs(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let var = &after[..end];
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{var}}} is not an environment variable name"));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Replaces `${VAR}` references from the environment; returns the text and the values used.
/// `overrides` are consulted before the process environment (the demo's simulator address).
pub fn resolve(
    s: &str,
    what: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::new();
    let mut used = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{what}: unclosed ${{"))?;
        let var = &after[..end];
        let value = overrides
            .get(var)
            .cloned()
            .or_else(|| std::env::var(var).ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!("{what} references ${{{var}}}, which is not set in the environment")
            })?;
        out.push_str(&value);
        used.push(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, used))
}

/// Reads every `*.toml` in a folder (sorted); names must be unique across files.
pub fn load_dir(dir: &Path) -> Result<(Vec<Definition>, Vec<DefinitionError>), std::io::Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut defs: Vec<Definition> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(DefinitionError {
                    file: f,
                    line: 1,
                    key: None,
                    message: e.to_string(),
                });
                continue;
            }
        };
        match parse(&f, &text) {
            Ok(d) => {
                if let Some(first) = defs.iter().find(|o| o.name == d.name) {
                    let line = text
                        .lines()
                        .position(|l| l.trim_start().starts_with("name"))
                        .unwrap_or(0)
                        + 1;
                    errors.push(DefinitionError {
                        file: f.clone(),
                        line,
                        key: Some("name".into()),
                        message: format!(
                            "{:?} is already defined in {}",
                            d.name,
                            first.file.display()
                        ),
                    });
                } else {
                    defs.push(d);
                }
            }
            Err(es) => errors.extend(es),
        }
    }
    Ok((defs, errors))
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    const JSON: &str = "name = \"zoomi\"\npartner = \"zoomi\"\nformat = \"json\"\nurl = \"https://api.example/v2/scooters\"\nschedule = \"0 * * * * *\"\ntable = \"regions\"\nrecords = \"items.*\"\n[columns]\nregion_id = \"id\"\nname = \"name\"\n";

    fn messages(text: &str) -> Vec<String> {
        parse(Path::new("z.toml"), text)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn auth_paging_and_calls_are_checked() {
        let d = parse(
            Path::new("z.toml"),
            &format!("{JSON}[auth]\ntype = \"oauth2\"\ntoken_url = \"https://api.example/token\"\nclient_id = \"app\"\nclient_secret = \"${{ZOOMI_SECRET}}\"\n[paging]\ncursor = \"meta.next\"\nparam = \"cursor\"\n"),
        )
        .unwrap();
        assert!(matches!(d.plan.auth, Auth::OAuth2 { in_body: false, .. }));
        assert_eq!(
            d.plan.paging,
            Paging::Cursor {
                path: "meta.next".into(),
                param: "cursor".into()
            }
        );
        let bad = messages(&format!(
            "{JSON}[auth]\ntype = \"oauth2\"\ntoken_url = \"https://api.example/token\"\nclient_id = \"app\"\nclient_secret = \"${{bad name}}\"\n"
        ));
        assert!(
            bad.iter().any(|m| m.contains("auth.client_secret: ")),
            "{bad:?}"
        );
        let missing = messages(&format!("{JSON}[auth]\ntype = \"basic\"\nuser = \"ops\"\n"));
        assert!(
            missing
                .iter()
                .any(|m| m.ends_with("auth: auth type basic needs password")),
            "{missing:?}"
        );
        let two = messages(&format!(
            "{JSON}[paging]\nnext = \"links.next\"\npage = \"page\"\n"
        ));
        assert!(
            two.iter().any(|m| m.contains("paging: give one of")),
            "{two:?}"
        );
        let gbfs = messages(
            "name = \"v\"\npartner = \"v\"\nformat = \"gbfs\"\nurl = \"https://x/gbfs.json\"\nschedule = \"0 * * * * *\"\n[auth]\ntype = \"bearer\"\ntoken = \"t\"\n",
        );
        assert!(
            gbfs.iter()
                .any(|m| m.contains("only json definitions take [auth]")),
            "{gbfs:?}"
        );
    }
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn a_grid_gives_every_cell_to_every_other_and_refuses_too_many() {
        let g = GridRaw {
            south: 48.80,
            west: 2.25,
            north: 48.90,
            east: 2.42,
            step_km: 6.0,
        };
        let pairs = grid_pairs(&g).unwrap();
        // Cell centres inside the box: 2 rows (11.1 km) by 2 columns (12.5 km at this
        // latitude), every one to every other: 12 ordered pairs.
        assert_eq!(pairs.len(), 12);
        assert!(pairs.iter().all(|(a, b)| a != b));
        let fine = GridRaw { step_km: 1.0, ..g };
        assert!(grid_pairs(&fine).unwrap_err().contains("at most 400 pairs"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name = "velo-city"
partner = "velo-city"
format = "gbfs"
url = "http://127.0.0.1:8080/gbfs.json"
schedule = "0 * * * * *"
"#;

    #[test]
    fn five_keys_make_a_feed_and_the_rest_defaults() {
        let d = parse(Path::new("p/velo.toml"), GOOD).unwrap();
        assert_eq!(d.name, "velo-city");
        assert_eq!(d.timezone, "Europe/Paris");
        assert_eq!(d.timeout, Duration::from_secs(30));
        assert_eq!(d.max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(d.territory, None);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = GOOD
            .replace("0 * * * * *", "* * * * *")
            .replace("\"gbfs\"", "\"gtfs\"");
        let errs = parse(Path::new("p/velo.toml"), &text).unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "p/velo.toml:3: format: unknown format \"gtfs\"; this version reads [\"gbfs\", \"tomp\", \"irve\", \"irve-dynamic\", \"bnls\", \"csv\", \"fixed_width\", \"access_log\", \"html\", \"json\", \"covoiturage\"]".to_string(),
                "p/velo.toml:5: schedule: \"* * * * *\" is not a cron expression with seconds (sec min hour day month weekday): expected 6 fields, found 5".to_string(),
            ]
        );
        let missing = parse(Path::new("x.toml"), "name = \"a\"\n").unwrap_err();
        assert_eq!(missing[0].key.as_deref(), Some("partner"));
        let unknown = parse(Path::new("x.toml"), &format!("{GOOD}colour = \"red\"\n")).unwrap_err();
        assert_eq!(unknown[0].line, 6);
        assert_eq!(unknown[0].key.as_deref(), Some("colour"));
        let bad_name = parse(
            Path::new("x.toml"),
            &GOOD.replace("name = \"velo-city\"", "name = \"Velo City\""),
        )
        .unwrap_err();
        assert_eq!(
            bad_name[0].to_string(),
            "x.toml:1: name: \"Velo City\" must be 1-63 characters of a-z, 0-9 and '-'"
        );
    }

    #[test]
    fn csv_definitions_map_columns_and_errors_name_the_column() {
        let good = r#"name = "p"
partner = "p"
format = "csv"
url = "/data/p.csv"
schedule = "0 0 * * * *"
table = "parking_occupancy"
delimiter = ";"

[columns]
facility_id = "Name"
observed_at = { from = "Zeit", time = "%d.%m.%Y %H:%M", timezone = "Europe/Berlin" }
free = { from = "Frei", decimal = "," }
"#;
        let d = parse(Path::new("p.toml"), good).unwrap();
        let m = d.mapping.unwrap();
        assert_eq!(m.target.name, "parking_occupancy");
        assert_eq!(m.columns.len(), 3);
        assert_eq!(d.delimiter, b';');
        let bad = good
            .replace("parking_occupancy", "parkings")
            .replace("[columns]", "[columns]\nfoo = \"Bar\"");
        let errs = parse(Path::new("p.toml"), &bad).unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .starts_with("p.toml:6: table: \"parkings\" is not a unified table"),
            "{errs:?}"
        );
        let bad = good
            .replace("timezone = \"Europe/Berlin\"", "timezone = \"Berlin\"")
            .replace("facility_id = \"Name\"\n", "");
        let shown: Vec<String> = parse(Path::new("p.toml"), &bad)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            vec![
                "p.toml:9: columns.observed_at: timezone \"Berlin\" is not an IANA timezone"
                    .to_string(),
                "p.toml:9: columns: table parking_occupancy needs [\"facility_id\"] mapped"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn references_resolve_from_the_environment_or_say_which_is_missing() {
        assert_eq!(
            resolve(
                "${MOBIFLUX_TEST_SURELY_UNSET_VAR}/x",
                "url",
                &BTreeMap::new()
            )
            .unwrap_err(),
            "url references ${MOBIFLUX_TEST_SURELY_UNSET_VAR}, which is not set in the environment"
        );
        let (s, used) = resolve("http://h/${PATH}", "url", &BTreeMap::new()).unwrap();
        assert!(s.starts_with("http://h/") && used.len() == 1);
        assert!(check_refs("${bad name}").is_err());
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn gbfs(schedule: &str, extra: &str) -> String {
        format!(
            "name = \"velo\"\npartner = \"velo\"\nformat = \"gbfs\"\nurl = \"https://x/gbfs.json\"\nschedule = \"{schedule}\"\n{extra}"
        )
    }

    fn messages(text: &str) -> Vec<String> {
        parse(Path::new("p/velo.toml"), text)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn defaults_per_format_and_overrides() {
        let d = parse(Path::new("v.toml"), &gbfs("0 * * * * *", "")).unwrap();
        let c = d.cache.unwrap();
        assert_eq!((c.soft_ttl.as_secs(), c.hard_ttl.as_secs()), (120, 600));
        assert_eq!(c.partner_id, "velo");
        let d = parse(
            Path::new("v.toml"),
            &gbfs(
                "0 */5 * * * *",
                "soft_ttl = 300\nhard_ttl = 600\ngateway_partner_id = \"b814c97e-df56-4651-ac50-11525537964f\"\n",
            ),
        )
        .unwrap();
        let c = d.cache.unwrap();
        assert_eq!((c.soft_ttl.as_secs(), c.hard_ttl.as_secs()), (300, 600));
        assert_eq!(c.partner_id, "b814c97e-df56-4651-ac50-11525537964f");
    }

    #[test]
    fn the_dat_rule_names_both_values() {
        assert_eq!(
            messages(&gbfs("0 * * * * *", "soft_ttl = 600\nhard_ttl = 600\n")),
            vec![
                "p/velo.toml:6: soft_ttl: soft_ttl 600 s must be above 0 and below hard_ttl 600 s"
            ]
        );
        // Hard at least twice soft: one refresh per soft TTL is enough.
        assert_eq!(
            messages(&gbfs("0 */10 * * * *", "soft_ttl = 300\nhard_ttl = 1200\n")),
            vec![
                "p/velo.toml:6: soft_ttl: the schedule waits up to 600 s between runs, but with soft_ttl 300 s and hard_ttl 1200 s it must refresh before the soft TTL runs out, at least every 300 s"
            ]
        );
        // Hard below twice soft: two refreshes per soft TTL.
        assert_eq!(
            messages(&gbfs("0 */5 * * * *", "soft_ttl = 300\nhard_ttl = 500\n")),
            vec![
                "p/velo.toml:6: soft_ttl: the schedule waits up to 300 s between runs, but with soft_ttl 300 s and hard_ttl 500 s it must refresh twice per soft TTL (hard_ttl is less than twice soft_ttl), at least every 150 s"
            ]
        );
        assert!(
            parse(
                Path::new("v.toml"),
                &gbfs("0 */2 * * * *", "soft_ttl = 300\nhard_ttl = 500\n")
            )
            .is_ok()
        );
        // Defaults that the schedule cannot honour say so.
        assert_eq!(
            messages(&gbfs("0 0 * * * *", "")),
            vec![
                "p/velo.toml:5: schedule: the schedule waits up to 3600 s between runs, but with soft_ttl 120 s and hard_ttl 600 s it must refresh before the soft TTL runs out, at least every 120 s (the gbfs defaults; set soft_ttl and hard_ttl)"
            ]
        );
    }

    #[test]
    fn files_do_not_take_cache_keys() {
        let text = "name = \"irve\"\npartner = \"irve\"\nformat = \"irve\"\nurl = \"data/irve.csv\"\nschedule = \"0 0 3 * * *\"\nsoft_ttl = 60\n";
        assert_eq!(
            messages(text),
            vec![
                "p/velo.toml:1: soft_ttl: only formats the gateway serves ([\"gbfs\", \"tomp\", \"json\", \"covoiturage\"]) take soft_ttl"
            ]
        );
        let d = parse(Path::new("i.toml"), &text.replace("soft_ttl = 60\n", "")).unwrap();
        assert_eq!(d.cache, None);
    }
}
