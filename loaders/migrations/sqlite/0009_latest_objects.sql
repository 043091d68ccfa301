-- mobiflux warehouse, version 9 (SQLite; version 8 is PostgreSQL's only): per pipeline and
-- feed resource, what the rows of the payload loaded last depend on (`content`: a SHA-256 over the
-- payload's SHA-256, the partner, the language and the mobiflux version). A reference file (GBFS
-- system_information, vehicle_types, station_information, …) fetched again unchanged is
-- landed and recorded in the run's manifest but not transformed and merged again (DESIGN:
-- raw zone). Written in the load's transaction, as in PostgreSQL.
CREATE TABLE latest_objects (
    pipeline TEXT NOT NULL,
    resource TEXT NOT NULL,
    content TEXT NOT NULL,
    run_id TEXT NOT NULL,
    source_object TEXT NOT NULL,
    PRIMARY KEY (pipeline, resource)
);
