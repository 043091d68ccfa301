//! The gateway cache embedded in a SQLite file: the default when no Redis is configured, so
//! the README's main job shows the cache too. Same semantics as Redis: a publication is one
//! transaction, reads ignore (and sweep) hard-expired rows, radius searches use the same
//! great-circle distance Redis uses.

use chrono::Utc;
use futures_util::future::BoxFuture;
use sqlx::Row as _;
use sqlx::sqlite::SqlitePool;

use super::{
    Around, CacheError, Entry, EntryMeta, Freshness, GatewayCache, Hit, Publication, from_epoch_ms,
    haversine_m, indexable,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cache_entries (
    partner TEXT NOT NULL,
    resource TEXT NOT NULL,
    payload TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    run_id TEXT NOT NULL,
    fetched_at INTEGER NOT NULL,
    source_hash TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    soft_expires_at INTEGER NOT NULL,
    hard_expires_at INTEGER NOT NULL,
    PRIMARY KEY (partner, resource)
);
CREATE TABLE IF NOT EXISTS cache_geo (
    kind TEXT NOT NULL,
    partner TEXT NOT NULL,
    id TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    hard_expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, partner, id)
);
CREATE INDEX IF NOT EXISTS cache_geo_lat ON cache_geo (kind, lat);
CREATE TABLE IF NOT EXISTS cache_partners (
    territory TEXT NOT NULL,
    partner TEXT NOT NULL,
    freshness TEXT NOT NULL,
    hard_expires_at INTEGER NOT NULL,
    PRIMARY KEY (territory, partner)
);
";

/// Territory under which every partner is listed.
const ALL: &str = "";

pub struct EmbeddedCache {
    pool: SqlitePool,
    target: String,
}

impl EmbeddedCache {
    pub async fn open(path: &str) -> Result<Self, CacheError> {
        let target = format!("sqlite://{path}");
        let down = |message: String| CacheError::Unavailable {
            target: target.clone(),
            message,
        };
        let pool = crate::sqlite::open_pool(path).await.map_err(down)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|e| down(e.to_string()))?;
        Ok(EmbeddedCache { pool, target })
    }

    fn down(&self, e: sqlx::Error) -> CacheError {
        CacheError::Unavailable {
            target: self.target.clone(),
            message: e.to_string(),
        }
    }
}

fn ms(t: chrono::DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl GatewayCache for EmbeddedCache {
    fn publish<'a>(&'a self, p: &'a Publication) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            let m = &p.meta;
            let hard = ms(m.hard_expires_at);
            let now = ms(Utc::now());
            let mut tx = self.pool.begin().await.map_err(|e| self.down(e))?;
            for r in &p.resources {
                sqlx::query(
                    "INSERT OR REPLACE INTO cache_entries (partner, resource, payload, pipeline, run_id, fetched_at, source_hash, published_at, soft_expires_at, hard_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&p.partner)
                .bind(&r.name)
                .bind(&r.payload)
                .bind(&m.pipeline)
                .bind(&m.run_id)
                .bind(ms(m.fetched_at))
                .bind(&m.source_hash)
                .bind(ms(m.published_at))
                .bind(ms(m.soft_expires_at))
                .bind(hard)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.down(e))?;
                if let Some((kind, points)) = &r.geo {
                    sqlx::query("DELETE FROM cache_geo WHERE kind = ? AND (partner = ? OR hard_expires_at <= ?)")
                        .bind(*kind)
                        .bind(&p.partner)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.down(e))?;
                    for pt in points.iter().filter(|pt| indexable(pt)) {
                        sqlx::query("INSERT OR REPLACE INTO cache_geo (kind, partner, id, lat, lon, hard_expires_at) VALUES (?, ?, ?, ?, ?, ?)")
                            .bind(*kind)
                            .bind(&p.partner)
                            .bind(&pt.id)
                            .bind(pt.lat)
                            .bind(pt.lon)
                            .bind(hard)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.down(e))?;
                    }
                }
            }
            let freshness = serde_json::to_string(&Freshness::of(p)).expect("serializable");
            for territory in [Some(ALL), p.territory.as_deref()].into_iter().flatten() {
                sqlx::query("INSERT OR REPLACE INTO cache_partners (territory, partner, freshness, hard_expires_at) VALUES (?, ?, ?, ?)")
                    .bind(territory)
                    .bind(&p.partner)
                    .bind(&freshness)
                    .bind(hard)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.down(e))?;
            }
            tx.commit().await.map_err(|e| self.down(e))
        })
    }

    fn get<'a>(
        &'a self,
        partner: &'a str,
        resource: &'a str,
    ) -> BoxFuture<'a, Result<Option<Entry>, CacheError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT payload, pipeline, run_id, fetched_at, source_hash, published_at, soft_expires_at, hard_expires_at FROM cache_entries WHERE partner = ? AND resource = ? AND hard_expires_at > ?",
            )
            .bind(partner)
            .bind(resource)
            .bind(ms(Utc::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.down(e))?;
            Ok(row.map(|r| Entry {
                payload: r.get(0),
                meta: EntryMeta {
                    pipeline: r.get(1),
                    run_id: r.get(2),
                    fetched_at: from_epoch_ms(r.get(3)),
                    source_hash: r.get(4),
                    published_at: from_epoch_ms(r.get(5)),
                    soft_expires_at: from_epoch_ms(r.get(6)),
                    hard_expires_at: from_epoch_ms(r.get(7)),
                },
            }))
        })
    }

    fn around<'a>(&'a self, q: &'a Around) -> BoxFuture<'a, Result<Vec<Hit>, CacheError>> {
        Box::pin(async move {
            // A latitude band cut by an index, then the exact distance.
            let dlat = (q.radius_m / 111_000.0) * 1.01 + 1e-6;
            let rows = sqlx::query(
                "SELECT partner, id, lat, lon FROM cache_geo WHERE kind = ? AND lat BETWEEN ? AND ? AND hard_expires_at > ? AND (? IS NULL OR partner = ?)",
            )
            .bind(q.kind)
            .bind(q.lat - dlat)
            .bind(q.lat + dlat)
            .bind(ms(Utc::now()))
            .bind(q.partner.as_deref())
            .bind(q.partner.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.down(e))?;
            let mut hits: Vec<Hit> = rows
                .into_iter()
                .filter_map(|r| {
                    let (lat, lon): (f64, f64) = (r.get(2), r.get(3));
                    let d = haversine_m(q.lat, q.lon, lat, lon);
                    (d <= q.radius_m).then(|| Hit {
                        partner: r.get(0),
                        id: r.get(1),
                        lat,
                        lon,
                        distance_m: d,
                    })
                })
                .collect();
            hits.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
            hits.truncate(q.limit.max(1));
            Ok(hits)
        })
    }

    fn partners<'a>(
        &'a self,
        territory: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Freshness>, CacheError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT partner, freshness FROM cache_partners WHERE territory = ? AND hard_expires_at > ? ORDER BY partner",
            )
            .bind(territory.unwrap_or(ALL))
            .bind(ms(Utc::now()))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.down(e))?;
            rows.into_iter()
                .map(|r| {
                    let json: String = r.get(1);
                    serde_json::from_str(&json).map_err(|e| CacheError::Damaged {
                        target: self.target.clone(),
                        key: format!("cache_partners {}", r.get::<String, _>(0)),
                        message: e.to_string(),
                    })
                })
                .collect()
        })
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Point, Resource};

    fn publication(
        partner: &str,
        run: &str,
        soft_ms: i64,
        hard_ms: i64,
        points: Vec<Point>,
    ) -> Publication {
        let now = Utc::now();
        Publication {
            partner: partner.into(),
            territory: Some("t".into()),
            meta: EntryMeta {
                pipeline: "p".into(),
                run_id: run.into(),
                fetched_at: now,
                source_hash: "h".into(),
                published_at: now,
                soft_expires_at: now + chrono::Duration::milliseconds(soft_ms),
                hard_expires_at: now + chrono::Duration::milliseconds(hard_ms),
            },
            resources: vec![Resource {
                name: "available-assets".into(),
                payload: format!("[\"{run}\"]"),
                geo: Some(("vehicles", points)),
            }],
        }
    }

    fn pt(id: &str, lat: f64, lon: f64) -> Point {
        Point {
            id: id.into(),
            lat,
            lon,
        }
    }

    #[tokio::test]
    async fn same_semantics_as_redis() {
        let c = EmbeddedCache::open(":memory:").await.unwrap();
        // 0.001° of latitude is ~111 m.
        let near = vec![
            pt("a", 45.0, 5.0),
            pt("b", 45.001, 5.0),
            pt("c", 45.01, 5.0),
        ];
        // TTLs of a second or two: the first checks must pass on a loaded CI machine too.
        c.publish(&publication("x", "r1", 1_000, 2_000, near))
            .await
            .unwrap();
        c.publish(&publication(
            "y",
            "r2",
            60_000,
            120_000,
            vec![pt("d", 45.0005, 5.0)],
        ))
        .await
        .unwrap();
        let e = c.get("x", "available-assets").await.unwrap().unwrap();
        assert_eq!(e.payload, "[\"r1\"]");
        assert!(!e.meta.is_stale(Utc::now()));
        let q = Around {
            kind: "vehicles",
            lat: 45.0,
            lon: 5.0,
            radius_m: 200.0,
            limit: 10,
            partner: None,
        };
        let ids: Vec<(String, String)> = c
            .around(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.partner, h.id))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("x".into(), "a".into()),
                ("y".into(), "d".into()),
                ("x".into(), "b".into())
            ]
        );
        assert_eq!(c.partners(Some("t")).await.unwrap().len(), 2);
        tokio::time::sleep(std::time::Duration::from_millis(1_050)).await;
        assert!(
            c.get("x", "available-assets")
                .await
                .unwrap()
                .unwrap()
                .meta
                .is_stale(Utc::now())
        );
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
        assert!(c.get("x", "available-assets").await.unwrap().is_none());
        let ids: Vec<String> = c
            .around(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, vec!["d"], "expired positions are not served");
        let left: Vec<String> = c
            .partners(Some("t"))
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.partner_id)
            .collect();
        assert_eq!(left, vec!["y"]);
        // A new version replaces the partner's positions whole.
        c.publish(&publication(
            "y",
            "r3",
            60_000,
            120_000,
            vec![pt("e", 45.0, 5.0001)],
        ))
        .await
        .unwrap();
        let ids: Vec<String> = c
            .around(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, vec!["e"]);
    }
}
