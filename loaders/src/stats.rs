//! The statistics AOM analysts read: the documented `stats_*` views (migration 6, both
//! warehouses; docs/stats.md) and the queries `mobiflux stats NAME` runs on them, with the
//! period, partner and territory filters.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

/// One statistic of `mobiflux stats`.
#[derive(Debug)]
pub struct Stat {
    pub name: &'static str,
    pub about: &'static str,
    /// The view read.
    pub view: &'static str,
    /// Its time column, filtered by `--from` (inclusive) and `--to` (exclusive).
    pub time: Option<(&'static str, Period)>,
    /// The column naming the partner (for `--partner` and `--territory`).
    pub partner: &'static str,
    /// What is selected from the filtered view: `*`, or an aggregation over the period.
    pub select: &'static str,
    pub group_by: Option<&'static str>,
    pub order_by: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Period {
    /// A timestamp (start of an hour).
    Hour,
    /// A date (UTC).
    Day,
}

pub const STATS: &[Stat] = &[
    Stat {
        name: "fleet-hourly",
        about: "Vehicles available on average per hour, by partner, vehicle type and area (0.01° cell)",
        view: "stats_fleet_availability_hourly",
        time: Some(("hour", Period::Hour)),
        partner: "partner",
        select: "*",
        group_by: None,
        order_by: "hour, partner, vehicle_type_id, area",
    },
    Stat {
        name: "fleet-daily",
        about: "Vehicles available on average per day, by partner, vehicle type and area (0.01° cell)",
        view: "stats_fleet_availability_daily",
        time: Some(("day", Period::Day)),
        partner: "partner",
        select: "*",
        group_by: None,
        order_by: "day, partner, vehicle_type_id, area",
    },
    Stat {
        name: "fleet-timeline",
        about: "Vehicles available and on the street on average per hour and partner, all types and areas",
        view: "stats_fleet_availability_hourly",
        time: Some(("hour", Period::Hour)),
        partner: "partner",
        select: "hour, partner, sum(avg_available) AS available, sum(avg_vehicles) AS vehicles",
        group_by: Some("hour, partner"),
        order_by: "hour, partner",
    },
    Stat {
        name: "occupancy-heat",
        about: "Station occupancy per day and hour of day (UTC), across stations: the dashboard's heat map",
        view: "stats_occupancy_by_hour",
        time: Some(("day", Period::Day)),
        partner: "partner",
        select: "day, hour_of_day, CAST(sum(samples) AS bigint) AS samples, \
                 sum(vehicles_available) / NULLIF(sum(vehicles_available + docks_available), 0) AS occupancy, \
                 sum(empty_min) AS empty_min, sum(full_min) AS full_min",
        group_by: Some("day, hour_of_day"),
        order_by: "day, hour_of_day",
    },
    Stat {
        name: "station-occupancy",
        about: "Per station and hour: vehicles and docks available on average, occupancy, minutes empty, full or not renting",
        view: "stats_station_occupancy_hourly",
        time: Some(("hour", Period::Hour)),
        partner: "partner",
        select: "*",
        group_by: None,
        order_by: "hour, partner, station_id",
    },
    Stat {
        name: "station-outages",
        about: "Per station over the period: minutes empty, full and not renting, worst first",
        view: "stats_station_outages_daily",
        time: Some(("day", Period::Day)),
        partner: "partner",
        select: "partner, station_id, max(name) AS name, CAST(sum(samples) AS bigint) AS samples, \
                 sum(observed_min) AS observed_min, sum(empty_min) AS empty_min, \
                 sum(full_min) AS full_min, sum(not_renting_min) AS not_renting_min",
        group_by: Some("partner, station_id"),
        order_by: "sum(empty_min) + sum(full_min) + sum(not_renting_min) DESC, partner, station_id",
    },
    Stat {
        name: "carpool-od",
        about: "Carpool origin-destination pairs (0.05° cells) over the period, most frequented first",
        view: "stats_carpool_od_daily",
        time: Some(("day", Period::Day)),
        partner: "partner",
        select: "origin, destination, CAST(sum(journeys) AS bigint) AS journeys, \
                 CAST(sum(driver_offers) AS bigint) AS driver_offers, \
                 CAST(sum(passenger_requests) AS bigint) AS passenger_requests, \
                 avg(avg_distance_km) AS avg_distance_km",
        group_by: Some("origin, destination"),
        order_by: "journeys DESC, origin, destination",
    },
    Stat {
        name: "charge-points",
        about: "Charge points per commune (INSEE code): stations, points, power, fast points, free and occupied now",
        view: "stats_charge_points_by_commune",
        time: None,
        partner: "partner",
        select: "*",
        group_by: None,
        order_by: "partner, insee_code",
    },
    Stat {
        name: "parking",
        about: "Parking per commune (INSEE code): facilities, capacity by kind of space, occupied and free now",
        view: "stats_parking_by_commune",
        time: None,
        partner: "partner",
        select: "*",
        group_by: None,
        order_by: "partner, insee_code",
    },
    Stat {
        name: "gateway-usage",
        about: "Gateway calls per day, MaaS client, partner and endpoint: calls, error rate, p50/p95 latency",
        view: "stats_gateway_usage_daily",
        time: Some(("day", Period::Day)),
        partner: "partner",
        select: "*",
        group_by: None,
        order_by: "day, client_id, partner, endpoint",
    },
    Stat {
        name: "feed-health",
        about: "Per pipeline: last run, last success, freshness against the schedule, failures and quarantined rows (24 h)",
        view: "stats_feed_health",
        time: None,
        partner: "partner",
        select: "*",
        group_by: None,
        order_by: "late DESC, pipeline",
    },
];

pub fn find(name: &str) -> Option<&'static Stat> {
    STATS.iter().find(|s| s.name == name)
}

/// The filters of one query.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub partner: Option<String>,
    pub territory: Option<String>,
    pub limit: Option<u64>,
}

/// A bound value of a statistics query.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Ts(DateTime<Utc>),
    Date(NaiveDate),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// The SQL of a statistic with its filters, and what to bind, in order.
pub fn query(stat: &Stat, f: &Filters, dialect: Dialect) -> (String, Vec<Bind>) {
    let mut binds = Vec::new();
    let mut mark = |b: Bind| {
        binds.push(b);
        match dialect {
            Dialect::Postgres => format!("${}", binds.len()),
            Dialect::Sqlite => "?".to_string(),
        }
    };
    let mut wheres = Vec::new();
    if let Some((col, period)) = stat.time {
        let bound = |t: DateTime<Utc>| match (period, dialect) {
            (Period::Day, _) => Bind::Date(t.date_naive()),
            (Period::Hour, _) => Bind::Ts(t),
        };
        if let Some(t) = f.from {
            wheres.push(format!("{col} >= {}", mark(bound(t))));
        }
        if let Some(t) = f.to {
            wheres.push(format!("{col} < {}", mark(bound(t))));
        }
    }
    if let Some(p) = &f.partner {
        wheres.push(format!(
            "{} = {}",
            stat.partner,
            mark(Bind::Text(p.clone()))
        ));
    }
    if let Some(t) = &f.territory {
        wheres.push(format!(
            "{} IN (SELECT partner FROM partner_territories WHERE territory = {})",
            stat.partner,
            mark(Bind::Text(t.clone()))
        ));
    }
    let mut sql = format!("SELECT {} FROM {}", stat.select, stat.view);
    if !wheres.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&wheres.join(" AND "));
    }
    if let Some(g) = stat.group_by {
        sql.push_str(" GROUP BY ");
        sql.push_str(g);
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(stat.order_by);
    if let Some(n) = f.limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    (sql, binds)
}

/// A statistic's answer: column names and rows of JSON values (numbers, text, booleans,
/// null; times and dates as text).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// Rows of either database, each cell read by `cell`.
    pub(crate) fn of<R: sqlx::Row>(
        rows: &[R],
        cell: impl Fn(&R, usize) -> Result<Value, sqlx::Error>,
    ) -> Result<Table, sqlx::Error> {
        let mut table = Table::default();
        if let Some(r) = rows.first() {
            table.columns = r
                .columns()
                .iter()
                .map(|c| sqlx::Column::name(c).to_string())
                .collect();
        }
        for r in rows {
            let cells = (0..r.len())
                .map(|i| cell(r, i))
                .collect::<Result<Vec<_>, _>>()?;
            table.rows.push(cells);
        }
        Ok(table)
    }

    /// The rows as JSON objects.
    pub fn records(&self) -> Vec<serde_json::Map<String, Value>> {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(r.iter().cloned())
                    .collect()
            })
            .collect()
    }

    /// The value of a column in a row.
    pub fn get(&self, row: usize, column: &str) -> Option<&Value> {
        let c = self.columns.iter().position(|n| n == column)?;
        self.rows.get(row)?.get(c)
    }
}

/// A statistic's answer as Parquet: each column typed by its values (integers, numbers,
/// booleans, else text; dates and times stay text, as in the CSV and JSON forms).
pub fn write_parquet(t: &Table, out: impl std::io::Write) -> Result<(), crate::LoadError> {
    use polars::prelude::*;
    let bad = |e: PolarsError| crate::LoadError::BadFrame {
        table: "stats",
        message: e.to_string(),
    };
    let mut columns = Vec::with_capacity(t.columns.len());
    for (i, name) in t.columns.iter().enumerate() {
        let values = || t.rows.iter().map(|r| &r[i]);
        let present = || values().filter(|v| !v.is_null());
        let name = PlSmallStr::from(name.as_str());
        let column = if present().all(|v| v.is_i64()) {
            Column::new(name, values().map(|v| v.as_i64()).collect::<Vec<_>>())
        } else if present().all(|v| v.is_number()) {
            Column::new(name, values().map(|v| v.as_f64()).collect::<Vec<_>>())
        } else if present().all(|v| v.is_boolean()) {
            Column::new(name, values().map(|v| v.as_bool()).collect::<Vec<_>>())
        } else {
            let text = |v: &Value| match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            Column::new(name, values().map(text).collect::<Vec<_>>())
        };
        columns.push(column);
    }
    let mut df = DataFrame::new(t.rows.len(), columns).map_err(bad)?;
    ParquetWriter::new(out).finish(&mut df).map_err(bad)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_placeholders_in_each_dialect() {
        let f = Filters {
            from: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            to: Some("2026-11-08T00:00:00Z".parse().unwrap()),
            partner: None,
            territory: Some("lyon".into()),
            limit: Some(10),
        };
        let (sql, binds) = query(find("carpool-od").unwrap(), &f, Dialect::Postgres);
        assert_eq!(
            sql,
            "SELECT origin, destination, CAST(sum(journeys) AS bigint) AS journeys, \
             CAST(sum(driver_offers) AS bigint) AS driver_offers, \
             CAST(sum(passenger_requests) AS bigint) AS passenger_requests, \
             avg(avg_distance_km) AS avg_distance_km \
             FROM stats_carpool_od_daily WHERE day >= $1 AND day < $2 AND partner IN \
             (SELECT partner FROM partner_territories WHERE territory = $3) \
             GROUP BY origin, destination ORDER BY journeys DESC, origin, destination LIMIT 10"
        );
        assert_eq!(
            binds[0],
            Bind::Date(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap())
        );
        assert_eq!(binds[2], Bind::Text("lyon".into()));
        let (sql, _) = query(find("fleet-hourly").unwrap(), &f, Dialect::Sqlite);
        assert!(
            sql.contains("WHERE hour >= ? AND hour < ? AND partner IN"),
            "{sql}"
        );
    }
}
