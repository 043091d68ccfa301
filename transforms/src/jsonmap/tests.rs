//! The Mon Compte Mobilité gateway's raw MSP payloads through a declarative JSON mapping.

use super::*;
use crate::mapped::{ColumnSpec, Convert};
use chrono::TimeZone;
use mobiflux_model::schema::VEHICLES;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/mcm-gateway");

fn col(column: &'static str, from: &str, default: Option<&str>) -> ColumnSpec {
    ColumnSpec {
        column,
        source: Source::Column(from.into()),
        convert: Convert::Auto,
        regex: None,
        default: default.map(str::to_string),
    }
}

fn run(
    bytes: &[u8],
    records: &str,
    mapping: &MappedTable,
) -> Result<(Vec<Output>, FileStats), TransformError> {
    let ctx = Context {
        pipeline: "test",
        partner: "msp",
        run_id: "run-1",
        language: None,
    };
    let mut chunks = Vec::new();
    let mut seen = RunKeys::default();
    let fetched = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let stats = read(
        &ctx,
        bytes,
        "raw/msp/records/x.json",
        fetched,
        records,
        mapping,
        &mut seen,
        &mut |c| {
            chunks.push(c);
            Ok(())
        },
    )?;
    Ok((chunks, stats))
}

fn assets_mapping() -> MappedTable {
    MappedTable {
        target: &VEHICLES,
        columns: vec![
            col("vehicle_id", "assetId", None),
            col("vehicle_type_id", "^.assetTypeId", None),
            col("station_id", "^.stationId", None),
            col("is_reserved", "isReserved", None),
            col("is_disabled", "isDisabled", Some("false")),
        ],
        nulls: vec![String::new()],
    }
}

#[test]
fn available_assets_of_the_default_adapter_mock_load_with_their_parent_type_and_station() {
    let bytes = std::fs::read(format!(
        "{FIXTURES}/default-adapter__mock__mock_AvailableAsset.json"
    ))
    .unwrap();
    let (chunks, stats) = run(&bytes, "*.assets.*", &assets_mapping()).unwrap();
    assert_eq!((stats.rows, stats.quarantined_rows), (2, 0));
    let df = chunks[0].table("vehicles").unwrap();
    let s = |c: &str, i: usize| {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .map(str::to_string)
    };
    let b = |c: &str, i: usize| df.column(c).unwrap().bool().unwrap().get(i);
    assert_eq!(s("vehicle_id", 0).as_deref(), Some("asset1"));
    assert_eq!(s("vehicle_id", 1).as_deref(), Some("asset2"));
    assert_eq!(s("vehicle_type_id", 1).as_deref(), Some("assettype1"));
    assert_eq!(s("station_id", 0).as_deref(), Some("sta1"));
    assert_eq!(
        (b("is_reserved", 0), b("is_reserved", 1)),
        (Some(false), Some(true))
    );
    // isDisabled is null in the payload: the default applies.
    assert_eq!(
        (b("is_disabled", 0), b("is_disabled", 1)),
        (Some(false), Some(false))
    );
}

#[test]
fn a_selector_into_nested_lists_and_a_missing_record_path() {
    let bytes = std::fs::read(format!(
        "{FIXTURES}/default-adapter__mock__test_with_selector.json"
    ))
    .unwrap();
    let m = MappedTable {
        target: &VEHICLES,
        columns: vec![
            col("vehicle_id", "data.vehicleId", None),
            col("vehicle_type_id", "data.vehicleName", None),
            col("is_reserved", "data.reserved", Some("false")),
            col("is_disabled", "data.disabled", Some("false")),
            col("station_id", "data.characteristics.0", None),
        ],
        nulls: vec![String::new()],
    };
    let (chunks, stats) = run(&bytes, "*.assetsType.vehicles.*", &m).unwrap();
    assert_eq!(stats.rows, 1);
    let df = chunks[0].table("vehicles").unwrap();
    let s = |c: &str| {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .map(str::to_string)
    };
    assert_eq!(
        s("vehicle_id").as_deref(),
        Some("f457579d-02f8-4479-b97b-ffb678e3f899")
    );
    assert_eq!(s("vehicle_type_id").as_deref(), Some("trotinette"));
    assert_eq!(s("station_id").as_deref(), Some("travelAbroad"));
    let err = run(&bytes, "*.assets.*", &m).unwrap_err();
    assert_eq!(
        err.to_string(),
        "raw/msp/records/x.json: expected records at the path \"*.assets.*\"; nothing there in this document"
    );
}

#[test]
fn a_record_whose_value_fails_is_quarantined_at_its_json_pointer() {
    let doc = br#"{"items": [{"assetId": "a", "isReserved": "maybe"}, {"assetId": "b", "isReserved": true}]}"#;
    let m = MappedTable {
        target: &VEHICLES,
        columns: vec![
            col("vehicle_id", "assetId", None),
            col("is_reserved", "isReserved", None),
            col("is_disabled", "isDisabled", Some("false")),
            col("lat", "lat", None),
        ],
        nulls: vec![String::new()],
    };
    let (chunks, stats) = run(doc, "items.*", &m).unwrap();
    assert_eq!((stats.rows, stats.quarantined_rows), (1, 1));
    let q = &chunks[0].quarantine[0];
    assert_eq!(q.position, "/items/0");
    assert_eq!(q.field.as_deref(), Some("isReserved"));
    assert_eq!(q.value.as_deref(), Some("maybe"));
}

#[test]
fn an_empty_list_is_no_records_and_a_missing_key_is_an_error() {
    let m = assets_mapping();
    let (_, stats) = run(br#"{"items": []}"#, "items.*", &m).unwrap();
    assert_eq!((stats.rows, stats.quarantined_rows), (0, 0));
    assert_eq!(count(&serde_json::json!({"items": [1, 2]}), "items.*"), 2);
    let err = run(br#"{"things": []}"#, "items.*", &m).unwrap_err();
    assert!(
        err.to_string().contains("nothing there in this document"),
        "{err}"
    );
}
