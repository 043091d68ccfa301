//! The mobiflux binary's library: configuration, wiring of the stages and the commands.
//! Business logic lives in the stage crates (`extractors`, `transforms`, `loaders`,
//! `schedules`); this crate parses, resolves configuration once and calls them.

pub mod bench;
pub mod bench_cache;
pub mod bench_soak;
pub mod bench_stats;
pub mod cache_cli;
pub mod cli;
pub mod definitions;
pub mod runner;
pub mod schedule;
pub mod serve;
pub mod simulator;
pub mod stats_cli;
pub mod status;
