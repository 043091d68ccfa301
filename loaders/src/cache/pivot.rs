//! The gateway's pivot format: unified frames (and, for carpooling, the pseudonymized
//! standard answers) to the documents the Mon Compte Mobilité gateway serves to MaaS apps.
//!
//! The shapes are the gateway's own: every document starts from the skeleton of the
//! gateway's payload (`fixtures/mcm-gateway/gateway-api__mock__*.json`, every field present,
//! `null` until known) and is filled from the unified rows, so a field the gateway serves
//! is never missing and never renamed.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use mobiflux_model::{TableSchema, vocab};
use polars::prelude::DataFrame;
use serde_json::{Map, Value, json};

use super::{Point, Resource};
use crate::LoadError;
use crate::cells::{self, Cell, ColRef};

fn shape(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).expect("the gateway's shapes are JSON");
    match v {
        Value::Array(mut a) => a.swap_remove(0),
        v => v,
    }
}

/// The gateway's documents, as skeletons; `*_template` keep one element's skeleton in
/// each list, to complete lists copied from a partner's answer.
struct Shapes {
    station_template: Value,
    asset_template: Value,
    asset_type_template: Value,
    station: Value,
    station_status: Value,
    asset: Value,
    asset_type: Value,
    pricing: Value,
    fare_part: Value,
    zones: Value,
    zone: Value,
    partner: Value,
    global_view: Value,
    /// The carpooling standard's answers, per endpoint (resource name).
    carpool: Vec<(&'static str, Value)>,
}

static SHAPES: LazyLock<Shapes> = LazyLock::new(|| {
    let available = shape(include_str!(
        "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerAvailableAssetsMock.json"
    ));
    let zones = shape(include_str!(
        "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerZoneMock.json"
    ));
    let pricing = available["applicablePricings"][0].clone();
    let stations = shape(include_str!(
        "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerStationsMock.json"
    ));
    let assets = shape(include_str!(
        "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerAssetsMock.json"
    ));
    Shapes {
        station_template: template(&stations),
        asset_template: template(&assets),
        asset_type_template: template(&available),
        station: skeleton(&stations),
        station_status: skeleton(&shape(include_str!(
            "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerStationsStatusMock.json"
        ))),
        asset: skeleton(&assets),
        asset_type: skeleton(&available),
        fare_part: skeleton(&pricing["fare"]["parts"][0]),
        pricing: skeleton(&pricing),
        zone: skeleton(&zones["zones"][0]),
        zones: skeleton(&zones),
        partner: skeleton(&shape(include_str!(
            "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnersMock.json"
        ))),
        global_view: skeleton(&shape(include_str!(
            "../../../fixtures/mcm-gateway/gateway-api__mock__getGlobalViewMock.json"
        ))),
        carpool: vec![
            (
                "driver-journeys",
                skeleton(&shape(include_str!(
                    "../../../fixtures/mcm-gateway/gateway-api__mock__getDriverJourneys.json"
                ))),
            ),
            (
                "passenger-journeys",
                skeleton(&shape(include_str!(
                    "../../../fixtures/mcm-gateway/gateway-api__mock__getPassengerJourneys.json"
                ))),
            ),
            (
                "driver-regular-trips",
                skeleton(&shape(include_str!(
                    "../../../fixtures/mcm-gateway/gateway-api__mock__getDriverRegularTrip.json"
                ))),
            ),
            (
                "passenger-regular-trips",
                skeleton(&shape(include_str!(
                    "../../../fixtures/mcm-gateway/gateway-api__mock__getPassengerRegularTrip.json"
                ))),
            ),
        ],
    }
});

/// Every field of a document, `null`; lists empty. Free-form maps (`additionalProp…`
/// placeholders of the gateway's OpenAPI examples) are empty maps.
pub fn skeleton(v: &Value) -> Value {
    blank(&template(v))
}

/// A skeleton whose lists keep the skeleton of their first element.
fn template(v: &Value) -> Value {
    match v {
        Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.starts_with("additionalProp")) => {
            Value::Object(Map::new())
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), template(v))).collect())
        }
        Value::Array(a) => Value::Array(a.first().map(template).into_iter().collect()),
        _ => Value::Null,
    }
}

fn blank(t: &Value) -> Value {
    match t {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), blank(v))).collect()),
        Value::Array(_) => Value::Array(Vec::new()),
        _ => Value::Null,
    }
}

/// Adds the fields of `shape` (a skeleton or a template) that `doc` lacks, as `null`, at
/// every level where both are objects, and in every element of a list when `shape` is a
/// template (a pseudonymized journey keeps the gateway's `firstName`, empty).
fn fill_missing(doc: &mut Value, shape: &Value) {
    match (doc, shape) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(mine) => fill_missing(mine, v),
                    None => {
                        d.insert(k.clone(), blank(v));
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(t)) => {
            if let Some(t0) = t.first() {
                for it in items {
                    fill_missing(it, t0);
                }
            }
        }
        _ => {}
    }
}

/// The skeleton of the territory view (`partners/global-view`).
pub fn global_view() -> Value {
    SHAPES.global_view.clone()
}

/// Sets a field at a path of object keys (the skeleton has every object on the way).
fn put(doc: &mut Value, path: &[&str], v: impl Into<Value>) {
    let mut at = doc;
    for k in &path[..path.len() - 1] {
        if !at[*k].is_object() {
            at[*k] = Value::Object(Map::new());
        }
        at = &mut at[*k];
    }
    at[path[path.len() - 1]] = v.into();
}

/// A frame read by column name.
struct Rows<'a> {
    schema: &'static TableSchema,
    cols: Vec<ColRef<'a>>,
    len: usize,
}

impl<'a> Rows<'a> {
    fn new(schema: &'static TableSchema, df: &'a DataFrame) -> Result<Self, LoadError> {
        Ok(Rows {
            schema,
            cols: cells::columns(schema, df)?,
            len: df.height(),
        })
    }

    fn cell(&self, i: usize, col: &str) -> Cell<'_> {
        let at = self
            .schema
            .columns
            .iter()
            .position(|c| c.name == col)
            .unwrap_or_else(|| panic!("{} has no column {col}", self.schema.name));
        self.cols[at].get(i)
    }

    fn text(&self, i: usize, col: &str) -> Option<String> {
        match self.cell(i, col) {
            Cell::Text(s) => Some(s.to_string()),
            _ => None,
        }
    }

    fn float(&self, i: usize, col: &str) -> Option<f64> {
        match self.cell(i, col) {
            Cell::Float(f) => Some(f),
            Cell::Int(n) => Some(n as f64),
            _ => None,
        }
    }

    fn int(&self, i: usize, col: &str) -> Option<i64> {
        match self.cell(i, col) {
            Cell::Int(n) => Some(n),
            _ => None,
        }
    }

    fn bool(&self, i: usize, col: &str) -> Option<bool> {
        match self.cell(i, col) {
            Cell::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn time(&self, i: usize, col: &str) -> Option<DateTime<Utc>> {
        match self.cell(i, col) {
            Cell::Ts(us) => Utc.timestamp_micros(us).single(),
            _ => None,
        }
    }

    /// Epoch seconds, as the gateway gives `lastReported`.
    fn epoch(&self, i: usize, col: &str) -> Value {
        self.time(i, col).map(|t| t.timestamp()).into()
    }
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map(Into::into).unwrap_or(Value::Null)
}

fn coordinates(lat: f64, lon: f64) -> Value {
    json!({ "lng": lon, "lat": lat, "alt": 0 })
}

/// Who publishes: the partner as the gateway knows it.
#[derive(Debug, Clone)]
pub struct Partner<'a> {
    /// The gateway's partner id.
    pub id: &'a str,
    /// The partner's display name, when the feed gives none.
    pub name: &'a str,
}

/// A run's raw documents, as (resource, bytes), for what the unified tables do not keep:
/// carpooling answers are served as the standard has them (already pseudonymized), and a
/// TOMP operator's stations and assets keep the TOMP fields the gateway serves
/// (addresses, cross streets, shared and overridden asset properties, pricings).
#[derive(Debug, Clone, Copy)]
pub struct RawDocs<'a> {
    pub format: &'a str,
    pub docs: &'a [(&'a str, &'a [u8])],
}

/// The gateway documents of one run: from its unified frames, completed from its raw
/// documents where the gateway serves what the unified tables do not keep.
pub fn build(
    partner: &Partner,
    fetched_at: DateTime<Utc>,
    tables: &[(&'static TableSchema, DataFrame)],
    raw: RawDocs,
) -> Result<Vec<Resource>, LoadError> {
    let tomp = match raw.format {
        "tomp" => Tomp::read(raw.docs),
        _ => Tomp::default(),
    };
    let frame = |name: &str| tables.iter().find(|(s, _)| s.name == name);
    let mut out = Vec::new();
    let doc = |name: &str, v: Value, geo: Option<(&'static str, Vec<Point>)>| Resource {
        name: name.to_string(),
        payload: v.to_string(),
        geo,
    };
    let types = match frame("vehicle_types") {
        Some((s, df)) => vehicle_types(partner, &Rows::new(s, df)?),
        None => BTreeMap::new(),
    };
    if let Some((s, df)) = frame("system_info") {
        let rows = Rows::new(s, df)?;
        if rows.len > 0 {
            out.push(doc("partner", system_info(partner, &rows), None));
        }
    }
    if !types.is_empty() {
        let list: Vec<Value> = types.values().cloned().collect();
        out.push(doc("vehicle-types", Value::Array(list), None));
    }
    if let Some((s, df)) = frame("pricing_plans") {
        let rows = Rows::new(s, df)?;
        out.push(doc("pricing-plans", pricing_plans(&rows), None));
    }
    if let Some((s, df)) = frame("stations") {
        let rows = Rows::new(s, df)?;
        let (mut v, points) = stations(partner, &rows);
        for st in v.as_array_mut().into_iter().flatten() {
            if let Some(r) = st["stationId"]
                .as_str()
                .and_then(|id| tomp.stations.get(id))
            {
                overlay(st, r);
                fill_missing(st, &SHAPES.station_template);
            }
        }
        out.push(doc("stations", v, Some(("stations", points))));
    }
    if let Some((s, df)) = frame("station_status") {
        let rows = Rows::new(s, df)?;
        out.push(doc("stations-status", station_status(partner, &rows), None));
    }
    if let Some((s, df)) = frame("vehicles") {
        let rows = Rows::new(s, df)?;
        let (mut assets, mut grouped, points) = vehicles(partner, &rows, &types);
        for a in assets.as_array_mut().into_iter().flatten() {
            tomp.asset(a);
        }
        for g in grouped.as_array_mut().into_iter().flatten() {
            if let Some(r) = g["assetTypeId"].as_str().and_then(|id| tomp.types.get(id)) {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    // Counted from this run's vehicles, not copied.
                    for k in ["assets", "nrAvailable", "stationId"] {
                        o.remove(k);
                    }
                }
                overlay(g, &r);
            }
            for a in g["assets"].as_array_mut().into_iter().flatten() {
                tomp.asset(a);
            }
            fill_missing(g, &SHAPES.asset_type_template);
        }
        out.push(doc("assets", assets, None));
        out.push(doc("available-assets", grouped, Some(("vehicles", points))));
    }
    if let Some((s, df)) = frame("geofencing_zones") {
        let rows = Rows::new(s, df)?;
        if rows.len > 0 {
            let name = frame("system_info")
                .and_then(|(s, df)| Rows::new(s, df).ok()?.text(0, "name"))
                .unwrap_or_else(|| partner.name.to_string());
            out.push(doc("zones", zones(partner, &name, fetched_at, &rows), None));
        }
    }
    if raw.format == "covoiturage" {
        for (resource, list) in carpool_answers(raw.docs) {
            out.push(doc(&resource, Value::Array(list), None));
        }
    }
    Ok(out)
}

/// Writes the values of `raw` over `doc`, for the fields `doc` has (the gateway's): objects
/// field by field (free-form maps whole), anything else whole; `null`s of `raw`, and values
/// that are not the list or map the gateway has there, change nothing.
fn overlay(doc: &mut Value, raw: &Value) {
    let (Value::Object(d), Value::Object(r)) = (doc, raw) else {
        return;
    };
    for (k, v) in r {
        let Some(mine) = d.get_mut(k) else {
            continue;
        };
        match (&*mine, v) {
            (_, Value::Null) => {}
            (Value::Object(m), Value::Object(_)) if m.is_empty() => *mine = v.clone(),
            (Value::Object(_), Value::Object(_)) => overlay(mine, v),
            (Value::Object(_), _) | (Value::Array(_), _) if !same_kind(mine, v) => {}
            _ => *mine = v.clone(),
        }
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// A TOMP operator's stations, asset types and assets by id, with TOMP's field names
/// turned into the gateway's.
#[derive(Default)]
struct Tomp {
    stations: BTreeMap<String, Value>,
    types: BTreeMap<String, Value>,
    assets: BTreeMap<String, Value>,
}

impl Tomp {
    fn read(docs: &[(&str, &[u8])]) -> Self {
        let mut t = Tomp::default();
        let list = |bytes: &[u8]| match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let renamed = |mut v: Value, names: &[(&str, &str)]| {
            if let Some(o) = v.as_object_mut() {
                for (from, to) in names {
                    if let Some(x) = o.remove(*from) {
                        o.insert(to.to_string(), x);
                    }
                }
            }
            v
        };
        for (resource, bytes) in docs {
            match *resource {
                "stations" => {
                    for st in list(bytes) {
                        if let Some(id) = st["stationId"].as_str() {
                            t.stations.insert(id.to_string(), st.clone());
                        }
                    }
                }
                "available_assets" => {
                    for ty in list(bytes) {
                        for a in ty["assets"].as_array().into_iter().flatten() {
                            let a = renamed(
                                a.clone(),
                                &[
                                    ("id", "assetId"),
                                    ("rentalUrl", "rentalWebUrl"),
                                    ("rentalUrlAndroid", "rentalAndroidUrl"),
                                    ("rentalUrlIOS", "rentalIosUrl"),
                                ],
                            );
                            if let Some(id) = a["assetId"].as_str() {
                                t.assets.insert(id.to_string(), a.clone());
                            }
                        }
                        let ty = renamed(ty, &[("id", "assetTypeId")]);
                        if let Some(id) = ty["assetTypeId"].as_str() {
                            t.types.insert(id.to_string(), ty.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        t
    }

    fn asset(&self, a: &mut Value) {
        if let Some(r) = a["assetId"].as_str().and_then(|id| self.assets.get(id)) {
            let r = r.clone();
            overlay(a, &r);
            fill_missing(a, &SHAPES.asset_template);
        }
    }
}

fn system_info(p: &Partner, rows: &Rows) -> Value {
    let mut d = SHAPES.partner.clone();
    put(&mut d, &["partnerId"], p.id);
    put(&mut d, &["partnerType"], "MSP");
    put(
        &mut d,
        &["name"],
        rows.text(0, "name").unwrap_or_else(|| p.name.into()),
    );
    put(&mut d, &["operator"], opt(rows.text(0, "operator")));
    put(&mut d, &["url"], opt(rows.text(0, "url")));
    d
}

/// Asset types (TOMP `AssetType` without its assets), by vehicle type id.
fn vehicle_types(p: &Partner, rows: &Rows) -> BTreeMap<String, Value> {
    (0..rows.len)
        .filter_map(|i| {
            let id = rows.text(i, "vehicle_type_id")?;
            let mut d = SHAPES.asset_type.clone();
            put(&mut d, &["assetTypeId"], id.as_str());
            put(&mut d, &["partnerId"], p.id);
            let form = rows.text(i, "form_factor").unwrap_or_default();
            put(&mut d, &["assetClass"], vocab::asset_class(&form));
            put(&mut d, &["assetSubClass"], form.as_str());
            put(
                &mut d,
                &["sharedProperties", "name"],
                opt(rows.text(i, "name")),
            );
            put(
                &mut d,
                &["sharedProperties", "propulsion"],
                opt(rows
                    .text(i, "propulsion")
                    .map(|g| vocab::tomp_propulsion(&g))),
            );
            if let Some(m) = rows.float(i, "max_range_m") {
                // TOMP has no range; the gateway's `meta` carries extras.
                put(
                    &mut d,
                    &["sharedProperties", "meta"],
                    json!({ "maxRangeMeters": m }),
                );
            }
            if let Some(plan) = rows.text(i, "default_pricing_plan_id") {
                let mut pr = SHAPES.pricing.clone();
                put(&mut pr, &["planId"], plan);
                put(&mut d, &["applicablePricings"], json!([pr]));
            }
            if let Some(o) = d.as_object_mut() {
                o.remove("assets");
                o.remove("nrAvailable");
                o.remove("stationId");
            }
            Some((id, d))
        })
        .collect()
}

fn pricing_plans(rows: &Rows) -> Value {
    let list = (0..rows.len).map(|i| {
        let mut d = SHAPES.pricing.clone();
        put(&mut d, &["planId"], opt(rows.text(i, "plan_id")));
        put(&mut d, &["name"], opt(rows.text(i, "name")));
        put(&mut d, &["description"], opt(rows.text(i, "description")));
        put(&mut d, &["isTaxable"], opt(rows.bool(i, "is_taxable")));
        let currency = rows.text(i, "currency");
        let mut parts = Vec::new();
        let mut part = |amount: f64, kind: &str, unit: Option<(&str, f64, f64, Option<f64>)>| {
            let mut pt = SHAPES.fare_part.clone();
            put(&mut pt, &["amount"], amount);
            put(&mut pt, &["currencyCode"], opt(currency.clone()));
            put(&mut pt, &["type"], kind);
            if let Some((unit, units, from, to)) = unit {
                put(&mut pt, &["unitType"], unit);
                put(&mut pt, &["units"], units);
                put(&mut pt, &["scaleFrom"], from);
                put(&mut pt, &["scaleTo"], opt(to));
                put(&mut pt, &["scaleType"], unit);
            }
            parts.push(pt);
        };
        part(rows.float(i, "price").unwrap_or(0.0), "FIXED", None);
        for (col, unit) in [("per_min_pricing", "MINUTE"), ("per_km_pricing", "KM")] {
            let segments: Vec<Value> = rows
                .text(i, col)
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            for s in segments {
                let f = |k: &str| s.get(k).and_then(Value::as_f64);
                part(
                    f("rate").unwrap_or(0.0),
                    "FLEX",
                    Some((
                        unit,
                        f("interval").unwrap_or(1.0),
                        f("start").unwrap_or(0.0),
                        f("end"),
                    )),
                );
            }
        }
        put(&mut d, &["fare", "parts"], Value::Array(parts));
        d
    });
    Value::Array(list.collect())
}

fn stations(p: &Partner, rows: &Rows) -> (Value, Vec<Point>) {
    let mut points = Vec::new();
    let list = (0..rows.len)
        .map(|i| {
            let mut d = SHAPES.station.clone();
            let id = rows.text(i, "station_id").unwrap_or_default();
            let (lat, lon) = (rows.float(i, "lat"), rows.float(i, "lon"));
            put(&mut d, &["partnerId"], p.id);
            put(&mut d, &["stationId"], id.as_str());
            put(&mut d, &["name"], opt(rows.text(i, "name")));
            if let (Some(lat), Some(lon)) = (lat, lon) {
                put(&mut d, &["coordinates"], coordinates(lat, lon));
                points.push(Point {
                    id: id.clone(),
                    lat,
                    lon,
                });
            }
            match rows.text(i, "address") {
                Some(a) => put(&mut d, &["physicalAddress", "streetAddress"], a),
                None => put(&mut d, &["physicalAddress"], Value::Null),
            }
            put(&mut d, &["regionId"], opt(rows.text(i, "region_id")));
            let methods: Vec<Value> = rows
                .text(i, "rental_methods")
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::from(s.to_uppercase()))
                        .collect()
                })
                .unwrap_or_default();
            put(&mut d, &["rentalMethods"], Value::Array(methods));
            put(
                &mut d,
                &["isVirtualStation"],
                opt(rows.bool(i, "is_virtual")),
            );
            put(&mut d, &["capacity"], opt(rows.int(i, "capacity")));
            d
        })
        .collect();
    (Value::Array(list), points)
}

fn station_status(p: &Partner, rows: &Rows) -> Value {
    // One snapshot per station: the latest of the run.
    let mut latest: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..rows.len {
        let id = rows.text(i, "station_id").unwrap_or_default();
        match latest.get(&id) {
            Some(&j) if rows.time(j, "observed_at") >= rows.time(i, "observed_at") => {}
            _ => {
                latest.insert(id, i);
            }
        }
    }
    let list = latest
        .into_iter()
        .map(|(id, i)| {
            let mut d = SHAPES.station_status.clone();
            put(&mut d, &["partnerId"], p.id);
            put(&mut d, &["stationId"], id);
            put(
                &mut d,
                &["numAssetsAvailable"],
                opt(rows.int(i, "vehicles_available")),
            );
            let per_type: BTreeMap<String, i64> = rows
                .text(i, "vehicle_types_available")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            if let Some((t, n)) = per_type.iter().next() {
                put(&mut d, &["vehicleTypeId"], t.as_str());
                put(&mut d, &["count"], *n);
            }
            if !per_type.is_empty() {
                let list: Vec<Value> = per_type
                    .iter()
                    .map(|(t, n)| json!({ "vehicleTypeId": t, "count": n }))
                    .collect();
                put(&mut d, &["numAssetsAvailableType"], Value::Array(list));
            }
            put(
                &mut d,
                &["numAssetsDisabled"],
                opt(rows.int(i, "vehicles_disabled")),
            );
            put(
                &mut d,
                &["numDocksAvailable"],
                opt(rows.int(i, "docks_available")),
            );
            put(
                &mut d,
                &["numDocksDisabled"],
                opt(rows.int(i, "docks_disabled")),
            );
            put(&mut d, &["isInstalled"], opt(rows.bool(i, "is_installed")));
            put(&mut d, &["isRenting"], opt(rows.bool(i, "is_renting")));
            put(&mut d, &["isReturning"], opt(rows.bool(i, "is_returning")));
            put(&mut d, &["lastReported"], rows.epoch(i, "last_reported"));
            d
        })
        .collect();
    Value::Array(list)
}

/// Vehicles as the gateway's flat asset list and grouped by asset type (available assets).
fn vehicles(
    p: &Partner,
    rows: &Rows,
    types: &BTreeMap<String, Value>,
) -> (Value, Value, Vec<Point>) {
    let mut points = Vec::new();
    let mut flat = Vec::new();
    let mut groups: BTreeMap<(String, String), (Vec<Value>, i64)> = BTreeMap::new();
    for i in 0..rows.len {
        let id = rows.text(i, "vehicle_id").unwrap_or_default();
        let vtype = rows.text(i, "vehicle_type_id");
        let station = rows.text(i, "station_id");
        let reserved = rows.bool(i, "is_reserved");
        let disabled = rows.bool(i, "is_disabled");
        let mut a = SHAPES.asset.clone();
        put(&mut a, &["partnerId"], p.id);
        put(&mut a, &["assetId"], id.as_str());
        put(&mut a, &["assetType"], opt(vtype.clone()));
        put(&mut a, &["isReserved"], opt(reserved));
        put(&mut a, &["isDisabled"], opt(disabled));
        put(&mut a, &["homeStationId"], opt(station.clone()));
        put(&mut a, &["lastReported"], rows.epoch(i, "last_reported"));
        put(&mut a, &["planId"], opt(rows.text(i, "pricing_plan_id")));
        if let (Some(lat), Some(lon)) = (rows.float(i, "lat"), rows.float(i, "lon")) {
            put(
                &mut a,
                &["overriddenProperties", "location", "coordinates"],
                coordinates(lat, lon),
            );
            put(
                &mut a,
                &["overriddenProperties", "location", "stationId"],
                opt(station.clone()),
            );
            points.push(Point {
                id: id.clone(),
                lat,
                lon,
            });
        }
        if let Some(f) = rows.float(i, "fuel_percent") {
            put(
                &mut a,
                &["overriddenProperties", "stateOfCharge"],
                (f * 100.0).round() as i64,
            );
        }
        if let Some(t) = vtype.as_ref().and_then(|t| types.get(t)) {
            put(
                &mut a,
                &["overriddenProperties", "propulsion"],
                t["sharedProperties"]["propulsion"].clone(),
            );
        }
        let available = reserved != Some(true) && disabled != Some(true);
        let g = groups
            .entry((vtype.unwrap_or_default(), station.unwrap_or_default()))
            .or_default();
        g.0.push(a.clone());
        g.1 += available as i64;
        flat.push(a);
    }
    let grouped = groups
        .into_iter()
        .map(|((vtype, station), (assets, available))| {
            let mut d = SHAPES.asset_type.clone();
            if let Some(t) = types.get(&vtype) {
                for (k, v) in t.as_object().into_iter().flatten() {
                    d[k.as_str()] = v.clone();
                }
            }
            put(
                &mut d,
                &["assetTypeId"],
                if vtype.is_empty() {
                    Value::Null
                } else {
                    vtype.into()
                },
            );
            put(&mut d, &["partnerId"], p.id);
            put(
                &mut d,
                &["stationId"],
                if station.is_empty() {
                    Value::Null
                } else {
                    station.into()
                },
            );
            put(&mut d, &["nrAvailable"], available);
            put(&mut d, &["assets"], Value::Array(assets));
            d
        })
        .collect();
    (Value::Array(flat), Value::Array(grouped), points)
}

/// The gateway's zone type of a GBFS zone's rules: speed limits, parking bans,
/// preferred (station) parking, or plain operating area.
fn zone_type(rules: &Value) -> &'static str {
    let rules = rules.as_array().cloned().unwrap_or_default();
    let any = |f: &dyn Fn(&Value) -> bool| rules.iter().any(f);
    if any(&|r| r.get("maximum_speed_kph").is_some_and(|v| !v.is_null())) {
        "SPEED_LIMIT"
    } else if any(&|r| {
        r.get("ride_end_allowed") == Some(&Value::Bool(false))
            || r.get("ride_allowed") == Some(&Value::Bool(false))
    }) {
        "NO_PARKING"
    } else if any(&|r| r.get("station_parking") == Some(&Value::Bool(true))) {
        "PREFERENTIAL_PARKING"
    } else {
        "OPERATING"
    }
}

fn zones(p: &Partner, name: &str, fetched_at: DateTime<Utc>, rows: &Rows) -> Value {
    let mut d = SHAPES.zones.clone();
    put(&mut d, &["partnerId"], p.id);
    put(&mut d, &["partner"], name);
    put(&mut d, &["status"], "AVAILABLE");
    put(
        &mut d,
        &["updateDate"],
        fetched_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    );
    let list = (0..rows.len)
        .map(|i| {
            let mut z = SHAPES.zone.clone();
            let rules: Value = rows
                .text(i, "rules")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            put(&mut z, &["zoneType"], zone_type(&rules));
            let iso = |t: Option<DateTime<Utc>>| opt(t.map(|t| t.to_rfc3339()));
            put(
                &mut z,
                &["validityStartDate"],
                iso(rows.time(i, "starts_at")),
            );
            put(&mut z, &["validityEndDate"], iso(rows.time(i, "ends_at")));
            let geometry: Value = rows
                .text(i, "geometry")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            put(&mut z, &["geometry"], geometry);
            z
        })
        .collect();
    put(&mut d, &["zones"], Value::Array(list));
    d
}

/// The carpooling standard's answers of a run, merged per endpoint (one resource each:
/// `driver-journeys`, …), a journey found by several searches listed once.
fn carpool_answers(carpool: &[(&str, &[u8])]) -> Vec<(String, Vec<Value>)> {
    let mut out: BTreeMap<String, (Vec<Value>, std::collections::HashSet<String>)> =
        BTreeMap::new();
    for (resource, bytes) in carpool {
        let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(bytes) else {
            continue;
        };
        let name = resource.replace('_', "-");
        let shape = SHAPES
            .carpool
            .iter()
            .find(|(r, _)| *r == name)
            .map(|(_, s)| s);
        let (list, seen) = out.entry(name).or_default();
        for mut it in items {
            if let Some(shape) = shape {
                fill_missing(&mut it, shape);
            }
            let id = it.get("id").map(Value::to_string).unwrap_or_default();
            if id.is_empty() || seen.insert(id) {
                list.push(it);
            }
        }
    }
    out.into_iter().map(|(k, (v, _))| (k, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeleton_keeps_every_field_and_drops_values() {
        let v = json!({"a": 1, "b": {"c": "x", "d": [1, 2]}, "m": {"additionalProp1": {}}});
        assert_eq!(
            skeleton(&v),
            json!({"a": null, "b": {"c": null, "d": []}, "m": {}})
        );
    }

    #[test]
    fn zone_types_follow_the_rules() {
        assert_eq!(
            zone_type(&json!([{"maximum_speed_kph": 10}])),
            "SPEED_LIMIT"
        );
        assert_eq!(
            zone_type(&json!([{"ride_end_allowed": false}])),
            "NO_PARKING"
        );
        assert_eq!(
            zone_type(&json!([{"station_parking": true}])),
            "PREFERENTIAL_PARKING"
        );
        assert_eq!(zone_type(&Value::Null), "OPERATING");
    }

    #[test]
    fn carpool_answers_are_merged_per_endpoint_once_per_journey() {
        let a = br#"[{"id":"j1","x":1},{"id":"j2"}]"#;
        let b = br#"[{"id":"j2"},{"id":"j3"}]"#;
        let out = carpool_answers(&[("driver_journeys", a), ("driver_journeys", b)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "driver-journeys");
        let ids: Vec<_> = out[0].1.iter().map(|v| v["id"].clone()).collect();
        assert_eq!(ids, vec![json!("j1"), json!("j2"), json!("j3")]);
    }
}
