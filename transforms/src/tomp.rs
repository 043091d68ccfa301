//! TOMP-API 1.3 operator responses to the unified tables.
//!
//! - `information` → `system_info`;
//! - `stations` → `stations` (`coordinates.lat`/`lng`, the street address);
//! - `available_assets`: each asset type → `vehicle_types` (asset class and propulsion in the
//!   GBFS vocabulary the other feeds use), each asset → `vehicles` (its own location, else the
//!   type's), the pricing plans it names inline → `pricing_plans`;
//! - `pricing_plans` → `pricing_plans`: fixed parts summed into `price`, per-time and
//!   per-distance parts as GBFS-style `per_min_pricing`/`per_km_pricing` segments;
//! - `regions` → `regions`, and their `serviceArea` polygons → `geofencing_zones`;
//! - `alerts` stay in the raw zone.
//!
//! TOMP responses carry no publication time: rows are versioned and observed at the
//! response's fetch time, so replaying a run gives the same rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mobiflux_model::schema::{
    GEOFENCING_ZONES, PRICING_PLANS, REGIONS, STATIONS, SYSTEM_INFO, VEHICLE_TYPES, VEHICLES,
};
use mobiflux_model::{TableSchema, vocab};
use serde_json::{Value, json};

use crate::frame::Row;
use crate::json::{self, Issue, Obj};
use crate::records::{Table, as_obj};
use crate::{Context, Output, Payload, TransformError};

/// The operator API version this module reads.
pub const VERSION: &str = "1.3.0";

struct Doc<'a> {
    payload: &'a Payload<'a>,
    doc: Value,
}

impl Doc<'_> {
    fn at(&self) -> DateTime<Utc> {
        self.payload.fetched_at
    }
    fn source(&self) -> &str {
        self.payload.source_object
    }
    /// The response as a list of records (every operator endpoint but `information`).
    fn list(&self) -> Result<&[Value], TransformError> {
        match &self.doc {
            Value::Array(items) => Ok(items),
            _ => Err(TransformError::BadFile {
                source_object: self.source().to_string(),
                expected: format!("a JSON list of {}", self.payload.resource),
                found: "another JSON value".into(),
            }),
        }
    }
}

fn parse<'a>(p: &'a Payload<'a>) -> Result<Doc<'a>, TransformError> {
    let doc = serde_json::from_slice(p.bytes).map_err(|e| {
        let head = String::from_utf8_lossy(&p.bytes[..p.bytes.len().min(80)]).into_owned();
        TransformError::BadFile {
            source_object: p.source_object.to_string(),
            expected: "a JSON document".into(),
            found: format!("{e} (starts with {head:?})"),
        }
    })?;
    Ok(Doc { payload: p, doc })
}

/// Minutes in one TOMP time unit; `None` for units that are not time.
fn minutes(unit: &str) -> Option<f64> {
    match unit {
        "SECOND" => Some(1.0 / 60.0),
        "MINUTE" => Some(1.0),
        "HOUR" => Some(60.0),
        "DAY" => Some(1440.0),
        "WEEK" => Some(10080.0),
        _ => None,
    }
}

/// Kilometres in one TOMP distance unit.
fn kilometres(unit: &str) -> Option<f64> {
    match unit {
        "KM" => Some(1.0),
        "METER" | "METERS" => Some(0.001),
        "MILE" => Some(1.609344),
        _ => None,
    }
}

/// A TOMP `Fare` read into (currency, fixed price, per-minute segments, per-km segments).
type Fare = (String, f64, Vec<Value>, Vec<Value>);

fn fare(plan: &Obj) -> Result<Fare, Issue> {
    let parts = plan
        .get("fare")
        .and_then(Value::as_object)
        .and_then(|f| f.get("parts"))
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Issue::new(
                "fare",
                plan.get("fare"),
                "fare.parts must list the fare's parts",
            )
        })?;
    let (mut currency, mut fixed, mut per_min, mut per_km) = (None, 0.0, Vec::new(), Vec::new());
    for part in parts {
        let p = as_obj(part, "fare part")?;
        let amount = json::req_f64(p, "amount")?;
        let code = json::req_text(p, "currencyCode", None)?.to_uppercase();
        match &currency {
            None => currency = Some(code),
            Some(c) if *c != code => {
                return Err(Issue::new(
                    "currencyCode",
                    p.get("currencyCode"),
                    format!("a fare mixes currencies ({c} and {code})"),
                ));
            }
            Some(_) => {}
        }
        match json::text(p, "type", None)?.as_deref() {
            Some("FIXED") | None => fixed += amount,
            Some("FLEX") => {
                let unit = json::req_text(p, "unitType", None)?;
                let units = json::opt_f64(p, "units")?.unwrap_or(1.0);
                let scale = json::text(p, "scaleType", None)?.unwrap_or_else(|| unit.clone());
                let (from, to) = (json::opt_f64(p, "scaleFrom")?, json::opt_f64(p, "scaleTo")?);
                let (factor, into) = match (minutes(&unit), kilometres(&unit)) {
                    (Some(m), _) => (minutes(&scale).unwrap_or(m), (m, &mut per_min)),
                    (None, Some(k)) => (kilometres(&scale).unwrap_or(k), (k, &mut per_km)),
                    _ => {
                        return Err(Issue::new(
                            "unitType",
                            p.get("unitType"),
                            format!("unit {unit} is neither a time nor a distance"),
                        ));
                    }
                };
                let mut seg = json!({
                    "start": from.unwrap_or(0.0) * factor,
                    "rate": amount,
                    "interval": units * into.0,
                });
                if let Some(to) = to {
                    seg["end"] = json!(to * factor);
                }
                into.1.push(seg);
            }
            Some(other) => {
                return Err(Issue::new(
                    "type",
                    p.get("type"),
                    format!("fare part type {other} is not FIXED or FLEX"),
                ));
            }
        }
    }
    Ok((currency.expect("at least one part"), fixed, per_min, per_km))
}

fn set_plan(r: &mut Row, o: &Obj, at: DateTime<Utc>) -> Result<(), Issue> {
    let (currency, price, per_min, per_km) = fare(o)?;
    let segments = |s: Vec<Value>| (!s.is_empty()).then(|| Value::Array(s).to_string());
    let name = match json::text(o, "name", None)? {
        Some(n) => n,
        None => json::req_text(o, "description", None)?,
    };
    r.set("plan_id", json::id(o, "planId")?)
        .set("name", name)
        .set("currency", currency)
        .set("price", price)
        .set(
            "is_taxable",
            json::opt_bool(o, "isTaxable")?.unwrap_or(false),
        )
        .set("description", json::text(o, "description", None)?)
        .set("per_km_pricing", segments(per_km))
        .set("per_min_pricing", segments(per_min))
        .set("valid_from", at);
    Ok(())
}

/// Transforms the responses of one TOMP run.
pub fn transform(ctx: &Context, payloads: &[Payload]) -> Result<Output, TransformError> {
    let mut docs: BTreeMap<&str, Doc> = BTreeMap::new();
    for p in payloads.iter().filter(|p| p.resource != "alerts") {
        docs.insert(p.resource, parse(p)?);
    }
    let mut quarantine = Vec::new();
    let mut out: Vec<(&'static TableSchema, polars::prelude::DataFrame)> = Vec::new();
    let mut emit = |schema: &'static TableSchema,
                    quarantine: &mut Vec<_>,
                    fill: &dyn Fn(&mut Table) -> Result<(), TransformError>|
     -> Result<(), TransformError> {
        let mut t = Table::new(schema, ctx, quarantine);
        fill(&mut t)?;
        out.push((schema, t.builder.finish()));
        Ok(())
    };
    if let Some(d) = docs.get("information") {
        emit(&SYSTEM_INFO, &mut quarantine, &|t| {
            system_information(t, d);
            Ok(())
        })?;
    }
    if let Some(d) = docs.get("stations") {
        emit(&STATIONS, &mut quarantine, &|t| stations(t, d))?;
    }
    if let Some(d) = docs.get("available_assets") {
        emit(&VEHICLE_TYPES, &mut quarantine, &|t| vehicle_types(t, d))?;
        emit(&VEHICLES, &mut quarantine, &|t| vehicles(t, d))?;
    }
    if docs.contains_key("pricing_plans") || docs.contains_key("available_assets") {
        emit(&PRICING_PLANS, &mut quarantine, &|t| {
            pricing_plans(t, docs.get("pricing_plans"), docs.get("available_assets"))
        })?;
    }
    if let Some(d) = docs.get("regions") {
        emit(&REGIONS, &mut quarantine, &|t| regions(t, d))?;
        emit(&GEOFENCING_ZONES, &mut quarantine, &|t| zones(t, d))?;
    }
    // Zones come only from regions with a service area: none is not news.
    out.retain(|(schema, df)| schema.name != GEOFENCING_ZONES.name || df.height() > 0);
    Ok(Output {
        tables: out,
        quarantine,
    })
}

fn system_information(t: &mut Table, d: &Doc) {
    t.add(d.source(), String::new(), "system_id", |r| {
        let o = as_obj(&d.doc, "information")?;
        let language = match json::joined(o, "language", false) {
            Some(l) => Some(l),
            None => json::text(o, "language", None)?,
        };
        r.set("system_id", json::id(o, "systemId")?)
            .set("name", json::text(o, "name", None)?)
            .set("operator", json::text(o, "operator", None)?)
            .set("timezone", json::text(o, "timezone", None)?)
            .set("language", language)
            .set("url", json::text(o, "url", None)?)
            .set("purchase_url", json::text(o, "purchaseUrl", None)?)
            .set("email", json::text(o, "email", None)?)
            .set("feed_version", format!("tomp-{VERSION}"))
            .set("valid_from", d.at());
        Ok(())
    });
}

/// `{lat, lng}` of a TOMP `coordinates` object, checked.
fn coordinates(o: &Obj) -> Result<(f64, f64), Issue> {
    let c = o
        .get("coordinates")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Issue::new(
                "coordinates",
                o.get("coordinates"),
                "coordinates {lat, lng} are missing",
            )
        })?;
    let (lat, lon) = (json::req_f64(c, "lat")?, json::req_f64(c, "lng")?);
    json::check_position(lat, lon)?;
    Ok((lat, lon))
}

fn stations(t: &mut Table, d: &Doc) -> Result<(), TransformError> {
    for (i, v) in d.list()?.iter().enumerate() {
        t.add(d.source(), format!("/{i}"), "station_id", |r| {
            let o = as_obj(v, "station")?;
            let (lat, lon) = coordinates(o)?;
            let address = o
                .get("physicalAddress")
                .and_then(Value::as_object)
                .map(|a| json::text(a, "streetAddress", None))
                .transpose()?
                .flatten();
            let rental_methods = json::joined(o, "rentalMethods", true);
            r.set("station_id", json::id(o, "stationId")?)
                .set("name", json::req_text(o, "name", None)?)
                .set("lat", lat)
                .set("lon", lon)
                .set("address", address)
                .set("region_id", json::opt_id(o, "regionId")?)
                .set("rental_methods", rental_methods)
                .set("is_virtual", json::opt_bool(o, "isVirtualStation")?)
                .set("valid_from", d.at());
            Ok(())
        });
    }
    Ok(())
}

/// The first plan an asset type names inline.
fn default_plan(o: &Obj) -> Result<Option<String>, Issue> {
    match o
        .get("applicablePricings")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
    {
        Some(p) => json::opt_id(as_obj(p, "applicablePricings")?, "planId"),
        None => Ok(None),
    }
}

fn empty() -> &'static Obj {
    static EMPTY: std::sync::OnceLock<Obj> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Obj::new)
}

fn vehicle_types(t: &mut Table, d: &Doc) -> Result<(), TransformError> {
    for (i, v) in d.list()?.iter().enumerate() {
        t.add(d.source(), format!("/{i}"), "vehicle_type_id", |r| {
            let o = as_obj(v, "asset type")?;
            let shared = o
                .get("sharedProperties")
                .and_then(Value::as_object)
                .unwrap_or(empty());
            let class = json::req_text(o, "assetClass", None)?;
            let power = json::text(shared, "propulsion", None)?.ok_or_else(|| {
                Issue::new(
                    "sharedProperties.propulsion",
                    None,
                    "required field sharedProperties.propulsion is missing",
                )
            })?;
            let name = match json::text(shared, "name", None)? {
                Some(n) => Some(n),
                None => json::text(o, "assetSubClass", None)?,
            };
            r.set("vehicle_type_id", json::id(o, "id")?)
                .set("form_factor", vocab::form_factor(&class))
                .set("propulsion", vocab::propulsion_type(&power))
                .set("name", name)
                .set("default_pricing_plan_id", default_plan(o)?)
                .set("valid_from", d.at());
            Ok(())
        });
    }
    Ok(())
}

fn vehicles(t: &mut Table, d: &Doc) -> Result<(), TransformError> {
    for (i, v) in d.list()?.iter().enumerate() {
        let Some(o) = v.as_object() else { continue }; // quarantined as a type
        let Some(assets) = o.get("assets").and_then(Value::as_array) else {
            continue;
        };
        let shared = o
            .get("sharedProperties")
            .and_then(Value::as_object)
            .unwrap_or(empty());
        for (j, a) in assets.iter().enumerate() {
            t.add(d.source(), format!("/{i}/assets/{j}"), "vehicle_id", |r| {
                let type_id = json::id(o, "id")?;
                let asset = as_obj(a, "asset")?;
                let own = asset
                    .get("overriddenProperties")
                    .and_then(Value::as_object)
                    .unwrap_or(empty());
                let location = own
                    .get("location")
                    .or_else(|| shared.get("location"))
                    .and_then(Value::as_object);
                let position = location
                    .filter(|l| l.contains_key("coordinates"))
                    .map(coordinates)
                    .transpose()?;
                let station = match location {
                    Some(l) => json::opt_id(l, "stationId")?,
                    None => None,
                };
                if position.is_none() && station.is_none() {
                    return Err(Issue::new(
                        "location",
                        None,
                        "an asset needs location.coordinates or location.stationId",
                    ));
                }
                r.set("vehicle_id", json::id(asset, "id")?)
                    .set("observed_at", d.at())
                    .set("vehicle_type_id", type_id)
                    .set("lat", position.map(|p| p.0))
                    .set("lon", position.map(|p| p.1))
                    .set("station_id", station)
                    .set(
                        "is_reserved",
                        json::opt_bool(asset, "isReserved")?.unwrap_or(false),
                    )
                    .set(
                        "is_disabled",
                        json::opt_bool(asset, "isDisabled")?.unwrap_or(false),
                    )
                    .set("pricing_plan_id", default_plan(o)?);
                Ok(())
            });
        }
    }
    Ok(())
}

/// Plans of `pricing_plans`, then those only named inline by asset types (once each).
fn pricing_plans(
    t: &mut Table,
    plans: Option<&Doc>,
    assets: Option<&Doc>,
) -> Result<(), TransformError> {
    let mut listed = std::collections::HashSet::new();
    if let Some(d) = plans {
        for (i, v) in d.list()?.iter().enumerate() {
            if let Some(id) = v.get("planId").and_then(Value::as_str) {
                listed.insert(id.to_string());
            }
            t.add(d.source(), format!("/{i}"), "plan_id", |r| {
                set_plan(r, as_obj(v, "pricing plan")?, d.at())
            });
        }
    }
    if let Some(d) = assets {
        for (i, v) in d.list()?.iter().enumerate() {
            let inline = v.get("applicablePricings").and_then(Value::as_array);
            for (j, p) in inline.into_iter().flatten().enumerate() {
                let Some(id) = p.get("planId").and_then(Value::as_str) else {
                    continue;
                };
                if !listed.insert(id.to_string()) {
                    continue;
                }
                t.add(
                    d.source(),
                    format!("/{i}/applicablePricings/{j}"),
                    "plan_id",
                    |r| set_plan(r, as_obj(p, "pricing plan")?, d.at()),
                );
            }
        }
    }
    Ok(())
}

fn regions(t: &mut Table, d: &Doc) -> Result<(), TransformError> {
    for (i, v) in d.list()?.iter().enumerate() {
        t.add(d.source(), format!("/{i}"), "region_id", |r| {
            let o = as_obj(v, "region")?;
            r.set("region_id", json::id(o, "regionId")?)
                .set("name", json::req_text(o, "name", None)?)
                .set("valid_from", d.at());
            Ok(())
        });
    }
    Ok(())
}

/// Regions with a `serviceArea` polygon; their `type` (OPERATING, NO_PARKING, …) as rules.
fn zones(t: &mut Table, d: &Doc) -> Result<(), TransformError> {
    for (i, v) in d.list()?.iter().enumerate() {
        let area = v.get("serviceArea");
        if area.is_none_or(|a| a.is_null() || a.as_str().is_some_and(str::is_empty)) {
            continue;
        }
        t.add(d.source(), format!("/{i}/serviceArea"), "zone_id", |r| {
            let o = as_obj(v, "region")?;
            let geometry = match area {
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
                        "serviceArea",
                        other,
                        "serviceArea must be a GeoJSON Polygon or MultiPolygon",
                    ));
                }
            };
            let rules = json::text(o, "type", None)?.map(|ty| json!({ "type": ty }).to_string());
            r.set("zone_id", json::id(o, "regionId")?)
                .set("name", json::text(o, "name", None)?)
                .set("rules", rules)
                .set("geometry", geometry)
                .set("valid_from", d.at());
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
