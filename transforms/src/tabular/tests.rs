//! IRVE and BNLS example files through their schemas and mappings, with exact values.

use super::*;
use crate::tableschema::Schema;
use chrono::TimeZone;
use polars::prelude::DataFrame;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

fn fetched() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap()
}

fn run(
    schema: &[u8],
    mapping: &'static Mapping,
    bytes: Vec<u8>,
    chunk_rows: usize,
) -> (Vec<Output>, FileStats) {
    let schema = Schema::from_json(schema, "bundled").unwrap();
    let ctx = Context {
        pipeline: "p",
        partner: "acme",
        run_id: "r1",
        language: None,
    };
    let mut chunks = Vec::new();
    let stats = read(
        &ctx,
        Box::new(std::io::Cursor::new(bytes)),
        "raw/p/file/x.csv",
        fetched(),
        &SchemaMap {
            schema: &schema,
            mapping,
        },
        &TextOptions::default(),
        chunk_rows,
        &mut RunKeys::default(),
        &mut |c| {
            chunks.push(c);
            Ok(())
        },
    )
    .unwrap();
    (chunks, stats)
}

fn file(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap()
}

fn s<'a>(df: &'a DataFrame, col: &str, row: usize) -> Option<&'a str> {
    df.column(col).unwrap().str().unwrap().get(row)
}
fn f(df: &DataFrame, col: &str, row: usize) -> Option<f64> {
    df.column(col).unwrap().f64().unwrap().get(row)
}
fn ts(df: &DataFrame, col: &str, row: usize) -> Option<String> {
    let us = df
        .column(col)
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .get(row)?;
    Some(Utc.timestamp_micros(us).unwrap().to_rfc3339())
}
fn day(df: &DataFrame, col: &str, row: usize) -> Option<i32> {
    df.column(col).unwrap().date().unwrap().physical().get(row)
}

#[test]
fn irve_static_example_gives_charge_points() {
    let (chunks, stats) = run(
        crate::irve::STATIC_SCHEMA,
        &crate::irve::STATIC,
        file("irve/statique/exemple-valide-statique.csv"),
        1000,
    );
    assert_eq!(
        stats,
        FileStats {
            rows: 2,
            quarantined_rows: 0
        }
    );
    let df = &chunks[0].tables[0].1;
    assert_eq!(s(df, "charge_point_id", 0), Some("FRA68E680210015"));
    assert_eq!(s(df, "station_id", 0), Some("FRA68P68021001"));
    assert_eq!(s(df, "station_name", 0), Some("Picpus"));
    assert_eq!(s(df, "owner_name", 0), Some("Société X"));
    assert_eq!(
        (f(df, "lat", 0), f(df, "lon", 0)),
        (Some(48.345345), Some(7.487105))
    );
    assert_eq!(f(df, "power_kw", 0), Some(22.0));
    assert_eq!(
        s(df, "opening_hours", 0),
        Some("Mo-Fr 08:00-12:00,Mo-Fr 14:00-18:00,Th 08:00-18:00")
    );
    assert_eq!(s(df, "pricing", 0), Some("0.40€ / kwh"));
    // 2020-01-14 and 2021-04-05 as days since 1970-01-01
    assert_eq!(day(df, "commissioned_on", 0), Some(18275));
    assert_eq!(day(df, "updated_on", 0), Some(18722));
    assert_eq!(
        ts(df, "valid_from", 0).as_deref(),
        Some("2021-04-05T00:00:00+00:00")
    );
    assert_eq!(s(df, "charge_point_id", 1), Some("ESZUNE1111ER7"));
    assert_eq!(s(df, "partner", 1), Some("acme"));
}

#[test]
fn irve_dynamic_example_gives_status_snapshots() {
    let (chunks, stats) = run(
        crate::irve::DYNAMIC_SCHEMA,
        &crate::irve::DYNAMIC,
        file("irve/dynamique/exemple-valide-dynamique.csv"),
        1000,
    );
    assert_eq!(stats.rows, 2);
    let df = &chunks[0].tables[0].1;
    assert_eq!(s(df, "charge_point_id", 1), Some("ESZUNE1111ER7"));
    assert_eq!(
        ts(df, "observed_at", 0).as_deref(),
        Some("2022-10-18T12:35:49+00:00")
    );
    assert_eq!(
        (s(df, "status", 0), s(df, "occupancy", 0)),
        (Some("en_service"), Some("libre"))
    );
    assert_eq!(
        (
            s(df, "socket_type2_status", 0),
            s(df, "socket_chademo_status", 0)
        ),
        (Some("fonctionnel"), None)
    );
}

#[test]
fn bnls_valid_loads_and_invalid_quarantines_its_row_with_both_rules() {
    let (chunks, stats) = run(
        crate::bnls::SCHEMA,
        &crate::bnls::MAPPING,
        file("bnls/exemple-valide.csv"),
        1000,
    );
    assert_eq!(
        stats,
        FileStats {
            rows: 2,
            quarantined_rows: 0
        }
    );
    let df = &chunks[0].tables[0].1;
    assert_eq!(s(df, "facility_id", 0), Some("75114-P-001"));
    assert_eq!(
        s(df, "address", 0),
        Some("3 rue de la Gare, 92300, Levallois-Peret")
    );
    let h = df.column("max_height_cm").unwrap().i64().unwrap();
    assert_eq!((h.get(0), h.get(1)), (Some(290), None));
    assert_eq!(
        (f(df, "lat", 0), f(df, "lon", 0)),
        (Some(46.59698), Some(1.452323))
    );
    assert_eq!(f(df, "non_resident_subscription", 0), Some(79.99));
    assert_eq!(
        ts(df, "valid_from", 0).as_deref(),
        Some("2026-11-21T08:00:00+00:00")
    );

    let (chunks, stats) = run(
        crate::bnls::SCHEMA,
        &crate::bnls::MAPPING,
        file("bnls/exemple-invalide.csv"),
        1000,
    );
    assert_eq!(
        stats,
        FileStats {
            rows: 0,
            quarantined_rows: 1
        }
    );
    let q: Vec<(&str, Option<&str>, &str)> = chunks[0]
        .quarantine
        .iter()
        .map(|q| (q.position.as_str(), q.field.as_deref(), q.reason.as_str()))
        .collect();
    assert_eq!(
        q,
        vec![
            (
                "line 2",
                Some("id"),
                r"pattern ^([013-9]\d|2[AB1-9])\d{3}-P-\d{3}$"
            ),
            (
                "line 2",
                Some("tarif_pmr"),
                r#"enum ["gratuit", "normal_payant", "tarif_special"]"#
            ),
        ]
    );
    assert_eq!(chunks[0].tables[0].1.height(), 0);
}

#[test]
fn big_files_come_in_chunks_and_repeated_ids_are_quarantined() {
    // 2,500 variants of the real example's first row, the last 100 repeating earlier ids.
    let text = String::from_utf8(file("irve/statique/exemple-valide-statique.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let row = lines.next().unwrap();
    let mut out = vec![header.to_string()];
    for i in 0..2500 {
        let id = format!("FRA68E68021{:04}", i % 2400);
        out.push(row.replace("FRA68E680210015", &id));
    }
    let (chunks, stats) = run(
        crate::irve::STATIC_SCHEMA,
        &crate::irve::STATIC,
        out.join("\n").into_bytes(),
        1000,
    );
    assert_eq!(
        stats,
        FileStats {
            rows: 2400,
            quarantined_rows: 100
        }
    );
    let sizes: Vec<usize> = chunks.iter().map(|c| c.tables[0].1.height()).collect();
    assert_eq!(sizes, vec![1000, 1000, 400]);
    let q = &chunks.last().unwrap().quarantine;
    assert_eq!(q.len(), 100);
    assert_eq!(q[0].position, "line 2402");
    assert_eq!(q[0].reason, "duplicate charge_point_id in this run");
}
