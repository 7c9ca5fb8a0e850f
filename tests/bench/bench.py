"""bench.py -- `make bench`: throughput and latency of the core pipeline on a
fresh stack (real Redis with AOF everysec, real PostgreSQL with fsync on),
everything on this machine. Prints numbers; asserts nothing but zero loss.

  1. single-event ingest: wrk, 32 keep-alive connections, 1 event/request
  2. bulk ingest: wrk, 4 connections, 1,000 events/request
  3. sustained end-to-end: bulk load for 20 s, then time until PostgreSQL holds
     every accepted event (events/s = accepted / time to last row)
  4. emit->stored latency at 1,000 events/s: paced single events stamped with
     the send time; percentiles of created_at - ts from PostgreSQL. It starts
     once the maintenance left by part 3 is done (VACUUM ANALYZE of the 1.5 M
     new rows, a CHECKPOINT), so it measures the steady state at 1,000
     events/s, not autovacuum and checkpoint writes catching up on part 3
BENCH_ONLY=ingest runs parts 1 and 2 only (quick before/after comparisons).
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from benchlib import record  # noqa: E402
from harness import KeepAlive, Stack, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DUR = int(os.environ.get("BENCH_SECONDS", "10"))
ONLY_INGEST = os.environ.get("BENCH_ONLY", "") == "ingest"


def wrk(script, conns, seconds, port):
    out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % seconds, "-s", os.path.join(HERE, script),
                          "http://127.0.0.1:%d/events" % port], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = re.search(r"Latency\s+(\S+)", out).group(1)
    return rps, int(non2xx.group(1)) if non2xx else 0, lat


def rows(st):
    return int(st.scalar("SELECT count(*) FROM agent_events"))


def accepted(st):
    return int(st.metrics(st.collector_port)["agent_obs_events_accepted_total"])


def drain(st, timeout=300):
    # wrk stops with requests in flight; the collector still stores (and
    # counts) those: wait until the count settles before taking it.
    want = accepted(st)
    while True:
        time.sleep(0.3)
        now = accepted(st)
        if now == want:
            break
        want = now
    wait_for(lambda: rows(st) >= want, timeout, interval=0.2, what="drain to PostgreSQL")
    return want


def pace(st, rate, seconds, session):
    """Send `rate` single events/s for `seconds` over 4 keep-alive connections."""
    per_thread = rate // 4
    def worker(k):
        c = KeepAlive(st.collector_port)
        t0 = time.time()
        for i in range(per_thread * seconds):
            due = t0 + i / per_thread
            d = due - time.time()
            if d > 0:
                time.sleep(d)
            ev = {"event_type": "PostToolUse", "session_id": session, "tool": "Bash",
                  "timestamp": time.time() * 1000.0, "payload": {"k": k, "i": i, "t": time.time()}}
            c.post(json.dumps(ev))
        c.close()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def measure(st, results):
    st.start_redis()
    st.start_pg()
    st.start("processor")
    st.start("collector")

    rps, bad, lat = wrk("post_single.lua", 32, DUR, st.collector_port)
    results.append(("single-event ingest (32 keep-alive conns)", "%.0f requests/s" % rps,
                    "avg latency %s, non-2xx %d" % (lat, bad)))
    record("core", "single", "single-event ingest, 32 keep-alive connections", round(rps), "events/s",
           target=40000, better="higher", note="avg latency %s, non-2xx %d" % (lat, bad),
           peer="redis_xadd_single")
    drain(st)

    rps, bad, lat = wrk("post_bulk.lua", 4, DUR, st.collector_port)
    results.append(("bulk ingest (1,000 events/request, 4 conns)", "%.0f events/s" % (rps * 1000),
                    "avg latency %s, non-2xx %d" % (lat, bad)))
    record("core", "bulk", "bulk ingest, 1,000 events/request, 4 connections", round(rps * 1000), "events/s",
           target=200000, better="higher", note="avg latency %s, non-2xx %d" % (lat, bad),
           peer="redis_xadd_pipelined")
    drain(st)
    if ONLY_INGEST:
        return

    start_rows, t0 = rows(st), time.time()
    rps, bad, _ = wrk("post_bulk.lua", 2, 20, st.collector_port)
    want = drain(st)
    el = time.time() - t0
    got = rows(st)
    results.append(("sustained end-to-end into PostgreSQL", "%.0f events/s" % ((got - start_rows) / el),
                    "%d events in %.1f s; accepted %d, stored %d, lost %d" %
                    (got - start_rows, el, want, got, max(0, want - got))))
    record("core", "e2e", "sustained end-to-end into PostgreSQL, zero loss", round((got - start_rows) / el),
           "events/s", target=40000, better="higher", peer="pg_copy",
           note="accepted %d, stored %d, lost %d" % (want, got, max(0, want - got)))

    st.sql("VACUUM ANALYZE agent_events")
    st.sql("CHECKPOINT")
    pace(st, 1000, DUR, "bench-latency")
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id='bench-latency'")) >= 1000 * DUR,
             60, what="latency events")
    p = st.sql("""SELECT percentile_cont(ARRAY[0.5,0.95,0.99]) WITHIN GROUP
                  (ORDER BY extract(epoch FROM created_at - ts) * 1000)
                  FROM agent_events WHERE session_id = 'bench-latency'""")[0][0]
    p50, p95, p99 = [float(x) for x in p.strip("{}").split(",")]
    results.append(("emit->stored latency at 1,000 events/s", "p50 %.1f ms, p95 %.1f ms, p99 %.1f ms" % (p50, p95, p99),
                    "%d events" % (1000 * DUR)))
    for q, v in (("p50", p50), ("p95", p95), ("p99", p99)):
        record("core", "stored_" + q, "emit -> stored latency %s at 1,000 events/s" % q, round(v, 1), "ms",
               target=15 if q == "p95" else None, better="lower" if q == "p95" else None)


def main():
    os.environ["PG_FSYNC"] = "on"
    st = Stack("bench")
    results = []
    try:
        measure(st, results)
    finally:
        st.close()
    print()
    print("agent-obs core pipeline benchmark (%s, %d cores, %s)" % (time.strftime("%Y-%m-%d"), os.cpu_count(),
                                                                    os.uname().machine))
    for name, value, note in results:
        print("  %-45s %-32s %s" % (name, value, note))


if __name__ == "__main__":
    main()
