//! The unified tables (DESIGN.md §5), declared once. Transforms build frames that follow
//! these declarations, loaders derive staging, merge and insert statements from them, and
//! a loaders test checks that the warehouse migrations create exactly these columns.

/// Column types of the unified tables. Timestamps are UTC instants (microseconds);
/// JSON-valued attributes (per-type counts, rules, geometry) are `Text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    Int,
    Float,
    Bool,
    Timestamp,
    /// A calendar day (no time, no zone).
    Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    /// May the value be missing?
    pub nullable: bool,
}

/// How a table is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Reference data keyed by (partner, natural id): upserted, a newer `valid_from` wins.
    Static,
    /// Append-only time series keyed by (partner, id, `observed_at`); a repeated key is ignored,
    /// so loading a run twice changes nothing. Partitioned by day in PostgreSQL.
    Snapshot,
    /// Rows owned by one run (quarantine): replaced whole when the run is loaded again.
    PerRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSchema {
    pub name: &'static str,
    pub kind: TableKind,
    pub columns: &'static [Column],
    /// Natural key (empty for `PerRun` tables).
    pub key: &'static [&'static str],
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|c| c.name)
    }

    /// The column a newer version is recognised by (`Static`) or the time axis (`Snapshot`).
    pub fn time_column(&self) -> Option<&'static str> {
        match self.kind {
            TableKind::Static => Some("valid_from"),
            TableKind::Snapshot => Some("observed_at"),
            TableKind::PerRun => None,
        }
    }
}

const fn c(name: &'static str, ty: ColType) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}
const fn req(name: &'static str, ty: ColType) -> Column {
    Column {
        name,
        ty,
        nullable: false,
    }
}

use ColType::*;

pub const SYSTEM_INFO: TableSchema = TableSchema {
    name: "system_info",
    kind: TableKind::Static,
    key: &["partner", "system_id"],
    columns: &[
        req("partner", Text),
        req("system_id", Text),
        c("name", Text),
        c("operator", Text),
        c("timezone", Text),
        c("language", Text),
        c("url", Text),
        c("purchase_url", Text),
        c("email", Text),
        c("feed_version", Text),
        req("valid_from", Timestamp),
        req("run_id", Text),
    ],
};

pub const VEHICLE_TYPES: TableSchema = TableSchema {
    name: "vehicle_types",
    kind: TableKind::Static,
    key: &["partner", "vehicle_type_id"],
    columns: &[
        req("partner", Text),
        req("vehicle_type_id", Text),
        req("form_factor", Text),
        req("propulsion", Text),
        c("name", Text),
        c("max_range_m", Float),
        c("default_pricing_plan_id", Text),
        req("valid_from", Timestamp),
        req("run_id", Text),
    ],
};

pub const STATIONS: TableSchema = TableSchema {
    name: "stations",
    kind: TableKind::Static,
    key: &["partner", "station_id"],
    columns: &[
        req("partner", Text),
        req("station_id", Text),
        req("name", Text),
        req("lat", Float),
        req("lon", Float),
        c("capacity", Int),
        c("address", Text),
        c("region_id", Text),
        c("rental_methods", Text),
        c("is_virtual", Bool),
        c("vehicle_type_capacity", Text),
        req("valid_from", Timestamp),
        req("run_id", Text),
    ],
};

pub const STATION_STATUS: TableSchema = TableSchema {
    name: "station_status",
    kind: TableKind::Snapshot,
    key: &["partner", "station_id", "observed_at"],
    columns: &[
        req("partner", Text),
        req("station_id", Text),
        req("observed_at", Timestamp),
        c("last_reported", Timestamp),
        req("vehicles_available", Int),
        c("docks_available", Int),
        c("vehicles_disabled", Int),
        c("docks_disabled", Int),
        req("is_installed", Bool),
        req("is_renting", Bool),
        req("is_returning", Bool),
        c("vehicle_types_available", Text),
        c("vehicle_docks_available", Text),
        req("run_id", Text),
    ],
};

pub const VEHICLES: TableSchema = TableSchema {
    name: "vehicles",
    kind: TableKind::Snapshot,
    key: &["partner", "vehicle_id", "observed_at"],
    columns: &[
        req("partner", Text),
        req("vehicle_id", Text),
        req("observed_at", Timestamp),
        c("vehicle_type_id", Text),
        c("lat", Float),
        c("lon", Float),
        c("station_id", Text),
        req("is_reserved", Bool),
        req("is_disabled", Bool),
        c("current_range_m", Float),
        c("fuel_percent", Float),
        c("pricing_plan_id", Text),
        c("last_reported", Timestamp),
        req("run_id", Text),
    ],
};

pub const PRICING_PLANS: TableSchema = TableSchema {
    name: "pricing_plans",
    kind: TableKind::Static,
    key: &["partner", "plan_id"],
    columns: &[
        req("partner", Text),
        req("plan_id", Text),
        req("name", Text),
        req("currency", Text),
        req("price", Float),
        req("is_taxable", Bool),
        c("description", Text),
        c("per_km_pricing", Text),
        c("per_min_pricing", Text),
        c("surge_pricing", Bool),
        req("valid_from", Timestamp),
        req("run_id", Text),
    ],
};

pub const REGIONS: TableSchema = TableSchema {
    name: "regions",
    kind: TableKind::Static,
    key: &["partner", "region_id"],
    columns: &[
        req("partner", Text),
        req("region_id", Text),
        req("name", Text),
        req("valid_from", Timestamp),
        req("run_id", Text),
    ],
};

pub const GEOFENCING_ZONES: TableSchema = TableSchema {
    name: "geofencing_zones",
    kind: TableKind::Static,
    key: &["partner", "zone_id"],
    columns: &[
        req("partner", Text),
        req("zone_id", Text),
        c("name", Text),
        c("starts_at", Timestamp),
        c("ends_at", Timestamp),
        c("rules", Text),
        req("geometry", Text),
        req("valid_from", Timestamp),
        req("run_id", Text),
    ],
};

pub const QUARANTINE: TableSchema = TableSchema {
    name: "quarantine",
    kind: TableKind::PerRun,
    key: &[],
    columns: &[
        req("run_id", Text),
        req("pipeline", Text),
        req("partner", Text),
        req("source_object", Text),
        req("position", Text),
        c("field", Text),
        c("value", Text),
        req("reason", Text),
    ],
};

pub const CHARGE_POINTS: TableSchema = TableSchema {
    name: "charge_points",
    kind: TableKind::Static,
    key: &["partner", "charge_point_id"],
    columns: &[
        req("partner", Text),
        req("charge_point_id", Text),
        req("station_id", Text),
        req("station_name", Text),
        c("network", Text),
        c("owner_name", Text),
        c("owner_siren", Text),
        c("owner_contact", Text),
        c("operator_name", Text),
        c("operator_contact", Text),
        c("operator_phone", Text),
        c("location_type", Text),
        c("address", Text),
        c("insee_code", Text),
        req("lat", Float),
        req("lon", Float),
        c("station_points", Int),
        c("power_kw", Float),
        c("socket_ef", Bool),
        c("socket_type2", Bool),
        c("socket_ccs", Bool),
        c("socket_chademo", Bool),
        c("socket_other", Bool),
        c("free", Bool),
        c("pay_per_use", Bool),
        c("pay_by_card", Bool),
        c("pay_other", Bool),
        c("pricing", Text),
        c("access", Text),
        c("reservation", Bool),
        c("opening_hours", Text),
        c("pmr_access", Text),
        c("height_limit", Text),
        c("two_wheels", Bool),
        c("grid_connection", Text),
        c("pdl_number", Text),
        c("commissioned_on", Date),
        c("remarks", Text),
        c("updated_on", Date),
        c("cable_t2_attached", Bool),
        req("valid_from", Timestamp),
        req("run_id", Text),
    ],
};

pub const CHARGE_POINT_STATUS: TableSchema = TableSchema {
    name: "charge_point_status",
    kind: TableKind::Snapshot,
    key: &["partner", "charge_point_id", "observed_at"],
    columns: &[
        req("partner", Text),
        req("charge_point_id", Text),
        req("observed_at", Timestamp),
        req("status", Text),
        req("occupancy", Text),
        c("socket_type2_status", Text),
        c("socket_ccs_status", Text),
        c("socket_chademo_status", Text),
        c("socket_ef_status", Text),
        req("run_id", Text),
    ],
};

pub const PARKING_FACILITIES: TableSchema = TableSchema {
    name: "parking_facilities",
    kind: TableKind::Static,
    key: &["partner", "facility_id"],
    columns: &[
        req("partner", Text),
        req("facility_id", Text),
        req("name", Text),
        c("insee_code", Text),
        c("address", Text),
        c("url", Text),
        c("user_type", Text),
        c("free", Bool),
        c("capacity", Int),
        c("spaces_park_ride", Int),
        c("spaces_pmr", Int),
        c("spaces_ev", Int),
        c("spaces_bike", Int),
        c("spaces_e2w", Int),
        c("spaces_carsharing", Int),
        c("spaces_motorbike", Int),
        c("spaces_carpool", Int),
        c("max_height_cm", Int),
        c("siret", Text),
        c("lat", Float),
        c("lon", Float),
        c("pmr_tariff", Text),
        c("price_1h", Float),
        c("price_2h", Float),
        c("price_3h", Float),
        c("price_4h", Float),
        c("price_24h", Float),
        c("resident_subscription", Float),
        c("non_resident_subscription", Float),
        c("structure_type", Text),
        c("info", Text),
        req("valid_from", Timestamp),
        req("run_id", Text),
    ],
};

pub const PARKING_OCCUPANCY: TableSchema = TableSchema {
    name: "parking_occupancy",
    kind: TableKind::Snapshot,
    key: &["partner", "facility_id", "observed_at"],
    columns: &[
        req("partner", Text),
        req("facility_id", Text),
        req("observed_at", Timestamp),
        c("name", Text),
        c("capacity", Int),
        c("occupied", Int),
        c("free", Int),
        c("status", Text),
        req("run_id", Text),
    ],
};

pub const GATEWAY_CALLS: TableSchema = TableSchema {
    name: "gateway_calls",
    kind: TableKind::Snapshot,
    key: &["partner", "request_id", "observed_at"],
    columns: &[
        req("partner", Text),
        req("request_id", Text),
        req("observed_at", Timestamp),
        c("client_id", Text),
        c("target_partner", Text),
        c("remote_addr", Text),
        c("method", Text),
        c("endpoint", Text),
        req("status", Int),
        c("latency_ms", Float),
        c("bytes", Int),
        c("user_agent", Text),
        req("run_id", Text),
    ],
};

/// Carpool offers and requests found by searching a partner (standard covoiturage), as
/// observed at each run: personal data is never here (names dropped, the person's id kept
/// only as a keyed hash, so distinct drivers can still be counted).
pub const CARPOOL_JOURNEYS: TableSchema = TableSchema {
    name: "carpool_journeys",
    kind: TableKind::Snapshot,
    key: &["partner", "role", "kind", "journey_id", "observed_at"],
    columns: &[
        req("partner", Text),
        req("role", Text),
        req("kind", Text),
        req("journey_id", Text),
        req("observed_at", Timestamp),
        c("journey_type", Text),
        c("operator", Text),
        c("departure_lat", Float),
        c("departure_lon", Float),
        c("departure_address", Text),
        c("departure_at", Timestamp),
        c("arrival_lat", Float),
        c("arrival_lon", Float),
        c("arrival_address", Text),
        c("pickup_lat", Float),
        c("pickup_lon", Float),
        c("pickup_address", Text),
        c("pickup_at", Timestamp),
        c("drop_lat", Float),
        c("drop_lon", Float),
        c("drop_address", Text),
        c("distance_m", Float),
        c("duration_s", Int),
        c("price", Float),
        c("currency", Text),
        c("price_type", Text),
        c("seats", Int),
        c("person_hash", Text),
        req("run_id", Text),
    ],
};

/// Every unified table, in load order (reference data before the series that point to it).
pub const UNIFIED_TABLES: &[TableSchema] = &[
    SYSTEM_INFO,
    VEHICLE_TYPES,
    PRICING_PLANS,
    REGIONS,
    STATIONS,
    GEOFENCING_ZONES,
    STATION_STATUS,
    VEHICLES,
    CHARGE_POINTS,
    CHARGE_POINT_STATUS,
    PARKING_FACILITIES,
    PARKING_OCCUPANCY,
    GATEWAY_CALLS,
    CARPOOL_JOURNEYS,
];

pub fn table(name: &str) -> Option<&'static TableSchema> {
    UNIFIED_TABLES
        .iter()
        .chain(std::iter::once(&QUARANTINE))
        .find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_partner_run_id_and_a_key_made_of_its_columns() {
        for t in UNIFIED_TABLES.iter().chain([&QUARANTINE]) {
            assert!(t.column("partner").is_some(), "{} lacks partner", t.name);
            assert!(t.column("run_id").is_some(), "{} lacks run_id", t.name);
            for k in t.key {
                let col = t
                    .column(k)
                    .unwrap_or_else(|| panic!("{}: key {k} is not a column", t.name));
                assert!(!col.nullable, "{}: key column {k} must be required", t.name);
            }
            if let Some(tc) = t.time_column() {
                assert!(t.column(tc).is_some(), "{} lacks {tc}", t.name);
            }
        }
    }
}
