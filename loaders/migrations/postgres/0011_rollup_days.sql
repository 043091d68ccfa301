-- Daily rollups are written once per UTC day, from the hourly rows, when the day closes
-- (`Warehouse::close_days`, run by the scheduler every hour): loads into an open day add
-- to the hourly rows only, loads into a closed day (late or replayed snapshots) to both.
-- Before this migration, loads added to both: the days before today are complete, today's
-- daily rows are rewritten from the hourly rows when it closes.
CREATE TABLE rollup_days (
    one bool PRIMARY KEY DEFAULT true CHECK (one),
    -- Days before this one (UTC midnight) are closed.
    closed_before timestamptz NOT NULL
);
INSERT INTO rollup_days (closed_before) VALUES (date_trunc('day', now(), 'UTC'));

-- For the views (which run with their reader's rights): analysts need no grant on the mark.
CREATE FUNCTION mobiflux_days_closed_before() RETURNS timestamptz
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT closed_before FROM rollup_days $$;

-- Closed days from the daily rows, open ones summed from the hourly rows.
CREATE OR REPLACE VIEW stats_fleet_availability_daily WITH (security_invoker = true) AS
WITH f AS (
    SELECT partner, period, vehicle_type_id, area, vehicles, available, reserved, disabled
    FROM fleet_availability_daily WHERE period < (SELECT mobiflux_days_closed_before())
    UNION ALL
    SELECT partner, date_trunc('day', period, 'UTC'), vehicle_type_id, area,
           sum(vehicles), sum(available), sum(reserved), sum(disabled)
    FROM fleet_availability_hourly WHERE period >= (SELECT mobiflux_days_closed_before())
    GROUP BY 1, 2, 3, 4
), s AS (
    SELECT partner, period, snapshots
    FROM fleet_snapshots_daily WHERE period < (SELECT mobiflux_days_closed_before())
    UNION ALL
    SELECT partner, date_trunc('day', period, 'UTC'), sum(snapshots)
    FROM fleet_snapshots_hourly WHERE period >= (SELECT mobiflux_days_closed_before())
    GROUP BY 1, 2
)
SELECT (f.period AT TIME ZONE 'UTC')::date AS day, f.partner,
       NULLIF(f.vehicle_type_id, '') AS vehicle_type_id, NULLIF(f.area, '') AS area,
       s.snapshots::bigint AS snapshots,
       f.vehicles / s.snapshots AS avg_vehicles,
       f.available / s.snapshots AS avg_available,
       f.reserved / s.snapshots AS avg_reserved,
       f.disabled / s.snapshots AS avg_disabled
FROM f JOIN s ON s.partner = f.partner AND s.period = f.period;

CREATE OR REPLACE VIEW stats_station_outages_daily WITH (security_invoker = true) AS
WITH o AS (
    SELECT partner, station_id, period, samples, vehicles_available, observed_s, empty_s,
           full_s, not_renting_s
    FROM station_occupancy_daily WHERE period < (SELECT mobiflux_days_closed_before())
    UNION ALL
    SELECT partner, station_id, date_trunc('day', period, 'UTC'), sum(samples),
           sum(vehicles_available), sum(observed_s), sum(empty_s), sum(full_s),
           sum(not_renting_s)
    FROM station_occupancy_hourly WHERE period >= (SELECT mobiflux_days_closed_before())
    GROUP BY 1, 2, 3
)
SELECT (o.period AT TIME ZONE 'UTC')::date AS day, o.partner, o.station_id, st.name,
       st.capacity, o.samples::bigint AS samples,
       o.vehicles_available / NULLIF(o.samples, 0) AS avg_vehicles_available,
       o.observed_s / 60 AS observed_min, o.empty_s / 60 AS empty_min,
       o.full_s / 60 AS full_min, o.not_renting_s / 60 AS not_renting_min
FROM o
LEFT JOIN stations st ON st.partner = o.partner AND st.station_id = o.station_id;
