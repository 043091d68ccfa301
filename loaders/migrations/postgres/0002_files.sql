-- mobiflux warehouse, version 2 (PostgreSQL): tables filled from published text files and
-- scraped pages: EV charge points (IRVE), parking facilities (BNLS, municipal exports) and
-- their status/occupancy snapshots. Dates are `date`.

CREATE TABLE charge_points (
    partner text COLLATE "C" NOT NULL,
    charge_point_id text COLLATE "C" NOT NULL,
    station_id text NOT NULL,
    station_name text NOT NULL,
    network text,
    owner_name text,
    owner_siren text,
    owner_contact text,
    operator_name text,
    operator_contact text,
    operator_phone text,
    location_type text,
    address text,
    insee_code text,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    station_points bigint,
    power_kw double precision,
    socket_ef boolean,
    socket_type2 boolean,
    socket_ccs boolean,
    socket_chademo boolean,
    socket_other boolean,
    free boolean,
    pay_per_use boolean,
    pay_by_card boolean,
    pay_other boolean,
    pricing text,
    access text,
    reservation boolean,
    opening_hours text,
    pmr_access text,
    height_limit text,
    two_wheels boolean,
    grid_connection text,
    pdl_number text,
    commissioned_on date,
    remarks text,
    updated_on date,
    cable_t2_attached boolean,
    valid_from timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (partner, charge_point_id)
);

CREATE TABLE charge_point_status (
    partner text COLLATE "C" NOT NULL,
    charge_point_id text COLLATE "C" NOT NULL,
    observed_at timestamptz NOT NULL,
    status text NOT NULL,
    occupancy text NOT NULL,
    socket_type2_status text,
    socket_ccs_status text,
    socket_chademo_status text,
    socket_ef_status text,
    run_id text NOT NULL,
    PRIMARY KEY (partner, charge_point_id, observed_at)
) PARTITION BY RANGE (observed_at);

CREATE INDEX charge_point_status_observed ON charge_point_status (observed_at);

CREATE TABLE parking_facilities (
    partner text COLLATE "C" NOT NULL,
    facility_id text COLLATE "C" NOT NULL,
    name text NOT NULL,
    insee_code text,
    address text,
    url text,
    user_type text,
    free boolean,
    capacity bigint,
    spaces_park_ride bigint,
    spaces_pmr bigint,
    spaces_ev bigint,
    spaces_bike bigint,
    spaces_e2w bigint,
    spaces_carsharing bigint,
    spaces_motorbike bigint,
    spaces_carpool bigint,
    max_height_cm bigint,
    siret text,
    lat double precision,
    lon double precision,
    pmr_tariff text,
    price_1h double precision,
    price_2h double precision,
    price_3h double precision,
    price_4h double precision,
    price_24h double precision,
    resident_subscription double precision,
    non_resident_subscription double precision,
    structure_type text,
    info text,
    valid_from timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (partner, facility_id)
);

CREATE TABLE parking_occupancy (
    partner text COLLATE "C" NOT NULL,
    facility_id text COLLATE "C" NOT NULL,
    observed_at timestamptz NOT NULL,
    name text,
    capacity bigint,
    occupied bigint,
    free bigint,
    status text,
    run_id text NOT NULL,
    PRIMARY KEY (partner, facility_id, observed_at)
) PARTITION BY RANGE (observed_at);

CREATE INDEX parking_occupancy_observed ON parking_occupancy (observed_at);

-- Which file contents a pipeline has loaded (by SHA-256), so the same file is not loaded twice.
CREATE TABLE loaded_objects (
    pipeline text COLLATE "C" NOT NULL,
    sha256 text COLLATE "C" NOT NULL,
    run_id text NOT NULL,
    source_object text NOT NULL,
    PRIMARY KEY (pipeline, sha256)
);
