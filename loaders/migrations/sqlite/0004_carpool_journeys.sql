-- mobiflux warehouse, version 4 (SQLite): carpool journeys found by searching partners that
-- speak the standard covoiturage API, per run. No personal data: person_hash is a keyed hash.

CREATE TABLE carpool_journeys (
    partner TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    journey_type TEXT,
    operator TEXT,
    departure_lat REAL,
    departure_lon REAL,
    departure_address TEXT,
    departure_at TEXT,
    arrival_lat REAL,
    arrival_lon REAL,
    arrival_address TEXT,
    pickup_lat REAL,
    pickup_lon REAL,
    pickup_address TEXT,
    pickup_at TEXT,
    drop_lat REAL,
    drop_lon REAL,
    drop_address TEXT,
    distance_m REAL,
    duration_s INTEGER,
    price REAL,
    currency TEXT,
    price_type TEXT,
    seats INTEGER,
    person_hash TEXT,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, role, kind, journey_id, observed_at)
);

CREATE INDEX carpool_journeys_observed ON carpool_journeys (observed_at);
