//! The gateway cache on Redis.
//!
//! Keys (`P` is the prefix, `mobiflux` unless the URL says `?prefix=`):
//! - `P:entry:{partner}:{resource}`: a hash (`payload`, `pipeline`, `run_id`, `fetched_at`,
//!   `source_hash`, `published_at`, `soft_expires_at`, `hard_expires_at`; times in epoch
//!   milliseconds) expiring at the hard expiry. `HGETALL` reads one version whole.
//! - `P:geo:{kind}:{partner}`: the partner's positions (`GEOSEARCH`-able), members are ids.
//! - `P:geo:{kind}`: every partner's positions, members `{partner}/{id}`, and
//!   `P:geo:{kind}:expiry` (partner → hard expiry, epoch ms) to drop partners whose entries expired.
//! - `P:partners` and `P:partners:{territory}`: hashes partner → freshness (JSON).
//!
//! A publication is one Lua script (Redis runs it atomically): its positions are first
//! written to a temporary key, then the script swaps entries, indexes and freshness.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;

use super::{
    Around, CacheError, Entry, EntryMeta, Freshness, GatewayCache, Hit, Publication, from_epoch_ms,
    indexable,
};

/// Every network step gives up after this long (the cache must never hang a run).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Positions per GEOADD.
const GEO_BATCH: usize = 2_000;

const PUBLISH: &str = r#"
local P, partner, territory = ARGV[1], ARGV[2], ARGV[3]
local now, hard_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local meta = cjson.decode(ARGV[6])
local freshness = ARGV[7]
local n = tonumber(ARGV[8])
local function esc(s) return (string.gsub(s, '[%*%?%[%]\\]', '\\%0')) end
local function batches(list, size, f)
  for j = 1, #list, size do
    local b = {}
    for k = j, math.min(j + size - 1, #list) do b[#b + 1] = list[k] end
    f(b)
  end
end
local i = 9
for r = 1, n do
  local name, payload, kind, tmp = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local key = P .. ':entry:' .. partner .. ':' .. name
  redis.call('DEL', key)
  redis.call('HSET', key, 'payload', payload, 'pipeline', meta.pipeline, 'run_id', meta.run_id,
    'fetched_at', meta.fetched_at, 'source_hash', meta.source_hash,
    'published_at', meta.published_at, 'soft_expires_at', meta.soft_expires_at,
    'hard_expires_at', meta.hard_expires_at)
  redis.call('PEXPIREAT', key, hard_ms)
  if kind ~= '' then
    local pkey = P .. ':geo:' .. kind .. ':' .. partner
    local gkey = P .. ':geo:' .. kind
    local reg = gkey .. ':expiry'
    -- partners whose index outlived their entries leave the shared index
    for _, p in ipairs(redis.call('ZRANGEBYSCORE', reg, '-inf', '(' .. now)) do
      local cursor = '0'
      repeat
        local res = redis.call('ZSCAN', gkey, cursor, 'MATCH', esc(p) .. '/*', 'COUNT', 1000)
        cursor = res[1]
        local gone = {}
        for k = 1, #res[2], 2 do gone[#gone + 1] = res[2][k] end
        if #gone > 0 then redis.call('ZREM', gkey, unpack(gone)) end
      until cursor == '0'
      redis.call('ZREM', reg, p)
    end
    -- this partner's previous version leaves with its members
    local old = redis.call('ZRANGE', pkey, 0, -1)
    local prefixed = {}
    for k = 1, #old do prefixed[k] = partner .. '/' .. old[k] end
    batches(prefixed, 1000, function(b) redis.call('ZREM', gkey, unpack(b)) end)
    if redis.call('EXISTS', tmp) == 1 then
      redis.call('RENAME', tmp, pkey)
      redis.call('PERSIST', pkey)
      redis.call('PEXPIREAT', pkey, hard_ms)
      local new = redis.call('ZRANGE', pkey, 0, -1, 'WITHSCORES')
      local args = {}
      for k = 1, #new, 2 do
        args[#args + 1] = new[k + 1]
        args[#args + 1] = partner .. '/' .. new[k]
      end
      batches(args, 2000, function(b) redis.call('ZADD', gkey, unpack(b)) end)
    else
      redis.call('DEL', pkey)
    end
    redis.call('ZADD', reg, hard_ms, partner)
    local last = redis.call('ZRANGE', reg, -1, -1, 'WITHSCORES')
    if redis.call('EXISTS', gkey) == 1 then redis.call('PEXPIREAT', gkey, last[2]) end
    redis.call('PEXPIREAT', reg, last[2])
  end
end
redis.call('HSET', P .. ':partners', partner, freshness)
if territory ~= '' then redis.call('HSET', P .. ':partners:' .. territory, partner, freshness) end
return n
"#;

pub struct RedisCache {
    client: redis::Client,
    /// Opened at first use and again after a failure: a Redis that is down fails the cache
    /// step of a run, never the opening of the run itself.
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    target: String,
}

impl RedisCache {
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        let target = mobiflux_model::redact::url(url, &[]);
        let (base, prefix) = split_prefix(url);
        let bad = |message: String| CacheError::BadUrl {
            url: target.clone(),
            message,
        };
        let client = redis::Client::open(base.as_str()).map_err(|e| bad(e.to_string()))?;
        Ok(RedisCache {
            client,
            conn: tokio::sync::Mutex::new(None),
            prefix,
            target,
        })
    }

    /// The key prefix (`mobiflux` unless the URL gave one).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn entry_key(&self, partner: &str, resource: &str) -> String {
        format!("{}:entry:{partner}:{resource}", self.prefix)
    }

    fn geo_key(&self, kind: &str, partner: Option<&str>) -> String {
        match partner {
            Some(p) => format!("{}:geo:{kind}:{p}", self.prefix),
            None => format!("{}:geo:{kind}", self.prefix),
        }
    }

    fn down(&self, e: impl std::fmt::Display) -> CacheError {
        CacheError::Unavailable {
            target: self.target.clone(),
            message: e.to_string(),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, CacheError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(TIMEOUT, self.client.get_multiplexed_async_connection())
            .await
            .map_err(|_| self.down(format!("no connection within {} s", TIMEOUT.as_secs())))?
            .map_err(|e| self.down(e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CacheError> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(TIMEOUT, cmd.query_async::<T>(&mut conn))
            .await
            .map_err(|_| self.down(format!("no answer within {} s", TIMEOUT.as_secs())))
            .and_then(|r| {
                r.map_err(|e| {
                    let lost = e.is_io_error() || e.is_connection_dropped() || e.is_timeout();
                    (lost, self.down(e))
                })
                .map_err(|(lost, e)| {
                    if lost {
                        // Reconnect at the next call.
                        if let Ok(mut slot) = self.conn.try_lock() {
                            *slot = None;
                        }
                    }
                    e
                })
            })
    }
}

/// `redis://h:p/db?prefix=NAME` → (`redis://h:p/db`, `NAME`).
fn split_prefix(url: &str) -> (String, String) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), "mobiflux".into());
    };
    let mut prefix = "mobiflux".to_string();
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("prefix=") {
            Some(p) if !p.is_empty() => {
                prefix = p.to_string();
                false
            }
            _ => true,
        })
        .collect();
    if rest.is_empty() {
        (base.to_string(), prefix)
    } else {
        (format!("{base}?{}", rest.join("&")), prefix)
    }
}

fn meta_json(m: &EntryMeta) -> String {
    serde_json::json!({
        "pipeline": m.pipeline,
        "run_id": m.run_id,
        "fetched_at": m.fetched_at.timestamp_millis().to_string(),
        "source_hash": m.source_hash,
        "published_at": m.published_at.timestamp_millis().to_string(),
        "soft_expires_at": m.soft_expires_at.timestamp_millis().to_string(),
        "hard_expires_at": m.hard_expires_at.timestamp_millis().to_string(),
    })
    .to_string()
}

impl GatewayCache for RedisCache {
    fn publish<'a>(&'a self, p: &'a Publication) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            let now = chrono::Utc::now();
            let mut script = redis::cmd("EVAL");
            script
                .arg(PUBLISH)
                .arg(0)
                .arg(&self.prefix)
                .arg(&p.partner)
                .arg(p.territory.as_deref().unwrap_or(""))
                .arg(now.timestamp_millis())
                .arg(p.meta.hard_expires_at.timestamp_millis())
                .arg(meta_json(&p.meta))
                .arg(serde_json::to_string(&Freshness::of(p)).expect("serializable"))
                .arg(p.resources.len());
            let mut temporary = Vec::new();
            for r in &p.resources {
                let (kind, tmp) = match &r.geo {
                    Some((kind, points)) => {
                        let tmp = format!(
                            "{}:tmp:{}:{}:{kind}:{}",
                            self.prefix,
                            p.partner,
                            p.meta.run_id,
                            uuid_like()
                        );
                        let points: Vec<_> = points.iter().filter(|pt| indexable(pt)).collect();
                        for chunk in points.chunks(GEO_BATCH) {
                            let mut add = redis::cmd("GEOADD");
                            add.arg(&tmp);
                            for pt in chunk {
                                add.arg(pt.lon).arg(pt.lat).arg(&pt.id);
                            }
                            self.query::<i64>(&add).await?;
                        }
                        if !points.is_empty() {
                            // Left behind only if this process dies before the swap.
                            self.query::<i64>(redis::cmd("EXPIRE").arg(&tmp).arg(3600))
                                .await?;
                        }
                        temporary.push(tmp.clone());
                        (*kind, tmp)
                    }
                    None => ("", String::new()),
                };
                script.arg(&r.name).arg(&r.payload).arg(kind).arg(tmp);
            }
            let result = self.query::<i64>(&script).await;
            if result.is_err() {
                for tmp in &temporary {
                    let _ = self.query::<i64>(redis::cmd("DEL").arg(tmp)).await;
                }
            }
            result.map(|_| ())
        })
    }

    fn get<'a>(
        &'a self,
        partner: &'a str,
        resource: &'a str,
    ) -> BoxFuture<'a, Result<Option<Entry>, CacheError>> {
        Box::pin(async move {
            let key = self.entry_key(partner, resource);
            let mut h: HashMap<String, String> =
                self.query(redis::cmd("HGETALL").arg(&key)).await?;
            if h.is_empty() {
                return Ok(None);
            }
            let damaged = |message: String| CacheError::Damaged {
                target: self.target.clone(),
                key: key.clone(),
                message,
            };
            let mut take = |f: &str| {
                h.remove(f)
                    .ok_or_else(|| damaged(format!("field {f} is missing")))
            };
            let payload = take("payload")?;
            let pipeline = take("pipeline")?;
            let run_id = take("run_id")?;
            let source_hash = take("source_hash")?;
            let mut time = |f: &str| -> Result<_, CacheError> {
                let v = take(f)?;
                v.parse::<i64>()
                    .map(from_epoch_ms)
                    .map_err(|_| damaged(format!("field {f} is not epoch milliseconds: {v:?}")))
            };
            let meta = EntryMeta {
                pipeline,
                run_id,
                source_hash,
                fetched_at: time("fetched_at")?,
                published_at: time("published_at")?,
                soft_expires_at: time("soft_expires_at")?,
                hard_expires_at: time("hard_expires_at")?,
            };
            Ok(Some(Entry { payload, meta }))
        })
    }

    fn around<'a>(&'a self, q: &'a Around) -> BoxFuture<'a, Result<Vec<Hit>, CacheError>> {
        Box::pin(async move {
            let key = self.geo_key(q.kind, q.partner.as_deref());
            let mut cmd = redis::cmd("GEOSEARCH");
            cmd.arg(&key)
                .arg("FROMLONLAT")
                .arg(q.lon)
                .arg(q.lat)
                .arg("BYRADIUS")
                .arg(q.radius_m)
                .arg("m")
                .arg("ASC")
                .arg("COUNT")
                .arg(q.limit.max(1))
                .arg("WITHDIST")
                .arg("WITHCOORD");
            let rows: Vec<(String, f64, (f64, f64))> = self.query(&cmd).await?;
            Ok(rows
                .into_iter()
                .map(|(member, distance_m, (lon, lat))| {
                    let (partner, id) = match &q.partner {
                        Some(p) => (p.clone(), member),
                        None => match member.split_once('/') {
                            Some((p, id)) => (p.to_string(), id.to_string()),
                            None => (String::new(), member),
                        },
                    };
                    Hit {
                        partner,
                        id,
                        lat,
                        lon,
                        distance_m,
                    }
                })
                .collect())
        })
    }

    fn partners<'a>(
        &'a self,
        territory: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Freshness>, CacheError>> {
        Box::pin(async move {
            let key = match territory {
                Some(t) => format!("{}:partners:{t}", self.prefix),
                None => format!("{}:partners", self.prefix),
            };
            let all: HashMap<String, String> = self.query(redis::cmd("HGETALL").arg(&key)).await?;
            let now = chrono::Utc::now();
            let mut out = Vec::new();
            let mut gone = Vec::new();
            for (partner, json) in all {
                let f: Freshness =
                    serde_json::from_str(&json).map_err(|e| CacheError::Damaged {
                        target: self.target.clone(),
                        key: format!("{key} {partner}"),
                        message: e.to_string(),
                    })?;
                if f.hard_expires_at <= now {
                    gone.push(partner);
                } else {
                    out.push(f);
                }
            }
            if !gone.is_empty() {
                self.query::<i64>(redis::cmd("HDEL").arg(&key).arg(&gone))
                    .await?;
            }
            out.sort_by(|a, b| a.partner_id.cmp(&b.partner_id));
            Ok(out)
        })
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
}

/// A process-unique suffix for temporary keys.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_taken_out_of_the_url() {
        assert_eq!(
            split_prefix("redis://127.0.0.1:6379/2?prefix=t1"),
            ("redis://127.0.0.1:6379/2".into(), "t1".into())
        );
        assert_eq!(
            split_prefix("redis://h:6379"),
            ("redis://h:6379".into(), "mobiflux".into())
        );
        assert_eq!(
            split_prefix("redis://h/0?protocol=resp3&prefix=x"),
            ("redis://h/0?protocol=resp3".into(), "x".into())
        );
    }
}
