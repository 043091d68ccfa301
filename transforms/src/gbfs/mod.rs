//! GBFS 1.x, 2.x and 3.0 to the unified tables.
//!
//! Version differences handled here, leniently, whatever version a file declares:
//! localized strings (3.0) or plain strings; POSIX or RFC 3339 times; `free_bike_status`/
//! `bike_id` (≤ 2.x) or `vehicle_status`/`vehicle_id` (3.0); `num_bikes_*` or
//! `num_vehicles_*`; `0`/`1` booleans (1.0). Snapshot rows are stamped with the file's
//! `last_updated` (the fetch time if absent), so replaying a run gives the same rows.

use chrono::{DateTime, Utc};
use mobiflux_model::TableSchema;
use mobiflux_model::schema::{
    GEOFENCING_ZONES, PRICING_PLANS, REGIONS, STATION_STATUS, STATIONS, SYSTEM_INFO, VEHICLE_TYPES,
    VEHICLES,
};
use serde_json::Value;

use crate::json::{self, Issue, Obj};
use crate::records::{Table, as_obj};
use crate::{Context, Output, Payload, TransformError};

mod fast;
#[cfg(test)]
mod tests;

/// Each unified table read from GBFS, in load order, and the files it is read from
/// (vehicles: `free_bike_status` before GBFS 3.0, `vehicle_status` since).
const TABLES: &[(&TableSchema, &[&str])] = &[
    (&SYSTEM_INFO, &["system_information"]),
    (&VEHICLE_TYPES, &["vehicle_types"]),
    (&PRICING_PLANS, &["system_pricing_plans"]),
    (&REGIONS, &["system_regions"]),
    (&STATIONS, &["station_information"]),
    (&GEOFENCING_ZONES, &["geofencing_zones"]),
    (&STATION_STATUS, &["station_status"]),
    (&VEHICLES, &["free_bike_status", "vehicle_status"]),
];

/// The files a table is read from.
fn files_of(schema: &TableSchema) -> &'static [&'static str] {
    TABLES
        .iter()
        .find(|(t, _)| t.name == schema.name)
        .map_or(&[], |(_, files)| files)
}

/// GBFS files read into unified tables; every other file (gbfs, manifest, gbfs_versions,
/// system_hours, system_calendar, system_alerts, …) stays in the raw zone only.
pub const TRANSFORMED: &[&str] = &[
    "system_information",
    "vehicle_types",
    "station_information",
    "station_status",
    "free_bike_status",
    "vehicle_status",
    "system_pricing_plans",
    "system_regions",
    "geofencing_zones",
];

/// GBFS files describing what changes rarely, each with the unified table it feeds: one
/// whose content equals the last one loaded for its pipeline need not be read again (DESIGN:
/// raw zone). Snapshot files always are: one without `last_updated` is stamped with its
/// fetch time, a new observation each poll.
pub const REFERENCE: &[(&str, &str)] = &[
    ("system_information", "system_info"),
    ("vehicle_types", "vehicle_types"),
    ("station_information", "stations"),
    ("system_pricing_plans", "pricing_plans"),
    ("system_regions", "regions"),
    ("geofencing_zones", "geofencing_zones"),
];

/// One parsed GBFS file.
struct File<'a> {
    payload: &'a Payload<'a>,
    last_updated: DateTime<Utc>,
    version: Option<String>,
    data: Obj,
}

fn bad_file(p: &Payload, expected: &str, found: String) -> TransformError {
    TransformError::BadFile {
        source_object: p.source_object.to_string(),
        expected: expected.to_string(),
        found,
    }
}

fn parse<'a>(p: &'a Payload<'a>) -> Result<File<'a>, TransformError> {
    let doc: Value = serde_json::from_slice(p.bytes).map_err(|e| {
        let head = String::from_utf8_lossy(&p.bytes[..p.bytes.len().min(80)]).into_owned();
        bad_file(p, "a JSON document", format!("{e} (starts with {head:?})"))
    })?;
    let Value::Object(mut top) = doc else {
        return Err(bad_file(
            p,
            "a JSON object",
            "found another JSON value".into(),
        ));
    };
    let last_updated = top
        .get("last_updated")
        .and_then(json::time_value)
        .unwrap_or(p.fetched_at);
    let version = top
        .get("version")
        .and_then(Value::as_str)
        .map(str::to_string);
    match top.remove("data") {
        Some(Value::Object(data)) => Ok(File {
            payload: p,
            last_updated,
            version,
            data,
        }),
        _ => Err(bad_file(
            p,
            &format!("a GBFS {} file with a \"data\" object", p.resource),
            "\"data\" is missing or not an object".into(),
        )),
    }
}

/// The record list at `data.{key}` (a missing list is an empty feed; another type is a bad file).
fn records<'f>(f: &'f File, keys: &[&str]) -> Result<(&'f [Value], String), TransformError> {
    for key in keys {
        match f.data.get(*key) {
            Some(Value::Array(items)) => return Ok((items, format!("/data/{key}"))),
            Some(Value::Null) | None => continue,
            Some(_) => {
                return Err(bad_file(
                    f.payload,
                    &format!("data.{key} to be a list"),
                    "it is another JSON value".into(),
                ));
            }
        }
    }
    Ok((&[], format!("/data/{}", keys[0])))
}

/// Transforms the payloads of one GBFS run.
pub fn transform(ctx: &Context, payloads: &[Payload]) -> Result<Output, TransformError> {
    transform_changed(ctx, payloads, &[])
}

/// Whether [`transform_changed`] reads a resource's payload, given the `known` ones.
pub fn reads(resource: &str, known: &[&str]) -> bool {
    TRANSFORMED.contains(&resource)
        && (resource == "system_information" || !known.contains(&resource))
}

/// Transforms the payloads of one GBFS run but those of the `known` resources (whose content
/// the warehouse holds already): their tables are left out, though `system_information` is
/// still read for the system's language.
pub fn transform_changed(
    ctx: &Context,
    payloads: &[Payload],
    known: &[&str],
) -> Result<Output, TransformError> {
    let wanted = |p: &&Payload| reads(p.resource, known);
    // A lone snapshot file of the usual shape is read straight into its frame (`fast.rs`).
    let mut fast: Vec<(&'static str, crate::frame::FrameBuilder)> = Vec::new();
    let mut read_fast: Vec<&str> = Vec::new();
    for (schema, read) in fast::READERS {
        let resources = files_of(schema);
        let mut mine = payloads
            .iter()
            .filter(wanted)
            .filter(|p| resources.contains(&p.resource));
        if let (Some(p), None) = (mine.next(), mine.next()) {
            let mut builder = crate::frame::FrameBuilder::new(schema);
            if read(&mut builder, ctx, p) {
                fast.push((schema.name, builder));
                read_fast.push(p.resource);
            }
        }
    }
    let mut files: Vec<File> = Vec::new();
    for p in payloads.iter().filter(wanted) {
        if !read_fast.contains(&p.resource) {
            files.push(parse(p)?);
        }
    }
    // Localized strings: the definition's language, else the system's own.
    let system_lang = files
        .iter()
        .find(|f| f.payload.resource == "system_information")
        .and_then(|f| {
            f.data
                .get("language")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    f.data
                        .get("languages")
                        .and_then(Value::as_array)
                        .and_then(|l| l.first())
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
        });
    let lang = ctx.language.or(system_lang.as_deref());

    let mut quarantine = Vec::new();
    let mut out: Vec<(&'static TableSchema, polars::prelude::DataFrame)> = Vec::new();
    for &(schema, resources) in TABLES {
        if let Some(i) = fast.iter().position(|(t, _)| *t == schema.name) {
            let (_, builder) = fast.swap_remove(i);
            out.push((schema, builder.finish()));
            continue;
        }
        let mine: Vec<&File> = files
            .iter()
            .filter(|f| {
                resources.contains(&f.payload.resource) && !known.contains(&f.payload.resource)
            })
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut t = Table::new(schema, ctx, &mut quarantine);
        for f in mine {
            match schema.name {
                "system_info" => system_information(&mut t, f, lang),
                "vehicle_types" => vehicle_types(&mut t, f, lang)?,
                "pricing_plans" => pricing_plans(&mut t, f, lang)?,
                "regions" => regions(&mut t, f, lang)?,
                "stations" => stations(&mut t, f, lang)?,
                "geofencing_zones" => geofencing_zones(&mut t, f, lang)?,
                "station_status" => station_status(&mut t, f)?,
                "vehicles" => vehicles(&mut t, f)?,
                other => unreachable!("no GBFS reader for {other}"),
            }
        }
        out.push((schema, t.builder.finish()));
    }
    Ok(Output {
        tables: out,
        quarantine,
    })
}

fn system_information(t: &mut Table, f: &File, lang: Option<&str>) {
    let d = &f.data;
    t.add(f.payload.source_object, "/data".into(), "system_id", |r| {
        let language = match json::joined(d, "languages", false) {
            Some(l) => Some(l),
            None => json::text(d, "language", None)?,
        };
        r.set("system_id", json::id(d, "system_id")?)
            .set("name", json::text(d, "name", lang)?)
            .set("operator", json::text(d, "operator", lang)?)
            .set("timezone", json::text(d, "timezone", None)?)
            .set("language", language)
            .set("url", json::text(d, "url", lang)?)
            .set("purchase_url", json::text(d, "purchase_url", lang)?)
            .set("email", json::text(d, "email", None)?)
            .set("feed_version", f.version.clone())
            .set("valid_from", f.last_updated);
        Ok(())
    });
}

fn vehicle_types(t: &mut Table, f: &File, lang: Option<&str>) -> Result<(), TransformError> {
    let (items, base) = records(f, &["vehicle_types"])?;
    for (i, v) in items.iter().enumerate() {
        t.add(
            f.payload.source_object,
            format!("{base}/{i}"),
            "vehicle_type_id",
            |r| {
                let o = as_obj(v, "vehicle_type")?;
                r.set("vehicle_type_id", json::id(o, "vehicle_type_id")?)
                    .set(
                        "form_factor",
                        json::req_text(o, "form_factor", None)?.to_lowercase(),
                    )
                    .set(
                        "propulsion",
                        json::req_text(o, "propulsion_type", None)?.to_lowercase(),
                    )
                    .set("name", json::text(o, "name", lang)?)
                    .set("max_range_m", json::opt_f64(o, "max_range_meters")?)
                    .set(
                        "default_pricing_plan_id",
                        json::opt_id(o, "default_pricing_plan_id")?,
                    )
                    .set("valid_from", f.last_updated);
                Ok(())
            },
        );
    }
    Ok(())
}

fn pricing_plans(t: &mut Table, f: &File, lang: Option<&str>) -> Result<(), TransformError> {
    let (items, base) = records(f, &["plans"])?;
    for (i, v) in items.iter().enumerate() {
        t.add(
            f.payload.source_object,
            format!("{base}/{i}"),
            "plan_id",
            |r| {
                let o = as_obj(v, "plan")?;
                r.set("plan_id", json::id(o, "plan_id")?)
                    .set("name", json::req_text(o, "name", lang)?)
                    .set(
                        "currency",
                        json::req_text(o, "currency", None)?.to_uppercase(),
                    )
                    .set("price", json::req_f64(o, "price")?)
                    .set("is_taxable", json::req_bool(o, "is_taxable")?)
                    .set("description", json::text(o, "description", lang)?)
                    .set("per_km_pricing", json::opt_json(o, "per_km_pricing"))
                    .set("per_min_pricing", json::opt_json(o, "per_min_pricing"))
                    .set("surge_pricing", json::opt_bool(o, "surge_pricing")?)
                    .set("valid_from", f.last_updated);
                Ok(())
            },
        );
    }
    Ok(())
}

fn regions(t: &mut Table, f: &File, lang: Option<&str>) -> Result<(), TransformError> {
    let (items, base) = records(f, &["regions"])?;
    for (i, v) in items.iter().enumerate() {
        t.add(
            f.payload.source_object,
            format!("{base}/{i}"),
            "region_id",
            |r| {
                let o = as_obj(v, "region")?;
                r.set("region_id", json::id(o, "region_id")?)
                    .set("name", json::req_text(o, "name", lang)?)
                    .set("valid_from", f.last_updated);
                Ok(())
            },
        );
    }
    Ok(())
}

fn stations(t: &mut Table, f: &File, lang: Option<&str>) -> Result<(), TransformError> {
    let (items, base) = records(f, &["stations"])?;
    for (i, v) in items.iter().enumerate() {
        t.add(
            f.payload.source_object,
            format!("{base}/{i}"),
            "station_id",
            |r| {
                let o = as_obj(v, "station")?;
                let (lat, lon) = (json::req_f64(o, "lat")?, json::req_f64(o, "lon")?);
                json::check_position(lat, lon)?;
                let rental_methods = json::joined(o, "rental_methods", true);
                r.set("station_id", json::id(o, "station_id")?)
                    .set("name", json::req_text(o, "name", lang)?)
                    .set("lat", lat)
                    .set("lon", lon)
                    .set("capacity", json::opt_count(o, "capacity")?)
                    .set("address", json::text(o, "address", lang)?)
                    .set("region_id", json::opt_id(o, "region_id")?)
                    .set("rental_methods", rental_methods)
                    .set("is_virtual", json::opt_bool(o, "is_virtual_station")?)
                    .set(
                        "vehicle_type_capacity",
                        // 2.3: {type: count}; 3.0: [{vehicle_type_ids, count}]
                        json::opt_json(o, "vehicle_types_capacity")
                            .or_else(|| json::opt_json(o, "vehicle_type_capacity")),
                    )
                    .set("valid_from", f.last_updated);
                Ok(())
            },
        );
    }
    Ok(())
}

fn geofencing_zones(t: &mut Table, f: &File, lang: Option<&str>) -> Result<(), TransformError> {
    let features = match f.data.get("geofencing_zones") {
        Some(Value::Object(fc)) => match fc.get("features") {
            Some(Value::Array(items)) => items.as_slice(),
            _ => {
                return Err(bad_file(
                    f.payload,
                    "data.geofencing_zones to be a GeoJSON FeatureCollection with features",
                    "features is missing or not a list".into(),
                ));
            }
        },
        None | Some(Value::Null) => &[],
        Some(_) => {
            return Err(bad_file(
                f.payload,
                "data.geofencing_zones to be a GeoJSON FeatureCollection",
                "it is another JSON value".into(),
            ));
        }
    };
    for (i, v) in features.iter().enumerate() {
        t.add(
            f.payload.source_object,
            format!("/data/geofencing_zones/features/{i}"),
            "zone_id",
            |r| {
                let o = as_obj(v, "feature")?;
                let geometry = match o.get("geometry") {
                    Some(g @ Value::Object(go))
                        if matches!(
                            go.get("type").and_then(Value::as_str),
                            Some("Polygon" | "MultiPolygon")
                        ) =>
                    {
                        g.to_string()
                    }
                    other => {
                        return Err(Issue::new(
                            "geometry",
                            other,
                            "geometry must be a GeoJSON Polygon or MultiPolygon",
                        ));
                    }
                };
                let empty = Obj::new();
                let props = o
                    .get("properties")
                    .and_then(Value::as_object)
                    .unwrap_or(&empty);
                r.set("zone_id", i.to_string())
                    .set("name", json::text(props, "name", lang)?)
                    .set("starts_at", json::opt_time(props, "start")?)
                    .set("ends_at", json::opt_time(props, "end")?)
                    .set("rules", json::opt_json(props, "rules"))
                    .set("geometry", geometry)
                    .set("valid_from", f.last_updated);
                Ok(())
            },
        );
    }
    Ok(())
}

fn first_count(o: &Obj, fields: &[&str]) -> Result<Option<i64>, Issue> {
    for field in fields {
        if let Some(n) = json::opt_count(o, field)? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

fn station_status(t: &mut Table, f: &File) -> Result<(), TransformError> {
    let (items, base) = records(f, &["stations"])?;
    for (i, v) in items.iter().enumerate() {
        t.add(f.payload.source_object, format!("{base}/{i}"), "station_id", |r| {
            let o = as_obj(v, "station")?;
            let available = first_count(o, &["num_vehicles_available", "num_bikes_available"])?
                .ok_or_else(|| {
                    Issue::new(
                        "num_vehicles_available",
                        None,
                        "required field num_vehicles_available (num_bikes_available before 3.0) is missing",
                    )
                })?;
            let per_type = match o.get("vehicle_types_available") {
                Some(Value::Array(items)) => {
                    let mut m = std::collections::BTreeMap::new();
                    for it in items {
                        let io = as_obj(it, "vehicle_types_available")?;
                        m.insert(json::id(io, "vehicle_type_id")?, json::opt_count(io, "count")?.unwrap_or(0));
                    }
                    Some(serde_json::to_string(&m).expect("map of counts"))
                }
                _ => None,
            };
            r.set("station_id", json::id(o, "station_id")?)
                .set("observed_at", f.last_updated)
                .set("last_reported", json::opt_time(o, "last_reported")?)
                .set("vehicles_available", available)
                .set("docks_available", json::opt_count(o, "num_docks_available")?)
                .set(
                    "vehicles_disabled",
                    first_count(o, &["num_vehicles_disabled", "num_bikes_disabled"])?,
                )
                .set("docks_disabled", json::opt_count(o, "num_docks_disabled")?)
                .set("is_installed", json::req_bool(o, "is_installed")?)
                .set("is_renting", json::req_bool(o, "is_renting")?)
                .set("is_returning", json::req_bool(o, "is_returning")?)
                .set("vehicle_types_available", per_type)
                .set("vehicle_docks_available", json::opt_json(o, "vehicle_docks_available"));
            Ok(())
        });
    }
    Ok(())
}

fn vehicles(t: &mut Table, f: &File) -> Result<(), TransformError> {
    let (items, base) = records(f, &["vehicles", "bikes"])?;
    for (i, v) in items.iter().enumerate() {
        t.add(
            f.payload.source_object,
            format!("{base}/{i}"),
            "vehicle_id",
            |r| {
                let o = as_obj(v, "vehicle")?;
                let id = match o.get("vehicle_id") {
                    Some(_) => json::id(o, "vehicle_id")?,
                    None => json::id(o, "bike_id")?,
                };
                let (lat, lon) = (json::opt_f64(o, "lat")?, json::opt_f64(o, "lon")?);
                let station_id = json::opt_id(o, "station_id")?;
                match (lat, lon) {
                    (Some(lat), Some(lon)) => json::check_position(lat, lon)?,
                    _ if station_id.is_some() => {}
                    _ => {
                        return Err(Issue::new(
                            "lat",
                            None,
                            "a vehicle needs lat and lon, or a station_id",
                        ));
                    }
                }
                let fuel = json::opt_f64(o, "current_fuel_percent")?;
                if let Some(p) = fuel
                    && !(0.0..=1.0).contains(&p)
                {
                    return Err(Issue::new(
                        "current_fuel_percent",
                        o.get("current_fuel_percent"),
                        "current_fuel_percent must be between 0 and 1",
                    ));
                }
                r.set("vehicle_id", id)
                    .set("observed_at", f.last_updated)
                    .set("vehicle_type_id", json::opt_id(o, "vehicle_type_id")?)
                    .set("lat", lat)
                    .set("lon", lon)
                    .set("station_id", station_id)
                    .set("is_reserved", json::req_bool(o, "is_reserved")?)
                    .set("is_disabled", json::req_bool(o, "is_disabled")?)
                    .set("current_range_m", json::opt_f64(o, "current_range_meters")?)
                    .set("fuel_percent", fuel)
                    .set("pricing_plan_id", json::opt_id(o, "pricing_plan_id")?)
                    .set("last_reported", json::opt_time(o, "last_reported")?);
                Ok(())
            },
        );
    }
    Ok(())
}
