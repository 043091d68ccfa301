-- mobiflux warehouse, version 7 (SQLite): station occupancy per day and hour of day across
-- stations (the dashboard's heat map; docs/stats.md), from a rollup per partner and hour, as
-- in PostgreSQL.

CREATE TABLE station_occupancy_partner_hourly (
    partner TEXT NOT NULL,
    period TEXT NOT NULL,
    samples REAL NOT NULL,
    vehicles_available REAL NOT NULL,
    docks_available REAL NOT NULL,
    observed_s REAL NOT NULL,
    empty_s REAL NOT NULL,
    full_s REAL NOT NULL,
    not_renting_s REAL NOT NULL,
    PRIMARY KEY (partner, period)
);

CREATE VIEW stats_occupancy_by_hour AS
SELECT substr(period, 1, 10) AS day, CAST(substr(period, 12, 2) AS INTEGER) AS hour_of_day,
       partner, CAST(samples AS INTEGER) AS samples, vehicles_available, docks_available,
       empty_s / 60 AS empty_min, full_s / 60 AS full_min
FROM station_occupancy_partner_hourly
WHERE samples > 0;
