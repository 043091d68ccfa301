//! The vehicle feed's fast path: `free_bike_status` / `vehicle_status` is the largest file
//! of a GBFS system and the one polled every minute, so a well-formed one is read straight
//! into the frame's columns: parsed into borrowed, typed records (no JSON tree, no map
//! lookups, no string per value), checked, then appended.
//!
//! It only ever takes the common shapes the generic reader ([`super::vehicles`]) reads the
//! same way: anything else (a value of another type, a string where a number goes, a
//! record the reader would quarantine, a repeated id, a key given twice) makes it give up
//! on the whole file, and the generic reader reads it, with its quarantine positions and
//! reasons. So both give the same rows for every file; the tests check it on the real
//! fixtures.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::frame::{FrameBuilder, ValueRef};
use crate::json;
use crate::{Context, Payload};

/// Any value the fast path does not take: the generic reader decides.
#[derive(Debug)]
struct Unusual;

impl fmt::Display for Unusual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not the usual shape")
    }
}

fn unusual<E: de::Error>() -> E {
    E::custom(Unusual)
}

/// An id as [`json::id`] reads it: a string, trimmed (maybe empty), or a whole number.
struct Id<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Id<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a whole number")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Borrowed(s.trim())))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(s.trim().to_string())))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(n.to_string())))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(n.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A flag as [`json::opt_bool`] reads it: true/false, or 1/0 (GBFS 1.x).
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Flag, E> {
                Ok(Flag(b))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Flag, E> {
                match n {
                    0 | 1 => Ok(Flag(n == 1)),
                    _ => Err(unusual()),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Flag, E> {
                match n {
                    0 | 1 => Ok(Flag(n == 1)),
                    _ => Err(unusual()),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A number, as [`json::opt_f64`] reads one given as a JSON number.
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Num, E> {
                Ok(Num(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Num, E> {
                Ok(Num(n as f64))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Num, E> {
                Ok(Num(n as f64))
            }
        }
        d.deserialize_any(V)
    }
}

/// A time as [`json::time_value`] reads it; one it cannot read is unusual.
struct Time(DateTime<Utc>);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a time")
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Time, E> {
                json::time_of_secs(n).map(Time).ok_or_else(unusual)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Time, E> {
                self.visit_f64(n as f64)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Time, E> {
                self.visit_f64(n as f64)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Time, E> {
                json::time_of_str(s).map(Time).ok_or_else(unusual)
            }
        }
        d.deserialize_any(V)
    }
}

/// Sets a field seen once; a key given twice is unusual (the generic reader keeps the last).
/// Keys are borrowed: one written with escapes is unusual too.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    slot: &mut Option<Option<T>>,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(unusual());
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// The `Deserialize` of a struct of `Option<Option<T>>` fields read from a JSON object:
/// each field from the key of its name, given once; other keys skipped.
macro_rules! object {
    ($ty:ident, $what:literal, [$($field:ident),* $(,)?]) => {
        impl<'de> Deserialize<'de> for $ty<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty<'de>, A::Error> {
                        let mut out = $ty::default();
                        while let Some(key) = map.next_key::<&'de str>()? {
                            $(
                                if key == stringify!($field) {
                                    once(&mut out.$field, &mut map)?;
                                    continue;
                                }
                            )*
                            map.next_value::<IgnoredAny>()?;
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

/// One vehicle record; each field `None` when absent, `Some(None)` when null.
#[derive(Default)]
struct Vehicle<'a> {
    vehicle_id: Option<Option<Id<'a>>>,
    bike_id: Option<Option<Id<'a>>>,
    lat: Option<Option<Num>>,
    lon: Option<Option<Num>>,
    station_id: Option<Option<Id<'a>>>,
    vehicle_type_id: Option<Option<Id<'a>>>,
    is_reserved: Option<Option<Flag>>,
    is_disabled: Option<Option<Flag>>,
    current_range_meters: Option<Option<Num>>,
    current_fuel_percent: Option<Option<Num>>,
    pricing_plan_id: Option<Option<Id<'a>>>,
    last_reported: Option<Option<Time>>,
}

object!(
    Vehicle,
    "a vehicle object",
    [
        vehicle_id,
        bike_id,
        lat,
        lon,
        station_id,
        vehicle_type_id,
        is_reserved,
        is_disabled,
        current_range_meters,
        current_fuel_percent,
        pricing_plan_id,
        last_reported,
    ]
);

/// `data`: the records under `vehicles` (3.x) and `bikes` (before).
#[derive(Default)]
struct Data<'a> {
    vehicles: Option<Option<Vec<Vehicle<'a>>>>,
    bikes: Option<Option<Vec<Vehicle<'a>>>>,
}

object!(Data, "a data object", [vehicles, bikes]);

/// The file: `last_updated` and `data`.
#[derive(Default)]
struct File<'a> {
    last_updated: Option<Option<Time>>,
    data: Option<Option<Data<'a>>>,
}

object!(File, "a GBFS file", [last_updated, data]);

/// An id field as [`json::opt_id`] reads it: absent, null or blank is none.
fn opt_id<'a>(field: &'a Option<Option<Id<'a>>>) -> Option<&'a str> {
    match field {
        Some(Some(Id(s))) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn opt_num(field: &Option<Option<Num>>) -> Option<f64> {
    field.as_ref().and_then(|v| v.as_ref()).map(|n| n.0)
}

fn flag(field: &Option<Option<Flag>>) -> Option<bool> {
    field.as_ref().and_then(|v| v.as_ref()).map(|f| f.0)
}

fn text(s: Option<&str>) -> ValueRef<'_> {
    s.map_or(ValueRef::Null, ValueRef::Text)
}

fn float(f: Option<f64>) -> ValueRef<'static> {
    f.map_or(ValueRef::Null, ValueRef::Float)
}

/// Appends the vehicle file's rows to `builder` and returns true, or appends nothing and
/// returns false when the file is not of the usual shape (the generic reader's to read).
pub(super) fn vehicles(builder: &mut FrameBuilder, ctx: &Context, p: &Payload) -> bool {
    let Ok(file) = serde_json::from_slice::<File>(p.bytes) else {
        return false;
    };
    let observed_at = match &file.last_updated {
        Some(Some(Time(t))) => *t,
        None => p.fetched_at,
        Some(None) => p.fetched_at,
    };
    let Some(Some(data)) = &file.data else {
        return false;
    };
    // As the generic reader: `vehicles` when it is a list, else `bikes`.
    let records = match (&data.vehicles, &data.bikes) {
        (Some(Some(v)), _) => v.as_slice(),
        (_, Some(Some(b))) => b.as_slice(),
        _ => &[],
    };
    let schema = builder.schema();
    let width = schema.columns.len();
    let at = |name: &str| {
        schema
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("{} has no column {name}", schema.name))
    };
    let [
        partner,
        vehicle_id,
        observed,
        vehicle_type_id,
        lat_at,
        lon_at,
        station_id,
        is_reserved,
        is_disabled,
        range,
        fuel_at,
        pricing_plan_id,
        last_reported,
        run_id,
    ] = [
        "partner",
        "vehicle_id",
        "observed_at",
        "vehicle_type_id",
        "lat",
        "lon",
        "station_id",
        "is_reserved",
        "is_disabled",
        "current_range_m",
        "fuel_percent",
        "pricing_plan_id",
        "last_reported",
        "run_id",
    ]
    .map(at);
    let mut values = vec![ValueRef::Null; records.len() * width];
    let mut seen = HashSet::with_capacity(records.len());
    for (v, row) in records.iter().zip(values.chunks_exact_mut(width)) {
        // The id: `vehicle_id` when the key is there (null is the generic reader's to
        // refuse), else `bike_id`.
        let id = match (&v.vehicle_id, &v.bike_id) {
            (Some(Some(Id(id))), _) | (None, Some(Some(Id(id)))) if !id.is_empty() => id,
            _ => return false,
        };
        if !seen.insert(id.as_ref()) {
            return false;
        }
        let (lat, lon) = (opt_num(&v.lat), opt_num(&v.lon));
        let station = opt_id(&v.station_id);
        match (lat, lon) {
            (Some(lat), Some(lon)) if json::check_position(lat, lon).is_ok() => {}
            (Some(_), Some(_)) => return false,
            _ if station.is_some() => {}
            _ => return false,
        }
        let fuel = opt_num(&v.current_fuel_percent);
        if fuel.is_some_and(|f| !(0.0..=1.0).contains(&f)) {
            return false;
        }
        let (Some(reserved), Some(disabled)) = (flag(&v.is_reserved), flag(&v.is_disabled)) else {
            return false;
        };
        row[partner] = ValueRef::Text(ctx.partner);
        row[vehicle_id] = ValueRef::Text(id);
        row[observed] = ValueRef::Ts(observed_at.timestamp_micros());
        row[vehicle_type_id] = text(opt_id(&v.vehicle_type_id));
        row[lat_at] = float(lat);
        row[lon_at] = float(lon);
        row[station_id] = text(station);
        row[is_reserved] = ValueRef::Bool(reserved);
        row[is_disabled] = ValueRef::Bool(disabled);
        row[range] = float(opt_num(&v.current_range_meters));
        row[fuel_at] = float(fuel);
        row[pricing_plan_id] = text(opt_id(&v.pricing_plan_id));
        row[last_reported] = match &v.last_reported {
            Some(Some(Time(t))) => ValueRef::Ts(t.timestamp_micros()),
            _ => ValueRef::Null,
        };
        row[run_id] = ValueRef::Text(ctx.run_id);
        if builder.check_refs(row).is_err() {
            return false;
        }
    }
    for row in values.chunks_exact(width) {
        builder.push_checked(row);
    }
    true
}
