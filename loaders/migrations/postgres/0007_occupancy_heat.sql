-- mobiflux warehouse, version 7 (PostgreSQL): station occupancy per day and hour of day
-- across stations (the dashboard's heat map; docs/stats.md).

CREATE VIEW stats_occupancy_by_hour WITH (security_invoker = true) AS
SELECT (period AT TIME ZONE 'UTC')::date AS day,
       extract(hour FROM period AT TIME ZONE 'UTC')::int AS hour_of_day, partner,
       count(*)::bigint AS stations,
       sum(vehicles_available / samples) AS vehicles_available,
       sum(docks_available / samples) AS docks_available,
       sum(empty_s) / 60 AS empty_min, sum(full_s) / 60 AS full_min
FROM station_occupancy_hourly
WHERE samples > 0
GROUP BY 1, 2, 3;
