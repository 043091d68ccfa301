-- mobiflux warehouse, version 7 (PostgreSQL): station occupancy per day and hour of day
-- across stations (the dashboard's heat map; docs/stats.md), from a rollup per partner and
-- hour kept by the loaders like the others: a few rows per hour instead of one per station.

CREATE TABLE station_occupancy_partner_hourly (
    partner text COLLATE "C" NOT NULL,
    period timestamptz NOT NULL,
    samples double precision NOT NULL,
    vehicles_available double precision NOT NULL,
    docks_available double precision NOT NULL,
    observed_s double precision NOT NULL,
    empty_s double precision NOT NULL,
    full_s double precision NOT NULL,
    not_renting_s double precision NOT NULL,
    PRIMARY KEY (partner, period)
);
CREATE INDEX station_occupancy_partner_hourly_period ON station_occupancy_partner_hourly (period);
ALTER TABLE station_occupancy_partner_hourly ENABLE ROW LEVEL SECURITY;
CREATE POLICY territory ON station_occupancy_partner_hourly FOR SELECT
    USING (partner IN (SELECT partner FROM pipelines));

-- Sums over the hour's samples of every station: occupancy = vehicles / (vehicles + docks).
CREATE VIEW stats_occupancy_by_hour WITH (security_invoker = true) AS
SELECT (period AT TIME ZONE 'UTC')::date AS day,
       extract(hour FROM period AT TIME ZONE 'UTC')::int AS hour_of_day, partner,
       samples::bigint AS samples, vehicles_available, docks_available,
       empty_s / 60 AS empty_min, full_s / 60 AS full_min
FROM station_occupancy_partner_hourly
WHERE samples > 0;
