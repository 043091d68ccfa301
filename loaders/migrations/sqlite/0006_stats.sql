-- mobiflux warehouse, version 6 (SQLite): the pipelines registry, the rollups the loaders
-- keep and the stats_* views, with the same names, columns and meaning as in PostgreSQL
-- (docs/stats.md). No roles here: territory scoping is PostgreSQL's (row-level security).
-- Rollup periods are timestamps at the start of the hour or day (UTC).

CREATE TABLE pipelines (
    pipeline TEXT PRIMARY KEY,
    partner TEXT NOT NULL,
    territory TEXT,
    format TEXT NOT NULL,
    schedule TEXT,
    interval_s INTEGER,
    updated_at TEXT NOT NULL
);

CREATE INDEX pipelines_territory ON pipelines (territory, partner);

CREATE TABLE fleet_availability_hourly (
    partner TEXT NOT NULL,
    period TEXT NOT NULL,
    vehicle_type_id TEXT NOT NULL,
    area TEXT NOT NULL,
    vehicles REAL NOT NULL,
    available REAL NOT NULL,
    reserved REAL NOT NULL,
    disabled REAL NOT NULL,
    PRIMARY KEY (partner, period, vehicle_type_id, area)
);

CREATE TABLE fleet_availability_daily (
    partner TEXT NOT NULL,
    period TEXT NOT NULL,
    vehicle_type_id TEXT NOT NULL,
    area TEXT NOT NULL,
    vehicles REAL NOT NULL,
    available REAL NOT NULL,
    reserved REAL NOT NULL,
    disabled REAL NOT NULL,
    PRIMARY KEY (partner, period, vehicle_type_id, area)
);

CREATE TABLE fleet_snapshots_hourly (
    partner TEXT NOT NULL,
    period TEXT NOT NULL,
    snapshots REAL NOT NULL,
    PRIMARY KEY (partner, period)
);

CREATE TABLE fleet_snapshots_daily (
    partner TEXT NOT NULL,
    period TEXT NOT NULL,
    snapshots REAL NOT NULL,
    PRIMARY KEY (partner, period)
);

CREATE TABLE station_occupancy_hourly (
    partner TEXT NOT NULL,
    station_id TEXT NOT NULL,
    period TEXT NOT NULL,
    samples REAL NOT NULL,
    vehicles_available REAL NOT NULL,
    docks_available REAL NOT NULL,
    observed_s REAL NOT NULL,
    empty_s REAL NOT NULL,
    full_s REAL NOT NULL,
    not_renting_s REAL NOT NULL,
    PRIMARY KEY (partner, station_id, period)
);

CREATE TABLE station_occupancy_daily (
    partner TEXT NOT NULL,
    station_id TEXT NOT NULL,
    period TEXT NOT NULL,
    samples REAL NOT NULL,
    vehicles_available REAL NOT NULL,
    docks_available REAL NOT NULL,
    observed_s REAL NOT NULL,
    empty_s REAL NOT NULL,
    full_s REAL NOT NULL,
    not_renting_s REAL NOT NULL,
    PRIMARY KEY (partner, station_id, period)
);

CREATE TABLE station_last_status (
    partner TEXT NOT NULL,
    station_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    was_empty INTEGER NOT NULL,
    was_full INTEGER NOT NULL,
    was_renting INTEGER NOT NULL,
    PRIMARY KEY (partner, station_id)
);

CREATE VIEW partner_territories AS
SELECT DISTINCT partner, territory FROM pipelines WHERE territory IS NOT NULL;

CREATE VIEW stats_fleet_availability_hourly AS
SELECT f.period AS hour, f.partner, NULLIF(f.vehicle_type_id, '') AS vehicle_type_id,
       NULLIF(f.area, '') AS area, CAST(s.snapshots AS INTEGER) AS snapshots,
       f.vehicles / s.snapshots AS avg_vehicles,
       f.available / s.snapshots AS avg_available,
       f.reserved / s.snapshots AS avg_reserved,
       f.disabled / s.snapshots AS avg_disabled
FROM fleet_availability_hourly f
JOIN fleet_snapshots_hourly s ON s.partner = f.partner AND s.period = f.period;

CREATE VIEW stats_fleet_availability_daily AS
SELECT substr(f.period, 1, 10) AS day, f.partner,
       NULLIF(f.vehicle_type_id, '') AS vehicle_type_id, NULLIF(f.area, '') AS area,
       CAST(s.snapshots AS INTEGER) AS snapshots,
       f.vehicles / s.snapshots AS avg_vehicles,
       f.available / s.snapshots AS avg_available,
       f.reserved / s.snapshots AS avg_reserved,
       f.disabled / s.snapshots AS avg_disabled
FROM fleet_availability_daily f
JOIN fleet_snapshots_daily s ON s.partner = f.partner AND s.period = f.period;

CREATE VIEW stats_station_occupancy_hourly AS
SELECT o.period AS hour, o.partner, o.station_id, st.name, st.capacity,
       CAST(o.samples AS INTEGER) AS samples,
       o.vehicles_available / o.samples AS avg_vehicles_available,
       o.docks_available / o.samples AS avg_docks_available,
       o.vehicles_available / NULLIF(o.vehicles_available + o.docks_available, 0) AS occupancy,
       o.observed_s / 60 AS observed_min, o.empty_s / 60 AS empty_min,
       o.full_s / 60 AS full_min, o.not_renting_s / 60 AS not_renting_min
FROM station_occupancy_hourly o
LEFT JOIN stations st ON st.partner = o.partner AND st.station_id = o.station_id
WHERE o.samples > 0;

CREATE VIEW stats_station_outages_daily AS
SELECT substr(o.period, 1, 10) AS day, o.partner, o.station_id, st.name, st.capacity,
       CAST(o.samples AS INTEGER) AS samples,
       o.vehicles_available / NULLIF(o.samples, 0) AS avg_vehicles_available,
       o.observed_s / 60 AS observed_min, o.empty_s / 60 AS empty_min,
       o.full_s / 60 AS full_min, o.not_renting_s / 60 AS not_renting_min
FROM station_occupancy_daily o
LEFT JOIN stations st ON st.partner = o.partner AND st.station_id = o.station_id;

-- floor(x * 20) / 20 without the optional math functions: truncation, one less below zero.
CREATE VIEW stats_carpool_od_daily AS
WITH cells AS (
    SELECT substr(departure_at, 1, 10) AS day, partner, role, kind, journey_id, distance_m, price,
           departure_lat * 20 AS olat, departure_lon * 20 AS olon,
           arrival_lat * 20 AS dlat, arrival_lon * 20 AS dlon
    FROM carpool_journeys
    WHERE departure_at IS NOT NULL AND departure_lat IS NOT NULL AND arrival_lat IS NOT NULL
), named AS (
    SELECT day, partner, role, kind, journey_id, distance_m, price,
           printf('%.2f', (CAST(olat AS INTEGER) - (olat < CAST(olat AS INTEGER))) / 20.0) || ','
               || printf('%.2f', (CAST(olon AS INTEGER) - (olon < CAST(olon AS INTEGER))) / 20.0) AS origin,
           printf('%.2f', (CAST(dlat AS INTEGER) - (dlat < CAST(dlat AS INTEGER))) / 20.0) || ','
               || printf('%.2f', (CAST(dlon AS INTEGER) - (dlon < CAST(dlon AS INTEGER))) / 20.0) AS destination
    FROM cells
)
SELECT day, partner, origin, destination,
       count(DISTINCT role || '|' || kind || '|' || journey_id) AS journeys,
       count(DISTINCT CASE WHEN role = 'driver' THEN kind || '|' || journey_id END) AS driver_offers,
       count(DISTINCT CASE WHEN role = 'passenger' THEN kind || '|' || journey_id END) AS passenger_requests,
       avg(distance_m) / 1000 AS avg_distance_km,
       avg(price) AS avg_price
FROM named
GROUP BY day, partner, origin, destination;

CREATE VIEW stats_charge_points_by_commune AS
WITH latest AS (
    SELECT partner, charge_point_id, status, occupancy FROM (
        SELECT partner, charge_point_id, status, occupancy,
               row_number() OVER (PARTITION BY partner, charge_point_id ORDER BY observed_at DESC) AS n
        FROM charge_point_status
    ) WHERE n = 1
)
SELECT c.partner, c.insee_code, count(DISTINCT c.station_id) AS stations,
       count(*) AS charge_points,
       sum(c.power_kw) AS total_power_kw, max(c.power_kw) AS max_power_kw,
       sum(c.power_kw >= 50) AS fast_points,
       count(l.charge_point_id) AS reporting_points,
       sum(coalesce(l.occupancy = 'libre', 0)) AS free_now,
       sum(coalesce(l.occupancy = 'occupe', 0)) AS occupied_now,
       sum(coalesce(l.status = 'en_service', 0)) AS in_service_now
FROM charge_points c
LEFT JOIN latest l ON l.partner = c.partner AND l.charge_point_id = c.charge_point_id
GROUP BY c.partner, c.insee_code;

CREATE VIEW stats_parking_by_commune AS
WITH latest AS (
    SELECT partner, facility_id, occupied, free FROM (
        SELECT partner, facility_id, occupied, free,
               row_number() OVER (PARTITION BY partner, facility_id ORDER BY observed_at DESC) AS n
        FROM parking_occupancy
    ) WHERE n = 1
)
SELECT f.partner, f.insee_code, count(*) AS facilities,
       sum(f.capacity) AS capacity, sum(f.spaces_pmr) AS spaces_pmr,
       sum(f.spaces_ev) AS spaces_ev, sum(f.spaces_bike) AS spaces_bike,
       sum(f.spaces_park_ride) AS spaces_park_ride,
       count(l.facility_id) AS reporting_facilities,
       sum(l.occupied) AS occupied_now, sum(l.free) AS free_now
FROM parking_facilities f
LEFT JOIN latest l ON l.partner = f.partner AND l.facility_id = f.facility_id
GROUP BY f.partner, f.insee_code;

-- percentile_cont by hand: rank the latencies, interpolate between the two around p.
CREATE VIEW stats_gateway_usage_daily AS
WITH ranked AS (
    SELECT substr(observed_at, 1, 10) AS day, client_id, target_partner AS partner, endpoint,
           status, latency_ms,
           row_number() OVER w AS rn,
           count(latency_ms) OVER (PARTITION BY substr(observed_at, 1, 10), client_id, target_partner, endpoint) AS n
    FROM gateway_calls
    WINDOW w AS (PARTITION BY substr(observed_at, 1, 10), client_id, target_partner, endpoint
                 ORDER BY latency_ms IS NULL, latency_ms)
), at AS (
    SELECT *, 1 + (n - 1) * 0.5 AS p50, 1 + (n - 1) * 0.95 AS p95 FROM ranked
)
SELECT day, client_id, partner, endpoint, count(*) AS calls,
       sum(status >= 400) AS errors,
       CAST(sum(status >= 400) AS REAL) / count(*) AS error_rate,
       max(CASE WHEN rn = CAST(p50 AS INTEGER) THEN latency_ms END)
         + (max(p50) - CAST(max(p50) AS INTEGER))
         * (coalesce(max(CASE WHEN rn = CAST(p50 AS INTEGER) + 1 THEN latency_ms END),
                     max(CASE WHEN rn = CAST(p50 AS INTEGER) THEN latency_ms END))
            - max(CASE WHEN rn = CAST(p50 AS INTEGER) THEN latency_ms END)) AS p50_ms,
       max(CASE WHEN rn = CAST(p95 AS INTEGER) THEN latency_ms END)
         + (max(p95) - CAST(max(p95) AS INTEGER))
         * (coalesce(max(CASE WHEN rn = CAST(p95 AS INTEGER) + 1 THEN latency_ms END),
                     max(CASE WHEN rn = CAST(p95 AS INTEGER) THEN latency_ms END))
            - max(CASE WHEN rn = CAST(p95 AS INTEGER) THEN latency_ms END)) AS p95_ms
FROM at
GROUP BY day, client_id, partner, endpoint;

CREATE VIEW stats_feed_health AS
WITH runs AS (
    SELECT p.*,
        (SELECT run_id FROM etl_runs r WHERE r.pipeline = p.pipeline
         ORDER BY started_at DESC LIMIT 1) AS last_id,
        (SELECT finished_at FROM etl_runs r WHERE r.pipeline = p.pipeline AND r.status = 'succeeded'
         ORDER BY started_at DESC LIMIT 1) AS last_success_at
    FROM pipelines p
)
SELECT r.pipeline, r.partner, r.territory, r.format, r.schedule, r.interval_s,
       last.started_at AS last_run_at, last.status AS last_status, last.error AS last_error,
       r.last_success_at,
       CAST((julianday('now') - julianday(r.last_success_at)) * 86400 AS INTEGER) AS freshness_s,
       (r.last_success_at IS NULL OR (r.interval_s IS NOT NULL
            AND (julianday('now') - julianday(r.last_success_at)) * 86400 > 2 * r.interval_s + 60)) AS late,
       (SELECT count(*) FROM etl_runs d WHERE d.pipeline = r.pipeline
            AND d.started_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')) AS runs,
       (SELECT count(*) FROM etl_runs d WHERE d.pipeline = r.pipeline AND d.status = 'failed'
            AND d.started_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')) AS failures,
       (SELECT coalesce(sum(rows_quarantined), 0) FROM etl_runs d WHERE d.pipeline = r.pipeline
            AND d.started_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')) AS quarantined
FROM runs r
LEFT JOIN etl_runs last ON last.run_id = r.last_id;
