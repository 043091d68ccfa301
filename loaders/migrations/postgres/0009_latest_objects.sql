-- mobiflux warehouse, version 9 (PostgreSQL): per pipeline and feed resource, what the rows of the
-- payload loaded last depend on (`content`: a SHA-256 over the payload's SHA-256, the
-- partner, the language and the mobiflux version). A reference file (GBFS system_information,
-- vehicle_types, station_information, …) fetched again unchanged is landed and recorded in
-- the run's manifest but not transformed and merged again (DESIGN: raw zone). Written in the
-- load's transaction, so a rolled-back load leaves the previous content as the latest.
CREATE TABLE latest_objects (
    pipeline text COLLATE "C" NOT NULL,
    resource text COLLATE "C" NOT NULL,
    content text COLLATE "C" NOT NULL,
    run_id text NOT NULL,
    source_object text NOT NULL,
    PRIMARY KEY (pipeline, resource)
);
