-- mobiflux warehouse, version 2 (SQLite): same tables as the PostgreSQL migration 2.
-- Dates are TEXT YYYY-MM-DD.

CREATE TABLE charge_points (
    partner TEXT NOT NULL,
    charge_point_id TEXT NOT NULL,
    station_id TEXT NOT NULL,
    station_name TEXT NOT NULL,
    network TEXT,
    owner_name TEXT,
    owner_siren TEXT,
    owner_contact TEXT,
    operator_name TEXT,
    operator_contact TEXT,
    operator_phone TEXT,
    location_type TEXT,
    address TEXT,
    insee_code TEXT,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    station_points INTEGER,
    power_kw REAL,
    socket_ef INTEGER,
    socket_type2 INTEGER,
    socket_ccs INTEGER,
    socket_chademo INTEGER,
    socket_other INTEGER,
    free INTEGER,
    pay_per_use INTEGER,
    pay_by_card INTEGER,
    pay_other INTEGER,
    pricing TEXT,
    access TEXT,
    reservation INTEGER,
    opening_hours TEXT,
    pmr_access TEXT,
    height_limit TEXT,
    two_wheels INTEGER,
    grid_connection TEXT,
    pdl_number TEXT,
    commissioned_on TEXT,
    remarks TEXT,
    updated_on TEXT,
    cable_t2_attached INTEGER,
    valid_from TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, charge_point_id)
);

CREATE TABLE charge_point_status (
    partner TEXT NOT NULL,
    charge_point_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    status TEXT NOT NULL,
    occupancy TEXT NOT NULL,
    socket_type2_status TEXT,
    socket_ccs_status TEXT,
    socket_chademo_status TEXT,
    socket_ef_status TEXT,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, charge_point_id, observed_at)
);

CREATE INDEX charge_point_status_observed ON charge_point_status (observed_at);

CREATE TABLE parking_facilities (
    partner TEXT NOT NULL,
    facility_id TEXT NOT NULL,
    name TEXT NOT NULL,
    insee_code TEXT,
    address TEXT,
    url TEXT,
    user_type TEXT,
    free INTEGER,
    capacity INTEGER,
    spaces_park_ride INTEGER,
    spaces_pmr INTEGER,
    spaces_ev INTEGER,
    spaces_bike INTEGER,
    spaces_e2w INTEGER,
    spaces_carsharing INTEGER,
    spaces_motorbike INTEGER,
    spaces_carpool INTEGER,
    max_height_cm INTEGER,
    siret TEXT,
    lat REAL,
    lon REAL,
    pmr_tariff TEXT,
    price_1h REAL,
    price_2h REAL,
    price_3h REAL,
    price_4h REAL,
    price_24h REAL,
    resident_subscription REAL,
    non_resident_subscription REAL,
    structure_type TEXT,
    info TEXT,
    valid_from TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, facility_id)
);

CREATE TABLE parking_occupancy (
    partner TEXT NOT NULL,
    facility_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    name TEXT,
    capacity INTEGER,
    occupied INTEGER,
    free INTEGER,
    status TEXT,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, facility_id, observed_at)
);

CREATE INDEX parking_occupancy_observed ON parking_occupancy (observed_at);

-- Which file contents a pipeline has loaded (by SHA-256), so the same file is not loaded twice.
CREATE TABLE loaded_objects (
    pipeline TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    run_id TEXT NOT NULL,
    source_object TEXT NOT NULL,
    PRIMARY KEY (pipeline, sha256)
);
