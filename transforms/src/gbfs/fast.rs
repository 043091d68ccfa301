//! The snapshot files' fast path: `free_bike_status` / `vehicle_status` (the largest file
//! of a GBFS system) and `station_status` are polled every minute, so a well-formed one is
//! read straight into the frame's columns: parsed into borrowed, typed records (no JSON
//! tree, no map lookups, no string per value), checked, then appended.
//!
//! It only ever takes the common shapes the generic readers ([`super::vehicles`],
//! [`super::station_status`]) read the
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

use mobiflux_model::TableSchema;
use mobiflux_model::schema::{STATION_STATUS, VEHICLES};

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

/// A count as [`json::opt_count`] reads one given as a JSON integer.
struct Count(i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a count")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                i64::try_from(n).map(Count).map_err(|_| unusual())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                (n >= 0).then_some(Count(n)).ok_or_else(unusual)
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

/// One station's status record.
#[derive(Default)]
struct Status<'a> {
    station_id: Option<Option<Id<'a>>>,
    num_vehicles_available: Option<Option<Count>>,
    num_bikes_available: Option<Option<Count>>,
    num_docks_available: Option<Option<Count>>,
    num_vehicles_disabled: Option<Option<Count>>,
    num_bikes_disabled: Option<Option<Count>>,
    num_docks_disabled: Option<Option<Count>>,
    is_installed: Option<Option<Flag>>,
    is_renting: Option<Option<Flag>>,
    is_returning: Option<Option<Flag>>,
    last_reported: Option<Option<Time>>,
    vehicle_types_available: Option<Option<Vec<TypeCount<'a>>>>,
    /// Kept as JSON, written back as the generic reader writes it.
    vehicle_docks_available: Option<Option<serde_json::Value>>,
}

object!(
    Status,
    "a station status object",
    [
        station_id,
        num_vehicles_available,
        num_bikes_available,
        num_docks_available,
        num_vehicles_disabled,
        num_bikes_disabled,
        num_docks_disabled,
        is_installed,
        is_renting,
        is_returning,
        last_reported,
        vehicle_types_available,
        vehicle_docks_available,
    ]
);

/// One entry of a station's `vehicle_types_available`.
#[derive(Default)]
struct TypeCount<'a> {
    vehicle_type_id: Option<Option<Id<'a>>>,
    count: Option<Option<Count>>,
}

object!(TypeCount, "a vehicle type count", [vehicle_type_id, count]);

/// `data`: the records under `vehicles` (3.x) or `bikes` (before), or `stations`.
#[derive(Default)]
struct Data<'a> {
    vehicles: Option<Option<Vec<Vehicle<'a>>>>,
    bikes: Option<Option<Vec<Vehicle<'a>>>>,
    stations: Option<Option<Vec<Status<'a>>>>,
}

object!(Data, "a data object", [vehicles, bikes, stations]);

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

fn count(field: &Option<Option<Count>>) -> Option<i64> {
    field.as_ref().and_then(|v| v.as_ref()).map(|n| n.0)
}

fn int(n: Option<i64>) -> ValueRef<'static> {
    n.map_or(ValueRef::Null, ValueRef::Int)
}

fn time(field: &Option<Option<Time>>) -> ValueRef<'static> {
    match field {
        Some(Some(Time(t))) => ValueRef::Ts(t.timestamp_micros()),
        _ => ValueRef::Null,
    }
}

/// The tables with a fast reader (the files each is read from: [`super::files_of`]).
pub(super) type Reader = fn(&mut FrameBuilder, &Context, &Payload) -> bool;
pub(super) const READERS: &[(&TableSchema, Reader)] =
    &[(&VEHICLES, vehicles), (&STATION_STATUS, station_status)];

/// The file's snapshot time (`last_updated`, else the fetch time) and `data`, or `None`
/// for a file of another shape.
fn parsed<'a>(p: &'a Payload) -> Option<(i64, Data<'a>)> {
    let file = serde_json::from_slice::<File>(p.bytes).ok()?;
    let observed_at = match file.last_updated {
        Some(Some(Time(t))) => t,
        _ => p.fetched_at,
    };
    match file.data {
        Some(Some(data)) => Some((observed_at.timestamp_micros(), data)),
        _ => None,
    }
}

/// The positions of the named columns in the builder's schema.
fn columns<const N: usize>(builder: &FrameBuilder, names: [&str; N]) -> [usize; N] {
    let schema = builder.schema();
    names.map(|name| {
        schema
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("{} has no column {name}", schema.name))
    })
}

/// Appends one row per record, each filled by `fill` (which returns the record's id, or
/// `None` when the record is unusual), and returns true; or appends nothing and returns
/// false when a record is unusual, its id repeated or its row refused by the schema.
fn append<'a, R>(
    builder: &mut FrameBuilder,
    records: &'a [R],
    fill: impl Fn(usize, &'a R, &mut [ValueRef<'a>]) -> Option<&'a str>,
) -> bool {
    let width = builder.schema().columns.len();
    let mut values = vec![ValueRef::Null; records.len() * width];
    let mut seen = HashSet::with_capacity(records.len());
    for (i, (r, row)) in records
        .iter()
        .zip(values.chunks_exact_mut(width))
        .enumerate()
    {
        let Some(id) = fill(i, r, row) else {
            return false;
        };
        if !seen.insert(id) || builder.check_refs(row).is_err() {
            return false;
        }
    }
    for row in values.chunks_exact(width) {
        builder.push_checked(row);
    }
    true
}

/// Appends the vehicle file's rows to `builder` and returns true, or appends nothing and
/// returns false when the file is not of the usual shape (the generic reader's to read).
pub(super) fn vehicles(builder: &mut FrameBuilder, ctx: &Context, p: &Payload) -> bool {
    let Some((observed_at, data)) = parsed(p) else {
        return false;
    };
    // As the generic reader: `vehicles` when it is a list, else `bikes`.
    let records = match (&data.vehicles, &data.bikes) {
        (Some(Some(v)), _) => v.as_slice(),
        (_, Some(Some(b))) => b.as_slice(),
        _ => &[],
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
    ] = columns(
        builder,
        [
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
        ],
    );
    append(builder, records, |_, v, row| {
        // The id: `vehicle_id` when the key is there (null is the generic reader's to
        // refuse), else `bike_id`.
        let id = match (&v.vehicle_id, &v.bike_id) {
            (Some(Some(Id(id))), _) | (None, Some(Some(Id(id)))) if !id.is_empty() => id,
            _ => return None,
        };
        let (lat, lon) = (opt_num(&v.lat), opt_num(&v.lon));
        let station = opt_id(&v.station_id);
        match (lat, lon) {
            (Some(lat), Some(lon)) if json::check_position(lat, lon).is_ok() => {}
            (Some(_), Some(_)) => return None,
            _ if station.is_some() => {}
            _ => return None,
        }
        let fuel = opt_num(&v.current_fuel_percent);
        if fuel.is_some_and(|f| !(0.0..=1.0).contains(&f)) {
            return None;
        }
        row[partner] = ValueRef::Text(ctx.partner);
        row[vehicle_id] = ValueRef::Text(id);
        row[observed] = ValueRef::Ts(observed_at);
        row[vehicle_type_id] = text(opt_id(&v.vehicle_type_id));
        row[lat_at] = float(lat);
        row[lon_at] = float(lon);
        row[station_id] = text(station);
        row[is_reserved] = ValueRef::Bool(flag(&v.is_reserved)?);
        row[is_disabled] = ValueRef::Bool(flag(&v.is_disabled)?);
        row[range] = float(opt_num(&v.current_range_meters));
        row[fuel_at] = float(fuel);
        row[pricing_plan_id] = text(opt_id(&v.pricing_plan_id));
        row[last_reported] = time(&v.last_reported);
        row[run_id] = ValueRef::Text(ctx.run_id);
        Some(id)
    })
}

/// A station's counts per vehicle type, as the generic reader writes them: a JSON object
/// by type id (the last count of a type given twice), a missing count 0.
fn per_type(items: &[TypeCount]) -> Option<String> {
    let mut m = std::collections::BTreeMap::new();
    for it in items {
        match &it.vehicle_type_id {
            Some(Some(Id(id))) if !id.is_empty() => {
                m.insert(id.as_ref(), count(&it.count).unwrap_or(0))
            }
            _ => return None,
        };
    }
    Some(serde_json::to_string(&m).expect("map of counts"))
}

/// Like [`vehicles`], for a station status file.
pub(super) fn station_status(builder: &mut FrameBuilder, ctx: &Context, p: &Payload) -> bool {
    let Some((observed_at, data)) = parsed(p) else {
        return false;
    };
    let records = match &data.stations {
        Some(Some(s)) => s.as_slice(),
        _ => &[],
    };
    // Each station's counts per type and docks per type, as JSON, made before the rows
    // borrow them.
    let mut json = Vec::with_capacity(records.len());
    for s in records {
        let types = match &s.vehicle_types_available {
            Some(Some(items)) => match per_type(items) {
                Some(json) => Some(json),
                None => return false,
            },
            _ => None,
        };
        let docks = match &s.vehicle_docks_available {
            Some(Some(v)) => Some(v.to_string()),
            _ => None,
        };
        json.push((types, docks));
    }
    let json = &json;
    let [
        partner,
        station_id,
        observed,
        last_reported,
        available,
        docks,
        disabled,
        docks_disabled,
        installed,
        renting,
        returning,
        types,
        docks_types,
        run_id,
    ] = columns(
        builder,
        [
            "partner",
            "station_id",
            "observed_at",
            "last_reported",
            "vehicles_available",
            "docks_available",
            "vehicles_disabled",
            "docks_disabled",
            "is_installed",
            "is_renting",
            "is_returning",
            "vehicle_types_available",
            "vehicle_docks_available",
            "run_id",
        ],
    );
    append(builder, records, |i, s, row| {
        let id = match &s.station_id {
            Some(Some(Id(id))) if !id.is_empty() => id,
            _ => return None,
        };
        // As the generic reader: the 3.0 name first, then the one before.
        let first = |a, b| count(a).or(count(b));
        row[partner] = ValueRef::Text(ctx.partner);
        row[station_id] = ValueRef::Text(id);
        row[observed] = ValueRef::Ts(observed_at);
        row[last_reported] = time(&s.last_reported);
        row[available] = ValueRef::Int(first(&s.num_vehicles_available, &s.num_bikes_available)?);
        row[docks] = int(count(&s.num_docks_available));
        row[disabled] = int(first(&s.num_vehicles_disabled, &s.num_bikes_disabled));
        row[docks_disabled] = int(count(&s.num_docks_disabled));
        row[installed] = ValueRef::Bool(flag(&s.is_installed)?);
        row[renting] = ValueRef::Bool(flag(&s.is_renting)?);
        row[returning] = ValueRef::Bool(flag(&s.is_returning)?);
        row[types] = text(json[i].0.as_deref());
        row[docks_types] = text(json[i].1.as_deref());
        row[run_id] = ValueRef::Text(ctx.run_id);
        Some(id)
    })
}
