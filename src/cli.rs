//! Command line: flags defined as data (clap), configuration resolved once, stages called.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::definitions::{self, Definition};
use crate::runner::{Outcome, Runner};
use crate::simulator::Simulator;

#[derive(Parser)]
#[command(
    name = "mobiflux",
    version,
    about = "MaaS data integration: MSP feeds to raw zone, warehouse and gateway cache"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "MOBIFLUX_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum CatchUpArg {
    Once,
    Each,
    Skip,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Clone)]
struct Destinations {
    /// Raw zone: file:///path, a path, or s3://bucket/prefix (with MOBIFLUX_S3_ENDPOINT and AWS_* variables).
    #[arg(long = "raw", env = "MOBIFLUX_RAW_URL", default_value = "./var/raw")]
    raw: String,
    /// Warehouse: sqlite://path or postgres://user@host/db.
    #[arg(
        long = "warehouse",
        env = "MOBIFLUX_WAREHOUSE_URL",
        default_value = "sqlite://./var/warehouse.db"
    )]
    warehouse: String,
    /// Gateway cache: redis://host:port[/db][?prefix=NAME], sqlite://path (the embedded
    /// store), or `none` (a warehouse-only deployment: nothing published).
    #[arg(
        long = "cache",
        env = "MOBIFLUX_CACHE_URL",
        default_value = "sqlite://./var/cache.db"
    )]
    cache: String,
    /// Write the unified tables as Parquet too, to curated/ beside the raw zone
    /// (`--curated false` to skip).
    #[arg(
        long = "curated",
        env = "MOBIFLUX_CURATED",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    curated: bool,
    /// How often feed polls' curated rows are written: a Parquet file per table, day and
    /// partner for all polls of the period (and sooner past 64 MB held), not a file a poll.
    #[arg(
        long = "curated-every",
        env = "MOBIFLUX_CURATED_EVERY",
        default_value_t = 300
    )]
    curated_every: u64,
    /// At most this many requests per second to one MSP host, across all runs (no limit
    /// when unset).
    #[arg(long = "host-rate", env = "MOBIFLUX_HOST_RATE")]
    host_rate: Option<f64>,
    /// Folder of pipeline definitions (*.toml).
    #[arg(
        long = "pipelines",
        env = "MOBIFLUX_PIPELINES",
        default_value = "./pipelines"
    )]
    pipelines: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the named pipelines once (all when none is named); exit 1 if any failed.
    Run {
        names: Vec<String>,
        #[command(flatten)]
        dest: Destinations,
    },
    /// The README's main job: serve the bundled example feeds on a loopback port and run
    /// every pipeline in the pipelines folder against them, on the embedded defaults.
    Demo {
        #[command(flatten)]
        dest: Destinations,
        /// Folder served as the simulated MSP.
        #[arg(long, env = "MOBIFLUX_FIXTURES", default_value = "./fixtures")]
        fixtures: PathBuf,
    },
    /// The scheduler daemon: every pipeline on its cron schedule until SIGTERM/SIGINT.
    /// Several instances on one PostgreSQL warehouse share the pipelines (each tick runs once).
    Schedule {
        #[command(flatten)]
        dest: Destinations,
        /// Lease of a pipeline without renewal: after a crash, another instance takes the
        /// pipeline over at its first tick after this.
        #[arg(long, env = "MOBIFLUX_LEASE_SECS", default_value_t = 30)]
        lease_secs: u64,
        /// Runs at once in this instance.
        #[arg(long, env = "MOBIFLUX_MAX_CONCURRENT", default_value_t = 8)]
        max_concurrent: usize,
        /// After a stop request, how long runs in flight may take to finish.
        #[arg(long, default_value_t = 30)]
        grace_secs: u64,
        /// Ticks missed while down: run once (the latest), each (up to 10), or skip them.
        #[arg(long, value_enum, default_value_t = CatchUpArg::Once)]
        catch_up: CatchUpArg,
        /// How often the pipelines folder is checked for added, changed or removed files.
        #[arg(long, env = "MOBIFLUX_RELOAD_SECS", default_value_t = 2)]
        reload_secs: u64,
        /// How often the hourly rollup rows appended by loads are folded into their keys
        /// (PostgreSQL): shorter keeps fewer rows pending for the statistics to sum, longer
        /// rewrites each key less often.
        #[arg(long, env = "MOBIFLUX_FOLD_SECS", default_value_t = 300)]
        fold_secs: u64,
        /// Address of `/metrics` (Prometheus) and `/health`; port 0 picks a free port.
        #[arg(long, env = "MOBIFLUX_METRICS_ADDR", default_value = "127.0.0.1:9464")]
        metrics_addr: String,
        /// Runs at once against one MSP host (hundreds of feeds on one host never hammer it).
        #[arg(long, env = "MOBIFLUX_PER_HOST", default_value_t = 4)]
        per_host: usize,
        /// Failed runs in a row that open an MSP host's circuit (its pipelines then fail
        /// fast, and one run probes it after the cool-down, doubled at each failed probe).
        #[arg(long, default_value_t = 5)]
        breaker_failures: u32,
        #[arg(long, default_value_t = 30)]
        breaker_cooldown_secs: u64,
    },
    /// Per pipeline: last run, freshness against its schedule, recent failures and
    /// quarantined rows (from `etl_runs`).
    Status {
        #[command(flatten)]
        dest: Destinations,
        /// How far back to look.
        #[arg(long, default_value_t = 24)]
        hours: i64,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Statistics for AOM analysts, from the documented stats_* views (`mobiflux stats list`).
    Stats {
        /// The statistic, or `list`.
        name: String,
        #[arg(
            long = "warehouse",
            env = "MOBIFLUX_WAREHOUSE_URL",
            default_value = "sqlite://./var/warehouse.db"
        )]
        warehouse: String,
        /// From this date (2026-11-01, UTC) or RFC 3339 time, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Up to this date or time, exclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        partner: Option<String>,
        /// Only the partners of this territory (AOM).
        #[arg(long)]
        territory: Option<String>,
        /// At most this many rows (the first in the statistic's order).
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value_t = crate::stats_cli::Format::Table)]
        format: crate::stats_cli::Format,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The statistics as JSON over HTTP and a dashboard page with charts.
    Serve {
        #[arg(
            long = "warehouse",
            env = "MOBIFLUX_WAREHOUSE_URL",
            default_value = "sqlite://./var/warehouse.db"
        )]
        warehouse: String,
        /// Address to listen on (port 0 picks a free one, printed at start).
        #[arg(long, env = "MOBIFLUX_SERVE_ADDR", default_value = "127.0.0.1:8600")]
        bind: String,
    },
    /// Create (or extend) a read-only PostgreSQL role that sees only its territories'
    /// partners, in every table and view (row-level security).
    GrantAnalyst {
        role: String,
        /// The territory (AOM) the role may read; repeat for several.
        #[arg(long, required = true)]
        territory: Vec<String>,
        #[arg(long = "warehouse", env = "MOBIFLUX_WAREHOUSE_URL")]
        warehouse: String,
    },
    /// Check every definition; errors name file, line and key.
    Validate {
        #[arg(
            long = "pipelines",
            env = "MOBIFLUX_PIPELINES",
            default_value = "./pipelines"
        )]
        pipelines: PathBuf,
        /// The warehouse the scheduler would use (checked for sharing, not opened).
        #[arg(
            long = "warehouse",
            env = "MOBIFLUX_WAREHOUSE_URL",
            default_value = "sqlite://./var/warehouse.db"
        )]
        warehouse: String,
    },
    /// Re-transform and reload a run from the raw zone alone (no call to the MSP).
    Replay {
        run_id: String,
        #[command(flatten)]
        dest: Destinations,
    },
    /// Create or upgrade the warehouse schema.
    Migrate {
        #[arg(
            long = "warehouse",
            env = "MOBIFLUX_WAREHOUSE_URL",
            default_value = "sqlite://./var/warehouse.db"
        )]
        warehouse: String,
    },
    /// Benchmarks: `bench csv` measures the file load path against `psql \copy`.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// What the gateway would serve from the cache, and whether it is fresh or stale.
    Cache {
        #[command(subcommand)]
        what: CacheWhat,
        /// Gateway cache: redis://host:port[/db][?prefix=NAME], or sqlite://path.
        #[arg(
            long = "cache",
            env = "MOBIFLUX_CACHE_URL",
            default_value = "sqlite://./var/cache.db",
            global = true
        )]
        cache: String,
    },
    /// Serve a fixture folder as a simulated MSP until interrupted.
    Simulate {
        #[arg(long, env = "MOBIFLUX_FIXTURES", default_value = "./fixtures")]
        fixtures: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
    },
}

#[derive(Subcommand)]
pub enum CacheWhat {
    /// One partner's resource (stations, stations-status, assets, available-assets,
    /// vehicle-types, pricing-plans, zones, partner, driver-journeys, …) with its metadata.
    Get { partner: String, resource: String },
    /// Indexed positions within RADIUS metres of LAT LON, nearest first.
    Around {
        #[arg(allow_negative_numbers = true)]
        lat: f64,
        #[arg(allow_negative_numbers = true)]
        lon: f64,
        radius: f64,
        /// `vehicles` or `stations`.
        #[arg(long, default_value = "vehicles")]
        kind: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Search one partner's index instead of the one across partners.
        #[arg(long)]
        partner: Option<String>,
    },
    /// The partners of a territory (all without one) with their freshness, and the
    /// territory's global view (stations, stations status, assets) as the gateway serves it.
    GlobalView { territory: Option<String> },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Many simulated GBFS systems polled every minute: mobiflux's scheduler, then a Python
    /// asyncio + psycopg reference poller; cycle times, CPU, RSS, throughput side by side.
    Soak {
        #[arg(long, default_value_t = 1_000)]
        systems: usize,
        /// Minutes per side.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// PostgreSQL server (a role that may create databases).
        #[arg(
            long = "warehouse",
            env = "MOBIFLUX_BENCH_PG_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        warehouse: String,
        /// Where mobiflux publishes its gateway documents: `none` (the default) makes it do
        /// what the reference does, fetch-parse-load; a cache URL adds the publication
        /// (e.g. redis://127.0.0.1:6379?prefix=mobiflux-soak).
        #[arg(
            long = "cache",
            env = "MOBIFLUX_BENCH_CACHE_URL",
            default_value = "none"
        )]
        cache: String,
        /// Only mobiflux (no reference run).
        #[arg(long)]
        no_reference: bool,
        /// The simulator serves no `ETag` and never answers 304, as a server without
        /// validators: mobiflux then fetches every file whole, as the reference does.
        #[arg(long)]
        no_validators: bool,
        /// mobiflux writes no curated Parquet zone (`schedule --curated false`), to measure
        /// what the zone costs; its raw zone is always written.
        #[arg(long)]
        no_curated: bool,
        /// mobiflux's runs at once (`schedule --max-concurrent`, also its PostgreSQL
        /// connections); the reference polls 64 systems at once over 8 connections.
        #[arg(long, default_value_t = 64)]
        max_concurrent: usize,
    },
    /// Statistics views under load: N days of minutely status of M stations loaded through
    /// the loaders into PostgreSQL, then each documented view's example query timed.
    Stats {
        #[arg(long, default_value_t = 1_500)]
        stations: usize,
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Runs of each query.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// PostgreSQL server (a role that may create databases).
        #[arg(
            long = "warehouse",
            env = "MOBIFLUX_BENCH_PG_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        warehouse: String,
    },
    /// Gateway cache freshness: from an MSP change to the updated entry, over N runs.
    Cache {
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// Vehicles of the simulated partner.
        #[arg(long, default_value_t = 1_000)]
        vehicles: usize,
        /// Where to publish (a Redis by default; sqlite://path for the embedded store).
        #[arg(
            long = "cache",
            env = "MOBIFLUX_BENCH_CACHE_URL",
            default_value = "redis://127.0.0.1:6379?prefix=mobiflux-bench"
        )]
        cache: String,
        #[arg(long, env = "MOBIFLUX_FIXTURES", default_value = "./fixtures")]
        fixtures: PathBuf,
    },
    /// Generate an IRVE-shaped CSV and load it with psql \copy and with mobiflux, side by side.
    Csv {
        /// Rows to generate.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// PostgreSQL server (a role that may create databases): the benchmark runs in a
        /// database of its own, dropped afterwards.
        #[arg(
            long = "warehouse",
            env = "MOBIFLUX_BENCH_PG_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        warehouse: String,
        /// Folder for the generated file (a temporary one by default).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Run the round (reference, mobiflux, mobiflux with its curated zone) this many
        /// times; the median ratio is printed.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOBIFLUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

async fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Run { names, dest } => {
            let started = Instant::now();
            let defs = select(load_definitions(&dest.pipelines)?, &names)?;
            let runner = runner(&dest, BTreeMap::new()).await?;
            definitions::register(runner.warehouse.as_ref(), &defs).await?;
            let outcomes = runner.run_all_batched(&defs).await;
            // A warehouse loaded by `run` alone (from cron, say) folds its rollups and closes
            // its past days too: one try each, so a run never waits for other processes.
            if let Err(e) = runner.warehouse.fold_rollups().await {
                tracing::warn!(error = %e, "could not fold the pending rollup rows (the statistics sum them meanwhile)");
            }
            if let Err(e) = runner.warehouse.close_days(1).await {
                tracing::warn!(error = %e, "could not close the rollups' past days (the statistics sum them from the hourly rows meanwhile)");
            }
            Ok(report(&outcomes, started))
        }
        Command::Demo { dest, fixtures } => {
            let started = Instant::now();
            let sim = Simulator::start(&fixtures, "127.0.0.1:0")
                .await
                .with_context(|| format!("serving {}", fixtures.display()))?;
            println!(
                "simulated MSP serving {} at {}",
                fixtures.display(),
                sim.base_url()
            );
            let defs = load_definitions(&dest.pipelines)?;
            let mut vars = BTreeMap::from([("MOBIFLUX_EXAMPLE_MSP".to_string(), sim.base_url())]);
            // The demo's carpooling answers are fixture data: a fixed key pseudonymizes them
            // unless one is set. Real runs need their own secret key.
            if std::env::var_os("MOBIFLUX_PSEUDONYM_KEY").is_none() {
                vars.insert(
                    "MOBIFLUX_PSEUDONYM_KEY".into(),
                    "mobiflux-demo-key-for-fixture-data-only".into(),
                );
            }
            let runner = runner(&dest, vars).await?;
            definitions::register(runner.warehouse.as_ref(), &defs).await?;
            let outcomes = runner.run_all_batched(&defs).await;
            println!(
                "raw zone: {}   warehouse: {}   gateway cache: {}",
                runner.raw.describe(),
                runner.warehouse.describe(),
                runner
                    .cache
                    .as_ref()
                    .map(|c| c.describe())
                    .unwrap_or_else(|| "none".into())
            );
            Ok(report(&outcomes, started))
        }
        Command::Schedule {
            dest,
            lease_secs,
            max_concurrent,
            grace_secs,
            catch_up,
            reload_secs,
            fold_secs,
            metrics_addr,
            per_host,
            breaker_failures,
            breaker_cooldown_secs,
        } => {
            let defs = load_definitions(&dest.pipelines)?;
            let runner = runner_sized(
                &dest,
                BTreeMap::new(),
                (max_concurrent as u32).saturating_add(2),
            )
            .await?;
            let settings = crate::schedule::Settings {
                lease: std::time::Duration::from_secs(lease_secs.max(1)),
                max_concurrent,
                grace: std::time::Duration::from_secs(grace_secs),
                catch_up: match catch_up {
                    CatchUpArg::Once => mobiflux_schedules::clock::CatchUp::Once,
                    CatchUpArg::Each => mobiflux_schedules::clock::CatchUp::Each(10),
                    CatchUpArg::Skip => mobiflux_schedules::clock::CatchUp::Skip,
                },
                reload: std::time::Duration::from_secs(reload_secs.max(1)),
                fold: std::time::Duration::from_secs(fold_secs.max(1)),
                pipelines: dest.pipelines.clone(),
                metrics_addr,
                per_host,
                breaker_failures,
                breaker_cooldown: std::time::Duration::from_secs(breaker_cooldown_secs.max(1)),
            };
            crate::schedule::run(runner, defs, settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats {
            name,
            warehouse,
            from,
            to,
            partner,
            territory,
            limit,
            format,
            output,
        } => {
            let filters = mobiflux_loaders::stats::Filters {
                from: from
                    .as_deref()
                    .map(crate::stats_cli::parse_time)
                    .transpose()?,
                to: to
                    .as_deref()
                    .map(crate::stats_cli::parse_time)
                    .transpose()?,
                partner,
                territory,
                limit,
            };
            if name == "list" {
                print!("{}", crate::stats_cli::list());
                return Ok(ExitCode::SUCCESS);
            }
            let wh = mobiflux_loaders::open(&warehouse).await?;
            mobiflux_loaders::ready_to_read(wh.as_ref()).await?;
            crate::stats_cli::run(wh.as_ref(), &name, &filters, format, output.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { warehouse, bind } => {
            let wh = mobiflux_loaders::open(&warehouse).await?;
            mobiflux_loaders::ready_to_read(wh.as_ref()).await?;
            crate::serve::run(Arc::from(wh), &bind).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::GrantAnalyst {
            role,
            territory,
            warehouse,
        } => {
            if !warehouse.starts_with("postgres") {
                bail!(
                    "grant-analyst needs a PostgreSQL warehouse (roles and row-level security); got {}",
                    mobiflux_model::redact::url(&warehouse, &[])
                );
            }
            let wh = mobiflux_loaders::PostgresWarehouse::connect(&warehouse).await?;
            mobiflux_loaders::Warehouse::migrate(&wh).await?;
            let password = std::env::var("MOBIFLUX_ANALYST_PASSWORD").ok();
            wh.grant_analyst(&role, &territory, password.as_deref())
                .await?;
            println!(
                "role {role:?} reads territories {} (row-level security on every table and view){}",
                territory.join(", "),
                if password.is_some() {
                    "; password set from MOBIFLUX_ANALYST_PASSWORD"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { dest, hours, json } => {
            let defs = definitions::load_dir(&dest.pipelines)
                .map(|(d, _)| d)
                .unwrap_or_default();
            let wh = mobiflux_loaders::open(&dest.warehouse).await?;
            mobiflux_loaders::ready_to_read(wh.as_ref()).await?;
            crate::status::run(wh.as_ref(), &defs, hours.max(1), json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            pipelines,
            warehouse,
        } => {
            if warehouse.starts_with("sqlite:") {
                println!(
                    "note: the warehouse is SQLite: run one `mobiflux schedule` instance at a time (several instances share the pipelines on PostgreSQL)"
                );
            }
            let (defs, errors) = definitions::load_dir(&pipelines)
                .with_context(|| format!("reading {}", pipelines.display()))?;
            for e in &errors {
                eprintln!("{e}");
            }
            println!(
                "{} definitions valid, {} errors in {}",
                defs.len(),
                errors.len(),
                pipelines.display()
            );
            Ok(if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Replay { run_id, dest } => {
            let started = Instant::now();
            let id = run_id.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let defs = definitions::load_dir(&dest.pipelines)
                .map(|(d, _)| d)
                .unwrap_or_default();
            let runner = runner(&dest, BTreeMap::new()).await?;
            Ok(report(&[runner.replay(id, &defs).await], started))
        }
        Command::Migrate { warehouse } => {
            let wh = mobiflux_loaders::open(&warehouse).await?;
            wh.migrate().await?;
            println!("warehouse {} is at the current schema", wh.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what:
                BenchWhat::Csv {
                    rows,
                    warehouse,
                    work,
                    repeat,
                },
        } => {
            tokio::task::spawn_blocking(move || crate::bench::csv(rows, &warehouse, work, repeat))
                .await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what:
                BenchWhat::Soak {
                    systems,
                    minutes,
                    warehouse,
                    cache,
                    no_reference,
                    no_validators,
                    no_curated,
                    max_concurrent,
                },
        } => {
            crate::bench_soak::run(crate::bench_soak::Options {
                systems,
                minutes,
                pg_admin: warehouse,
                cache,
                reference: !no_reference,
                validators: !no_validators,
                curated: !no_curated,
                max_concurrent,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what:
                BenchWhat::Stats {
                    stations,
                    days,
                    runs,
                    warehouse,
                },
        } => {
            crate::bench_stats::run(crate::bench_stats::Options {
                stations,
                days,
                runs,
                pg_admin: warehouse,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what:
                BenchWhat::Cache {
                    runs,
                    vehicles,
                    cache,
                    fixtures,
                },
        } => {
            crate::bench_cache::run(runs, vehicles, &cache, &fixtures).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache { what, cache } => {
            let cache = mobiflux_loaders::cache::open(&cache).await?;
            crate::cache_cli::run(cache.as_ref(), what).await
        }
        Command::Simulate { fixtures, bind } => {
            let sim = Simulator::start(&fixtures, &bind).await?;
            println!(
                "simulated MSP serving {} at {} (Ctrl-C to stop)",
                fixtures.display(),
                sim.base_url()
            );
            tokio::signal::ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_definitions(dir: &std::path::Path) -> Result<Vec<Definition>> {
    let (defs, errors) = definitions::load_dir(dir)
        .with_context(|| format!("reading pipeline definitions in {}", dir.display()))?;
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bail!(
            "invalid pipeline definitions (run `mobiflux validate`):\n{}",
            list.join("\n")
        );
    }
    if defs.is_empty() {
        bail!("no pipeline definitions (*.toml) in {}", dir.display());
    }
    Ok(defs)
}

fn select(defs: Vec<Definition>, names: &[String]) -> Result<Vec<Definition>> {
    if names.is_empty() {
        return Ok(defs);
    }
    for n in names {
        if !defs.iter().any(|d| &d.name == n) {
            let known: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
            bail!("no pipeline named {n:?}; defined: {}", known.join(", "));
        }
    }
    Ok(defs
        .into_iter()
        .filter(|d| names.contains(&d.name))
        .collect())
}

async fn runner(dest: &Destinations, vars: BTreeMap<String, String>) -> Result<Runner> {
    runner_sized(dest, vars, 8).await
}

/// A runner whose PostgreSQL pool holds `connections` (one per run at once, plus room for
/// a scheduler's tick claims and lease renewals).
async fn runner_sized(
    dest: &Destinations,
    vars: BTreeMap<String, String>,
    connections: u32,
) -> Result<Runner> {
    let raw = mobiflux_extractors::raw::open(&dest.raw, None).await?;
    let warehouse = mobiflux_loaders::open_sized(&dest.warehouse, connections.max(8)).await?;
    warehouse.migrate().await?;
    let cache = match dest.cache.as_str() {
        "none" => None,
        url => Some(Arc::from(mobiflux_loaders::cache::open(url).await?)),
    };
    Ok(Runner {
        raw: Arc::from(raw),
        warehouse: Arc::from(warehouse),
        cache,
        vars,
        host_rate: dest.host_rate,
        curated: dest.curated,
        batches: crate::runner::Batches::new(crate::runner::curated_batches::Settings {
            every: std::time::Duration::from_secs(dest.curated_every.max(1)),
            ..Default::default()
        }),
    })
}

/// Prints the summary and returns the exit code: 1 if any pipeline failed.
fn report(outcomes: &[Outcome], started: Instant) -> ExitCode {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok()).collect();
    println!(
        "{} pipelines run: {} succeeded, {} failed, in {:.2} s",
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<32} {:<7} {:>8} {:>12} {:>10} {:>6}  run id",
        "pipeline", "status", "rows", "quarantined", "bytes", "cache"
    );
    let mut per_table: BTreeMap<&str, u64> = BTreeMap::new();
    for o in outcomes {
        let rows: u64 = o.tables.iter().map(|t| t.1).sum();
        for (t, n) in &o.tables {
            *per_table.entry(t).or_default() += n;
        }
        let cache = match &o.cache {
            None => "-".to_string(),
            Some(Ok(n)) => n.to_string(),
            Some(Err(_)) => "FAILED".to_string(),
        };
        println!(
            "{:<32} {:<7} {:>8} {:>12} {:>10} {:>6}  {}",
            o.pipeline,
            if o.ok() { "ok" } else { "FAILED" },
            rows,
            o.quarantined,
            o.bytes,
            cache,
            o.run_id
        );
    }
    let tables: Vec<String> = per_table.iter().map(|(t, n)| format!("{t} {n}")).collect();
    println!(
        "rows loaded per table: {}",
        if tables.is_empty() {
            "none".into()
        } else {
            tables.join(", ")
        }
    );
    println!(
        "rows quarantined: {}",
        outcomes.iter().map(|o| o.quarantined).sum::<u64>()
    );
    for o in &failed {
        eprintln!("FAILED {}", o.error.as_deref().unwrap_or("unknown error"));
    }
    let cache_failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| o.cache.as_ref()?.as_ref().err())
        .collect();
    for e in &cache_failed {
        eprintln!("FAILED {e}");
    }
    if failed.is_empty() && cache_failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
