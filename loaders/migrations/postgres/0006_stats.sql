-- mobiflux warehouse, version 6 (PostgreSQL): what AOM analysts read.
--
-- * pipelines: each definition's partner, territory (AOM) and schedule, registered by
--   `mobiflux run` and `mobiflux schedule`; the territory of a partner comes from here.
-- * rollups kept by the loaders in each load's transaction (loaders/src/rollup.rs):
--   fleet availability and station occupancy per hour and per day.
-- * the stats_* views (documented in docs/stats.md), security_invoker so that an analyst's
--   row-level security applies through them.
-- * territory scoping: analyst_territories (filled by `mobiflux grant-analyst`) and one
--   row-level-security policy per table; the loader's role owns the tables and is not
--   subject to them (RLS is enabled, not forced).

CREATE TABLE pipelines (
    pipeline text COLLATE "C" PRIMARY KEY,
    partner text COLLATE "C" NOT NULL,
    territory text COLLATE "C",
    format text NOT NULL,
    schedule text,
    -- The schedule's longest wait between two ticks (seconds, over the next 8 days).
    interval_s bigint,
    updated_at timestamptz NOT NULL
);

CREATE INDEX pipelines_territory ON pipelines (territory, partner);

CREATE TABLE analyst_territories (
    role name NOT NULL,
    territory text COLLATE "C" NOT NULL,
    PRIMARY KEY (role, territory)
);

CREATE TABLE fleet_availability_hourly (
    partner text COLLATE "C" NOT NULL,
    period timestamptz NOT NULL,
    vehicle_type_id text COLLATE "C" NOT NULL,
    area text COLLATE "C" NOT NULL,
    vehicles double precision NOT NULL,
    available double precision NOT NULL,
    reserved double precision NOT NULL,
    disabled double precision NOT NULL,
    PRIMARY KEY (partner, period, vehicle_type_id, area)
);
CREATE INDEX fleet_availability_hourly_period ON fleet_availability_hourly (period);

CREATE TABLE fleet_availability_daily (LIKE fleet_availability_hourly INCLUDING ALL);

CREATE TABLE fleet_snapshots_hourly (
    partner text COLLATE "C" NOT NULL,
    period timestamptz NOT NULL,
    snapshots double precision NOT NULL,
    PRIMARY KEY (partner, period)
);

CREATE TABLE fleet_snapshots_daily (LIKE fleet_snapshots_hourly INCLUDING ALL);

CREATE TABLE station_occupancy_hourly (
    partner text COLLATE "C" NOT NULL,
    station_id text COLLATE "C" NOT NULL,
    period timestamptz NOT NULL,
    samples double precision NOT NULL,
    vehicles_available double precision NOT NULL,
    docks_available double precision NOT NULL,
    observed_s double precision NOT NULL,
    empty_s double precision NOT NULL,
    full_s double precision NOT NULL,
    not_renting_s double precision NOT NULL,
    PRIMARY KEY (partner, station_id, period)
);
CREATE INDEX station_occupancy_hourly_period ON station_occupancy_hourly (period);

CREATE TABLE station_occupancy_daily (LIKE station_occupancy_hourly INCLUDING ALL);

CREATE TABLE station_last_status (
    partner text COLLATE "C" NOT NULL,
    station_id text COLLATE "C" NOT NULL,
    observed_at timestamptz NOT NULL,
    was_empty boolean NOT NULL,
    was_full boolean NOT NULL,
    was_renting boolean NOT NULL,
    PRIMARY KEY (partner, station_id)
);

-- Territory scoping: an analyst (a role with rows in analyst_territories) sees its own
-- territories, the pipelines of those territories, and only the rows of their partners in
-- every other table. Each policy reads the next table under the analyst's own policies:
-- rows -> pipelines -> analyst_territories.
ALTER TABLE analyst_territories ENABLE ROW LEVEL SECURITY;
CREATE POLICY territory ON analyst_territories FOR SELECT USING (role = current_user);
ALTER TABLE pipelines ENABLE ROW LEVEL SECURITY;
CREATE POLICY territory ON pipelines FOR SELECT
    USING (territory IN (SELECT territory FROM analyst_territories WHERE role = current_user));

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'etl_runs', 'quarantine', 'system_info', 'vehicle_types', 'stations',
        'station_status', 'vehicles', 'pricing_plans', 'regions', 'geofencing_zones',
        'charge_points', 'charge_point_status', 'parking_facilities', 'parking_occupancy',
        'carpool_journeys', 'fleet_availability_hourly', 'fleet_availability_daily',
        'fleet_snapshots_hourly', 'fleet_snapshots_daily', 'station_occupancy_hourly',
        'station_occupancy_daily', 'station_last_status'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY territory ON %I FOR SELECT USING (partner IN (SELECT partner FROM pipelines))',
            t);
    END LOOP;
END $$;

-- Gateway calls belong to the partner that was called.
ALTER TABLE gateway_calls ENABLE ROW LEVEL SECURITY;
CREATE POLICY territory ON gateway_calls FOR SELECT
    USING (target_partner IN (SELECT partner FROM pipelines));

-- Which territory (AOM) each partner serves.
CREATE VIEW partner_territories WITH (security_invoker = true) AS
SELECT DISTINCT partner, territory FROM pipelines WHERE territory IS NOT NULL;

CREATE VIEW stats_fleet_availability_hourly WITH (security_invoker = true) AS
SELECT f.period AS hour, f.partner, NULLIF(f.vehicle_type_id, '') AS vehicle_type_id,
       NULLIF(f.area, '') AS area, s.snapshots::bigint AS snapshots,
       f.vehicles / s.snapshots AS avg_vehicles,
       f.available / s.snapshots AS avg_available,
       f.reserved / s.snapshots AS avg_reserved,
       f.disabled / s.snapshots AS avg_disabled
FROM fleet_availability_hourly f
JOIN fleet_snapshots_hourly s ON s.partner = f.partner AND s.period = f.period;

CREATE VIEW stats_fleet_availability_daily WITH (security_invoker = true) AS
SELECT (f.period AT TIME ZONE 'UTC')::date AS day, f.partner,
       NULLIF(f.vehicle_type_id, '') AS vehicle_type_id, NULLIF(f.area, '') AS area,
       s.snapshots::bigint AS snapshots,
       f.vehicles / s.snapshots AS avg_vehicles,
       f.available / s.snapshots AS avg_available,
       f.reserved / s.snapshots AS avg_reserved,
       f.disabled / s.snapshots AS avg_disabled
FROM fleet_availability_daily f
JOIN fleet_snapshots_daily s ON s.partner = f.partner AND s.period = f.period;

CREATE VIEW stats_station_occupancy_hourly WITH (security_invoker = true) AS
SELECT o.period AS hour, o.partner, o.station_id, st.name, st.capacity,
       o.samples::bigint AS samples,
       o.vehicles_available / o.samples AS avg_vehicles_available,
       o.docks_available / o.samples AS avg_docks_available,
       o.vehicles_available / NULLIF(o.vehicles_available + o.docks_available, 0) AS occupancy,
       o.observed_s / 60 AS observed_min, o.empty_s / 60 AS empty_min,
       o.full_s / 60 AS full_min, o.not_renting_s / 60 AS not_renting_min
FROM station_occupancy_hourly o
LEFT JOIN stations st ON st.partner = o.partner AND st.station_id = o.station_id
WHERE o.samples > 0;

CREATE VIEW stats_station_outages_daily WITH (security_invoker = true) AS
SELECT (o.period AT TIME ZONE 'UTC')::date AS day, o.partner, o.station_id, st.name,
       st.capacity, o.samples::bigint AS samples,
       o.vehicles_available / NULLIF(o.samples, 0) AS avg_vehicles_available,
       o.observed_s / 60 AS observed_min, o.empty_s / 60 AS empty_min,
       o.full_s / 60 AS full_min, o.not_renting_s / 60 AS not_renting_min
FROM station_occupancy_daily o
LEFT JOIN stations st ON st.partner = o.partner AND st.station_id = o.station_id;

-- A journey counts once per day it departs, however many searches found it; origins and
-- destinations are 0.05° cells (about 5 km), named by their south-west corner.
CREATE VIEW stats_carpool_od_daily WITH (security_invoker = true) AS
SELECT (departure_at AT TIME ZONE 'UTC')::date AS day, partner,
       to_char(floor(departure_lat * 20) / 20, 'FM990.00') || ','
           || to_char(floor(departure_lon * 20) / 20, 'FM9990.00') AS origin,
       to_char(floor(arrival_lat * 20) / 20, 'FM990.00') || ','
           || to_char(floor(arrival_lon * 20) / 20, 'FM9990.00') AS destination,
       count(DISTINCT (role, kind, journey_id))::bigint AS journeys,
       count(DISTINCT (role, kind, journey_id)) FILTER (WHERE role = 'driver')::bigint AS driver_offers,
       count(DISTINCT (role, kind, journey_id)) FILTER (WHERE role = 'passenger')::bigint AS passenger_requests,
       avg(distance_m) / 1000 AS avg_distance_km,
       avg(price) AS avg_price
FROM carpool_journeys
WHERE departure_at IS NOT NULL AND departure_lat IS NOT NULL AND arrival_lat IS NOT NULL
GROUP BY 1, 2, 3, 4;

CREATE VIEW stats_charge_points_by_commune WITH (security_invoker = true) AS
WITH latest AS (
    SELECT DISTINCT ON (partner, charge_point_id) partner, charge_point_id, status, occupancy
    FROM charge_point_status
    ORDER BY partner, charge_point_id, observed_at DESC
)
SELECT c.partner, c.insee_code, count(DISTINCT c.station_id)::bigint AS stations,
       count(*)::bigint AS charge_points,
       sum(c.power_kw) AS total_power_kw, max(c.power_kw) AS max_power_kw,
       count(*) FILTER (WHERE c.power_kw >= 50)::bigint AS fast_points,
       count(l.charge_point_id)::bigint AS reporting_points,
       count(*) FILTER (WHERE l.occupancy = 'libre')::bigint AS free_now,
       count(*) FILTER (WHERE l.occupancy = 'occupe')::bigint AS occupied_now,
       count(*) FILTER (WHERE l.status = 'en_service')::bigint AS in_service_now
FROM charge_points c
LEFT JOIN latest l ON l.partner = c.partner AND l.charge_point_id = c.charge_point_id
GROUP BY c.partner, c.insee_code;

CREATE VIEW stats_parking_by_commune WITH (security_invoker = true) AS
WITH latest AS (
    SELECT DISTINCT ON (partner, facility_id) partner, facility_id, capacity, occupied, free
    FROM parking_occupancy
    ORDER BY partner, facility_id, observed_at DESC
)
SELECT f.partner, f.insee_code, count(*)::bigint AS facilities,
       sum(f.capacity)::bigint AS capacity, sum(f.spaces_pmr)::bigint AS spaces_pmr,
       sum(f.spaces_ev)::bigint AS spaces_ev, sum(f.spaces_bike)::bigint AS spaces_bike,
       sum(f.spaces_park_ride)::bigint AS spaces_park_ride,
       count(l.facility_id)::bigint AS reporting_facilities,
       sum(l.occupied)::bigint AS occupied_now, sum(l.free)::bigint AS free_now
FROM parking_facilities f
LEFT JOIN latest l ON l.partner = f.partner AND l.facility_id = f.facility_id
GROUP BY f.partner, f.insee_code;

CREATE VIEW stats_gateway_usage_daily WITH (security_invoker = true) AS
SELECT (observed_at AT TIME ZONE 'UTC')::date AS day, client_id,
       target_partner AS partner, endpoint,
       count(*)::bigint AS calls,
       count(*) FILTER (WHERE status >= 400)::bigint AS errors,
       (count(*) FILTER (WHERE status >= 400))::double precision / count(*) AS error_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_ms
FROM gateway_calls
GROUP BY 1, 2, 3, 4;

-- Feed health over the last 24 hours; a feed is late when its last success is older than
-- twice its schedule's longest wait plus a minute (as `mobiflux status` says).
CREATE VIEW stats_feed_health WITH (security_invoker = true) AS
SELECT p.pipeline, p.partner, p.territory, p.format, p.schedule, p.interval_s,
       last.started_at AS last_run_at, last.status AS last_status, last.error AS last_error,
       ok.finished_at AS last_success_at,
       extract(epoch FROM now() - ok.finished_at)::bigint AS freshness_s,
       (ok.finished_at IS NULL OR (p.interval_s IS NOT NULL
            AND now() - ok.finished_at > (2 * p.interval_s + 60) * interval '1 second')) AS late,
       day.runs, day.failures, day.quarantined
FROM pipelines p
LEFT JOIN LATERAL (
    SELECT started_at, status, error FROM etl_runs r
    WHERE r.pipeline = p.pipeline ORDER BY started_at DESC LIMIT 1
) last ON true
LEFT JOIN LATERAL (
    SELECT finished_at FROM etl_runs r
    WHERE r.pipeline = p.pipeline AND r.status = 'succeeded' ORDER BY started_at DESC LIMIT 1
) ok ON true
LEFT JOIN LATERAL (
    SELECT count(*)::bigint AS runs,
           count(*) FILTER (WHERE status = 'failed')::bigint AS failures,
           coalesce(sum(rows_quarantined), 0)::bigint AS quarantined
    FROM etl_runs r
    WHERE r.pipeline = p.pipeline AND r.started_at > now() - interval '24 hours'
) day ON true;
