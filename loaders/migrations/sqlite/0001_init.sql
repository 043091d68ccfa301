-- mobiflux warehouse, version 1 (SQLite, the embedded default): same tables and columns as
-- the PostgreSQL schema. Timestamps are TEXT in RFC 3339 UTC with microseconds
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ), so text order is time order; booleans are 0/1.
-- Columns must match model/src/schema.rs (a loaders test checks it).

CREATE TABLE etl_runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    partner TEXT NOT NULL,
    format TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled_for TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    rows_loaded INTEGER NOT NULL DEFAULT 0,
    rows_quarantined INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    manifest TEXT
);

CREATE INDEX etl_runs_pipeline_started ON etl_runs (pipeline, started_at DESC);

CREATE TABLE system_info (
    partner TEXT NOT NULL,
    system_id TEXT NOT NULL,
    name TEXT,
    operator TEXT,
    timezone TEXT,
    language TEXT,
    url TEXT,
    purchase_url TEXT,
    email TEXT,
    feed_version TEXT,
    valid_from TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, system_id)
);

CREATE TABLE vehicle_types (
    partner TEXT NOT NULL,
    vehicle_type_id TEXT NOT NULL,
    form_factor TEXT NOT NULL,
    propulsion TEXT NOT NULL,
    name TEXT,
    max_range_m REAL,
    default_pricing_plan_id TEXT,
    valid_from TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, vehicle_type_id)
);

CREATE TABLE stations (
    partner TEXT NOT NULL,
    station_id TEXT NOT NULL,
    name TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    capacity INTEGER,
    address TEXT,
    region_id TEXT,
    rental_methods TEXT,
    is_virtual INTEGER,
    vehicle_type_capacity TEXT,
    valid_from TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, station_id)
);

CREATE TABLE station_status (
    partner TEXT NOT NULL,
    station_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    last_reported TEXT,
    vehicles_available INTEGER NOT NULL,
    docks_available INTEGER,
    vehicles_disabled INTEGER,
    docks_disabled INTEGER,
    is_installed INTEGER NOT NULL,
    is_renting INTEGER NOT NULL,
    is_returning INTEGER NOT NULL,
    vehicle_types_available TEXT,
    vehicle_docks_available TEXT,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, station_id, observed_at)
);

CREATE INDEX station_status_observed ON station_status (observed_at);

CREATE TABLE vehicles (
    partner TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    vehicle_type_id TEXT,
    lat REAL,
    lon REAL,
    station_id TEXT,
    is_reserved INTEGER NOT NULL,
    is_disabled INTEGER NOT NULL,
    current_range_m REAL,
    fuel_percent REAL,
    pricing_plan_id TEXT,
    last_reported TEXT,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, vehicle_id, observed_at)
);

CREATE INDEX vehicles_observed ON vehicles (observed_at);

CREATE TABLE pricing_plans (
    partner TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    price REAL NOT NULL,
    is_taxable INTEGER NOT NULL,
    description TEXT,
    per_km_pricing TEXT,
    per_min_pricing TEXT,
    surge_pricing INTEGER,
    valid_from TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, plan_id)
);

CREATE TABLE regions (
    partner TEXT NOT NULL,
    region_id TEXT NOT NULL,
    name TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, region_id)
);

CREATE TABLE geofencing_zones (
    partner TEXT NOT NULL,
    zone_id TEXT NOT NULL,
    name TEXT,
    starts_at TEXT,
    ends_at TEXT,
    rules TEXT,
    geometry TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, zone_id)
);

CREATE TABLE quarantine (
    run_id TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    partner TEXT NOT NULL,
    source_object TEXT NOT NULL,
    position TEXT NOT NULL,
    field TEXT,
    value TEXT,
    reason TEXT NOT NULL
);

CREATE INDEX quarantine_run ON quarantine (run_id);
