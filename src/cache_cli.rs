//! `mobiflux cache …`: what the gateway would serve, read back from the cache.

use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::Utc;
use mobiflux_loaders::cache::{Around, Entry, GEO_KINDS, GatewayCache, pivot};
use serde_json::{Value, json};

use crate::cli::CacheWhat;

fn state(e: &Entry) -> &'static str {
    if e.meta.is_stale(Utc::now()) {
        "stale"
    } else {
        "fresh"
    }
}

fn payload(e: &Entry) -> Value {
    serde_json::from_str(&e.payload).unwrap_or_else(|_| Value::String(e.payload.clone()))
}

pub async fn run(cache: &dyn GatewayCache, what: CacheWhat) -> Result<ExitCode> {
    match what {
        CacheWhat::Get { partner, resource } => {
            let Some(e) = cache.get(&partner, &resource).await? else {
                bail!(
                    "no entry for partner {partner:?}, resource {resource:?} in {} (never published, or past its hard TTL)",
                    cache.describe()
                );
            };
            let out = json!({
                "partner": partner,
                "resource": resource,
                "state": state(&e),
                "fetched_at": e.meta.fetched_at,
                "soft_expires_at": e.meta.soft_expires_at,
                "hard_expires_at": e.meta.hard_expires_at,
                "published_at": e.meta.published_at,
                "pipeline": e.meta.pipeline,
                "run_id": e.meta.run_id,
                "source_hash": e.meta.source_hash,
                "payload": payload(&e),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        CacheWhat::Around {
            lat,
            lon,
            radius,
            kind,
            limit,
            partner,
        } => {
            let Some(kind) = GEO_KINDS.iter().find(|k| **k == kind) else {
                bail!("--kind {kind:?}: expected one of {GEO_KINDS:?}");
            };
            if !radius.is_finite() || radius <= 0.0 {
                bail!("radius {radius}: expected metres above 0");
            }
            let hits = cache
                .around(&Around {
                    kind,
                    lat,
                    lon,
                    radius_m: radius,
                    limit,
                    partner,
                })
                .await?;
            println!(
                "{} {kind} within {radius} m of ({lat}, {lon}) in {}",
                hits.len(),
                cache.describe()
            );
            println!(
                "{:>10}  {:<24} {:<24} {:>11} {:>11}",
                "distance_m", "partner", "id", "lat", "lon"
            );
            for h in hits {
                println!(
                    "{:>10.1}  {:<24} {:<24} {:>11.6} {:>11.6}",
                    h.distance_m, h.partner, h.id, h.lat, h.lon
                );
            }
        }
        CacheWhat::GlobalView { territory } => {
            let partners = cache.partners(territory.as_deref()).await?;
            let mut view = pivot::global_view();
            let mut freshness = Vec::new();
            for p in &partners {
                let mut states = serde_json::Map::new();
                for (resource, field) in [
                    ("stations", "stations"),
                    ("stations-status", "stationsStatus"),
                    ("assets", "assets"),
                ] {
                    if let Some(e) = cache.get(&p.partner_id, resource).await? {
                        states.insert(resource.into(), state(&e).into());
                        if let (Value::Array(all), Value::Array(items)) =
                            (&mut view[field], payload(&e))
                        {
                            all.extend(items);
                        }
                    }
                }
                let mut f = serde_json::to_value(p)?;
                f["state"] = Value::Object(states);
                freshness.push(f);
            }
            view["partners"] = Value::Array(freshness);
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
