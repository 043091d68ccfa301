//! Times the IRVE static read path alone (text, Table Schema, mapping, frames):
//! `cargo run --release -p mobiflux-transforms --example read_irve -- FILE`.

use std::time::Instant;

use mobiflux_transforms::tableschema::Schema;
use mobiflux_transforms::text::TextOptions;
use mobiflux_transforms::{Context, irve, tabular};

fn main() {
    let path = std::env::args().nth(1).expect("a CSV path");
    let schema = Schema::from_json(irve::STATIC_SCHEMA, "bundled").unwrap();
    let ctx = Context {
        pipeline: "p",
        partner: "bench",
        run_id: "r",
        language: None,
    };
    let started = Instant::now();
    let (mut chunks, mut quarantined) = (0usize, 0usize);
    let file = std::fs::File::open(&path).unwrap();
    let stats = tabular::read(
        &ctx,
        Box::new(file),
        &path,
        chrono::Utc::now(),
        &tabular::SchemaMap {
            schema: &schema,
            mapping: &irve::STATIC,
        },
        &TextOptions::default(),
        50_000,
        &mut tabular::RunKeys::default(),
        &mut |c| {
            chunks += 1;
            quarantined += c.quarantine.len();
            Ok(())
        },
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} rows, {} quarantined rows ({} records), {chunks} chunks in {secs:.2} s: {:.0} rows/s",
        stats.rows,
        stats.quarantined_rows,
        quarantined,
        stats.rows as f64 / secs
    );
}
