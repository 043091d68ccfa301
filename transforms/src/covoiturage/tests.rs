//! The Mon Compte Mobilité gateway's carpooling payloads (shaped by the standard's OpenAPI
//! schemas): pseudonymized, then read into `carpool_journeys`.

use super::*;
use chrono::{DateTime, TimeZone, Utc};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/mcm-gateway");
const KEY: &[u8] = b"test-key";

fn fetched() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/gateway-api__mock__{name}.json")).unwrap()
}

#[test]
fn personal_data_is_dropped_or_hashed_before_anything_is_stored() {
    let raw = fixture("getDriverJourneys");
    let (clean, done) = pseudonymize(&raw, KEY).unwrap();
    let text = String::from_utf8(clean.clone()).unwrap();
    for personal in ["Jean", "Dupond", "JeanD", "user987654", "picture.jpg"] {
        assert!(!text.contains(personal), "{personal} is still in {text}");
    }
    assert_eq!(
        done,
        vec![
            "driver.alias: keyed hash",
            "driver.firstName: dropped",
            "driver.id: keyed hash",
            "driver.lastName: dropped",
            "driver.picture: dropped",
        ]
    );
    // The same person, the same hash, run after run; another key, another hash.
    let doc: Value = serde_json::from_slice(&clean).unwrap();
    assert_eq!(
        doc[0]["driver"]["id"],
        Value::from(keyed_hash(KEY, "user987654"))
    );
    assert_ne!(
        keyed_hash(KEY, "user987654"),
        keyed_hash(b"other", "user987654")
    );
    assert_eq!(keyed_hash(KEY, "user987654").len(), 32);
    // Journeys keep their route: nothing else changed.
    assert_eq!(
        doc[0]["passengerDropAddress"],
        Value::from("Place du Capitole, Toulouse")
    );
    assert!(
        pseudonymize(b"<html>", KEY)
            .unwrap_err()
            .contains("not JSON")
    );
}

#[test]
fn driver_passenger_and_regular_journeys_give_exact_rows() {
    let files: Vec<(&str, Vec<u8>)> = [
        ("driver_journeys", "getDriverJourneys"),
        ("passenger_journeys", "getPassengerJourneys"),
        ("driver_regular_trips", "getDriverRegularTrip"),
    ]
    .iter()
    .map(|(r, f)| (*r, pseudonymize(&fixture(f), KEY).unwrap().0))
    .collect();
    let payloads: Vec<Payload> = files
        .iter()
        .map(|(r, b)| Payload {
            resource: r,
            source_object: "raw/carpool/x.json",
            bytes: b,
            fetched_at: fetched(),
        })
        .collect();
    let ctx = Context {
        pipeline: "t",
        partner: "carpool",
        run_id: "run-1",
        language: None,
    };
    let out = transform(&ctx, &payloads).unwrap();
    assert!(out.quarantine.is_empty(), "{:?}", out.quarantine);
    let df = out.table("carpool_journeys").unwrap();
    assert_eq!(df.height(), 3);
    let s = |c: &str, i: usize| {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .map(str::to_string)
    };
    let f = |c: &str, i: usize| df.column(c).unwrap().f64().unwrap().get(i);
    let n = |c: &str, i: usize| df.column(c).unwrap().i64().unwrap().get(i);
    // The driver's punctual journey.
    assert_eq!(
        (s("role", 0), s("journey_id", 0)),
        (Some("driver".into()), Some("journey012345".into()))
    );
    assert_eq!(s("kind", 0).as_deref(), Some("punctual"));
    assert_eq!(s("journey_type", 0).as_deref(), Some("PLANNED"));
    assert_eq!(
        s("departure_address", 0).as_deref(),
        Some("Pont d'Iéna, Paris")
    );
    assert_eq!(
        (f("pickup_lat", 0), f("pickup_lon", 0)),
        (Some(2.11111), Some(12.11111))
    );
    assert_eq!(
        (f("distance_m", 0), f("price", 0)),
        (Some(700000.0), Some(15.3))
    );
    assert_eq!(
        (s("currency", 0), s("price_type", 0)),
        (Some("EUR".into()), Some("PAYING".into()))
    );
    assert_eq!(n("seats", 0), Some(2));
    assert_eq!(s("person_hash", 0), Some(keyed_hash(KEY, "user987654")));
    // The passenger's request (same journey id, other role: its own row).
    assert_eq!(
        (s("role", 1), s("journey_id", 1)),
        (Some("passenger".into()), Some("journey012345".into()))
    );
    assert_eq!((n("seats", 1), n("duration_s", 1)), (Some(2), Some(25200)));
    // The regular trip's scheduled journey, with its dates.
    assert_eq!(s("kind", 2).as_deref(), Some("regular"));
    let at = df
        .column("departure_at")
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .get(2);
    assert_eq!(at, Some(1_655_452_466_000_000));
}
