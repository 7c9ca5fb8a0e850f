-- 001_events.sql -- the canonical event table, partitioned by day on event time.
-- Applied in file-name order by deploy/local/lib.sh (pg_migrate), which records
-- each file in schema_migrations so a migration runs once.

CREATE TABLE IF NOT EXISTS agent_events (
    id                    uuid             NOT NULL,
    ts                    timestamptz      NOT NULL,   -- event time (client's timestamp, else received_at)
    session_id            text,
    agent_id              text,
    agent_role            text,
    parent_agent_id       text,
    source_app            text,
    event_type            text             NOT NULL,
    tool                  text,
    status                text,
    payload               jsonb            NOT NULL DEFAULT '{}'::jsonb,
    latency_ms            double precision,
    tokens_input          bigint,
    tokens_output         bigint,
    tokens_cache_read     bigint,
    tokens_cache_creation bigint,
    cost_usd              double precision,
    trace_id              text,
    span_id               text,
    received_at           timestamptz      NOT NULL,   -- stamped by the collector
    stream_id             text,                        -- Redis stream entry id it came from
    created_at            timestamptz      NOT NULL DEFAULT clock_timestamp(),  -- stored at (row written)
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);

CREATE INDEX IF NOT EXISTS agent_events_session_ts ON agent_events (session_id, ts);
CREATE INDEX IF NOT EXISTS agent_events_type_ts    ON agent_events (event_type, ts);
CREATE INDEX IF NOT EXISTS agent_events_agent_ts   ON agent_events (agent_id, ts);

-- Create the partition holding day `d` if it does not exist; returns its name.
CREATE OR REPLACE FUNCTION agent_events_ensure_partition(d date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('agent_events_%s', to_char(d, 'YYYYMMDD'));
BEGIN
    IF to_regclass(part) IS NULL THEN
        BEGIN
            EXECUTE format('CREATE TABLE %I PARTITION OF agent_events FOR VALUES FROM (%L) TO (%L)',
                           part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        EXCEPTION WHEN duplicate_table THEN
            NULL;  -- created concurrently by another processor
        END;
    END IF;
    RETURN part;
END $$;

-- Create partitions from `back` days ago to `ahead` days ahead (UTC days).
CREATE OR REPLACE FUNCTION agent_events_ensure_partitions(back int, ahead int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    n int := 0;
BEGIN
    FOR i IN -back..ahead LOOP
        PERFORM agent_events_ensure_partition(today + i);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

SELECT agent_events_ensure_partitions(1, 7);
