//! The rollups behind the statistics views, kept up to date by the loaders: each snapshot
//! load adds what its new rows change, in the load's own transaction, so an analyst's query
//! reads thousands of hourly or daily rows instead of scanning millions of snapshots.
//!
//! Both warehouses use the same deltas ([`Delta`]): key cells plus additive sums, written
//! with `INSERT … ON CONFLICT (key) DO UPDATE SET sum = sum + excluded.sum` (PostgreSQL
//! appends the hourly ones to `*_pending` tables, folded into their keys later: [`HOURLY`]
//! and `Warehouse::fold_rollups`). Only snapshots
//! new to the warehouse are counted (a replayed snapshot adds nothing), so the rollups stay
//! equal to an aggregation of the snapshot tables.
//!
//! - fleet availability (`vehicles`): per partner, hour or day, vehicle type and area (a
//!   0.01° grid cell, about 1 km), the vehicles seen, available (neither reserved nor
//!   disabled), reserved and disabled, summed over snapshots; and the snapshots taken per
//!   partner and hour or day, to average by.
//! - station occupancy (`station_status`): per station and hour or day, the samples and
//!   the vehicles and docks available summed over them; and how long the station was empty,
//!   full or not renting, from each sample to the next (a gap over [`MAX_GAP_US`] is no
//!   data), split at hour boundaries. The last sample of each station is kept
//!   (`station_last_status`) so the interval to the next load's first sample counts too.

use std::collections::{BTreeMap, HashMap};

use mobiflux_model::TableSchema;

use crate::cells::{Cell, ColRef};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;
/// Longer than this between two samples of a station, and the time between is not counted.
pub const MAX_GAP_US: i64 = 15 * 60 * 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Text,
    /// UTC microseconds (start of the hour or day).
    Ts,
}

/// A rollup table: its key columns and its additive columns (all `double precision`).
#[derive(Debug)]
pub struct RollupTable {
    pub name: &'static str,
    pub keys: &'static [(&'static str, KeyType)],
    pub sums: &'static [&'static str],
    /// A daily table: the hourly table whose rows sum to its rows. In PostgreSQL, loads add
    /// to a daily row only once its UTC day is closed (`rollup_days`); an open day is read
    /// from the hourly rows, and closing it writes its daily rows from them once.
    pub daily_of: Option<&'static RollupTable>,
}

impl RollupTable {
    /// Its key columns.
    pub fn key_names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.0).collect()
    }

    /// Its key columns, then its sums.
    pub fn columns(&self) -> Vec<&'static str> {
        let mut all = self.key_names();
        all.extend_from_slice(self.sums);
        all
    }

    /// `ON CONFLICT (key) DO UPDATE SET s = {table}.s + EXCLUDED.s` for each sum: an insert
    /// into `table` (this table, or one with its columns) that adds to the rows it meets.
    /// The same in PostgreSQL and SQLite.
    pub fn adding_into(&self, table: &str) -> String {
        let sets: Vec<String> = self
            .sums
            .iter()
            .map(|s| format!("{s} = {table}.{s} + EXCLUDED.{s}"))
            .collect();
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {}",
            self.key_names().join(", "),
            sets.join(", ")
        )
    }
}

const FLEET_KEYS: &[(&str, KeyType)] = &[
    ("partner", KeyType::Text),
    ("period", KeyType::Ts),
    ("vehicle_type_id", KeyType::Text),
    ("area", KeyType::Text),
];
const FLEET_SUMS: &[&str] = &["vehicles", "available", "reserved", "disabled"];
const SNAPSHOT_KEYS: &[(&str, KeyType)] = &[("partner", KeyType::Text), ("period", KeyType::Ts)];
const STATION_KEYS: &[(&str, KeyType)] = &[
    ("partner", KeyType::Text),
    ("station_id", KeyType::Text),
    ("period", KeyType::Ts),
];
const STATION_SUMS: &[&str] = &[
    "samples",
    "vehicles_available",
    "docks_available",
    "observed_s",
    "empty_s",
    "full_s",
    "not_renting_s",
];

pub const FLEET_HOURLY: RollupTable = RollupTable {
    name: "fleet_availability_hourly",
    keys: FLEET_KEYS,
    sums: FLEET_SUMS,
    daily_of: None,
};
pub const FLEET_DAILY: RollupTable = RollupTable {
    name: "fleet_availability_daily",
    keys: FLEET_KEYS,
    sums: FLEET_SUMS,
    daily_of: Some(&FLEET_HOURLY),
};
pub const SNAPSHOTS_HOURLY: RollupTable = RollupTable {
    name: "fleet_snapshots_hourly",
    keys: SNAPSHOT_KEYS,
    sums: &["snapshots"],
    daily_of: None,
};
pub const SNAPSHOTS_DAILY: RollupTable = RollupTable {
    name: "fleet_snapshots_daily",
    keys: SNAPSHOT_KEYS,
    sums: &["snapshots"],
    daily_of: Some(&SNAPSHOTS_HOURLY),
};
pub const STATIONS_HOURLY: RollupTable = RollupTable {
    name: "station_occupancy_hourly",
    keys: STATION_KEYS,
    sums: STATION_SUMS,
    daily_of: None,
};
pub const STATIONS_DAILY: RollupTable = RollupTable {
    name: "station_occupancy_daily",
    keys: STATION_KEYS,
    sums: STATION_SUMS,
    daily_of: Some(&STATIONS_HOURLY),
};
/// Station occupancy per partner and hour, all stations together (the heat map's source:
/// a few rows per hour instead of one per station).
pub const PARTNER_STATIONS_HOURLY: RollupTable = RollupTable {
    name: "station_occupancy_partner_hourly",
    keys: SNAPSHOT_KEYS,
    sums: STATION_SUMS,
    daily_of: None,
};

/// The hourly tables. In PostgreSQL, loads append their rows to `{name}_pending` (one row
/// of arrays per load and partner), folded into `{name}_folded` now and then; `{name}` is
/// the view of both (migrations 13 and 15).
pub const HOURLY: &[&RollupTable] = &[
    &FLEET_HOURLY,
    &SNAPSHOTS_HOURLY,
    &STATIONS_HOURLY,
    &PARTNER_STATIONS_HOURLY,
];

/// The daily tables, each summed from its hourly table (`RollupTable::daily_of`).
pub const DAILY: &[&RollupTable] = &[&FLEET_DAILY, &SNAPSHOTS_DAILY, &STATIONS_DAILY];

/// Every rollup table (the migrations create them; a test checks the columns).
#[cfg(test)]
pub const ALL: &[&RollupTable] = &[
    &FLEET_HOURLY,
    &FLEET_DAILY,
    &SNAPSHOTS_HOURLY,
    &SNAPSHOTS_DAILY,
    &STATIONS_HOURLY,
    &STATIONS_DAILY,
    &PARTNER_STATIONS_HOURLY,
];

#[derive(Debug, Clone, PartialEq, PartialOrd, Eq, Ord, Hash)]
pub enum Key {
    Text(String),
    Ts(i64),
}

/// What one load adds to one rollup table.
#[derive(Debug)]
pub struct Delta {
    pub table: &'static RollupTable,
    pub rows: BTreeMap<Vec<Key>, Vec<f64>>,
}

impl Delta {
    fn new(table: &'static RollupTable) -> Self {
        Delta {
            table,
            rows: BTreeMap::new(),
        }
    }

    fn add(&mut self, key: Vec<Key>, values: &[f64]) {
        let sums = self
            .rows
            .entry(key)
            .or_insert_with(|| vec![0.0; self.table.sums.len()]);
        for (s, v) in sums.iter_mut().zip(values) {
            *s += v;
        }
    }
}

/// A station's last sample: when, and whether it was empty, full or renting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub observed_at: i64,
    pub empty: bool,
    pub full: bool,
    pub renting: bool,
}

/// The tables a frame of `schema` feeds.
pub fn feeds(schema: &TableSchema) -> bool {
    matches!(schema.name, "vehicles" | "station_status")
}

fn index(schema: &TableSchema, name: &str) -> usize {
    schema
        .columns
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("{} has no column {name}", schema.name))
}

fn text(c: Cell<'_>) -> Option<&str> {
    match c {
        Cell::Text(s) => Some(s),
        _ => None,
    }
}
fn int(c: Cell<'_>) -> Option<i64> {
    match c {
        Cell::Int(v) => Some(v),
        _ => None,
    }
}
fn float(c: Cell<'_>) -> Option<f64> {
    match c {
        Cell::Float(v) => Some(v),
        _ => None,
    }
}
fn flag(c: Cell<'_>) -> Option<bool> {
    match c {
        Cell::Bool(v) => Some(v),
        _ => None,
    }
}
fn ts(c: Cell<'_>) -> Option<i64> {
    match c {
        Cell::Ts(v) => Some(v),
        _ => None,
    }
}

fn floor(t: i64, unit: i64) -> i64 {
    t.div_euclid(unit) * unit
}

/// The 0.01° cell of a position, in hundredths of a degree (its south-west corner).
fn area_cell(lat: Option<f64>, lon: Option<f64>) -> Option<(i64, i64)> {
    match (lat, lon) {
        (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => {
            let cell = |v: f64| (v * 100.0).floor() as i64;
            Some((cell(lat), cell(lon)))
        }
        _ => None,
    }
}

/// The area of a cell: its south-west corner, `"45.76,4.83"`; empty when the vehicle has
/// no position (docked at a station that gives none).
fn area_text(cell: Option<(i64, i64)>) -> String {
    match cell {
        Some((lat, lon)) => format!("{:.2},{:.2}", lat as f64 / 100.0, lon as f64 / 100.0),
        None => String::new(),
    }
}

/// The snapshot times (`observed_at`) of a frame, each once.
pub fn observed(schema: &TableSchema, cols: &[ColRef<'_>], height: usize) -> Vec<i64> {
    let c = &cols[index(schema, "observed_at")];
    let mut all: Vec<i64> = (0..height).filter_map(|i| ts(c.get(i))).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The rows of a frame whose snapshot (`observed_at`) is new to the warehouse.
fn new_rows<'a>(
    observed: &'a ColRef<'a>,
    height: usize,
    is_new: &'a dyn Fn(i64) -> bool,
) -> impl Iterator<Item = (usize, i64)> + 'a {
    (0..height).filter_map(move |i| ts(observed.get(i)).filter(|t| is_new(*t)).map(|t| (i, t)))
}

/// Fleet availability deltas of a `vehicles` frame.
pub fn fleet(
    schema: &TableSchema,
    cols: &[ColRef<'_>],
    height: usize,
    is_new: &dyn Fn(i64) -> bool,
) -> Vec<Delta> {
    let at = |name| &cols[index(schema, name)];
    let (partner, observed, vtype) = (at("partner"), at("observed_at"), at("vehicle_type_id"));
    let (lat, lon) = (at("lat"), at("lon"));
    let (reserved, disabled) = (at("is_reserved"), at("is_disabled"));
    // Summed on borrowed keys first: a frame's thousands of vehicles fall in a few groups.
    type Group<'k> = (&'k str, i64, &'k str, Option<(i64, i64)>);
    let mut groups: HashMap<Group, [f64; 4]> = HashMap::new();
    let mut snapshots: std::collections::BTreeSet<(&str, i64)> = Default::default();
    for (i, t) in new_rows(observed, height, is_new) {
        let p = text(partner.get(i)).unwrap_or_default();
        let r = flag(reserved.get(i)) == Some(true);
        let d = flag(disabled.get(i)) == Some(true);
        let values = [1.0, (!r && !d) as u8 as f64, r as u8 as f64, d as u8 as f64];
        let vt = text(vtype.get(i)).unwrap_or_default();
        let cell = area_cell(float(lat.get(i)), float(lon.get(i)));
        let sums = groups
            .entry((p, floor(t, HOUR_US), vt, cell))
            .or_insert([0.0; 4]);
        for (s, v) in sums.iter_mut().zip(values) {
            *s += v;
        }
        snapshots.insert((p, t));
    }
    let mut hourly = Delta::new(&FLEET_HOURLY);
    let mut daily = Delta::new(&FLEET_DAILY);
    for ((p, hour, vt, cell), values) in groups {
        let a = area_text(cell);
        // A day is whole hours: the day of the hour is the day of the snapshot.
        for (delta, unit) in [(&mut hourly, HOUR_US), (&mut daily, DAY_US)] {
            let key = vec![
                Key::Text(p.to_string()),
                Key::Ts(floor(hour, unit)),
                Key::Text(vt.to_string()),
                Key::Text(a.clone()),
            ];
            delta.add(key, &values);
        }
    }
    let mut snap_hourly = Delta::new(&SNAPSHOTS_HOURLY);
    let mut snap_daily = Delta::new(&SNAPSHOTS_DAILY);
    for (p, t) in snapshots {
        snap_hourly.add(
            vec![Key::Text(p.to_string()), Key::Ts(floor(t, HOUR_US))],
            &[1.0],
        );
        snap_daily.add(
            vec![Key::Text(p.to_string()), Key::Ts(floor(t, DAY_US))],
            &[1.0],
        );
    }
    vec![hourly, daily, snap_hourly, snap_daily]
}

/// Station occupancy deltas of a `station_status` frame of one partner, given each
/// station's last stored sample (`last`, updated in place with the frame's later samples);
/// also the stations whose last sample changed, to store back.
pub fn stations(
    schema: &TableSchema,
    cols: &[ColRef<'_>],
    height: usize,
    is_new: &dyn Fn(i64) -> bool,
    last: &mut HashMap<String, Sample>,
) -> (Vec<Delta>, Vec<(String, Sample)>) {
    let at = |name| &cols[index(schema, name)];
    let (partner, station, observed) = (at("partner"), at("station_id"), at("observed_at"));
    let (vehicles, docks, renting, installed) = (
        at("vehicles_available"),
        at("docks_available"),
        at("is_renting"),
        at("is_installed"),
    );
    let mut rows: Vec<(usize, i64)> = new_rows(observed, height, is_new).collect();
    // Each station's samples in time order, so each interval runs to the next one.
    rows.sort_by(|a, b| (text(station.get(a.0)), a.1).cmp(&(text(station.get(b.0)), b.1)));
    let mut hourly = Delta::new(&STATIONS_HOURLY);
    let mut daily = Delta::new(&STATIONS_DAILY);
    let mut partner_hourly = Delta::new(&PARTNER_STATIONS_HOURLY);
    let mut changed = std::collections::BTreeSet::new();
    let mut add = |p: &str, s: &str, t: i64, values: &[f64]| {
        for (delta, unit) in [(&mut hourly, HOUR_US), (&mut daily, DAY_US)] {
            let key = vec![
                Key::Text(p.to_string()),
                Key::Text(s.to_string()),
                Key::Ts(floor(t, unit)),
            ];
            delta.add(key, values);
        }
        partner_hourly.add(
            vec![Key::Text(p.to_string()), Key::Ts(floor(t, HOUR_US))],
            values,
        );
    };
    for (i, t) in rows {
        let p = text(partner.get(i)).unwrap_or_default();
        let s = text(station.get(i)).unwrap_or_default();
        let v = int(vehicles.get(i)).unwrap_or(0);
        let d = int(docks.get(i));
        let now = Sample {
            observed_at: t,
            empty: v == 0,
            full: d == Some(0) && flag(installed.get(i)) != Some(false),
            renting: flag(renting.get(i)) != Some(false),
        };
        add(
            p,
            s,
            t,
            &[1.0, v as f64, d.unwrap_or(0) as f64, 0.0, 0.0, 0.0, 0.0],
        );
        match last.get(s).copied() {
            Some(prev) if prev.observed_at >= t => continue,
            Some(prev) if t - prev.observed_at <= MAX_GAP_US => {
                // The previous state held from its sample to this one: split by hour.
                let mut from = prev.observed_at;
                while from < t {
                    let to = t.min(floor(from, HOUR_US) + HOUR_US);
                    let secs = (to - from) as f64 / 1e6;
                    let on = |b: bool| if b { secs } else { 0.0 };
                    add(
                        p,
                        s,
                        from,
                        &[
                            0.0,
                            0.0,
                            0.0,
                            secs,
                            on(prev.empty),
                            on(prev.full),
                            on(!prev.renting),
                        ],
                    );
                    from = to;
                }
            }
            _ => {}
        }
        last.insert(s.to_string(), now);
        changed.insert(s.to_string());
    }
    let changed = changed.into_iter().map(|s| (s.clone(), last[&s])).collect();
    (vec![hourly, daily, partner_hourly], changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::columns;
    use mobiflux_model::schema::{STATION_STATUS, VEHICLES};
    use polars::prelude::*;

    const T0: i64 = 1_763_700_000_000_000; // 2025-11-21 04:40:00 UTC

    fn ts_col(name: &str, v: Vec<i64>) -> Column {
        Int64Chunked::from_vec(name.into(), v)
            .into_datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC))
            .into_column()
    }

    /// A station's status: id, observed_at, bikes, docks, renting.
    type StatusRow<'a> = (&'a str, i64, i64, i64, bool);

    fn status_frame(rows: &[StatusRow]) -> DataFrame {
        let n = rows.len();
        let s = |f: &dyn Fn(&StatusRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        DataFrame::new(
            n,
            vec![
                Column::new("partner".into(), s(&|_| Some("p".into()))),
                Column::new("station_id".into(), s(&|r| Some(r.0.into()))),
                ts_col("observed_at", rows.iter().map(|r| r.1).collect()),
                ts_col("last_reported", rows.iter().map(|r| r.1).collect()),
                Column::new(
                    "vehicles_available".into(),
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                ),
                Column::new(
                    "docks_available".into(),
                    rows.iter().map(|r| Some(r.3)).collect::<Vec<_>>(),
                ),
                Column::new("vehicles_disabled".into(), vec![None::<i64>; n]),
                Column::new("docks_disabled".into(), vec![None::<i64>; n]),
                Column::new("is_installed".into(), vec![true; n]),
                Column::new(
                    "is_renting".into(),
                    rows.iter().map(|r| r.4).collect::<Vec<_>>(),
                ),
                Column::new("is_returning".into(), vec![true; n]),
                Column::new("vehicle_types_available".into(), vec![None::<String>; n]),
                Column::new("vehicle_docks_available".into(), vec![None::<String>; n]),
                Column::new("run_id".into(), vec!["r".to_string(); n]),
            ],
        )
        .unwrap()
    }

    fn row<'a>(d: &'a Delta, key: &[Key]) -> &'a [f64] {
        d.rows
            .get(key)
            .map(|v| v.as_slice())
            .unwrap_or_else(|| panic!("no {key:?} in {d:?}"))
    }

    #[test]
    fn both_migrations_create_every_rollup_column() {
        let pg = [
            include_str!("../migrations/postgres/0006_stats.sql"),
            include_str!("../migrations/postgres/0007_occupancy_heat.sql"),
        ]
        .concat();
        let lite = [
            include_str!("../migrations/sqlite/0006_stats.sql"),
            include_str!("../migrations/sqlite/0007_occupancy_heat.sql"),
        ]
        .concat();
        for t in ALL {
            assert!(
                pg.contains(&format!("CREATE TABLE {} (", t.name)),
                "{}",
                t.name
            );
            let create = lite
                .split(&format!("CREATE TABLE {} (", t.name))
                .nth(1)
                .unwrap_or_else(|| panic!("sqlite: {}", t.name));
            let body = &create[..create.find(");").unwrap()];
            for c in t.columns() {
                assert!(body.contains(&format!("    {c} ")), "sqlite {}.{c}", t.name);
            }
        }
    }

    #[test]
    fn station_durations_split_at_hours_and_skip_gaps_and_old_snapshots() {
        let m = 60_000_000;
        let hour0 = floor(T0, HOUR_US);
        // 04:40 empty, 04:50 full, 05:05 not renting, 06:00 (gap over 15 min: not counted).
        let df = status_frame(&[
            ("a", hour0 + 40 * m, 0, 10, true),
            ("a", hour0 + 50 * m, 10, 0, true),
            ("a", hour0 + 65 * m, 4, 6, false),
            ("a", hour0 + 120 * m, 4, 6, true),
        ]);
        let cols = columns(&STATION_STATUS, &df).unwrap();
        let mut last = HashMap::new();
        let all = |_: i64| true;
        let (d, changed) = stations(&STATION_STATUS, &cols, df.height(), &all, &mut last);
        assert_eq!(changed, vec![("a".to_string(), last["a"])]);
        let h0 = row(
            &d[0],
            &[Key::Text("p".into()), Key::Text("a".into()), Key::Ts(hour0)],
        );
        // samples, vehicles, docks, observed_s, empty_s, full_s, not_renting_s
        assert_eq!(h0, &[2.0, 10.0, 10.0, 1200.0, 600.0, 600.0, 0.0]);
        let h1 = row(
            &d[0],
            &[
                Key::Text("p".into()),
                Key::Text("a".into()),
                Key::Ts(hour0 + HOUR_US),
            ],
        );
        assert_eq!(h1, &[1.0, 4.0, 6.0, 300.0, 0.0, 300.0, 0.0]);
        let day = row(
            &d[1],
            &[
                Key::Text("p".into()),
                Key::Text("a".into()),
                Key::Ts(floor(T0, DAY_US)),
            ],
        );
        assert_eq!(day, &[4.0, 18.0, 22.0, 1500.0, 600.0, 900.0, 0.0]);
        assert_eq!(last["a"].observed_at, hour0 + 120 * m);

        // The next load: from the stored last sample (renting) to 06:10, ten minutes;
        // a snapshot already counted adds nothing.
        let df = status_frame(&[
            ("a", hour0 + 120 * m, 4, 6, true),
            ("a", hour0 + 130 * m, 0, 10, true),
        ]);
        let cols = columns(&STATION_STATUS, &df).unwrap();
        let fresh = |t: i64| t > hour0 + 120 * m;
        let (d, _) = stations(&STATION_STATUS, &cols, df.height(), &fresh, &mut last);
        let h2 = row(
            &d[0],
            &[
                Key::Text("p".into()),
                Key::Text("a".into()),
                Key::Ts(hour0 + 2 * HOUR_US),
            ],
        );
        assert_eq!(h2, &[1.0, 0.0, 10.0, 600.0, 0.0, 0.0, 0.0]);
        assert_eq!(d[0].rows.len(), 1);
    }

    #[test]
    fn fleet_counts_by_type_and_area_and_snapshots_once() {
        let df = DataFrame::new(
            4,
            vec![
                Column::new("partner".into(), vec!["p"; 4]),
                Column::new("vehicle_id".into(), vec!["1", "2", "3", "1"]),
                ts_col("observed_at", vec![T0, T0, T0, T0 + 60_000_000]),
                Column::new(
                    "vehicle_type_id".into(),
                    vec![Some("bike"), Some("bike"), None, Some("bike")],
                ),
                Column::new(
                    "lat".into(),
                    vec![Some(45.7641), Some(45.7649), None, Some(45.7641)],
                ),
                Column::new(
                    "lon".into(),
                    vec![Some(4.8357), Some(4.8301), None, Some(4.8357)],
                ),
                Column::new("station_id".into(), vec![None::<&str>; 4]),
                Column::new("is_reserved".into(), vec![false, true, false, false]),
                Column::new("is_disabled".into(), vec![false, false, true, false]),
                Column::new("current_range_m".into(), vec![None::<f64>; 4]),
                Column::new("fuel_percent".into(), vec![None::<f64>; 4]),
                Column::new("pricing_plan_id".into(), vec![None::<&str>; 4]),
                ts_col("last_reported", vec![T0; 4]),
                Column::new("run_id".into(), vec!["r"; 4]),
            ],
        )
        .unwrap();
        let cols = columns(&VEHICLES, &df).unwrap();
        let d = fleet(&VEHICLES, &cols, df.height(), &|_| true);
        let h = floor(T0, HOUR_US);
        let bike = row(
            &d[0],
            &[
                Key::Text("p".into()),
                Key::Ts(h),
                Key::Text("bike".into()),
                Key::Text("45.76,4.83".into()),
            ],
        );
        assert_eq!(bike, &[3.0, 2.0, 1.0, 0.0]);
        let untyped = row(
            &d[0],
            &[
                Key::Text("p".into()),
                Key::Ts(h),
                Key::Text(String::new()),
                Key::Text(String::new()),
            ],
        );
        assert_eq!(untyped, &[1.0, 0.0, 0.0, 1.0]);
        assert_eq!(row(&d[2], &[Key::Text("p".into()), Key::Ts(h)]), &[2.0]);
        assert_eq!(
            row(&d[3], &[Key::Text("p".into()), Key::Ts(floor(T0, DAY_US))]),
            &[2.0]
        );
    }
}
