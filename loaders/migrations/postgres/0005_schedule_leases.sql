-- mobiflux warehouse, version 5 (PostgreSQL): how several `mobiflux schedule` daemons share
-- the pipelines. A pipeline's lease says which daemon may start its runs until when (renewed
-- while a run goes on, taken over once expired); a tick row makes each tick of each
-- pipeline run once across daemons. Times are the database's clock.

CREATE TABLE schedule_leases (
    pipeline text COLLATE "C" PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE schedule_ticks (
    pipeline text COLLATE "C" NOT NULL,
    scheduled_for timestamptz NOT NULL,
    owner text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, scheduled_for)
);
