-- mobiflux warehouse, version 12 (PostgreSQL): the snapshot times of the two tables every
-- GBFS poll writes, `vehicles` and `station_status`, are kept in `snapshot_times`: one row
-- per table, partner and time, written in the transaction of the load that stores the
-- snapshot. A load asks it which of its times the warehouse holds already (migration 10
-- asked the table's `(observed_at, partner)` B-tree, which takes an entry for every row: at
-- 1,000 systems polled each minute, 250,000 entries a minute, a fifth of the WAL written).
-- Time-range queries on the two tables use a BRIN index on `observed_at` instead: rows
-- arrive in time order, and the index is a few pages per day partition. The other snapshot
-- tables keep their B-tree (a gateway log or a carpool export holds many times per load).
-- Deleting snapshots by hand (dropping a day partition, say): delete their times here too,
-- or loading them again would find them stored and skip them.
CREATE TABLE snapshot_times (
    tbl text COLLATE "C" NOT NULL,
    partner text COLLATE "C" NOT NULL,
    observed_at timestamptz NOT NULL,
    PRIMARY KEY (tbl, partner, observed_at)
);
INSERT INTO snapshot_times (tbl, partner, observed_at)
    SELECT DISTINCT 'vehicles', partner, observed_at FROM vehicles;
INSERT INTO snapshot_times (tbl, partner, observed_at)
    SELECT DISTINCT 'station_status', partner, observed_at FROM station_status;
DROP INDEX vehicles_observed;
CREATE INDEX vehicles_observed ON vehicles USING brin (observed_at);
DROP INDEX station_status_observed;
CREATE INDEX station_status_observed ON station_status USING brin (observed_at);
