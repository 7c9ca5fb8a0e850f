"""Faults: nothing acknowledged to a client is lost, nothing is stored twice.
kill -9 of the processor mid-load, PostgreSQL stopped for 10 s under load,
Redis killed and restarted from its AOF, back-pressure while Redis is away,
graceful collector shutdown with requests in flight."""
import json
import os
import signal
import subprocess
import time

from harness import BUILD, Loader, Stack, free_port, request, wait_for


def setup():
    st = Stack("faults")
    st.start_redis()
    st.start_pg()
    st.start("processor", OBS_PROCESSOR_CLAIM_IDLE_MS=2000, OBS_PROCESSOR_CLAIM_INTERVAL_MS=500)
    st.start("collector")
    return st


def teardown(st):
    st.close()


def assert_exactly_once(st, session, acked):
    want = len(acked)
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id=:'p1'", session)) >= want,
             60, interval=0.2, what="%d rows for %s" % (want, session))
    time.sleep(0.5)
    total, distinct = st.sql("SELECT count(*), count(DISTINCT id) FROM agent_events WHERE session_id=:'p1'",
                             session)[0]
    assert int(total) == want and int(distinct) == want, (total, distinct, want)
    stored = {r[0] for r in st.sql("SELECT id FROM agent_events WHERE session_id=:'p1'", session)}
    assert stored == set(acked)


def test_kill9_processor_midload_loses_nothing_stores_once(st):
    load = Loader(st, "kill9", 20000, per=100)
    load.start()
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id='kill9'")) > 3000,
             30, what="load under way")
    st.kill("processor", signal.SIGKILL)
    before = int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id='kill9'"))
    time.sleep(0.5)
    st.start("processor", OBS_PROCESSOR_CLAIM_IDLE_MS=2000, OBS_PROCESSOR_CLAIM_INTERVAL_MS=500)
    load.join(120)
    assert load.error is None, load.error
    assert len(load.acked) == 20000
    assert before < 20000, "kill happened after the load finished"
    assert_exactly_once(st, "kill9", load.acked)


def test_postgres_down_10s_under_load_loses_nothing(st):
    load = Loader(st, "pgdown", 6000, per=50, pause=0.05)
    load.start()
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id='pgdown'")) > 200,
             30, what="load under way")
    st.stop_pg()
    time.sleep(1)
    st_code, _, body = request(st.processor_port, "GET", "/readyz")
    assert st_code == 503 and "postgres" in body["reason"], (st_code, body)
    time.sleep(9)
    st.start_pg(migrate=False)
    load.join(120)
    assert load.error is None, load.error
    assert_exactly_once(st, "pgdown", load.acked)
    wait_for(lambda: request(st.processor_port, "GET", "/readyz")[0] == 200, 10, what="ready again")


def test_redis_kill9_and_aof_restart_keeps_acknowledged_events(st):
    load = Loader(st, "redis-aof", 3000, per=100)
    load.run()  # synchronously: every event acknowledged before the crash
    assert load.error is None and len(load.acked) == 3000
    time.sleep(1.5)  # appendfsync everysec: past the one-second window
    pid = int(open(st.dir + "/redis/redis.pid").read())
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    # while Redis is away the collector refuses instead of accepting
    status, hdrs, body = st.post({"event_type": "Stop", "session_id": "redis-aof-refused"})
    assert status == 503 and hdrs.get("retry-after") == "1", (status, hdrs, body)
    assert "redis" in body["error"]["message"]
    st.start_redis()
    wait_for(lambda: st.post({"event_type": "Stop", "session_id": "redis-aof-after"})[0] == 202, 10,
             what="collector accepting again")
    assert_exactly_once(st, "redis-aof", load.acked)
    assert st.scalar("SELECT count(*) FROM agent_events WHERE session_id='redis-aof-refused'") == "0"


def test_redis_lost_while_a_batch_is_in_flight_processor_reconnects(st):
    # A light load keeps one batch in flight at a time. A table lock holds that
    # batch in PostgreSQL while Redis goes away, so that its acknowledgement
    # fails and drops the connection: the processor must reconnect (not read
    # from the dropped connection), and store everything once.
    load = Loader(st, "redis-flight", 400, per=10, pause=0.01)
    load.start()
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id='redis-flight'")) > 50,
             30, what="load under way")
    lock = subprocess.Popen(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(st.pg_port), "-U", "agent_obs",
                             "-d", "agent_obs", "-c", "BEGIN; LOCK TABLE agent_events IN ACCESS EXCLUSIVE MODE; "
                             "SELECT pg_sleep(1.5); COMMIT;"], stdout=subprocess.DEVNULL, env=st.env())
    time.sleep(0.5)
    st.stop_redis()  # graceful: AOF flushed, nothing acknowledged is lost
    assert lock.wait(10) == 0
    time.sleep(1)
    st.start_redis()
    load.join(120)
    assert load.error is None, load.error
    assert st.procs["processor"].poll() is None, "processor died:\n" + st.log("processor")[-3000:]
    assert_exactly_once(st, "redis-flight", load.acked)


def test_redis_stall_answers_503_after_the_timeout_and_abandoned_requests_harm_nothing(st):
    """Redis stops answering (SIGSTOP): requests waiting on it get 503 once
    redis.timeout_ms passes; clients that gave up meanwhile harm nothing; once
    Redis answers again the collector accepts, and every 202 is stored."""
    port = free_port()
    log = open(os.path.join(st.dir, "collector-stall.log"), "ab")
    p = subprocess.Popen([os.path.join(BUILD, "collector")], stdout=log, stderr=log,
                         env=st.env(OBS_COLLECTOR_PORT=port, OBS_REDIS_TIMEOUT_MS=800))
    rpid = int(open(st.dir + "/redis/redis.pid").read())
    hdr = {"Content-Type": "application/json"}
    try:
        wait_for(lambda: st._healthy(port), 10, what="stall collector health")
        assert request(port, "POST", "/events", json.dumps({"event_type": "Stop", "session_id": "stall"}),
                       hdr)[0] == 202
        os.kill(rpid, signal.SIGSTOP)
        # clients that give up while their events wait for Redis
        for i in range(8):
            try:
                request(port, "POST", "/events", json.dumps({"event_type": "Stop", "session_id": "stall-gone"}),
                        hdr, timeout=0.2)
            except OSError:
                pass
        t0 = time.time()
        status, hdrs, body = request(port, "POST", "/events",
                                     json.dumps({"event_type": "Stop", "session_id": "stall-wait"}), hdr, timeout=10)
        waited = time.time() - t0
        assert status == 503 and hdrs.get("retry-after") == "1", (status, body)
        assert "redis" in body["error"]["message"], body
        assert waited < 5, waited  # the timeout (0.8 s), not the client's
        os.kill(rpid, signal.SIGCONT)
        acked = []
        def accepted():
            s, _, b = request(port, "POST", "/events", json.dumps({"event_type": "Stop", "session_id": "stall"}), hdr)
            if s == 202:
                acked.extend(b["ids"])
            return s == 202
        # every event loop reconnects (each has its own connection)
        wait_for(lambda: all(accepted() for _ in range(10)), 15, what="collector accepting after the stall")
        assert p.poll() is None, "collector died"
        for _ in range(20):
            assert accepted()
        wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id='stall'")) >= len(acked) + 1,
                 30, what="stall rows")
        stored = {r[0] for r in st.sql("SELECT id FROM agent_events WHERE session_id='stall'")}
        assert set(acked) <= stored
    finally:
        os.kill(rpid, signal.SIGCONT)
        p.terminate()
        assert p.wait(10) == 0


def test_backlog_limit_answers_503(st):
    # A collector with a tiny backlog limit: the stream already holds entries.
    port = free_port()
    log = open(os.path.join(st.dir, "collector-small.log"), "ab")
    p = subprocess.Popen([os.path.join(BUILD, "collector")], stdout=log, stderr=log,
                         env=st.env(OBS_COLLECTOR_PORT=port, OBS_COLLECTOR_MAX_BACKLOG=1))
    try:
        # the backlog is the processor group's lag + pending: pause the
        # processor and add two entries it has not read
        st.procs["processor"].send_signal(signal.SIGSTOP)
        st.redis("XADD", "agent_events", "*", "e", "{}")
        st.redis("XADD", "agent_events", "*", "e", "{}")
        def readyz():
            try:
                return request(port, "GET", "/readyz")[0]
            except OSError:
                return None  # still starting
        wait_for(lambda: readyz() == 503, 10, what="backlog noticed")
        status, hdrs, body = request(port, "POST", "/events", json.dumps({"event_type": "Stop"}),
                                     {"Content-Type": "application/json"})
        assert status == 503 and "backlog" in body["error"]["message"] and hdrs["retry-after"] == "1"
        assert request(st.collector_port, "GET", "/readyz")[0] == 200  # default limit: fine
    finally:
        st.procs["processor"].send_signal(signal.SIGCONT)
        p.terminate()
        p.wait(10)


def test_collector_sigterm_drains_in_flight_requests(st):
    load = Loader(st, "drain", 100000, per=100)
    load.start()
    wait_for(lambda: len(load.acked) > 2000, 30, what="load under way")
    code = st.kill("collector", signal.SIGTERM)
    assert code == 0, code
    load.stop()  # stop the loader: it sees connection errors now
    load.join(5)
    acked = set(load.acked)
    st.start("collector")
    # every acknowledged event is stored once; an event whose answer was cut
    # off may be stored too (the client would retry it with the same id)
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id='drain'")) >= len(acked),
             30, what="acked rows")
    time.sleep(0.5)
    rows = [r[0] for r in st.sql("SELECT id FROM agent_events WHERE session_id='drain'")]
    assert len(rows) == len(set(rows)), "duplicates"
    assert acked <= set(rows), len(acked - set(rows))
    assert set(rows) <= load.sent
    assert len(rows) - len(acked) <= 100, (len(rows), len(acked))


def test_entries_of_a_dead_consumer_are_claimed_and_stored(st):
    # A consumer that read entries and died (never acks): the processor claims
    # them with XAUTOCLAIM once idle for claim_idle_ms (2 s here) and stores them.
    st.kill("processor", signal.SIGTERM)
    evs = [{"event_type": "Stop", "session_id": "orphaned", "payload": {"i": i}} for i in range(50)]
    assert st.post(evs)[0] == 202
    out = st.redis_raw("XREADGROUP", "GROUP", "processor", "ghost", "COUNT", "1000",
                       "STREAMS", "agent_events", ">")
    assert out.count('"session_id":"orphaned"') == 50, out[:300]
    st.start("processor", OBS_PROCESSOR_CLAIM_IDLE_MS=2000, OBS_PROCESSOR_CLAIM_INTERVAL_MS=500)
    wait_for(lambda: st.scalar("SELECT count(*) FROM agent_events WHERE session_id='orphaned'") == "50",
             20, interval=0.2, what="claimed entries stored")
    wait_for(lambda: st.redis_raw("XPENDING", "agent_events", "processor").splitlines()[0] == "0", 5,
             what="nothing pending")
    assert "claimed entries idle on another consumer" in st.log("processor")


def test_partition_dropped_behind_the_processors_back_is_recreated(st):
    # Retention (or an operator) drops a day's partition the processor has
    # already used: a later event for that day must still be stored.
    day = time.time() - 3 * 86400
    assert st.post({"event_type": "Stop", "session_id": "old-day-1", "timestamp": day})[0] == 202
    wait_for(lambda: st.scalar("SELECT count(*) FROM agent_events WHERE session_id='old-day-1'") == "1",
             10, what="first old event")
    part = "agent_events_" + time.strftime("%Y%m%d", time.gmtime(day))
    st.sql("DROP TABLE %s" % part)
    assert st.post({"event_type": "Stop", "session_id": "old-day-2", "timestamp": day + 1})[0] == 202
    wait_for(lambda: st.scalar("SELECT count(*) FROM agent_events WHERE session_id='old-day-2'") == "1",
             10, what="event after the partition was dropped")
    assert "old-day-2" not in st.redis_raw("XRANGE", "agent_events:dead", "-", "+")


def test_backlog_drain_with_a_batch_in_flight_stops_cleanly_and_survives_kill9(st):
    # With a backlog the processor keeps one batch in PostgreSQL while it reads
    # the next. SIGTERM mid-drain must land and acknowledge the batch in flight
    # (nothing left pending, no row appearing after the exit); kill -9 mid-drain
    # must lose and double nothing.
    st.kill("processor", signal.SIGTERM)
    load = Loader(st, "inflight", 40000, per=1000)
    load.run()
    assert load.error is None and len(load.acked) == 40000

    def count():
        return int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id='inflight'"))
    env = dict(OBS_PROCESSOR_BATCH_MAX=400, OBS_PROCESSOR_CLAIM_IDLE_MS=2000, OBS_PROCESSOR_CLAIM_INTERVAL_MS=500)
    st.start("processor", **env)
    wait_for(lambda: count() >= 4000, 30, interval=0.05, what="drain under way")
    overlapped = st.metrics(st.processor_port)["agent_obs_processor_batches_overlapped_total"]
    assert st.kill("processor", signal.SIGTERM) == 0
    stopped_at = count()
    assert overlapped > 0, "no batch was pipelined"
    assert stopped_at < 40000, "stopped after the drain finished"
    assert st.redis_raw("XPENDING", "agent_events", "processor").splitlines()[0] == "0"
    time.sleep(0.5)
    assert count() == stopped_at

    st.start("processor", **env)
    wait_for(lambda: count() >= stopped_at + 4000, 30, interval=0.05, what="drain under way again")
    st.kill("processor", signal.SIGKILL)
    assert count() < 40000, "killed after the drain finished"
    st.start("processor", OBS_PROCESSOR_CLAIM_IDLE_MS=2000, OBS_PROCESSOR_CLAIM_INTERVAL_MS=500)
    assert_exactly_once(st, "inflight", load.acked)


def test_batches_are_bounded_by_bytes(st):
    # Events of ~20 KB with a 64 KiB batch bound: once the processor has seen
    # their size it asks for 3 entries at a time, and still stores them all.
    st.kill("processor", signal.SIGTERM)
    def big(k):
        return [{"event_type": "PostToolUse", "session_id": "big-batches", "payload": {"blob": "z" * 20000, "i": i}}
                for i in range(k * 40, k * 40 + 40)]
    assert st.post(big(0))[0] == 202  # 0.8 MB: under the 1 MiB body limit
    st.start("processor", OBS_PROCESSOR_BATCH_MAX_BYTES=65536,
             OBS_PROCESSOR_CLAIM_IDLE_MS=2000, OBS_PROCESSOR_CLAIM_INTERVAL_MS=500)
    wait_for(lambda: st.scalar("SELECT count(*) FROM agent_events WHERE session_id='big-batches'") == "40",
             20, interval=0.2, what="first 40 stored")
    before = st.metrics(st.processor_port)["agent_obs_processor_batch_size_count"]
    st.procs["processor"].send_signal(signal.SIGSTOP)  # let the next 40 queue up
    try:
        assert st.post(big(1))[0] == 202
    finally:
        st.procs["processor"].send_signal(signal.SIGCONT)
    wait_for(lambda: st.scalar("SELECT count(*) FROM agent_events WHERE session_id='big-batches'") == "80",
             20, interval=0.2, what="next 40 stored")
    batches = st.metrics(st.processor_port)["agent_obs_processor_batch_size_count"] - before
    assert batches >= 13, batches  # 40 entries, at most 3 (64 KiB / 20 KB) per batch
