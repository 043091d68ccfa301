//! The gateway cache: what the MaaS gateway serves, per partner and resource, in its pivot
//! format. One trait, [`GatewayCache`], with Redis (production) and an embedded SQLite
//! store (the default without a server) side by side, with the same semantics:
//!
//! - an entry carries `fetched_at`, the run id, the hash of the raw objects it was built
//!   from and its soft expiry; it disappears at its hard expiry (a Redis key TTL);
//! - after the soft expiry the entry is *stale* but still served; a failed refresh
//!   publishes nothing, so a good entry is never deleted or shortened by an error;
//! - a publication (every resource of one run, with its geo points) replaces the previous
//!   one atomically: a reader sees the old version or the new one, never a mix or a gap;
//! - positions go to a geo index per partner and one across partners, members of the old
//!   version leaving with it, so "around me" is one radius query.

mod embedded;
pub mod pivot;
mod redis;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use embedded::EmbeddedCache;
pub use redis::RedisCache;

/// Kinds of positions indexed for radius searches.
pub const GEO_KINDS: &[&str] = &["vehicles", "stations"];

/// One indexed position (WGS84).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: String,
    pub lat: f64,
    pub lon: f64,
}

/// One resource of a publication, already in the gateway's pivot format.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `stations`, `stations-status`, `available-assets`, `zones`, …
    pub name: String,
    /// The JSON document the gateway serves.
    pub payload: String,
    /// Positions to index under a geo kind (`vehicles`, `stations`), if any.
    pub geo: Option<(&'static str, Vec<Point>)>,
}

/// Everything one successful run publishes.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The partner as the gateway knows it (its partner id).
    pub partner: String,
    pub territory: Option<String>,
    pub meta: EntryMeta,
    pub resources: Vec<Resource>,
}

/// An entry's metadata, the same for every resource of a publication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryMeta {
    pub pipeline: String,
    pub run_id: String,
    pub fetched_at: DateTime<Utc>,
    /// sha256 over the raw objects the payloads were built from.
    pub source_hash: String,
    pub published_at: DateTime<Utc>,
    pub soft_expires_at: DateTime<Utc>,
    pub hard_expires_at: DateTime<Utc>,
}

impl EntryMeta {
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        now >= self.soft_expires_at
    }
}

/// What the gateway would serve for one partner and resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub payload: String,
    pub meta: EntryMeta,
}

/// A partner's line in the global view of its territory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Freshness {
    pub partner_id: String,
    pub pipeline: String,
    pub run_id: String,
    pub fetched_at: DateTime<Utc>,
    pub soft_expires_at: DateTime<Utc>,
    pub hard_expires_at: DateTime<Utc>,
    pub resources: Vec<String>,
}

impl Freshness {
    pub fn of(p: &Publication) -> Self {
        Freshness {
            partner_id: p.partner.clone(),
            pipeline: p.meta.pipeline.clone(),
            run_id: p.meta.run_id.clone(),
            fetched_at: p.meta.fetched_at,
            soft_expires_at: p.meta.soft_expires_at,
            hard_expires_at: p.meta.hard_expires_at,
            resources: p.resources.iter().map(|r| r.name.clone()).collect(),
        }
    }
}

/// One answer of a radius search.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub partner: String,
    pub id: String,
    pub lat: f64,
    pub lon: f64,
    pub distance_m: f64,
}

/// A radius search: around a point, nearest first.
#[derive(Debug, Clone)]
pub struct Around {
    pub kind: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
    pub limit: usize,
    /// One partner's index instead of the one across partners.
    pub partner: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("gateway cache {target}: {message}")]
    Unavailable { target: String, message: String },
    #[error("gateway cache URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("gateway cache {target}: entry {key} is damaged: {message}")]
    Damaged {
        target: String,
        key: String,
        message: String,
    },
}

pub trait GatewayCache: Send + Sync {
    /// Replaces the partner's resources (and their geo points) atomically.
    fn publish<'a>(&'a self, p: &'a Publication) -> BoxFuture<'a, Result<(), CacheError>>;
    /// The entry the gateway would serve, fresh or stale; `None` once hard-expired.
    fn get<'a>(
        &'a self,
        partner: &'a str,
        resource: &'a str,
    ) -> BoxFuture<'a, Result<Option<Entry>, CacheError>>;
    /// Indexed positions within the radius, nearest first, at most `limit`.
    fn around<'a>(&'a self, q: &'a Around) -> BoxFuture<'a, Result<Vec<Hit>, CacheError>>;
    /// The partners of a territory (all partners with `None`) that still have entries.
    fn partners<'a>(
        &'a self,
        territory: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Freshness>, CacheError>>;
    /// Where the cache is, without credentials.
    fn describe(&self) -> String;
}

/// Opens the cache named by a URL: `redis://…` / `rediss://…` (an optional `?prefix=NAME`
/// namespaces the keys, `mobiflux` by default) or `sqlite://path` (the embedded store).
pub async fn open(url: &str) -> Result<Box<dyn GatewayCache>, CacheError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Box::new(RedisCache::connect(url).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(EmbeddedCache::open(path).await?))
    } else {
        Err(CacheError::BadUrl {
            url: mobiflux_model::redact::url(url, &[]),
            message: "expected redis://host:port[/db][?prefix=NAME] or sqlite://path".into(),
        })
    }
}

fn from_epoch_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Great-circle distance in metres (the mean Earth radius Redis uses for GEO commands).
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const R: f64 = 6_372_797.560_856;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().asin()
}

/// Positions Redis can index (it refuses latitudes beyond ±85.05112878).
pub fn indexable(p: &Point) -> bool {
    p.lat.is_finite() && p.lon.is_finite() && p.lat.abs() <= 85.051_128_78 && p.lon.abs() <= 180.0
}
