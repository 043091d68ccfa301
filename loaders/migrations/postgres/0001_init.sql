-- mobiflux warehouse, version 1 (PostgreSQL): the unified tables of DESIGN.md §5,
-- etl_runs and quarantine. Snapshot tables are range-partitioned by day on observed_at;
-- the loader creates each day's partition before it loads rows for that day.
-- Columns must match model/src/schema.rs (a loaders test checks it). Key text columns
-- (opaque identifiers) use the "C" collation: byte order, and B-tree inserts several
-- times cheaper than with a linguistic collation.

CREATE TABLE etl_runs (
    run_id text COLLATE "C" PRIMARY KEY,
    pipeline text NOT NULL,
    partner text NOT NULL,
    format text NOT NULL,
    trigger text NOT NULL,
    scheduled_for timestamptz,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    rows_loaded bigint NOT NULL DEFAULT 0,
    rows_quarantined bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    error text,
    manifest text
);

CREATE INDEX etl_runs_pipeline_started ON etl_runs (pipeline, started_at DESC);

CREATE TABLE system_info (
    partner text COLLATE "C" NOT NULL,
    system_id text COLLATE "C" NOT NULL,
    name text,
    operator text,
    timezone text,
    language text,
    url text,
    purchase_url text,
    email text,
    feed_version text,
    valid_from timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (partner, system_id)
);

CREATE TABLE vehicle_types (
    partner text COLLATE "C" NOT NULL,
    vehicle_type_id text COLLATE "C" NOT NULL,
    form_factor text NOT NULL,
    propulsion text NOT NULL,
    name text,
    max_range_m double precision,
    default_pricing_plan_id text,
    valid_from timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (partner, vehicle_type_id)
);

CREATE TABLE stations (
    partner text COLLATE "C" NOT NULL,
    station_id text COLLATE "C" NOT NULL,
    name text NOT NULL,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    capacity bigint,
    address text,
    region_id text,
    rental_methods text,
    is_virtual boolean,
    vehicle_type_capacity text,
    valid_from timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (partner, station_id)
);

CREATE TABLE station_status (
    partner text COLLATE "C" NOT NULL,
    station_id text COLLATE "C" NOT NULL,
    observed_at timestamptz NOT NULL,
    last_reported timestamptz,
    vehicles_available bigint NOT NULL,
    docks_available bigint,
    vehicles_disabled bigint,
    docks_disabled bigint,
    is_installed boolean NOT NULL,
    is_renting boolean NOT NULL,
    is_returning boolean NOT NULL,
    vehicle_types_available text,
    vehicle_docks_available text,
    run_id text NOT NULL,
    PRIMARY KEY (partner, station_id, observed_at)
) PARTITION BY RANGE (observed_at);

CREATE INDEX station_status_observed ON station_status (observed_at);

CREATE TABLE vehicles (
    partner text COLLATE "C" NOT NULL,
    vehicle_id text COLLATE "C" NOT NULL,
    observed_at timestamptz NOT NULL,
    vehicle_type_id text,
    lat double precision,
    lon double precision,
    station_id text,
    is_reserved boolean NOT NULL,
    is_disabled boolean NOT NULL,
    current_range_m double precision,
    fuel_percent double precision,
    pricing_plan_id text,
    last_reported timestamptz,
    run_id text NOT NULL,
    PRIMARY KEY (partner, vehicle_id, observed_at)
) PARTITION BY RANGE (observed_at);

CREATE INDEX vehicles_observed ON vehicles (observed_at);

CREATE TABLE pricing_plans (
    partner text COLLATE "C" NOT NULL,
    plan_id text COLLATE "C" NOT NULL,
    name text NOT NULL,
    currency text NOT NULL,
    price double precision NOT NULL,
    is_taxable boolean NOT NULL,
    description text,
    per_km_pricing text,
    per_min_pricing text,
    surge_pricing boolean,
    valid_from timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (partner, plan_id)
);

CREATE TABLE regions (
    partner text COLLATE "C" NOT NULL,
    region_id text COLLATE "C" NOT NULL,
    name text NOT NULL,
    valid_from timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (partner, region_id)
);

CREATE TABLE geofencing_zones (
    partner text COLLATE "C" NOT NULL,
    zone_id text COLLATE "C" NOT NULL,
    name text,
    starts_at timestamptz,
    ends_at timestamptz,
    rules text,
    geometry text NOT NULL,
    valid_from timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (partner, zone_id)
);

CREATE TABLE quarantine (
    run_id text NOT NULL,
    pipeline text NOT NULL,
    partner text NOT NULL,
    source_object text NOT NULL,
    position text NOT NULL,
    field text,
    value text,
    reason text NOT NULL
);

CREATE INDEX quarantine_run ON quarantine (run_id);
