-- mobiflux warehouse, version 4 (PostgreSQL): carpool journeys found by searching partners that
-- speak the standard covoiturage API, per run. No personal data: person_hash is a keyed hash.

CREATE TABLE carpool_journeys (
    partner text COLLATE "C" NOT NULL,
    role text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    journey_id text COLLATE "C" NOT NULL,
    observed_at timestamptz NOT NULL,
    journey_type text,
    operator text,
    departure_lat double precision,
    departure_lon double precision,
    departure_address text,
    departure_at timestamptz,
    arrival_lat double precision,
    arrival_lon double precision,
    arrival_address text,
    pickup_lat double precision,
    pickup_lon double precision,
    pickup_address text,
    pickup_at timestamptz,
    drop_lat double precision,
    drop_lon double precision,
    drop_address text,
    distance_m double precision,
    duration_s bigint,
    price double precision,
    currency text,
    price_type text,
    seats bigint,
    person_hash text,
    run_id text NOT NULL,
    PRIMARY KEY (partner, role, kind, journey_id, observed_at)
) PARTITION BY RANGE (observed_at);

CREATE INDEX carpool_journeys_observed ON carpool_journeys (observed_at);
