//! Fixture in, rows out: the real GBFS files of `fixtures/gbfs` through the transform,
//! with the values the files say.

use super::*;
use crate::frame::empty;
use chrono::TimeZone;
use polars::prelude::DataFrame;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/gbfs");

fn fetched() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

struct Loaded {
    resources: Vec<(String, String, Vec<u8>)>,
}

impl Loaded {
    /// Files of a fixture folder as payloads; `name-1.json` counts as resource `name`.
    fn dir(dir: &str, files: &[&str]) -> Self {
        let resources = files
            .iter()
            .map(|f| {
                let path = format!("{FIXTURES}/{dir}/{f}");
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                let stem = f.trim_end_matches(".json");
                let resource = stem.split('-').next().unwrap().to_string();
                (resource, format!("raw/test/{dir}/{f}"), bytes)
            })
            .collect();
        Loaded { resources }
    }

    fn run(&self) -> Output {
        let payloads: Vec<Payload> = self
            .resources
            .iter()
            .map(|(r, k, b)| Payload {
                resource: r,
                source_object: k,
                bytes: b,
                fetched_at: fetched(),
            })
            .collect();
        let ctx = Context {
            pipeline: "test",
            partner: "acme",
            run_id: "run-1",
            language: None,
        };
        transform(&ctx, &payloads).expect("transform")
    }
}

fn s<'a>(df: &'a DataFrame, col: &str, row: usize) -> Option<&'a str> {
    df.column(col).unwrap().str().unwrap().get(row)
}
fn f(df: &DataFrame, col: &str, row: usize) -> Option<f64> {
    df.column(col).unwrap().f64().unwrap().get(row)
}
fn i(df: &DataFrame, col: &str, row: usize) -> Option<i64> {
    df.column(col).unwrap().i64().unwrap().get(row)
}
fn b(df: &DataFrame, col: &str, row: usize) -> Option<bool> {
    df.column(col).unwrap().bool().unwrap().get(row)
}
fn t(df: &DataFrame, col: &str, row: usize) -> Option<String> {
    df.column(col)
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .get(row)
        .map(|us| Utc.timestamp_micros(us).unwrap().to_rfc3339())
}

const V23: &[&str] = &[
    "gbfs.json",
    "gbfs_versions.json",
    "system_information.json",
    "vehicle_types.json",
    "station_information.json",
    "station_status.json",
    "free_bike_status.json",
    "system_regions.json",
    "system_pricing_plans.json",
    "system_hours.json",
    "system_calendar.json",
    "system_alerts.json",
    "geofencing_zones.json",
];

#[test]
fn v2_3_fixture_set_gives_the_files_values() {
    let out = Loaded::dir("v2.3", V23).run();
    assert!(out.quarantine.is_empty(), "{:?}", out.quarantine);

    let si = out.table("system_info").unwrap();
    assert_eq!(si.height(), 1);
    assert_eq!(s(si, "system_id", 0), Some("TST:System:Test"));
    assert_eq!(s(si, "name", 0), Some("Test"));
    assert_eq!(s(si, "timezone", 0), Some("Europe/Oslo"));
    assert_eq!(s(si, "language", 0), Some("en"));
    assert_eq!(s(si, "feed_version", 0), Some("2.3"));
    assert_eq!(
        t(si, "valid_from", 0).as_deref(),
        Some("2020-12-01T13:45:57+00:00")
    );

    let vt = out.table("vehicle_types").unwrap();
    assert_eq!(vt.height(), 2);
    assert_eq!(s(vt, "vehicle_type_id", 0), Some("TST:VehicleType:Scooter"));
    assert_eq!(s(vt, "form_factor", 0), Some("scooter"));
    assert_eq!(s(vt, "propulsion", 0), Some("electric"));
    assert_eq!(f(vt, "max_range_m", 0), Some(0.0));
    assert_eq!(s(vt, "propulsion", 1), Some("human"));
    assert_eq!(f(vt, "max_range_m", 1), None);

    let st = out.table("stations").unwrap();
    assert_eq!(st.height(), 2);
    assert_eq!(s(st, "station_id", 1), Some("TST:Station:2"));
    assert_eq!(s(st, "name", 1), Some("Cooler bikes"));
    assert_eq!(
        (f(st, "lat", 1), f(st, "lon", 1)),
        (Some(11.34), Some(44.67))
    );
    assert_eq!(
        s(st, "vehicle_type_capacity", 0),
        Some(r#"{"TST:VehicleType:CityBike":7}"#)
    );
    assert_eq!(s(st, "partner", 0), Some("acme"));
    assert_eq!(s(st, "run_id", 0), Some("run-1"));

    let ss = out.table("station_status").unwrap();
    assert_eq!(ss.height(), 2);
    assert_eq!(i(ss, "vehicles_available", 0), Some(1));
    assert_eq!(i(ss, "docks_available", 0), Some(3));
    assert_eq!(i(ss, "vehicles_available", 1), Some(6));
    assert_eq!(i(ss, "docks_available", 1), Some(8));
    assert_eq!(b(ss, "is_renting", 0), Some(true));
    assert_eq!(
        t(ss, "observed_at", 0).as_deref(),
        Some("2025-07-02T06:21:03+00:00")
    );
    assert_eq!(
        t(ss, "last_reported", 0).as_deref(),
        Some("2025-07-02T06:21:03+00:00")
    );
    assert_eq!(
        s(ss, "vehicle_types_available", 1),
        Some(r#"{"TST:VehicleType:CityBike":4,"TST:VehicleType:Scooter":2}"#)
    );

    let v = out.table("vehicles").unwrap();
    assert_eq!(v.height(), 1);
    assert_eq!(s(v, "vehicle_id", 0), Some("TST:Scooter:1234"));
    assert_eq!(f(v, "lat", 0), Some(59.91465759277344));
    assert_eq!(f(v, "lon", 0), Some(10.760470390319824));
    assert_eq!(b(v, "is_disabled", 0), Some(true));
    assert_eq!(b(v, "is_reserved", 0), Some(false));
    assert_eq!(f(v, "current_range_m", 0), Some(1431.2));
    assert_eq!(s(v, "pricing_plan_id", 0), Some("TST:PricingPlan:Basic"));
    assert_eq!(
        t(v, "observed_at", 0).as_deref(),
        Some("2020-12-01T21:26:08+00:00")
    );

    let pp = out.table("pricing_plans").unwrap();
    assert_eq!(pp.height(), 1);
    assert_eq!(s(pp, "currency", 0), Some("NOK"));
    assert_eq!(f(pp, "price", 0), Some(0.0));
    assert_eq!(
        s(pp, "per_min_pricing", 0),
        Some(r#"[{"interval":1,"rate":3.5,"start":0}]"#)
    );

    let rg = out.table("regions").unwrap();
    assert_eq!((rg.height(), s(rg, "name", 0)), (1, Some("Sahara")));

    let gz = out.table("geofencing_zones").unwrap();
    assert_eq!(gz.height(), 1);
    assert_eq!(s(gz, "name", 0), Some("Nes"));
    assert!(
        s(gz, "geometry", 0)
            .unwrap()
            .starts_with(r#"{"coordinates":[[[[11.53037789067,60.13740063434]"#)
    );
}

const V30: &[&str] = &[
    "gbfs.json",
    "manifest.json",
    "gbfs_versions.json",
    "system_information.json",
    "vehicle_types.json",
    "station_information.json",
    "station_status.json",
    "vehicle_status.json",
    "system_regions.json",
    "system_pricing_plans.json",
    "system_alerts.json",
    "geofencing_zones.json",
];

#[test]
fn v3_0_fixture_set_gives_the_files_values() {
    let out = Loaded::dir("v3.0", V30).run();
    assert!(out.quarantine.is_empty(), "{:?}", out.quarantine);

    let si = out.table("system_info").unwrap();
    assert_eq!(s(si, "system_id", 0), Some("example_london"));
    assert_eq!(s(si, "name", 0), Some("Check Technologies"));
    assert_eq!(s(si, "timezone", 0), Some("Europe/Amsterdam"));
    assert_eq!(
        t(si, "valid_from", 0).as_deref(),
        Some("2019-07-04T13:33:03.969+00:00")
    );

    let vt = out.table("vehicle_types").unwrap();
    assert_eq!(vt.height(), 1);
    assert_eq!(s(vt, "name", 0), Some("Electric Bicycle"));
    assert_eq!(s(vt, "propulsion", 0), Some("electric_assist"));
    assert_eq!(f(vt, "max_range_m", 0), Some(90000.0));

    let st = out.table("stations").unwrap();
    assert_eq!(st.height(), 23);
    assert_eq!(
        s(st, "station_id", 0),
        Some("6efbec5a-6b8c-455b-bed2-8d66be6d6a4b")
    );
    assert_eq!(s(st, "name", 0), Some("2 ROUES"));
    assert_eq!(f(st, "lat", 0), Some(48.8456017931977));
    assert_eq!(f(st, "lon", 0), Some(2.38465095280482));
    assert_eq!(b(st, "is_virtual", 0), Some(true));

    let ss = out.table("station_status").unwrap();
    assert_eq!(ss.height(), 1);
    assert_eq!(i(ss, "vehicles_available", 0), Some(0));
    assert_eq!(i(ss, "docks_available", 0), None);
    assert_eq!(
        t(ss, "last_reported", 0).as_deref(),
        Some("2019-07-04T13:33:03.969+00:00")
    );

    let v = out.table("vehicles").unwrap();
    assert_eq!(v.height(), 7);
    assert_eq!(
        s(v, "vehicle_id", 0),
        Some("2b6488755477b6803d3e21072a3dbcff52fb8f806283fc73591c8053e6ad6125")
    );
    assert_eq!(
        (f(v, "lat", 0), f(v, "lon", 0)),
        (Some(48.84627), Some(2.332335))
    );
    assert_eq!(f(v, "current_range_m", 6), Some(12000.0));

    let pp = out.table("pricing_plans").unwrap();
    assert_eq!(pp.height(), 2);
    assert_eq!(s(pp, "name", 1), Some("scooter-standard-pricing-paris"));
    assert_eq!(f(pp, "price", 1), Some(1.2));
    assert_eq!(s(pp, "currency", 1), Some("EUR"));

    let rg = out.table("regions").unwrap();
    assert_eq!(s(rg, "name", 0), Some("Gothenburg"));
    assert_eq!(
        t(rg, "valid_from", 0).as_deref(),
        Some("2024-04-18T09:37:59+00:00")
    );

    assert_eq!(out.table("geofencing_zones").unwrap().height(), 272);
}

/// Every specification example (with its -1/-2/-3 variants) loads whole: rows = records.
#[test]
fn every_spec_example_loads_without_quarantine() {
    let cases: &[(&str, &str, &str, usize)] = &[
        ("v2.3", "system_information.json", "system_info", 1),
        ("v2.3", "vehicle_types.json", "vehicle_types", 4),
        ("v2.3", "station_information-1.json", "stations", 1),
        ("v2.3", "station_information-2.json", "stations", 1),
        ("v2.3", "station_status.json", "station_status", 2),
        ("v2.3", "free_bike_status-1.json", "vehicles", 2),
        ("v2.3", "free_bike_status-2.json", "vehicles", 2),
        ("v2.3", "system_pricing_plans-1.json", "pricing_plans", 1),
        ("v2.3", "system_pricing_plans-2.json", "pricing_plans", 1),
        ("v2.3", "system_regions.json", "regions", 4),
        ("v2.3", "geofencing_zones.json", "geofencing_zones", 1),
        ("v3.0", "system_information-1.json", "system_info", 1),
        ("v3.0", "system_information-2.json", "system_info", 1),
        ("v3.0", "vehicle_types.json", "vehicle_types", 4),
        ("v3.0", "station_information-1.json", "stations", 1),
        ("v3.0", "station_information-2.json", "stations", 1),
        ("v3.0", "station_information-3.json", "stations", 1),
        ("v3.0", "station_status.json", "station_status", 2),
        ("v3.0", "vehicle_status-1.json", "vehicles", 2),
        ("v3.0", "vehicle_status-2.json", "vehicles", 2),
        ("v3.0", "system_pricing_plans-1.json", "pricing_plans", 1),
        ("v3.0", "system_pricing_plans-2.json", "pricing_plans", 1),
        ("v3.0", "system_regions.json", "regions", 4),
        ("v3.0", "geofencing_zones.json", "geofencing_zones", 1),
    ];
    for (version, file, table, rows) in cases {
        let out = Loaded::dir(&format!("spec-examples/{version}"), &[file]).run();
        assert!(
            out.quarantine.is_empty(),
            "{version}/{file}: {:?}",
            out.quarantine
        );
        let df = out
            .table(table)
            .unwrap_or_else(|| panic!("{version}/{file}: no {table}"));
        assert_eq!(df.height(), *rows, "{version}/{file}");
        assert_eq!(
            df.schema(),
            empty(schema_of(table)).schema(),
            "{version}/{file}"
        );
    }
    // Values from the specification text: UTC conversion of +02:00 times, v3 renames.
    let out = Loaded::dir(
        "spec-examples/v3.0",
        &["vehicle_status-1.json", "station_status.json"],
    )
    .run();
    let v = out.table("vehicles").unwrap();
    assert_eq!(
        t(v, "observed_at", 0).as_deref(),
        Some("2023-07-17T11:34:13+00:00")
    );
    assert_eq!(s(v, "station_id", 1), Some("86"));
    assert_eq!((f(v, "lat", 1), f(v, "lon", 1)), (None, None));
    let ss = out.table("station_status").unwrap();
    assert_eq!(i(ss, "vehicles_disabled", 0), Some(2));
    assert_eq!(i(ss, "docks_disabled", 0), Some(1));
}

fn schema_of(name: &str) -> &'static TableSchema {
    mobiflux_model::schema::table(name).unwrap()
}

#[test]
fn bad_records_are_quarantined_with_position_and_the_rest_loads() {
    // A variant of the real v2.3 station_information: one station off the globe,
    // one repeated id, one without a name.
    let mut doc: Value = serde_json::from_slice(
        &std::fs::read(format!("{FIXTURES}/v2.3/station_information.json")).unwrap(),
    )
    .unwrap();
    let stations = doc["data"]["stations"].as_array_mut().unwrap();
    let mut off = stations[0].clone();
    off["station_id"] = "TST:Station:3".into();
    off["lat"] = 123.0.into();
    let dup = stations[1].clone();
    let mut nameless = stations[0].clone();
    nameless["station_id"] = "TST:Station:4".into();
    nameless.as_object_mut().unwrap().remove("name");
    stations.extend([off, dup, nameless]);
    let bytes = serde_json::to_vec(&doc).unwrap();
    let payloads = [Payload {
        resource: "station_information",
        source_object: "raw/x/station_information/a.json",
        bytes: &bytes,
        fetched_at: fetched(),
    }];
    let ctx = Context {
        pipeline: "x",
        partner: "p",
        run_id: "r",
        language: None,
    };
    let out = transform(&ctx, &payloads).unwrap();
    assert_eq!(out.table("stations").unwrap().height(), 2);
    let q: Vec<(&str, Option<&str>, Option<&str>, &str)> = out
        .quarantine
        .iter()
        .map(|q| {
            (
                q.position.as_str(),
                q.field.as_deref(),
                q.value.as_deref(),
                q.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        q,
        vec![
            (
                "/data/stations/2",
                Some("lat"),
                Some("123.0"),
                "lat must be between -90 and 90"
            ),
            (
                "/data/stations/3",
                Some("station_id"),
                Some("TST:Station:2"),
                "duplicate station_id (first seen at /data/stations/1)"
            ),
            (
                "/data/stations/4",
                Some("name"),
                None,
                "required field name is missing"
            ),
        ]
    );
    assert!(
        out.quarantine
            .iter()
            .all(|q| q.source_object == "raw/x/station_information/a.json")
    );
}

#[test]
fn html_instead_of_json_fails_the_file_with_its_first_bytes() {
    let bytes = b"<!DOCTYPE html><html><body>Maintenance</body></html>";
    let payloads = [Payload {
        resource: "station_status",
        source_object: "raw/x/station_status/b.json",
        bytes,
        fetched_at: fetched(),
    }];
    let ctx = Context {
        pipeline: "x",
        partner: "p",
        run_id: "r",
        language: None,
    };
    let err = transform(&ctx, &payloads).unwrap_err().to_string();
    assert!(
        err.starts_with("raw/x/station_status/b.json: expected a JSON document;"),
        "{err}"
    );
    assert!(err.contains("<!DOCTYPE html>"), "{err}");
}

#[test]
fn gbfs_1_0_integer_booleans_and_bike_ids_are_read() {
    // GBFS 1.0 shape (spec v1.0 free_bike_status/station_status): 0/1 flags, bike_id, POSIX times.
    let bikes = br#"{"last_updated":1434054678,"ttl":0,"data":{"bikes":[
        {"bike_id":"ABC123","lat":12.34,"lon":56.78,"is_reserved":1,"is_disabled":0}]}}"#;
    let status = br#"{"last_updated":1434054678,"ttl":0,"data":{"stations":[
        {"station_id":"1","num_bikes_available":7,"num_docks_available":3,"is_installed":1,
         "is_renting":1,"is_returning":0,"last_reported":1434054678}]}}"#;
    let payloads = [
        Payload {
            resource: "free_bike_status",
            source_object: "a",
            bytes: bikes,
            fetched_at: fetched(),
        },
        Payload {
            resource: "station_status",
            source_object: "b",
            bytes: status,
            fetched_at: fetched(),
        },
    ];
    let ctx = Context {
        pipeline: "x",
        partner: "p",
        run_id: "r",
        language: None,
    };
    let out = transform(&ctx, &payloads).unwrap();
    assert!(out.quarantine.is_empty(), "{:?}", out.quarantine);
    let v = out.table("vehicles").unwrap();
    assert_eq!(
        (s(v, "vehicle_id", 0), b(v, "is_reserved", 0)),
        (Some("ABC123"), Some(true))
    );
    let ss = out.table("station_status").unwrap();
    assert_eq!(
        (i(ss, "vehicles_available", 0), b(ss, "is_returning", 0)),
        (Some(7), Some(false))
    );
    assert_eq!(
        t(ss, "observed_at", 0).as_deref(),
        Some("2015-06-11T20:31:18+00:00")
    );
}

const CTX: Context = Context {
    pipeline: "x",
    partner: "p",
    run_id: "r",
    language: None,
};

/// A snapshot table's generic reader: the rows and quarantine of one file (`None` when it
/// fails the whole file).
type Generic = fn(&mut Table, &File) -> Result<(), TransformError>;

fn generic_rows(
    schema: &'static TableSchema,
    read: Generic,
    p: &Payload,
) -> Option<(DataFrame, Vec<crate::Quarantined>)> {
    let file = parse(p).ok()?;
    let mut quarantine = Vec::new();
    let mut t = Table::new(schema, &CTX, &mut quarantine);
    read(&mut t, &file).ok()?;
    Some((t.builder.finish(), quarantine))
}

/// The fast path's rows, when it takes the file.
fn fast_rows(schema: &'static TableSchema, read: fast::Reader, p: &Payload) -> Option<DataFrame> {
    let mut builder = crate::frame::FrameBuilder::new(schema);
    read(&mut builder, &CTX, p).then(|| builder.finish())
}

/// For each crafted file (its text, whether the fast path takes it, the rows the generic
/// reader keeps): the generic reader's row count (only case `failing` fails the whole
/// file), the fast path taking the file or not, the same frame when it does, and the same
/// rows through `transform` whichever path reads it.
fn check_cases(
    schema: &'static TableSchema,
    generic: Generic,
    fast: fast::Reader,
    resource: &str,
    cases: &[(String, bool, usize)],
    failing: Option<usize>,
) {
    for (i, (file, taken, rows)) in cases.iter().enumerate() {
        let p = Payload {
            resource,
            source_object: "raw/x/a.json",
            bytes: file.as_bytes(),
            fetched_at: fetched(),
        };
        let generic = generic_rows(schema, generic, &p).map(|g| g.0);
        match &generic {
            Some(g) => assert_eq!(g.height(), *rows, "case {i}: {file}"),
            None => assert_eq!(Some(i), failing, "case {i} fails the file: {file}"),
        }
        match fast_rows(schema, fast, &p) {
            Some(fast) => {
                assert!(taken, "case {i} taken: {file}");
                let generic = generic.as_ref().expect("the generic reader reads it too");
                assert!(fast.equals_missing(generic), "case {i}:\n{fast}\n{generic}");
            }
            None => assert!(!taken, "case {i} not taken: {file}"),
        }
        match (transform(&CTX, &[p]), &generic) {
            (Ok(out), Some(generic)) => assert!(
                out.table(schema.name).unwrap().equals_missing(generic),
                "case {i}"
            ),
            (Err(_), None) => {}
            (out, _) => panic!(
                "case {i}: transform {:?}, generic {generic:?}",
                out.map(|o| o.tables.len())
            ),
        }
    }
}

#[test]
fn the_fast_path_gives_the_generic_readers_rows_for_every_real_snapshot_file() {
    let vehicles: (&'static TableSchema, Generic, fast::Reader) =
        (&VEHICLES, vehicles, fast::vehicles);
    let status: (&'static TableSchema, Generic, fast::Reader) =
        (&STATION_STATUS, station_status, fast::station_status);
    for (dir, file, (schema, generic, fast)) in [
        ("v2.3", "free_bike_status.json", vehicles),
        ("v3.0", "vehicle_status.json", vehicles),
        ("spec-examples/v2.3", "free_bike_status-1.json", vehicles),
        ("spec-examples/v2.3", "free_bike_status-2.json", vehicles),
        ("spec-examples/v3.0", "vehicle_status-1.json", vehicles),
        ("spec-examples/v3.0", "vehicle_status-2.json", vehicles),
        ("v2.3", "station_status.json", status),
        ("v3.0", "station_status.json", status),
        ("spec-examples/v2.3", "station_status.json", status),
        ("spec-examples/v3.0", "station_status.json", status),
    ] {
        let loaded = Loaded::dir(dir, &[file]);
        let (resource, key, bytes) = &loaded.resources[0];
        let p = Payload {
            resource,
            source_object: key,
            bytes,
            fetched_at: fetched(),
        };
        let (rows, quarantine) = generic_rows(schema, generic, &p).unwrap();
        assert!(quarantine.is_empty(), "{dir}/{file}: {quarantine:?}");
        assert!(rows.height() > 0, "{dir}/{file}");
        let taken = fast_rows(schema, fast, &p);
        let taken = taken.unwrap_or_else(|| panic!("{dir}/{file}: not taken"));
        assert!(
            taken.equals_missing(&rows),
            "{dir}/{file}:\n{taken}\n{rows}"
        );
    }
}

#[test]
fn the_vehicle_fast_path_leaves_every_unusual_file_to_the_generic_reader() {
    let base = r#"{"bike_id":"b1","lat":45.1,"lon":4.8,"is_reserved":false,"is_disabled":false}"#;
    let doc = |records: &str| {
        format!(r#"{{"last_updated":1700000000,"ttl":60,"data":{{"bikes":[{base},{records}]}}}}"#)
    };
    // (file, does the fast path take it, rows the generic reader keeps)
    let cases = [
        // Shapes both read the same way.
        (doc(r#"{"bike_id":7,"lat":45,"lon":4,"is_reserved":1,"is_disabled":0,"last_reported":1700000000123}"#), true, 2),
        (doc(r#"{"vehicle_id":" v2 ","station_id":"s1","is_reserved":false,"is_disabled":false,"vehicle_type_id":"","last_reported":"2023-11-14T22:13:20+01:00"}"#), true, 2),
        (r#"{"last_updated":"1700000000","data":{"vehicles":null,"bikes":[]}}"#.to_string(), true, 0),
        (r#"{"data":{"vehicles":[{"vehicle_id":"v","lat":1,"lon":2,"is_reserved":true,"is_disabled":false,"current_fuel_percent":0.5,"pricing_plan_id":3}]}}"#.to_string(), true, 1),
        // Values the generic reader reads its own way or quarantines.
        (doc(r#"{"bike_id":"b2","lat":"45.2","lon":4.8,"is_reserved":false,"is_disabled":false}"#), false, 2),
        (doc(r#"{"vehicle_id":null,"bike_id":"b2","lat":45.2,"lon":4.8,"is_reserved":false,"is_disabled":false}"#), false, 1),
        (doc(base), false, 1),
        (doc(r#"{"bike_id":"b2","lat":95,"lon":4.8,"is_reserved":false,"is_disabled":false}"#), false, 1),
        (doc(r#"{"bike_id":"b2","lat":0,"lon":0,"is_reserved":false,"is_disabled":false}"#), false, 1),
        (doc(r#"{"bike_id":"b2","is_reserved":false,"is_disabled":false}"#), false, 1),
        (doc(r#"{"bike_id":"b2","lat":45.2,"lon":4.8,"is_disabled":false}"#), false, 1),
        (doc(r#"{"bike_id":"b2","lat":45.2,"lon":4.8,"is_reserved":2,"is_disabled":false}"#), false, 1),
        (doc(r#"{"bike_id":"b2","lat":45.2,"lon":4.8,"is_reserved":false,"is_disabled":false,"current_fuel_percent":50}"#), false, 1),
        (doc(r#"{"bike_id":"b2","lat":45.2,"lon":4.8,"is_reserved":false,"is_disabled":false,"last_reported":"yesterday"}"#), false, 1),
        (doc(r#"{"bike_id":"b2","lat":45.2,"lat":45.3,"lon":4.8,"is_reserved":false,"is_disabled":false}"#), false, 2),
        (doc(r#"{"bike_\u0069d":"b2","lat":45.2,"lon":4.8,"is_reserved":false,"is_disabled":false}"#), false, 2),
        (doc(r#"["b2",45.2,4.8,false,false]"#), false, 1),
        (doc(r#"{"bike_id":1.5,"lat":45.2,"lon":4.8,"is_reserved":false,"is_disabled":false}"#), false, 2),
        (r#"{"last_updated":true,"data":{"bikes":[]}}"#.to_string(), false, 0),
    ];
    check_cases(
        &VEHICLES,
        vehicles,
        fast::vehicles,
        "free_bike_status",
        &cases,
        None,
    );
}

#[test]
fn the_station_status_fast_path_leaves_every_unusual_file_to_the_generic_reader() {
    let base = r#"{"station_id":"s1","num_bikes_available":3,"num_docks_available":7,"is_installed":true,"is_renting":true,"is_returning":true,"last_reported":1700000000}"#;
    let doc = |records: &str| {
        format!(
            r#"{{"last_updated":1700000000,"ttl":60,"data":{{"stations":[{base},{records}]}}}}"#
        )
    };
    // (file, does the fast path take it, rows the generic reader keeps)
    let cases = [
        // Shapes both read the same way.
        (
            doc(
                r#"{"station_id":2,"num_vehicles_available":0,"num_bikes_available":9,"num_vehicles_disabled":1,"num_docks_disabled":2,"is_installed":1,"is_renting":0,"is_returning":1,"vehicle_types_available":[{"vehicle_type_id":"b","count":2},{"vehicle_type_id":"a"},{"vehicle_type_id":"b","count":4}],"vehicle_docks_available":[{"vehicle_type_ids":["b","a"],"count":3}]}"#,
            ),
            true,
            2,
        ),
        (
            doc(
                r#"{"station_id":"s2","num_bikes_available":1,"num_docks_available":null,"is_installed":true,"is_renting":true,"is_returning":true,"last_reported":"2023-11-14T22:13:20Z","vehicle_docks_available":null}"#,
            ),
            true,
            2,
        ),
        (r#"{"data":{"stations":null}}"#.to_string(), true, 0),
        // Values the generic reader reads its own way or quarantines.
        (
            doc(
                r#"{"station_id":"s2","num_bikes_available":1.0,"is_installed":true,"is_renting":true,"is_returning":true}"#,
            ),
            false,
            2,
        ),
        (
            doc(
                r#"{"station_id":"s2","num_bikes_available":-1,"is_installed":true,"is_renting":true,"is_returning":true}"#,
            ),
            false,
            1,
        ),
        (
            doc(r#"{"station_id":"s2","is_installed":true,"is_renting":true,"is_returning":true}"#),
            false,
            1,
        ),
        (
            doc(
                r#"{"station_id":"s2","num_bikes_available":1,"is_renting":true,"is_returning":true}"#,
            ),
            false,
            1,
        ),
        (
            doc(
                r#"{"station_id":"","num_bikes_available":1,"is_installed":true,"is_renting":true,"is_returning":true}"#,
            ),
            false,
            1,
        ),
        (doc(base), false, 1),
        (
            doc(
                r#"{"station_id":"s2","num_bikes_available":1,"is_installed":true,"is_renting":true,"is_returning":true,"vehicle_types_available":[{"count":1}]}"#,
            ),
            false,
            1,
        ),
        (
            doc(
                r#"{"station_id":"s2","num_bikes_available":1,"is_installed":true,"is_renting":true,"is_returning":true,"vehicle_types_available":{"b":1}}"#,
            ),
            false,
            2,
        ),
        (
            doc(
                r#"{"station_id":"s2","num_bikes_available":1,"is_installed":true,"is_renting":true,"is_returning":true,"last_reported":true}"#,
            ),
            false,
            1,
        ),
        (r#"{"data":{"stations":{}}}"#.to_string(), false, 0),
    ];
    check_cases(
        &STATION_STATUS,
        station_status,
        fast::station_status,
        "station_status",
        &cases,
        Some(cases.len() - 1),
    );
}
