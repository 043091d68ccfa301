-- mobiflux warehouse, version 3 (SQLite): calls through the MaaS gateway, from its
-- access logs (one row per request line; request_id is the line's own id or a stable hash).

CREATE TABLE gateway_calls (
    partner TEXT NOT NULL,
    request_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    client_id TEXT,
    target_partner TEXT,
    remote_addr TEXT,
    method TEXT,
    endpoint TEXT,
    status INTEGER NOT NULL,
    latency_ms REAL,
    bytes INTEGER,
    user_agent TEXT,
    run_id TEXT NOT NULL,
    PRIMARY KEY (partner, request_id, observed_at)
);

CREATE INDEX gateway_calls_observed ON gateway_calls (observed_at);
