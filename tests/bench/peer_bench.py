"""peer_bench.py -- the physical limits our pipeline is compared with, on the
same machine in the same run (tests/bench/report.py shows the ratios):

  1. Redis XADD of the exact entry the collector writes for the single-event
     bench, by redis-benchmark (C, no HTTP, no JSON): 32 connections without
     pipelining (peer of single-event ingest), and pipelined 1,000 deep (peer
     of bulk ingest).
  2. PostgreSQL COPY of rows like the bulk bench's straight into agent_events
     (its indexes and its session-summary trigger), 5,000 rows a transaction,
     fsync on (peer of sustained end-to-end).
  3. Loopback-TCP fan-out with no streamer code (tests/bench/fanout_floor.c):
     1,000 events/s of 200-byte frames to 1,000 sockets, coalesced per socket
     when behind, read by a C epoll client; its event->client latency is the
     floor of stream_bench.py's 1,000 unfiltered clients on this machine.
"""
import json
import os
import re
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from benchlib import record  # noqa: E402
from harness import Stack, wait_for  # noqa: E402

SINGLE = json.load(open(os.path.join(os.path.dirname(__file__), "single_event.json")))
ROWS = int(os.environ.get("BENCH_PEER_ROWS", "200000"))
COLS = ("id, ts, session_id, agent_id, agent_role, parent_agent_id, source_app, event_type, tool, status, "
        "payload, latency_ms, received_at, stream_id")


def redis_benchmark(port, conns, pipeline, n, fields):
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(conns), "-P", str(pipeline),
                          "-n", str(n), "-q", "XADD", "peer", "*"] + fields,
                         capture_output=True, text=True).stdout
    m = re.findall(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    if not m:
        raise RuntimeError("redis-benchmark printed no rate: %r" % out[-300:])
    return float(m[-1])


def copy_rows(st):
    """COPY ROWS rows into agent_events, 5,000 a transaction; returns rows/s."""
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    script = os.path.join(st.dir, "copy.sql")
    with open(script, "w") as sql:
        for start in range(0, ROWS, 5000):  # one file, one \copy, one transaction per 5,000 rows
            path = os.path.join(st.dir, "copy-%d.tsv" % start)
            with open(path, "w") as f:
                for i in range(start, min(ROWS, start + 5000)):
                    payload = '{"file_path": "/src/file%d.c", "success": true}' % i
                    f.write("\t".join([str(uuid.uuid4()), "%s.%06dZ" % (iso, i % 1000000), "peer-copy", "main",
                                       "main", "\\N", "\\N", "PostToolUse", "Read", "success", payload,
                                       str(i % 1000), iso + "Z", "%d-%d" % (int(now * 1000), i)]) + "\n")
            sql.write("\\copy agent_events (%s) FROM '%s'\n" % (COLS, path))
    t0 = time.time()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(st.pg_port),
                    "-U", "agent_obs", "-d", "agent_obs", "-f", script], check=True, capture_output=True)
    el = time.time() - t0
    got = int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = 'peer-copy'"))
    if got != ROWS:
        raise RuntimeError("COPY stored %d of %d rows" % (got, ROWS))
    return ROWS / el


def fanout_floor():
    """p50 and p99 event->client ms of the bare fan-out, 1,000 clients, 10 s."""
    build = os.environ.get("OBS_BUILD_DIR", os.environ.get("BUILD", "build"))
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", build, "bench", "fanout_floor")
    out = subprocess.run([exe, "--clients", "1000", "--rate", "1000", "--seconds", "10"], capture_output=True,
                         text=True, timeout=120)
    m = re.search(r"lat ms p50 ([\d.]+) p95 [\d.]+ p99 ([\d.]+).*missing (\d+)", out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError("fanout_floor failed (%d): %s %s" % (out.returncode, out.stdout, out.stderr))
    return float(m.group(1)), float(m.group(2)), int(m.group(3))


def main():
    os.environ["PG_FSYNC"] = "on"
    st = Stack("peerbench")
    try:
        st.start_redis()
        st.start_pg()
        st.start("collector")
        # the entry exactly as the collector writes it for the single-event bench
        status = st.post(json.dumps(SINGLE))[0]
        if status != 202:
            raise RuntimeError("collector answered %s" % status)
        entry = wait_for(lambda: st.redis_raw("XRANGE", "agent_events", "-", "+", "COUNT", "1"), 5,
                         what="the bench entry in the stream")
        fields = entry.splitlines()[1:]  # field value [field value]
        size = sum(len(x) for x in fields)
        st.kill("collector")
        x1 = redis_benchmark(st.redis_port, 32, 1, 300000, fields)
        xp = redis_benchmark(st.redis_port, 4, 1000, 2000000, fields)
        st.redis("DEL", "peer")
        cp = copy_rows(st)
    finally:
        st.close()
    f50, f99, fmiss = fanout_floor()
    print("peers on this machine (same run):")
    print("  %-58s %10.0f entries/s" % ("Redis XADD, redis-benchmark, 32 conns, no pipelining", x1))
    print("  %-58s %10.0f entries/s" % ("Redis XADD, redis-benchmark, 4 conns, pipelined 1,000", xp))
    print("  %-58s %10.0f rows/s" % ("PostgreSQL COPY into agent_events, 5,000/txn, fsync on", cp))
    print("  %-58s p50 %.2f ms, p99 %.2f ms (missing %d)" % ("bare loopback fan-out, 1,000 clients, 1,000 events/s",
                                                          f50, f99, fmiss))
    record("peer", "redis_xadd_single", "Redis XADD, 32 conns, no pipelining (redis-benchmark)", round(x1),
           "entries/s", note="entry of %d bytes, exactly as the collector writes it" % size)
    record("peer", "redis_xadd_pipelined", "Redis XADD, 4 conns, pipelined 1,000 deep (redis-benchmark)",
           round(xp), "entries/s")
    record("peer", "pg_copy", "PostgreSQL COPY into agent_events, 5,000 rows/transaction, fsync on",
           round(cp), "rows/s", note="%d rows; same indexes and session-summary trigger" % ROWS)
    for q, v in (("p50", f50), ("p99", f99)):
        record("peer", "fanout_floor_" + q, "bare loopback-TCP fan-out %s, 1,000 clients, 1,000 events/s "
               "(fanout_floor.c, no streamer code)" % q, v, "ms", note="missing %d" % fmiss)


if __name__ == "__main__":
    main()
