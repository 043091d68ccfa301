-- mobiflux warehouse, version 3 (PostgreSQL): calls through the MaaS gateway, from its
-- access logs (one row per request line; request_id is the line's own id or a stable hash).

CREATE TABLE gateway_calls (
    partner text COLLATE "C" NOT NULL,
    request_id text COLLATE "C" NOT NULL,
    observed_at timestamptz NOT NULL,
    client_id text,
    target_partner text,
    remote_addr text,
    method text,
    endpoint text,
    status bigint NOT NULL,
    latency_ms double precision,
    bytes bigint,
    user_agent text,
    run_id text NOT NULL,
    PRIMARY KEY (partner, request_id, observed_at)
) PARTITION BY RANGE (observed_at);

CREATE INDEX gateway_calls_observed ON gateway_calls (observed_at);
