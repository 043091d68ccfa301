//! The TOMP-REF operator payloads of `fixtures/tomp/operator` through the transform, with
//! the values the files say.

use super::*;
use chrono::TimeZone;
use polars::prelude::DataFrame;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tomp/operator");

fn fetched() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// (resource, file) pairs read from the fixtures, with an optional replacement file body.
fn run(files: &[(&str, &str)], replace: Option<(&str, &str)>) -> Output {
    let blobs: Vec<(String, String, Vec<u8>)> = files
        .iter()
        .map(|(resource, file)| {
            let bytes = match replace {
                Some((r, body)) if r == *resource => body.as_bytes().to_vec(),
                _ => std::fs::read(format!("{FIXTURES}/{file}")).unwrap(),
            };
            (
                resource.to_string(),
                format!("raw/tomp/{resource}/x.json"),
                bytes,
            )
        })
        .collect();
    let payloads: Vec<Payload> = blobs
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
        partner: "freebike",
        run_id: "run-1",
        language: None,
    };
    transform(&ctx, &payloads).expect("transform")
}

const ALL: &[(&str, &str)] = &[
    ("information", "information.json"),
    ("stations", "stations.json"),
    ("available_assets", "available_assets.json"),
    ("pricing_plans", "pricing_plans.json"),
    ("regions", "regions.json"),
    ("alerts", "alerts.json"),
];

fn s<'a>(df: &'a DataFrame, col: &str, row: usize) -> Option<&'a str> {
    df.column(col).unwrap().str().unwrap().get(row)
}
fn f(df: &DataFrame, col: &str, row: usize) -> Option<f64> {
    df.column(col).unwrap().f64().unwrap().get(row)
}
fn b(df: &DataFrame, col: &str, row: usize) -> Option<bool> {
    df.column(col).unwrap().bool().unwrap().get(row)
}

#[test]
fn tomp_ref_operator_payloads_give_exact_unified_rows() {
    let out = run(ALL, None);
    assert!(out.quarantine.is_empty(), "{:?}", out.quarantine);

    let sys = out.table("system_info").unwrap();
    assert_eq!(sys.height(), 1);
    assert_eq!(s(sys, "system_id", 0), Some("XXTO0001"));
    assert_eq!(s(sys, "name", 0), Some("FreeBike"));
    assert_eq!(s(sys, "timezone", 0), Some("CET"));
    assert_eq!(s(sys, "language", 0), Some("fr-FR"));
    assert_eq!(
        s(sys, "purchase_url", 0),
        Some("https://www.rentmyfreebike.com/purchase")
    );
    assert_eq!(s(sys, "email", 0), Some("rent@freebike.com"));
    assert_eq!(s(sys, "feed_version", 0), Some("tomp-1.3.0"));

    let st = out.table("stations").unwrap();
    assert_eq!(st.height(), 1);
    assert_eq!(s(st, "station_id", 0), Some("XX:Y:12345678"));
    assert_eq!(s(st, "name", 0), Some("Island Central"));
    assert_eq!(
        (f(st, "lat", 0), f(st, "lon", 0)),
        (Some(52.253279), Some(6.169639))
    );
    assert_eq!(
        s(st, "address", 0),
        Some("example street 18, 2nd floor, 18-B33")
    );
    assert_eq!(s(st, "region_id", 0), Some("regionId"));
    assert_eq!(
        s(st, "rental_methods", 0),
        Some("creditcard,paypass,applepay")
    );

    let types = out.table("vehicle_types").unwrap();
    assert_eq!(types.height(), 1);
    assert_eq!(
        s(types, "vehicle_type_id", 0),
        Some("unique id for this asset type. Can be a descriptive one, like simple-bike")
    );
    assert_eq!(s(types, "form_factor", 0), Some("bicycle"));
    assert_eq!(s(types, "propulsion", 0), Some("human"));
    assert_eq!(s(types, "name", 0), Some("normal bike"));
    assert_eq!(
        s(types, "default_pricing_plan_id", 0),
        Some("some unique id for this plan")
    );

    let v = out.table("vehicles").unwrap();
    assert_eq!(v.height(), 1);
    assert!(s(v, "vehicle_id", 0).unwrap().starts_with("rotating ID"));
    assert_eq!(
        (f(v, "lat", 0), f(v, "lon", 0)),
        (Some(52.253279), Some(6.169639))
    );
    assert_eq!(s(v, "station_id", 0), Some("station1"));
    assert_eq!(
        (b(v, "is_reserved", 0), b(v, "is_disabled", 0)),
        (Some(false), Some(false))
    );
    assert_eq!(
        s(v, "pricing_plan_id", 0),
        Some("some unique id for this plan")
    );

    // The listed plan, then the plan only named inline by the asset type.
    let p = out.table("pricing_plans").unwrap();
    assert_eq!(p.height(), 2);
    assert_eq!(s(p, "plan_id", 0), Some("freeplan1"));
    assert_eq!(s(p, "name", 0), Some("Free Plan"));
    assert_eq!(
        (s(p, "currency", 0), f(p, "price", 0)),
        (Some("EUR"), Some(0.0))
    );
    assert_eq!(b(p, "is_taxable", 0), Some(true));
    assert_eq!(
        s(p, "per_min_pricing", 0),
        Some(
            r#"[{"interval":60.0,"rate":9.96,"start":0.0},{"interval":60.0,"rate":9.96,"start":0.0}]"#
        )
    );
    assert_eq!(s(p, "plan_id", 1), Some("some unique id for this plan"));
    assert_eq!(s(p, "name", 1), Some("Default"));
    assert_eq!(f(p, "price", 1), Some(3.0));
    // 0.50 a quarter of an hour for the first hour, then 0.40 a quarter of an hour.
    assert_eq!(
        s(p, "per_min_pricing", 1),
        Some(
            r#"[{"end":60.0,"interval":15.0,"rate":0.5,"start":0.0},{"interval":15.0,"rate":0.4,"start":60.0}]"#
        )
    );
    assert_eq!(s(p, "per_km_pricing", 1), None);

    let r = out.table("regions").unwrap();
    assert_eq!(
        (s(r, "region_id", 0), s(r, "name", 0)),
        (Some("BikeRegion"), Some("BikeTown"))
    );
    // serviceArea is empty in the example: no zone.
    assert!(out.table("geofencing_zones").is_none());
}

#[test]
fn bad_records_are_quarantined_with_their_position_and_the_rest_loads() {
    let stations = r#"[
        {"stationId": "ok", "name": "Fine", "coordinates": {"lat": 52.1, "lng": 6.1}},
        {"stationId": "far", "name": "Nowhere", "coordinates": {"lat": 152.1, "lng": 6.1}},
        {"stationId": "ok", "name": "Again", "coordinates": {"lat": 52.2, "lng": 6.2}}
    ]"#;
    let out = run(
        &[("stations", "stations.json")],
        Some(("stations", stations)),
    );
    assert_eq!(out.table("stations").unwrap().height(), 1);
    let q: Vec<(&str, Option<&str>, &str)> = out
        .quarantine
        .iter()
        .map(|q| (q.position.as_str(), q.field.as_deref(), q.reason.as_str()))
        .collect();
    assert_eq!(
        q,
        vec![
            ("/1", Some("lat"), "lat must be between -90 and 90"),
            (
                "/2",
                Some("station_id"),
                "duplicate station_id (first seen at /0)"
            ),
        ]
    );
}

#[test]
fn a_zone_comes_from_a_service_area_polygon() {
    let regions = r#"[{"regionId": "centre", "name": "Centre", "type": "NO_PARKING",
        "serviceArea": {"type": "Polygon", "coordinates": [[[6.1,52.2],[6.2,52.2],[6.2,52.3],[6.1,52.2]]]}}]"#;
    let out = run(&[("regions", "regions.json")], Some(("regions", regions)));
    let z = out.table("geofencing_zones").unwrap();
    assert_eq!(z.height(), 1);
    assert_eq!(s(z, "zone_id", 0), Some("centre"));
    assert_eq!(s(z, "rules", 0), Some(r#"{"type":"NO_PARKING"}"#));
    assert!(
        s(z, "geometry", 0)
            .unwrap()
            .starts_with(r#"{"coordinates":[[[6.1,52.2]"#)
    );
}

#[test]
fn a_response_that_is_not_a_list_fails_naming_the_object() {
    let p = Payload {
        resource: "stations",
        source_object: "raw/tomp/stations/x.json",
        bytes: br#"{"errorcode": 500}"#,
        fetched_at: fetched(),
    };
    let ctx = Context {
        pipeline: "test",
        partner: "freebike",
        run_id: "run-1",
        language: None,
    };
    let err = transform(&ctx, &[p]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "raw/tomp/stations/x.json: expected a JSON list of stations; another JSON value"
    );
}
