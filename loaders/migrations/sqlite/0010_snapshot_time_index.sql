-- mobiflux warehouse, version 10 (SQLite): each snapshot table's time index is on
-- (observed_at, partner) instead of (observed_at) alone, as in PostgreSQL's version 10: the
-- load's question "is this snapshot of this partner stored already" is one index probe
-- instead of a scan of the partner's rows.
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
