//! `mobiflux bench cache`: how fresh the gateway cache is. A simulated GBFS partner (the
//! GBFS 2.3 fixture, its `free_bike_status` regenerated with N vehicles that move at every
//! run) is run R times in a row; each run starts at its tick, right after the partner's
//! change, and the time from that change to the moment the new entry is readable in the
//! cache (read back and checked) is the freshness figure. Prints p50/p90/p99/max.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::percentile;
use crate::definitions;
use crate::runner::Runner;
use crate::simulator::Simulator;

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

/// The partner's vehicles at run `i`: each moves ~10 m per run around Oslo's centre.
fn vehicles(n: usize, i: usize) -> Value {
    let bikes: Vec<Value> = (0..n)
        .map(|v| {
            let a = v as f64 * 0.618_033_988 * std::f64::consts::TAU;
            let r = 0.002 + (v % 97) as f64 * 0.0004 + i as f64 * 0.0001;
            json!({
                "bike_id": format!("BENCH:Scooter:{v}"),
                "lat": 59.914 + r * a.sin(),
                "lon": 10.760 + r * a.cos() * 2.0,
                "is_reserved": false,
                "is_disabled": v % 20 == 0,
                "vehicle_type_id": "TST:VehicleType:Scooter",
                "current_range_meters": 1000.0 + (v % 50) as f64 * 100.0,
                "pricing_plan_id": "TST:PricingPlan:Basic"
            })
        })
        .collect();
    json!({
        "last_updated": chrono::Utc::now().timestamp(),
        "ttl": 0,
        "version": "2.3",
        "data": { "bikes": bikes }
    })
}

pub async fn run(runs: usize, n: usize, cache_url: &str, fixtures: &Path) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let work = std::env::temp_dir().join(format!("mobiflux-bench-cache-{}", std::process::id()));
    let feed = work.join("feed/gbfs");
    copy_dir(&fixtures.join("gbfs/v2.3"), &feed)
        .with_context(|| format!("copying {}/gbfs/v2.3", fixtures.display()))?;
    let sim = Simulator::start(&work.join("feed"), "127.0.0.1:0").await?;
    let defs = work.join("pipelines");
    std::fs::create_dir_all(&defs)?;
    let def_file = defs.join("bench-velo.toml");
    std::fs::write(
        &def_file,
        format!(
            "name = \"bench-velo\"\npartner = \"bench-velo\"\nformat = \"gbfs\"\nurl = \"{}/gbfs/gbfs.json\"\nschedule = \"*/10 * * * * *\"\nsoft_ttl = 30\nhard_ttl = 120\n",
            sim.base_url()
        ),
    )?;
    let def = definitions::load_dir(&defs)?
        .0
        .into_iter()
        .next()
        .context("the benchmark's definition")?;
    let raw = mobiflux_extractors::raw::open(work.join("raw").to_str().unwrap(), None).await?;
    let warehouse = mobiflux_loaders::open(&format!("sqlite://{}/w.db", work.display())).await?;
    warehouse.migrate().await?;
    let cache: Arc<dyn mobiflux_loaders::cache::GatewayCache> =
        Arc::from(mobiflux_loaders::cache::open(cache_url).await?);
    let runner = Runner {
        raw: Arc::from(raw),
        warehouse: Arc::from(warehouse),
        cache: Some(cache.clone()),
        vars: BTreeMap::new(),
        host_rate: None,
        // Freshness of the gateway cache: the curated zone is not on its path.
        curated: false,
        batches: Default::default(),
    };
    println!(
        "gateway cache freshness: {runs} runs of a GBFS partner with {n} moving vehicles, cache {}",
        cache.describe()
    );
    let mut fresh = Vec::with_capacity(runs);
    let mut run_times = Vec::with_capacity(runs);
    for i in 0..runs {
        // The partner changes; the run's tick follows at once.
        std::fs::write(
            feed.join("free_bike_status.json"),
            serde_json::to_vec(&vehicles(n, i))?,
        )?;
        let changed = Instant::now();
        let outcome = runner.run_one(&def).await;
        let ran = changed.elapsed();
        if let Some(e) = &outcome.error {
            bail!("run {i}: {e}");
        }
        match &outcome.cache {
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("run {i}: {e}"),
            None => bail!("run {i} published nothing"),
        }
        let entry = cache
            .get("bench-velo", "available-assets")
            .await?
            .context("the entry just published")?;
        let seen = changed.elapsed();
        if entry.meta.run_id != outcome.run_id.to_string() {
            bail!(
                "run {i}: the cache serves run {} instead of {}",
                entry.meta.run_id,
                outcome.run_id
            );
        }
        fresh.push(seen);
        run_times.push(ran);
    }
    fresh.sort();
    run_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}",
        "", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (label, v) in [
        ("run (extract, transform, load)", &run_times),
        ("MSP change -> entry readable", &fresh),
    ] {
        println!(
            "{label:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            ms(percentile(v, 0.5).unwrap_or_default()),
            ms(percentile(v, 0.9).unwrap_or_default()),
            ms(percentile(v, 0.99).unwrap_or_default()),
            ms(*v.last().unwrap())
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
