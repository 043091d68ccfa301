//! The French carpooling standard (standard covoiturage, fabmob) to `carpool_journeys`, and
//! the pseudonymization its payloads go through *before* they are written anywhere.
//!
//! Personal data in search answers lives in the person objects (`driver`, `passenger`,
//! `user`) and in free-text messages. [`pseudonymize`] drops names, pictures, phone numbers,
//! e-mails and messages, and replaces the person's `id` and `alias` by a keyed hash
//! (HMAC-SHA256 with a key from the environment): the same person gets the same hash in
//! every run, so distinct drivers can still be counted, but nobody can be looked up.
//!
//! Searches (`driver_journeys`, `passenger_journeys`) give punctual journeys; regular trips
//! (`driver_regular_trips`, `passenger_regular_trips`) give one row per scheduled journey.
//! A journey found by several searches of one run is kept once.

use std::collections::{BTreeSet, HashSet};

use hmac::{KeyInit, Mac};
use mobiflux_model::schema::CARPOOL_JOURNEYS;
use serde_json::{Map, Value};

use crate::frame::Row;
use crate::json::{self, Issue, Obj};
use crate::records::{Table, as_obj};
use crate::{Context, Output, Payload, TransformError};

/// The searches mobiflux runs: (endpoint = resource, role, regular).
pub const SEARCHES: &[(&str, &str, bool)] = &[
    ("driver_journeys", "driver", false),
    ("passenger_journeys", "passenger", false),
    ("driver_regular_trips", "driver", true),
    ("passenger_regular_trips", "passenger", true),
];

/// Objects holding a person.
const PERSONS: &[&str] = &["driver", "passenger", "user"];
/// Fields of a person that are dropped.
const DROPPED: &[&str] = &[
    "firstName",
    "lastName",
    "picture",
    "phone",
    "phoneNumber",
    "email",
];
/// Fields of a person replaced by a keyed hash.
const HASHED: &[&str] = &["id", "alias"];
/// Free text anywhere in a payload, dropped.
const FREE_TEXT: &[&str] = &["message", "messages", "comment"];

/// The keyed hash of a personal value: 32 hex digits of HMAC-SHA256.
pub fn keyed_hash(key: &[u8], value: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    hex::encode(&digest[..16])
}

fn scrub(v: &mut Value, key: &[u8], path: &str, done: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for f in FREE_TEXT {
                if map.remove(*f).is_some() {
                    done.insert(format!("{path}{f}: dropped"));
                }
            }
            for (k, child) in map.iter_mut() {
                if PERSONS.contains(&k.as_str())
                    && let Value::Object(person) = child
                {
                    person_fields(person, key, k, done);
                }
                scrub(child, key, &format!("{path}{k}."), done);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub(i, key, path, done)),
        _ => {}
    }
}

fn person_fields(
    person: &mut Map<String, Value>,
    key: &[u8],
    who: &str,
    done: &mut BTreeSet<String>,
) {
    for f in DROPPED {
        if person.remove(*f).is_some() {
            done.insert(format!("{who}.{f}: dropped"));
        }
    }
    for f in HASHED {
        if let Some(v) = person.get_mut(*f) {
            let text = match &*v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            *v = Value::String(keyed_hash(key, &text));
            done.insert(format!("{who}.{f}: keyed hash"));
        }
    }
}

/// A payload with its personal data dropped or hashed, and what was done (`driver.lastName:
/// dropped`, `driver.id: keyed hash`), for the manifest. A body that is not JSON cannot be
/// checked, so it is refused rather than stored.
pub fn pseudonymize(bytes: &[u8], key: &[u8]) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut doc: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not JSON ({e}); a carpooling answer is only stored once its personal data is removed"
        )
    })?;
    let mut done = BTreeSet::new();
    scrub(&mut doc, key, "", &mut done);
    let out = serde_json::to_vec(&doc).expect("a JSON value serializes");
    Ok((out, done.into_iter().collect()))
}

fn point(o: &Obj, lat: &str, lng: &str) -> Result<(Option<f64>, Option<f64>), Issue> {
    let (la, lo) = (json::opt_f64(o, lat)?, json::opt_f64(o, lng)?);
    if let (Some(a), Some(b)) = (la, lo) {
        json::check_position(a, b)?;
    }
    Ok((la, lo))
}

/// Fills the journey's route, price and person from a journey or trip object.
fn route(r: &mut Row, o: &Obj, role: &str) -> Result<(), Issue> {
    let (dlat, dlon) = point(o, "driverDepartureLat", "driverDepartureLng")?;
    let (alat, alon) = point(o, "driverArrivalLat", "driverArrivalLng")?;
    let (plat, plon) = point(o, "passengerPickupLat", "passengerPickupLng")?;
    let (xlat, xlon) = point(o, "passengerDropLat", "passengerDropLng")?;
    let price = o.get("price").and_then(Value::as_object);
    let person = o.get(role).and_then(Value::as_object);
    let seats = match role {
        "driver" => json::opt_count(o, "availableSeats")?,
        _ => json::opt_count(o, "requestedSeats")?,
    };
    r.set("operator", json::text(o, "operator", None)?)
        .set("departure_lat", dlat)
        .set("departure_lon", dlon)
        .set(
            "departure_address",
            json::text(o, "driverDepartureAddress", None)?,
        )
        .set("arrival_lat", alat)
        .set("arrival_lon", alon)
        .set(
            "arrival_address",
            json::text(o, "driverArrivalAddress", None)?,
        )
        .set("pickup_lat", plat)
        .set("pickup_lon", plon)
        .set(
            "pickup_address",
            json::text(o, "passengerPickupAddress", None)?,
        )
        .set("drop_lat", xlat)
        .set("drop_lon", xlon)
        .set("drop_address", json::text(o, "passengerDropAddress", None)?)
        .set("distance_m", json::opt_f64(o, "distance")?)
        .set("duration_s", json::opt_count(o, "duration")?)
        .set(
            "price",
            price
                .map(|p| json::opt_f64(p, "amount"))
                .transpose()?
                .flatten(),
        )
        .set(
            "currency",
            price
                .map(|p| json::text(p, "currency", None))
                .transpose()?
                .flatten(),
        )
        .set(
            "price_type",
            price
                .map(|p| json::text(p, "type", None))
                .transpose()?
                .flatten(),
        )
        .set("seats", seats)
        .set(
            "person_hash",
            person.map(|p| json::opt_id(p, "id")).transpose()?.flatten(),
        );
    Ok(())
}

/// Transforms the (already pseudonymized) search answers of one run.
pub fn transform(ctx: &Context, payloads: &[Payload]) -> Result<Output, TransformError> {
    let mut quarantine = Vec::new();
    let mut t = Table::new(&CARPOOL_JOURNEYS, ctx, &mut quarantine);
    let mut seen: HashSet<(String, bool, String)> = HashSet::new();
    let mut repeats = 0usize;
    for p in payloads {
        let Some(&(_, role, regular)) = SEARCHES.iter().find(|(r, _, _)| *r == p.resource) else {
            continue;
        };
        let doc: Value = serde_json::from_slice(p.bytes).map_err(|e| TransformError::BadFile {
            source_object: p.source_object.to_string(),
            expected: "a JSON list of journeys".into(),
            found: e.to_string(),
        })?;
        let Value::Array(items) = doc else {
            return Err(TransformError::BadFile {
                source_object: p.source_object.to_string(),
                expected: "a JSON list of journeys".into(),
                found: "another JSON value".into(),
            });
        };
        for (i, item) in items.iter().enumerate() {
            // (position, journey object, schedule entry for regular trips)
            let mut entries: Vec<(String, Option<&Value>)> = Vec::new();
            if regular {
                let schedules = item.get("schedules").and_then(Value::as_array);
                for (s, sched) in schedules.into_iter().flatten().enumerate() {
                    let list = sched
                        .get("journeySchedules")
                        .or_else(|| sched.get("JourneySchedules"))
                        .and_then(Value::as_array);
                    for (j, js) in list.into_iter().flatten().enumerate() {
                        entries
                            .push((format!("/{i}/schedules/{s}/journeySchedules/{j}"), Some(js)));
                    }
                }
            } else {
                entries.push((format!("/{i}"), None));
            }
            for (position, js) in entries {
                let id_of = js.unwrap_or(item).get("id").and_then(Value::as_str);
                if let Some(id) = id_of
                    && !seen.insert((role.to_string(), regular, id.to_string()))
                {
                    repeats += 1;
                    continue;
                }
                t.add(p.source_object, position, "", |r| {
                    let o = as_obj(item, "journey")?;
                    let (id_src, dates) = match js {
                        Some(js) => (
                            as_obj(js, "journey schedule")?,
                            as_obj(js, "journey schedule")?,
                        ),
                        None => (o, o),
                    };
                    r.set("role", role)
                        .set("journey_id", json::id(id_src, "id")?)
                        .set("observed_at", p.fetched_at)
                        .set("kind", if regular { "regular" } else { "punctual" })
                        .set("journey_type", json::text(id_src, "type", None)?)
                        .set(
                            "departure_at",
                            json::opt_time(dates, "driverDepartureDate")?,
                        )
                        .set("pickup_at", json::opt_time(dates, "passengerPickupDate")?);
                    route(r, o, role)
                });
            }
        }
    }
    if repeats > 0 {
        tracing::debug!(
            repeats,
            "journeys found by more than one search of the run kept once"
        );
    }
    let frame = t.builder.finish();
    Ok(Output {
        tables: vec![(&CARPOOL_JOURNEYS, frame)],
        quarantine,
    })
}

#[cfg(test)]
mod tests;
