"""overhead_bench.py -- what the whole stack costs at a steady 1,000 events/s
(the seed PRD's "< 3 % CPU" overhead target): every daemon (collector,
processor, streamer with one dashboard client, alerter with config/alerts.yaml)
plus Redis and PostgreSQL, each one's CPU as a share of ONE core and its RSS,
sampled from /proc over the run; and event -> dashboard latency: the time from
the agent's send to a WebSocket client of the streamer receiving the event.

  python3 tests/bench/overhead_bench.py     (BENCH_SECONDS=20 by default)
"""
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from bench import pace  # noqa: E402
from benchlib import children_of, pct, proc_usage, record  # noqa: E402
from harness import ROOT, Stack, free_port, wait_for  # noqa: E402
from wsclient import WS, flatten  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
RATE = 1000
SESSION = "bench-overhead"


def pid_of(pidfile):
    with open(pidfile) as f:
        return int(f.readline().strip())


def dashboard(port, lags, stop):
    """One unfiltered dashboard client: lag = receive time - the send time the
    load generator put in the payload (same machine, same clock)."""
    ws = WS(port, "/stream", timeout=30)
    ws.recv_json(5)  # hello
    while not stop.is_set():
        m = ws.recv_text(0.2)
        if m is None:
            continue
        now = time.time()
        for x in flatten(json.loads(m)):
            ev = x.get("event") if isinstance(x, dict) else None
            if ev and ev.get("session_id") == SESSION and "t" in ev.get("payload", {}):
                lags.append((now - ev["payload"]["t"]) * 1000)
    ws.close()


def main():
    os.environ["PG_FSYNC"] = "on"
    st = Stack("overhead")
    streamer_port, alerter_port = free_port(), free_port()
    lags, stop = [], threading.Event()
    try:
        st.start_redis()
        st.start_pg()
        st.start("processor")
        st.start("collector")
        st.start("streamer", wait_port=streamer_port, OBS_STREAMER_PORT=streamer_port)
        st.start("alerter", wait_port=alerter_port, OBS_ALERTER_METRICS_PORT=alerter_port,
                 OBS_ALERTER_RULES=os.path.join(ROOT, "config", "alerts.yaml"),
                 OBS_ALERTER_ALERTMANAGER_URL="http://127.0.0.1:%d" % free_port())
        procs = {n: st.procs[n].pid for n in ("collector", "processor", "streamer", "alerter")}
        procs["redis-server"] = pid_of(os.path.join(st.dir, "redis", "redis.pid"))
        pg_main = pid_of(os.path.join(st.dir, "pg", "postmaster.pid"))
        reader = threading.Thread(target=dashboard, args=(streamer_port, lags, stop))
        reader.start()
        time.sleep(1)

        def sample():
            out = {n: proc_usage(p) for n, p in procs.items()}
            pg = [proc_usage(p) for p in [pg_main] + children_of(pg_main)]
            out["postgres (all processes)"] = (sum(x[0] for x in pg), sum(x[1] for x in pg), sum(x[2] for x in pg))
            return out

        before, t0 = sample(), time.time()
        pace(st, RATE, SECONDS, SESSION)
        after, el = sample(), time.time() - t0
        wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = 'bench-overhead'"))
                 >= RATE * SECONDS, 60, what="events stored")
        time.sleep(1)
        stop.set()
        reader.join(10)
    finally:
        stop.set()
        st.close()
    print("stack overhead at %d events/s for %d s (CPU as %% of one core; RSS at the end, peak in brackets):"
          % (RATE, SECONDS))
    daemons_cpu = 0.0
    for name in after:
        cpu = 100.0 * (after[name][0] - before[name][0]) / el
        if name in ("collector", "processor", "streamer", "alerter"):
            daemons_cpu += cpu
        print("  %-26s CPU %5.1f %%   RSS %7.1f MB (%.1f MB)" % (name, cpu, after[name][1] / 1024.0,
                                                              after[name][2] / 1024.0))
        key = name.split()[0].replace("-", "_")
        record("overhead", "cpu_" + key, "%s CPU at 1,000 events/s (%% of one core)" % name, round(cpu, 1), "%")
        record("overhead", "rss_" + key, "%s RSS at 1,000 events/s (peak %.1f MB)" % (name, after[name][2] / 1024.0),
               round(after[name][1] / 1024.0, 1), "MB")
    print("  %-26s CPU %5.1f %% of one core, %.1f %% of the machine's %d cores (seed PRD target < 3 %%)"
          % ("the four daemons", daemons_cpu, daemons_cpu / os.cpu_count(), os.cpu_count()))
    record("overhead", "cpu_daemons", "the four daemons' CPU at 1,000 events/s (% of the whole machine)",
           round(daemons_cpu / os.cpu_count(), 1), "%", target=3, better="lower")
    lags.sort()
    n = RATE * SECONDS
    print("event -> dashboard (send -> WebSocket client) at %d events/s: %d of %d events, p50 %.1f ms, "
          "p95 %.1f ms, p99 %.1f ms" % (RATE, len(lags), n, pct(lags, 50), pct(lags, 95), pct(lags, 99)))
    for p in (50, 95, 99):
        record("overhead", "dash_p%d" % p, "event -> dashboard latency p%d at 1,000 events/s" % p,
               round(pct(lags, p), 1), "ms", note="%d of %d events received" % (len(lags), n))
    return 0 if len(lags) == n else 1


if __name__ == "__main__":
    sys.exit(main())
