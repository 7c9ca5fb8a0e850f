"""query_bench.py -- history read API latency on 10 million events (issue 6).

Starts a fresh stack (Redis, PostgreSQL with the migrations, the collector),
generates the events straight into PostgreSQL with generate_series (no
ingest path: this measures reads; indexes and session summaries are built
after the load, which keeps generation to a few minutes), ANALYZEs, then
times over keep-alive HTTP:

  1. GET /events?session_id=<random session>  (first page, 100 events)
  2. GET /sessions                            (first page, 100 sessions)
  3. GET /events?session_id=...&cursor=...    (a later page)

and prints p50/p95/p99 per query. Target: p95 <= 50 ms for 1 and 2.
Not part of `make test`. Environment: QBENCH_EVENTS (default 10000000),
QBENCH_SESSIONS (default 100000), QBENCH_REQUESTS (default 300),
OBS_KEEP_TMP=1 keeps the data directory.
"""
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from benchlib import record  # noqa: E402
from harness import Stack  # noqa: E402

EVENTS = int(os.environ.get("QBENCH_EVENTS", "10000000"))
SESSIONS = int(os.environ.get("QBENCH_SESSIONS", "100000"))
REQUESTS = int(os.environ.get("QBENCH_REQUESTS", "300"))
CHUNK = 1000000
DAYS = 29  # inside the 30-day retention and the 31-day read window


ROWS_SQL = """
SET synchronous_commit = off;
INSERT INTO agent_events (id, ts, session_id, agent_id, parent_agent_id, event_type, tool, status,
                          payload, latency_ms, tokens_input, tokens_output, cost_usd, received_at)
SELECT gen_random_uuid(), t, 'bench-s' || s, CASE WHEN g %% 4 = 0 THEN 'sub-' || (g %% 3) END,
       CASE WHEN g %% 4 = 0 THEN 'main' END,
       (ARRAY['PreToolUse','PostToolUse','Stop','UserPromptSubmit','Notification'])[1 + g %% 5],
       (ARRAY['Bash','Read','Edit','Grep','Write','WebFetch'])[1 + g %% 6],
       CASE WHEN g %% 17 = 0 THEN 'error' ELSE 'success' END,
       jsonb_build_object('command', 'ls -la /src/' || (g %% 1000), 'i', g),
       (g %% 500)::float8, CASE WHEN g %% 10 = 0 THEN 1000 + g %% 5000 END,
       CASE WHEN g %% 10 = 0 THEN 200 + g %% 700 END, CASE WHEN g %% 10 = 0 THEN 0.01 END, t
  FROM (SELECT g, g %% %d AS s,
               now() - interval '%d days' * ((g %% %d)::float8 / %d)
                     + interval '1 second' * (g / %d) * 2 AS t
          FROM generate_series(%d, %d) AS g) x
"""

# The indexes and the summary trigger of deploy/sql/001 and 002, dropped for
# the bulk load and built once afterwards (minutes instead of many more).
DROP_SQL = """
ALTER TABLE agent_events DISABLE TRIGGER session_summaries_apply;
ALTER TABLE agent_events DROP CONSTRAINT agent_events_pkey;
DROP INDEX agent_events_session_ts, agent_events_type_ts, agent_events_agent_ts, agent_events_ts_brin;
"""
BUILD_SQL = """
SET maintenance_work_mem = '512MB';
ALTER TABLE agent_events ADD PRIMARY KEY (id, ts);
CREATE INDEX agent_events_session_ts ON agent_events (session_id, ts);
CREATE INDEX agent_events_type_ts    ON agent_events (event_type, ts);
CREATE INDEX agent_events_agent_ts   ON agent_events (agent_id, ts);
CREATE INDEX agent_events_ts_brin    ON agent_events USING brin (ts);
ALTER TABLE agent_events ENABLE TRIGGER session_summaries_apply;
"""
SUMMARY_SQL = """
SET work_mem = '256MB';
WITH by_type AS (
    SELECT session_id, event_type, count(*) AS c, min(ts) AS f, max(ts) AS l,
           count(*) FILTER (WHERE status = 'error') AS e, max(source_app) AS app,
           coalesce(sum(tokens_input), 0) AS ti, coalesce(sum(tokens_output), 0) AS tout,
           coalesce(sum(tokens_cache_read), 0) AS tcr, coalesce(sum(tokens_cache_creation), 0) AS tcc,
           coalesce(sum(cost_usd), 0) AS cost,
           coalesce(array_agg(DISTINCT agent_id) FILTER (WHERE agent_id IS NOT NULL), '{}') AS ag
      FROM agent_events WHERE session_id IS NOT NULL GROUP BY session_id, event_type
), by_session AS (
    SELECT session_id, min(f) AS f, max(l) AS l, sum(c) AS c, sum(e) AS e,
           jsonb_object_agg(event_type, c) AS types, max(app) AS app, sum(ti) AS ti, sum(tout) AS tout,
           sum(tcr) AS tcr, sum(tcc) AS tcc, sum(cost) AS cost, history_cat(ag) AS ag
      FROM by_type GROUP BY session_id
)
INSERT INTO session_summaries (session_id, first_seen, last_seen, events, errors, event_types, agents,
                               source_app, tokens_input, tokens_output, tokens_cache_read,
                               tokens_cache_creation, cost_usd)
SELECT session_id, f, l, c, e, history_counts_add('{}', types),
       ARRAY(SELECT DISTINCT x FROM unnest(ag) AS u(x) ORDER BY x LIMIT 256), app, ti, tout, tcr, tcc, cost
  FROM by_session;
"""


def generate(st):
    """EVENTS rows over DAYS days: session k lives around day k/SESSIONS*DAYS,
    its events a few seconds apart; mixed types, tools, agents, statuses, tokens.
    Two loaders in parallel (two cores), then indexes and session summaries."""
    st.sql("SELECT agent_events_ensure_partitions(%d, 1)" % (DAYS + 1))
    st.sql(DROP_SQL)
    t0 = time.time()
    chunks = [(a, min(a + CHUNK, EVENTS)) for a in range(0, EVENTS, CHUNK)]
    errors, done = [], [0]
    lock = threading.Lock()

    def loader():
        while True:
            with lock:
                if not chunks or errors:
                    return
                a, b = chunks.pop(0)
            try:
                st.sql(ROWS_SQL % (SESSIONS, DAYS, SESSIONS, SESSIONS, SESSIONS, a + 1, b))
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append(e)
                return
            with lock:
                done[0] += b - a
                print("  loaded %d events (%.0f s)" % (done[0], time.time() - t0), flush=True)
    threads = [threading.Thread(target=loader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    t1 = time.time()
    st.sql(BUILD_SQL)
    t2 = time.time()
    print("  indexes built (%.0f s)" % (t2 - t1), flush=True)
    st.sql(SUMMARY_SQL)
    print("  session summaries (%.0f s)" % (time.time() - t2), flush=True)
    st.sql("ANALYZE agent_events; ANALYZE session_summaries")
    return time.time() - t0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def timed(conn, path):
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    dt = (time.perf_counter() - t) * 1000
    if r.status != 200:
        raise RuntimeError("%s -> %d %s" % (path, r.status, body[:300]))
    return dt, json.loads(body)


def measure(st):
    conn = http.client.HTTPConnection("127.0.0.1", st.collector_port, timeout=60)
    rnd = random.Random(6)
    results = {}
    for name, make in (
        ("GET /events?session_id= (first page)",
         lambda: "/events?session_id=bench-s%d" % rnd.randrange(SESSIONS)),
        ("GET /sessions (first page)", lambda: "/sessions"),
    ):
        for _ in range(10):  # warm-up
            timed(conn, make())
        results[name] = [timed(conn, make())[0] for _ in range(REQUESTS)]
    lat = []
    for _ in range(REQUESTS):
        sid = "bench-s%d" % rnd.randrange(SESSIONS)
        _, first = timed(conn, "/events?limit=20&session_id=" + sid)
        if first["next_cursor"]:
            q = urllib.parse.urlencode({"session_id": sid, "limit": 20, "cursor": first["next_cursor"]})
            lat.append(timed(conn, "/events?" + q)[0])
    if lat:
        results["GET /events?session_id=&cursor= (2nd page of 20)"] = lat
    conn.close()
    return results


def main():
    st = Stack("qbench")
    try:
        st.start_redis()
        st.start_pg()
        st.start("collector")
        print("query bench: generating %d events in %d sessions over %d days ..." % (EVENTS, SESSIONS, DAYS),
              flush=True)
        gen_s = generate(st)
        size = st.scalar("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i "
                         "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'agent_events'::regclass")
        print("query bench: %d events generated, indexed and analysed in %.0f s, %s on disk; %s sessions" % (
            EVENTS, gen_s, size, st.scalar("SELECT count(*) FROM session_summaries")), flush=True)
        results = measure(st)
        print()
        print("%-48s %9s %9s %9s   target" % ("query (%d requests each)" % REQUESTS, "p50 ms", "p95 ms", "p99 ms"))
        for name, lat in results.items():
            target = "p95 <= 50 ms" if "first page" in name else ""
            print("%-48s %9.1f %9.1f %9.1f   %s" % (name, pct(lat, 50), pct(lat, 95), pct(lat, 99), target))
            key = "query_" + "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
            record("query", key, "query p95 on %d M events: %s" % (EVENTS // 1000000, name), round(pct(lat, 95), 1),
                   "ms", target=50 if target else None, better="lower" if target else None)
    finally:
        st.close()


if __name__ == "__main__":
    main()
