-- 002_history.sql -- history (issue 6): per-session summaries kept by a
-- statement trigger, chat transcripts with full-text search, partition
-- helpers for retention, and the read-only role the collector's read API uses.
-- Applied once by deploy/local/lib.sh (pg_migrate), in one transaction.

-- ------------------------------------------------------------ partitions --

-- Create the daily partition of `parent` (partitioned by range on ts) that
-- holds day `d`, named <parent>_YYYYMMDD, if it does not exist.
CREATE OR REPLACE FUNCTION history_ensure_partition(parent text, d date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('%s_%s', parent, to_char(d, 'YYYYMMDD'));
BEGIN
    IF to_regclass(part) IS NULL THEN
        BEGIN
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                           part, parent, d::timestamp AT TIME ZONE 'UTC',
                           (d + 1)::timestamp AT TIME ZONE 'UTC');
        EXCEPTION WHEN duplicate_table THEN
            NULL;  -- created concurrently
        END;
    END IF;
    RETURN part;
END $$;

-- Drop the daily partitions of `parent` whose whole day lies before
-- today (UTC) - keep_days, i.e. every row in them is older than keep_days.
-- Returns the names dropped. Only partitions named <parent>_YYYYMMDD are
-- considered. Takes an ACCESS EXCLUSIVE lock on `parent` per partition: run
-- it with a lock_timeout.
CREATE OR REPLACE FUNCTION history_drop_partitions(parent text, keep_days int) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    cutoff date := (now() AT TIME ZONE 'UTC')::date - keep_days;
    r record;
BEGIN
    FOR r IN SELECT c.relname::text AS name
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = to_regclass(parent)
                AND c.relname ~ ('^' || parent || '_[0-9]{8}$')
              ORDER BY c.relname
    LOOP
        IF to_date(right(r.name, 8), 'YYYYMMDD') < cutoff THEN
            EXECUTE format('DROP TABLE %I', r.name);
            RETURN NEXT r.name;
        END IF;
    END LOOP;
END $$;

-- ----------------------------------------------------- session summaries --

-- One row per session, maintained from the rows actually inserted into
-- agent_events (a statement trigger over the transition table, so
-- redelivered duplicates that ON CONFLICT DO NOTHING skips are not counted).
CREATE TABLE IF NOT EXISTS session_summaries (
    session_id            text             PRIMARY KEY,
    first_seen            timestamptz      NOT NULL,
    last_seen             timestamptz      NOT NULL,
    events                bigint           NOT NULL DEFAULT 0,
    errors                bigint           NOT NULL DEFAULT 0,   -- events with status 'error'
    event_types           jsonb            NOT NULL DEFAULT '{}', -- {"PostToolUse": 12, ...}
    agents                text[]           NOT NULL DEFAULT '{}', -- distinct agent_ids (at most 256)
    source_app            text,
    tokens_input          bigint           NOT NULL DEFAULT 0,
    tokens_output         bigint           NOT NULL DEFAULT 0,
    tokens_cache_read     bigint           NOT NULL DEFAULT 0,
    tokens_cache_creation bigint           NOT NULL DEFAULT 0,
    cost_usd              double precision NOT NULL DEFAULT 0,
    updated_at            timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS session_summaries_last_seen ON session_summaries (last_seen, session_id);

-- a + b for {"key": count} objects; at most 256 keys, the rest add up under "_other_".
CREATE OR REPLACE FUNCTION history_counts_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
    v bigint;
    n int := (SELECT count(*) FROM jsonb_object_keys(a));
BEGIN
    FOR k, v IN SELECT key, value::bigint FROM jsonb_each_text(b) LOOP
        IF a ? k THEN
            a := jsonb_set(a, ARRAY[k], to_jsonb((a ->> k)::bigint + v));
        ELSIF n < 256 THEN
            a := a || jsonb_build_object(k, v);
            n := n + 1;
        ELSE
            a := jsonb_set(a, '{_other_}', to_jsonb(coalesce((a ->> '_other_')::bigint, 0) + v));
        END IF;
    END LOOP;
    RETURN a;
END $$;

-- Concatenation of arrays, as an aggregate.
CREATE OR REPLACE AGGREGATE history_cat(anycompatiblearray) (
    SFUNC = array_cat, STYPE = anycompatiblearray, INITCOND = '{}'
);

-- Summaries of the rows in `new_rows` (transition table) added to session_summaries.
-- No joins: it runs inside the processor's session, whose planner settings
-- are tuned for its own statements.
CREATE OR REPLACE FUNCTION session_summaries_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH by_type AS (
        SELECT session_id, event_type, count(*) AS c, min(ts) AS f, max(ts) AS l,
               count(*) FILTER (WHERE status = 'error') AS e, max(source_app) AS app,
               coalesce(sum(tokens_input), 0) AS ti, coalesce(sum(tokens_output), 0) AS tout,
               coalesce(sum(tokens_cache_read), 0) AS tcr, coalesce(sum(tokens_cache_creation), 0) AS tcc,
               coalesce(sum(cost_usd), 0) AS cost,
               coalesce(array_agg(DISTINCT agent_id) FILTER (WHERE agent_id IS NOT NULL), '{}') AS ag
          FROM new_rows WHERE session_id IS NOT NULL
         GROUP BY session_id, event_type
    ), by_session AS (
        SELECT session_id, min(f) AS f, max(l) AS l, sum(c) AS c, sum(e) AS e,
               jsonb_object_agg(event_type, c) AS types, max(app) AS app, sum(ti) AS ti,
               sum(tout) AS tout, sum(tcr) AS tcr, sum(tcc) AS tcc, sum(cost) AS cost,
               history_cat(ag) AS ag
          FROM by_type GROUP BY session_id
    )
    INSERT INTO session_summaries AS s (session_id, first_seen, last_seen, events, errors, event_types,
                                        agents, source_app, tokens_input, tokens_output,
                                        tokens_cache_read, tokens_cache_creation, cost_usd, updated_at)
    SELECT session_id, f, l, c, e, history_counts_add('{}', types),
           ARRAY(SELECT DISTINCT x FROM unnest(ag) AS u(x) ORDER BY x LIMIT 256), app,
           ti, tout, tcr, tcc, cost, now()
      FROM by_session
     ORDER BY session_id  -- row locks in one order: concurrent processors cannot deadlock
    ON CONFLICT (session_id) DO UPDATE SET
        first_seen = least(s.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(s.last_seen, EXCLUDED.last_seen),
        events = s.events + EXCLUDED.events,
        errors = s.errors + EXCLUDED.errors,
        event_types = history_counts_add(s.event_types, EXCLUDED.event_types),
        agents = CASE WHEN EXCLUDED.agents <@ s.agents OR cardinality(s.agents) >= 256 THEN s.agents
                      ELSE (ARRAY(SELECT DISTINCT x FROM unnest(s.agents || EXCLUDED.agents) AS u(x)
                                  ORDER BY x))[1:256] END,
        source_app = coalesce(s.source_app, EXCLUDED.source_app),
        tokens_input = s.tokens_input + EXCLUDED.tokens_input,
        tokens_output = s.tokens_output + EXCLUDED.tokens_output,
        tokens_cache_read = s.tokens_cache_read + EXCLUDED.tokens_cache_read,
        tokens_cache_creation = s.tokens_cache_creation + EXCLUDED.tokens_cache_creation,
        cost_usd = s.cost_usd + EXCLUDED.cost_usd,
        updated_at = now();
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS session_summaries_apply ON agent_events;
CREATE TRIGGER session_summaries_apply AFTER INSERT ON agent_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION session_summaries_apply();

-- Rows stored before this migration: summarise them once.
WITH by_type AS (
    SELECT session_id, event_type, count(*) AS c, min(ts) AS f, max(ts) AS l,
           count(*) FILTER (WHERE status = 'error') AS e, max(source_app) AS app,
           coalesce(sum(tokens_input), 0) AS ti, coalesce(sum(tokens_output), 0) AS tout,
           coalesce(sum(tokens_cache_read), 0) AS tcr, coalesce(sum(tokens_cache_creation), 0) AS tcc,
           coalesce(sum(cost_usd), 0) AS cost,
           coalesce(array_agg(DISTINCT agent_id) FILTER (WHERE agent_id IS NOT NULL), '{}') AS ag
      FROM agent_events WHERE session_id IS NOT NULL
     GROUP BY session_id, event_type
), by_session AS (
    SELECT session_id, min(f) AS f, max(l) AS l, sum(c) AS c, sum(e) AS e,
           jsonb_object_agg(event_type, c) AS types, max(app) AS app, sum(ti) AS ti,
           sum(tout) AS tout, sum(tcr) AS tcr, sum(tcc) AS tcc, sum(cost) AS cost,
           history_cat(ag) AS ag
      FROM by_type GROUP BY session_id
)
INSERT INTO session_summaries (session_id, first_seen, last_seen, events, errors, event_types, agents,
                               source_app, tokens_input, tokens_output, tokens_cache_read,
                               tokens_cache_creation, cost_usd)
SELECT session_id, f, l, c, e, history_counts_add('{}', types),
       ARRAY(SELECT DISTINCT x FROM unnest(ag) AS u(x) ORDER BY x LIMIT 256), app,
       ti, tout, tcr, tcc, cost
  FROM by_session
ON CONFLICT (session_id) DO NOTHING;

-- Time-range reads without a session/agent/type filter: a BRIN index is
-- nearly free to maintain on ingest (rows arrive roughly in ts order).
CREATE INDEX IF NOT EXISTS agent_events_ts_brin ON agent_events USING brin (ts);

-- ------------------------------------------------------------ transcripts --

-- One row per (session, agent) transcript; agent_id '' is the main agent.
CREATE TABLE IF NOT EXISTS chat_transcripts (
    session_id            text        NOT NULL,
    agent_id              text        NOT NULL DEFAULT '',
    transcript_path       text,
    first_ts              timestamptz NOT NULL,
    last_ts               timestamptz NOT NULL,
    messages              bigint      NOT NULL DEFAULT 0,
    model                 text,                          -- model of the latest message that named one
    tokens_input          bigint      NOT NULL DEFAULT 0,
    tokens_output         bigint      NOT NULL DEFAULT 0,
    tokens_cache_read     bigint      NOT NULL DEFAULT 0,
    tokens_cache_creation bigint      NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, agent_id)
);
CREATE INDEX IF NOT EXISTS chat_transcripts_last_ts ON chat_transcripts (last_ts);

-- One row per message, partitioned by day on the message time. A message is
-- stored once per (session_id, message_id): the key includes ts (partition
-- column) and the processor also probes for the id under another ts.
CREATE TABLE IF NOT EXISTS transcript_messages (
    session_id            text        NOT NULL,
    agent_id              text        NOT NULL DEFAULT '',
    message_id            text        NOT NULL,   -- the message uuid, or one derived by the collector
    ts                    timestamptz NOT NULL,
    role                  text        NOT NULL,
    text                  text        NOT NULL DEFAULT '',
    model                 text,
    tokens_input          bigint,
    tokens_output         bigint,
    tokens_cache_read     bigint,
    tokens_cache_creation bigint,
    stream_id             text,
    created_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    tsv                   tsvector    GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    PRIMARY KEY (session_id, message_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS transcript_messages_session_ts ON transcript_messages (session_id, ts, message_id);
CREATE INDEX IF NOT EXISTS transcript_messages_tsv ON transcript_messages USING gin (tsv);

SELECT history_ensure_partition('transcript_messages', (now() AT TIME ZONE 'UTC')::date + i)
  FROM generate_series(-1, 7) AS i;

-- ------------------------------------------------------- read-only role --

-- The collector's read API logs in as agent_obs_read: SELECT only, and
-- read-only transactions even if a grant is added by mistake later.
-- No password is set here (the local stack uses trust auth on loopback);
-- in production set one with ALTER ROLE and give it via PGPASSWORD/.pgpass.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'agent_obs_read') THEN
        CREATE ROLE agent_obs_read LOGIN;
    END IF;
END $$;
ALTER ROLE agent_obs_read SET default_transaction_read_only = on;
ALTER ROLE agent_obs_read SET statement_timeout = '30s';  -- backstop; the collector sets its own
GRANT USAGE ON SCHEMA public TO agent_obs_read;
GRANT SELECT ON agent_events, session_summaries, chat_transcripts, transcript_messages TO agent_obs_read;
