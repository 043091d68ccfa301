-- mobiflux warehouse, version 7 (SQLite): station occupancy per day and hour of day across
-- stations (the dashboard's heat map; docs/stats.md), as in PostgreSQL.

CREATE VIEW stats_occupancy_by_hour AS
SELECT substr(period, 1, 10) AS day, CAST(substr(period, 12, 2) AS INTEGER) AS hour_of_day,
       partner, count(*) AS stations,
       sum(vehicles_available / samples) AS vehicles_available,
       sum(docks_available / samples) AS docks_available,
       sum(empty_s) / 60 AS empty_min, sum(full_s) / 60 AS full_min
FROM station_occupancy_hourly
WHERE samples > 0
GROUP BY 1, 2, 3;
