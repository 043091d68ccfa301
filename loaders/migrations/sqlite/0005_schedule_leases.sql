-- mobiflux warehouse, version 5 (SQLite): the schedule's leases and ticks, as in PostgreSQL
-- (one daemon per SQLite warehouse; the tables keep its ticks once all the same). Times are
-- epoch milliseconds.

CREATE TABLE schedule_leases (
    pipeline TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE schedule_ticks (
    pipeline TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    owner TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (pipeline, scheduled_for)
);
