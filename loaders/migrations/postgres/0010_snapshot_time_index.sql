-- mobiflux warehouse, version 10 (PostgreSQL): each snapshot table's time index is on
-- (observed_at, partner) instead of (observed_at) alone. A load asks, before its rows go in,
-- which of its snapshot times the warehouse holds already for its partner (the rollups and
-- the curated zone count each snapshot once); with the primary key (partner, id,
-- observed_at) and the bare time index, that question read every row the partner had
-- loaded that day, more each poll (a 2,500-vehicle system polled each minute: 3.6 million
-- index entries per load by the end of the day). On (observed_at, partner) it is a few index pages
-- whatever the day holds; time-range queries across partners use the index as before.
-- Existing partitions get the new index in this migration's transaction.
DROP INDEX station_status_observed;
CREATE INDEX station_status_observed ON station_status (observed_at, partner);
DROP INDEX vehicles_observed;
CREATE INDEX vehicles_observed ON vehicles (observed_at, partner);
DROP INDEX charge_point_status_observed;
CREATE INDEX charge_point_status_observed ON charge_point_status (observed_at, partner);
DROP INDEX parking_occupancy_observed;
CREATE INDEX parking_occupancy_observed ON parking_occupancy (observed_at, partner);
DROP INDEX gateway_calls_observed;
CREATE INDEX gateway_calls_observed ON gateway_calls (observed_at, partner);
DROP INDEX carpool_journeys_observed;
CREATE INDEX carpool_journeys_observed ON carpool_journeys (observed_at, partner);
