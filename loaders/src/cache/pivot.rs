//! The gateway's pivot format: unified frames (and, for carpooling, the pseudonymized
//! standard answers) to the documents the Mon Compte Mobilité gateway serves to MaaS apps.
//!
//! The shapes are the gateway's own: a document is built sparse (only what the feed gives)
//! and written out against the template of the gateway's payload
//! (`fixtures/mcm-gateway/gateway-api__mock__*.json`): every field the gateway serves is
//! present, in the gateway's kind (map, list, value), `null` or empty until known, and no
//! other field is written. Writing straight from the template, rather than filling a full
//! tree per record, keeps a fleet of thousands of vehicles cheap to publish.

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

/// A document's template: the gateway's fields, in order, with their keys pre-encoded.
#[derive(Debug, Clone)]
pub enum Template {
    /// A value of the gateway's (text, number, boolean or `null` in its example).
    Leaf,
    /// A free-form map (`additionalProp…` in the gateway's OpenAPI examples): written whole.
    Free,
    Object(Vec<Field>),
    /// A list, with the template of its elements when the gateway's example has one.
    List(Option<Box<Template>>),
}

#[derive(Debug, Clone)]
pub struct Field {
    name: String,
    /// `"name":`, JSON-encoded.
    key: Vec<u8>,
    template: Template,
    /// The field written empty (`null`, `[]`, `{}` or a map of those), ready to copy.
    blank: Vec<u8>,
}

impl Template {
    /// The template of a gateway example document.
    pub fn of(v: &Value) -> Template {
        match v {
            Value::Object(m)
                if !m.is_empty() && m.keys().all(|k| k.starts_with("additionalProp")) =>
            {
                Template::Free
            }
            Value::Object(m) => Template::Object(
                m.iter()
                    .map(|(k, v)| {
                        let template = Template::of(v);
                        let mut blank = Vec::new();
                        template.write_blank(&mut blank);
                        Field {
                            name: k.clone(),
                            key: format!("{}:", Value::from(k.as_str())).into_bytes(),
                            template,
                            blank,
                        }
                    })
                    .collect(),
            ),
            Value::Array(a) => Template::List(a.first().map(|e| Box::new(Template::of(e)))),
            _ => Template::Leaf,
        }
    }

    fn field(&self, name: &str) -> Option<&Template> {
        match self {
            Template::Object(fields) => fields.iter().find(|f| f.name == name).map(|f| &f.template),
            _ => None,
        }
    }

    /// The template without some fields (an asset type without its assets).
    fn without(&self, names: &[&str]) -> Template {
        match self {
            Template::Object(fields) => Template::Object(
                fields
                    .iter()
                    .filter(|f| !names.contains(&f.name.as_str()))
                    .cloned()
                    .collect(),
            ),
            t => t.clone(),
        }
    }

    /// Writes the template's fields empty: `null`, `[]`, `{}`.
    fn write_blank(&self, out: &mut Vec<u8>) {
        match self {
            Template::Leaf => out.extend_from_slice(b"null"),
            Template::Free => out.extend_from_slice(b"{}"),
            Template::List(_) => out.extend_from_slice(b"[]"),
            Template::Object(fields) => {
                out.push(b'{');
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&f.key);
                    out.extend_from_slice(&f.blank);
                }
                out.push(b'}');
            }
        }
    }

    /// Writes `v` in the template's shape: every field of the template (from `v` when it has
    /// it, empty otherwise), nothing else; a value of another kind than the template's map or
    /// list is written empty; an explicit `null` stays `null`.
    pub fn write(&self, out: &mut Vec<u8>, v: Option<&Value>) {
        let write_value = |out: &mut Vec<u8>, v: &Value| {
            serde_json::to_writer(&mut *out, v).expect("JSON values serialize");
        };
        match (self, v) {
            (_, None) => self.write_blank(out),
            (_, Some(Value::Null)) => out.extend_from_slice(b"null"),
            (Template::Leaf, Some(v)) => write_value(out, v),
            (Template::Free, Some(v @ Value::Object(_))) => write_value(out, v),
            (Template::Object(fields), Some(Value::Object(m))) => {
                out.push(b'{');
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&f.key);
                    match m.get(&f.name) {
                        None => out.extend_from_slice(&f.blank),
                        v => f.template.write(out, v),
                    }
                }
                out.push(b'}');
            }
            (Template::List(element), Some(Value::Array(items))) => {
                out.push(b'[');
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    match element {
                        Some(t) => t.write(out, Some(it)),
                        None => write_value(out, it),
                    }
                }
                out.push(b']');
            }
            _ => self.write_blank(out),
        }
    }

    /// The document `v` written in this shape.
    pub fn render(&self, v: &Value) -> String {
        let mut out = Vec::with_capacity(256);
        self.write(&mut out, Some(v));
        String::from_utf8(out).expect("JSON is UTF-8")
    }
}

/// The gateway's documents, as templates.
struct Shapes {
    stations: Template,
    station: Template,
    stations_status: Template,
    assets: Template,
    asset: Template,
    available_assets: Template,
    asset_type: Template,
    vehicle_types: Template,
    pricing_plans: Template,
    zones: Template,
    partner: Template,
    global_view: Value,
    /// The carpooling standard's answers, per endpoint (resource name), as lists.
    carpool: Vec<(&'static str, Template)>,
}

static SHAPES: LazyLock<Shapes> = LazyLock::new(|| {
    let list = |text: &str| -> Value {
        match serde_json::from_str(text).expect("the gateway's shapes are JSON") {
            a @ Value::Array(_) => a,
            v => Value::Array(vec![v]),
        }
    };
    let available = list(include_str!(
        "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerAvailableAssetsMock.json"
    ));
    let stations = list(include_str!(
        "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerStationsMock.json"
    ));
    let assets = list(include_str!(
        "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerAssetsMock.json"
    ));
    let pricing = Value::Array(vec![available[0]["applicablePricings"][0].clone()]);
    let asset_type = Template::of(&available[0]);
    Shapes {
        station: Template::of(&stations[0]),
        stations: Template::of(&stations),
        stations_status: Template::of(&list(include_str!(
            "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerStationsStatusMock.json"
        ))),
        asset: Template::of(&assets[0]),
        assets: Template::of(&assets),
        available_assets: Template::of(&available),
        vehicle_types: Template::List(Some(Box::new(asset_type.without(&[
            "assets",
            "nrAvailable",
            "stationId",
        ])))),
        asset_type,
        pricing_plans: Template::of(&pricing),
        zones: Template::of(&shape(include_str!(
            "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnerZoneMock.json"
        ))),
        partner: Template::of(&shape(include_str!(
            "../../../fixtures/mcm-gateway/gateway-api__mock__getPartnersMock.json"
        ))),
        global_view: skeleton(&shape(include_str!(
            "../../../fixtures/mcm-gateway/gateway-api__mock__getGlobalViewMock.json"
        ))),
        carpool: vec![
            (
                "driver-journeys",
                Template::of(&list(include_str!(
                    "../../../fixtures/mcm-gateway/gateway-api__mock__getDriverJourneys.json"
                ))),
            ),
            (
                "passenger-journeys",
                Template::of(&list(include_str!(
                    "../../../fixtures/mcm-gateway/gateway-api__mock__getPassengerJourneys.json"
                ))),
            ),
            (
                "driver-regular-trips",
                Template::of(&list(include_str!(
                    "../../../fixtures/mcm-gateway/gateway-api__mock__getDriverRegularTrip.json"
                ))),
            ),
            (
                "passenger-regular-trips",
                Template::of(&list(include_str!(
                    "../../../fixtures/mcm-gateway/gateway-api__mock__getPassengerRegularTrip.json"
                ))),
            ),
        ],
    }
});

/// Every field of a document, `null`; lists empty; free-form maps (`additionalProp…`
/// placeholders of the gateway's OpenAPI examples) empty maps: its template written blank.
pub fn skeleton(v: &Value) -> Value {
    let mut out = Vec::new();
    Template::of(v).write_blank(&mut out);
    serde_json::from_slice(&out).expect("a blank document is JSON")
}

/// The skeleton of the territory view (`partners/global-view`).
pub fn global_view() -> Value {
    SHAPES.global_view.clone()
}

/// Sets a field at a path of object keys, making the maps on the way.
fn put(doc: &mut Value, path: &[&str], v: impl Into<Value>) {
    if !doc.is_object() {
        *doc = obj();
    }
    let mut at = doc;
    for k in &path[..path.len() - 1] {
        if !at[*k].is_object() {
            at[*k] = Value::Object(Map::new());
        }
        at = &mut at[*k];
    }
    at[path[path.len() - 1]] = v.into();
}

/// An empty (sparse) document.
fn obj() -> Value {
    Value::Object(Map::new())
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
    let doc = |name: &str, shape: &Template, v: Value, geo: Option<(&'static str, Vec<Point>)>| {
        Resource {
            name: name.to_string(),
            payload: shape.render(&v),
            geo,
        }
    };
    let sh = &*SHAPES;
    let types = match frame("vehicle_types") {
        Some((s, df)) => vehicle_types(partner, &Rows::new(s, df)?),
        None => BTreeMap::new(),
    };
    if let Some((s, df)) = frame("system_info") {
        let rows = Rows::new(s, df)?;
        if rows.len > 0 {
            out.push(doc(
                "partner",
                &sh.partner,
                system_info(partner, &rows),
                None,
            ));
        }
    }
    if !types.is_empty() {
        let list: Vec<Value> = types.values().cloned().collect();
        out.push(doc(
            "vehicle-types",
            &sh.vehicle_types,
            Value::Array(list),
            None,
        ));
    }
    if let Some((s, df)) = frame("pricing_plans") {
        let rows = Rows::new(s, df)?;
        out.push(doc(
            "pricing-plans",
            &sh.pricing_plans,
            pricing_plans(&rows),
            None,
        ));
    }
    if let Some((s, df)) = frame("stations") {
        let rows = Rows::new(s, df)?;
        let (mut v, points) = stations(partner, &rows);
        for st in v.as_array_mut().into_iter().flatten() {
            if let Some(r) = st["stationId"]
                .as_str()
                .and_then(|id| tomp.stations.get(id))
            {
                overlay(st, r, &sh.station);
            }
        }
        out.push(doc("stations", &sh.stations, v, Some(("stations", points))));
    }
    if let Some((s, df)) = frame("station_status") {
        let rows = Rows::new(s, df)?;
        out.push(doc(
            "stations-status",
            &sh.stations_status,
            station_status(partner, &rows),
            None,
        ));
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
                overlay(g, &r, &sh.asset_type);
            }
            for a in g["assets"].as_array_mut().into_iter().flatten() {
                tomp.asset(a);
            }
        }
        out.push(doc("assets", &sh.assets, assets, None));
        out.push(doc(
            "available-assets",
            &sh.available_assets,
            grouped,
            Some(("vehicles", points)),
        ));
    }
    if let Some((s, df)) = frame("geofencing_zones") {
        let rows = Rows::new(s, df)?;
        if rows.len > 0 {
            let name = frame("system_info")
                .and_then(|(s, df)| Rows::new(s, df).ok()?.text(0, "name"))
                .unwrap_or_else(|| partner.name.to_string());
            out.push(doc(
                "zones",
                &sh.zones,
                zones(partner, &name, fetched_at, &rows),
                None,
            ));
        }
    }
    if raw.format == "covoiturage" {
        for (resource, list) in carpool_answers(raw.docs) {
            let shape = sh.carpool.iter().find(|(r, _)| *r == resource);
            let payload = match shape {
                Some((_, t)) => t.render(&Value::Array(list)),
                None => Value::Array(list).to_string(),
            };
            out.push(Resource {
                name: resource,
                payload,
                geo: None,
            });
        }
    }
    Ok(out)
}

/// Writes the values of `raw` over `doc`, for the fields the gateway serves (`shape`'s):
/// maps field by field (free-form maps whole), anything else whole; `null`s of `raw`, and
/// values that are not the list or map the gateway has there, change nothing.
fn overlay(doc: &mut Value, raw: &Value, shape: &Template) {
    let Value::Object(r) = raw else {
        return;
    };
    if !doc.is_object() {
        *doc = obj();
    }
    let d = doc.as_object_mut().expect("a map");
    for (k, v) in r {
        let Some(t) = shape.field(k) else {
            continue;
        };
        match (t, v) {
            (_, Value::Null) => {}
            (Template::Free, Value::Object(_)) | (Template::Leaf, _) => {
                d.insert(k.clone(), v.clone());
            }
            (Template::Object(_), Value::Object(_)) => {
                overlay(d.entry(k.clone()).or_insert_with(obj), v, t);
            }
            (Template::List(_), Value::Array(_)) => {
                d.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
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
            overlay(a, &r, &SHAPES.asset);
        }
    }
}

fn system_info(p: &Partner, rows: &Rows) -> Value {
    let mut d = obj();
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
            let mut d = obj();
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
                let mut pr = obj();
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
        let mut d = obj();
        put(&mut d, &["planId"], opt(rows.text(i, "plan_id")));
        put(&mut d, &["name"], opt(rows.text(i, "name")));
        put(&mut d, &["description"], opt(rows.text(i, "description")));
        put(&mut d, &["isTaxable"], opt(rows.bool(i, "is_taxable")));
        let currency = rows.text(i, "currency");
        let mut parts = Vec::new();
        let mut part = |amount: f64, kind: &str, unit: Option<(&str, f64, f64, Option<f64>)>| {
            let mut pt = obj();
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
            let mut d = obj();
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
            let mut d = obj();
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
        let mut a = obj();
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
            let mut d = obj();
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
    let mut d = obj();
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
            let mut z = obj();
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
        let (list, seen) = out.entry(resource.replace('_', "-")).or_default();
        for it in items {
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
    fn a_sparse_document_is_written_in_the_gateways_shape() {
        let example = json!({
            "id": "x", "n": 1, "loc": {"lat": 0, "lng": 0}, "tags": ["a"],
            "items": [{"k": 1, "v": "s"}], "meta": {"additionalProp1": {}}
        });
        let t = Template::of(&example);
        // Only what is known; an unknown field is dropped; a string where the gateway has a
        // map is left out; an explicit null stays null.
        let sparse = json!({
            "id": "y", "loc": {"lat": 45.5}, "items": [{"v": "w", "extra": 1}, {}],
            "meta": {"free": true}, "tags": "not a list", "n": null, "other": 3
        });
        let written: Value = serde_json::from_str(&t.render(&sparse)).unwrap();
        assert_eq!(
            written,
            json!({
                "id": "y", "n": null, "loc": {"lat": 45.5, "lng": null}, "tags": [],
                "items": [{"k": null, "v": "w"}, {"k": null, "v": null}], "meta": {"free": true}
            })
        );
        assert_eq!(
            serde_json::from_str::<Value>(&t.render(&json!({}))).unwrap(),
            json!({"id": null, "n": null, "loc": {"lat": null, "lng": null}, "tags": [], "items": [], "meta": {}})
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
