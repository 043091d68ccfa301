//! The real municipal parking exports through declarative mappings.

use super::*;
use crate::tabular::{FileStats, RunKeys, read};
use crate::text::TextOptions;
use crate::{Context, Output};
use mobiflux_model::schema::{PARKING_FACILITIES, PARKING_OCCUPANCY};
use polars::prelude::DataFrame;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/parking-csv");

fn col(column: &'static str, from: &str) -> ColumnSpec {
    ColumnSpec {
        column,
        source: Source::Column(from.into()),
        convert: Convert::Auto,
        regex: None,
        default: None,
    }
}

fn conv(column: &'static str, from: &str, convert: Convert) -> ColumnSpec {
    ColumnSpec {
        column,
        source: Source::Column(from.into()),
        convert,
        regex: None,
        default: None,
    }
}

fn load(
    file: &str,
    delimiter: u8,
    table: &MappedTable,
) -> (DataFrame, Vec<crate::Quarantined>, FileStats) {
    table.check().unwrap();
    let ctx = Context {
        pipeline: "p",
        partner: "city",
        run_id: "r",
        language: None,
    };
    let bytes = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
    let mut chunks: Vec<Output> = Vec::new();
    let fetched = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    let text = TextOptions {
        delimiter,
        ..TextOptions::default()
    };
    let stats = read(
        &ctx,
        Box::new(std::io::Cursor::new(bytes)),
        file,
        fetched,
        table,
        &text,
        100_000,
        &mut RunKeys::default(),
        &mut |c| {
            chunks.push(c);
            Ok(())
        },
    )
    .unwrap();
    let c = chunks.remove(0);
    (c.tables.into_iter().next().unwrap().1, c.quarantine, stats)
}

fn s<'a>(df: &'a DataFrame, c: &str, i: usize) -> Option<&'a str> {
    df.column(c).unwrap().str().unwrap().get(i)
}
fn f(df: &DataFrame, c: &str, i: usize) -> Option<f64> {
    df.column(c).unwrap().f64().unwrap().get(i)
}
fn n(df: &DataFrame, c: &str, i: usize) -> Option<i64> {
    df.column(c).unwrap().i64().unwrap().get(i)
}
fn ts(df: &DataFrame, c: &str, i: usize) -> Option<String> {
    let us = df
        .column(c)
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .get(i)?;
    Some(Utc.timestamp_micros(us).unwrap().to_rfc3339())
}

#[test]
fn latin1_occupancy_with_epoch_milliseconds() {
    let map = BTreeMap::from([
        ("Geöffnet".to_string(), "open".to_string()),
        ("Geschlossen".to_string(), "closed".to_string()),
    ]);
    let table = MappedTable {
        target: &PARKING_OCCUPANCY,
        columns: vec![
            col("facility_id", "Name"),
            col("name", "Name"),
            conv("status", "OpeningState", Convert::Map(map)),
            col("capacity", "Capacity"),
            col("occupied", "OccupiedSites"),
            conv(
                "observed_at",
                "Timestamp",
                Convert::Time(TimeSpec::EpochMillis),
            ),
        ],
        nulls: vec![String::new()],
    };
    let (df, q, stats) = load("bietigheim-bissingen.csv", b';', &table);
    assert_eq!(
        stats,
        FileStats {
            rows: 14,
            quarantined_rows: 0
        },
        "{q:?}"
    );
    assert_eq!(s(&df, "facility_id", 0), Some("Parkplatz Mühlwiesenstr."));
    assert_eq!(
        ts(&df, "observed_at", 0).as_deref(),
        Some("2025-02-27T10:17:47.085+00:00")
    );
    assert_eq!(
        (n(&df, "capacity", 0), n(&df, "occupied", 0)),
        (Some(106), Some(81))
    );
    assert_eq!(s(&df, "status", 10), Some("closed"));
    assert_eq!(s(&df, "name", 7), Some("Parkplatz Löchgauer Str."));
}

#[test]
fn wkt_points_and_empty_capacities() {
    let table = MappedTable {
        target: &PARKING_FACILITIES,
        columns: vec![
            col("facility_id", "id"),
            col("name", "ort"),
            col("capacity", "Kapazität"),
            col("structure_type", "type"),
            conv("lat", "GEOM", Convert::Lat),
            conv("lon", "GEOM", Convert::Lon),
        ],
        nulls: vec![String::new()],
    };
    let (df, _, stats) = load("reutlingen.csv", b',', &table);
    assert_eq!(stats.rows, 114);
    assert_eq!(
        (s(&df, "facility_id", 0), s(&df, "name", 2)),
        (Some("76997"), Some("L 383 / Alteburgstraße"))
    );
    assert_eq!(
        (f(&df, "lon", 0), f(&df, "lat", 0)),
        (Some(9.199289721037594), Some(48.51240816508743))
    );
    assert_eq!(
        (n(&df, "capacity", 0), n(&df, "capacity", 3)),
        (Some(110), None)
    );
    assert_eq!(s(&df, "structure_type", 0), Some("parkfläche"));
    assert_eq!(
        ts(&df, "valid_from", 0).as_deref(),
        Some("2026-11-21T12:00:00+00:00")
    );
}

#[test]
fn bom_and_a_constant() {
    let table = MappedTable {
        target: &PARKING_FACILITIES,
        columns: vec![
            col("facility_id", "id"),
            col("address", "ort"),
            ColumnSpec {
                column: "name",
                source: Source::Constant("Behindertenparkplatz".into()),
                convert: Convert::Auto,
                regex: None,
                default: None,
            },
            ColumnSpec {
                column: "spaces_pmr",
                source: Source::Constant("1".into()),
                convert: Convert::Auto,
                regex: None,
                default: None,
            },
            conv("lat", "GEOM", Convert::Lat),
            conv("lon", "GEOM", Convert::Lon),
        ],
        nulls: vec![String::new()],
    };
    let (df, _, stats) = load("reutlingen_disabled.csv", b';', &table);
    assert_eq!(stats.rows, 44);
    assert_eq!(s(&df, "address", 0), Some("Burgstraße 27-29"));
    assert_eq!(
        (s(&df, "name", 43), n(&df, "spaces_pmr", 43)),
        (Some("Behindertenparkplatz"), Some(1))
    );
}

#[test]
fn ewkb_hex_points() {
    let table = MappedTable {
        target: &PARKING_FACILITIES,
        columns: vec![
            col("facility_id", "id"),
            col("name", "name"),
            col("capacity", "anz_plaetze"),
            col("spaces_pmr", "anzbehinderte"),
            conv("lat", "geom", Convert::Lat),
            conv("lon", "geom", Convert::Lon),
        ],
        nulls: vec![String::new(), "N/A".into()],
    };
    let (df, q, stats) = load("neckarsulm.csv", b';', &table);
    assert_eq!(
        stats,
        FileStats {
            rows: 41,
            quarantined_rows: 0
        },
        "{q:?}"
    );
    assert_eq!(
        (
            s(&df, "name", 0),
            n(&df, "capacity", 0),
            n(&df, "spaces_pmr", 0)
        ),
        (Some("AQUAtoll P1"), Some(203), Some(4))
    );
    // The file's own x-koord/y-koord columns give the same point, rounded.
    assert!((f(&df, "lon", 0).unwrap() - 9.24487198).abs() < 1e-7);
    assert!((f(&df, "lat", 0).unwrap() - 49.190044818).abs() < 1e-7);
}

#[test]
fn a_big_utf8_export_and_an_unmapped_value_quarantined() {
    let table = MappedTable {
        target: &PARKING_FACILITIES,
        columns: vec![
            col("facility_id", "gid"),
            col("name", "bez"),
            col("address", "zufahrt"),
            col("capacity", "kapazitaet"),
            conv(
                "structure_type",
                "typ",
                Convert::Map(BTreeMap::from([
                    ("P".into(), "surface".into()),
                    ("H".into(), "garage".into()),
                ])),
            ),
            conv("lat", "WKT", Convert::Lat),
            conv("lon", "WKT", Convert::Lon),
        ],
        nulls: vec![String::new()],
    };
    let (df, q, stats) = load("bielefeld.csv", b';', &table);
    assert_eq!(stats.rows + stats.quarantined_rows, 853);
    assert_eq!(
        s(&df, "address", 0),
        Some("hinter Schildescher Straße 25 über Ernst-Rein-Straße")
    );
    // Types T, TZ, PZ, HZ are not in the map: those rows are quarantined with the rule.
    assert!(stats.quarantined_rows > 0);
    assert_eq!(q[0].field.as_deref(), Some("typ"));
    assert!(
        q[0].reason.starts_with("value not in the map"),
        "{:?}",
        q[0]
    );
}

#[test]
fn points_from_wkt_ewkb_and_refusals() {
    assert_eq!(point("POINT (8.5 52.0)").unwrap(), (8.5, 52.0));
    assert_eq!(point("SRID=4326;POINT(8.5 52)").unwrap(), (8.5, 52.0));
    // EWKB Point with SRID 4326, little endian.
    let mut b = vec![1u8];
    b.extend(0x2000_0001u32.to_le_bytes());
    b.extend(4326u32.to_le_bytes());
    b.extend(2.35f64.to_le_bytes());
    b.extend(48.85f64.to_le_bytes());
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    assert_eq!(point(&hex).unwrap(), (2.35, 48.85));
    // The same point in Lambert-93 (EPSG:2154) is refused, not silently misread.
    let mut l93 = vec![1u8];
    l93.extend(0x2000_0001u32.to_le_bytes());
    l93.extend(2154u32.to_le_bytes());
    l93.extend(652_000.0f64.to_le_bytes());
    l93.extend(6_862_000.0f64.to_le_bytes());
    let hex: String = l93.iter().map(|x| format!("{x:02X}")).collect();
    assert_eq!(point(&hex).unwrap_err(), "SRID 2154 is not WGS84 (4326)");
    assert!(point("LINESTRING (1 2, 3 4)").is_err());
}

#[test]
fn unmapped_required_columns_are_named() {
    let table = MappedTable {
        target: &PARKING_FACILITIES,
        columns: vec![col("facility_id", "id")],
        nulls: vec![],
    };
    assert_eq!(
        table.check().unwrap_err(),
        "table parking_facilities needs [\"name\"] mapped"
    );
}
