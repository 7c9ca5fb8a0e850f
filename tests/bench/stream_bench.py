"""stream_bench.py -- `make bench`: the streamer's fan-out lag and memory.

The load comes from ws_load (tests/bench/ws_load.c, built by make into
build/bench/ws_load): one C process that XADDs events straight into the
stream at 1,000 events/s, each stamped with its CLOCK_REALTIME send time,
and holds every WebSocket client on epoll, timing every event every client
receives (lag = receive time - send time, one clock, one machine). A Python
client could not read 1,000 x 1,000 events/s; this one reads big chunks and
is not the limit (its CPU time is printed beside the streamer's).

Scenarios (STREAM_BENCH_SCENARIOS, "filtered+unfiltered,..."):
  100 clients: 90 each watching one of 100 sessions plus 10 unfiltered
  100 clients, each unfiltered            (100 x 1,000 = 100 k deliveries/s)
  1,000 clients: 990 each watching one of 100 sessions plus 10 unfiltered
        (the dashboard case: ~20 k deliveries/s)
  1,000 clients, each unfiltered          (the worst case: 1 M deliveries/s)
Prints lag p50/p90/p99/p99.9/max over all deliveries, loss, frames, the
streamer's peak RSS during the scenario and CPU use of streamer and client.
Everything (client, streamer, Redis) shares this machine's cores: with every
client unfiltered the machine is saturated (loopback TCP does the receiving
side's work inside the sender's send(2), and the client's reads cost as much
again), so that case measures this box as much as the streamer.
The streamer runs with its default streamer.threads (one service thread per
core but one: 1 on a 2-core machine); STREAM_BENCH_THREADS=N overrides it.
Asserts nothing but that every client got every event it should.
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from benchlib import record  # noqa: E402
from harness import Stack, free_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("OBS_BUILD_DIR", os.environ.get("BUILD", "build"))
RATE = int(os.environ.get("STREAM_BENCH_RATE", "1000"))
SECONDS = int(os.environ.get("STREAM_BENCH_SECONDS", "10"))
SCENARIOS = [tuple(int(x) for x in s.split("+"))
             for s in os.environ.get("STREAM_BENCH_SCENARIOS", "90+10,0+100,990+10,0+1000").split(",")]
SESSIONS = 100
THREADS = os.environ.get("STREAM_BENCH_THREADS")
TICK = os.sysconf("SC_CLK_TCK")


def proc_status(pid):
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                vals[k] = int(v.split()[0])
    return vals


def cpu_s(pid):
    """utime + stime of a process (all threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        f = f.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def reset_peak(pid):
    """Reset VmHWM so each scenario reports its own peak (Linux >= 4.0)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    except OSError:
        pass


def scenario(st, nfilt, nall):
    pid = st.procs["streamer"].pid
    m0 = st.metrics(st.streamer_port)
    reset_peak(pid)
    c0 = cpu_s(pid)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], proc_status(pid)["VmRSS"])
    th = threading.Thread(target=sample)
    th.start()
    t0 = time.time()
    r0 = os.times()
    p = subprocess.run([os.path.join(ROOT, BUILD, "bench", "ws_load"), "--port", str(st.streamer_port),
                        "--redis-port", str(st.redis_port), "--filtered", str(nfilt), "--unfiltered", str(nall),
                        "--rate", str(RATE), "--seconds", str(SECONDS), "--sessions", str(SESSIONS),
                        "--tag", "b%d-%d" % (nfilt, nall)],
                       capture_output=True, text=True, timeout=SECONDS + 120)
    r1 = os.times()
    wall = time.time() - t0
    done.set()
    th.join()
    c1 = cpu_s(pid)
    mem = proc_status(pid)
    m = st.metrics(st.streamer_port)
    if p.returncode != 0 or not p.stdout.strip():
        print("  ws_load failed (%d): %s" % (p.returncode, p.stderr.strip()[-2000:]), flush=True)
        return False
    r = json.loads(p.stdout)
    dropped = sum(v - m0.get(k, 0) for k, v in m.items()
                  if k.startswith("agent_obs_streamer_clients_dropped_total"))
    what = ("%d clients, each unfiltered" % nall if not nfilt else
            "%d clients: %d each watching 1 of %d sessions + %d unfiltered" % (nfilt + nall, nfilt, SESSIONS, nall))
    lag = r["lag_ms"]
    client_cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    print("  %s: %d events in %.1f s, %d deliveries (%.0f/s) in %d frames; missing %d, closed %d, dropped %d\n"
          "    event->client lag ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.1f\n"
          "    streamer RSS peak %.1f MB (now %.1f MB); CPU streamer %.0f%%, load client %.0f%% of one core"
          % (what, r["sent"], r["send_s"], r["delivered"], r["delivered"] / max(r["send_s"], 1e-9), r["frames"],
             r["missing"], r["closed"], dropped,
             lag["p50"], lag["p90"], lag["p99"], lag["p999"], lag["max"],
             max(peak[0], mem["VmHWM"]) / 1024, mem["VmRSS"] / 1024,
             100 * (c1 - c0) / wall, 100 * client_cpu / wall), flush=True)
    key, n = "stream_%d_%d" % (nfilt, nall), nfilt + nall
    short = "%d clients, %s" % (n, "all unfiltered" if not nfilt else "%d filtered + %d unfiltered" % (nfilt, nall))
    for q in ("p50", "p99"):
        record("stream", key + "_" + q, "event -> client lag %s, %s, 1,000 events/s" % (q, short),
               round(lag[q], 2), "ms", target=10 if q == "p99" and n >= 1000 else None,
               better="lower" if q == "p99" and n >= 1000 else None,
               peer="fanout_floor_" + q if n >= 1000 and not nfilt else None,
               note="missing %d, closed %d, dropped %d" % (r["missing"], r["closed"], dropped))
    record("stream", key + "_rss", "streamer RSS peak, " + short, round(max(peak[0], mem["VmHWM"]) / 1024, 1), "MB",
           target=64, better="lower")
    if nfilt and nall:
        for k in ("lag_ms_filtered", "lag_ms_unfiltered"):
            h = r[k]
            print("    %-10s %7d deliveries: p50 %.2f  p99 %.2f  max %.1f" % (
                k.rsplit("_", 1)[1], h["n"], h["p50"], h["p99"], h["max"]), flush=True)
    return r["missing"] == 0 and r["closed"] == 0


def main():
    subprocess.run(["make", "-s", "-C", ROOT, "%s/bench/ws_load" % BUILD], check=True)
    st = Stack("streambench")
    ok = True
    try:
        st.start_redis()
        st.streamer_port = free_port()
        st.start("streamer", wait_port=st.streamer_port, OBS_STREAMER_PORT=st.streamer_port,
                 OBS_STREAMER_PING_INTERVAL_S=600, OBS_STREAMER_PING_TIMEOUT_S=1200,
                 OBS_LOG_LEVEL="info", **({"OBS_STREAMER_THREADS": THREADS} if THREADS else {}))
        threads = "?"
        for line in st.log("streamer").splitlines():
            if '"streamer listening"' in line:
                threads = json.loads(line).get("threads", "?")
        print("streamer fan-out: %d events/s for %d s; lag = CLOCK_REALTIME receive - send, every event at "
              "every client (C load client, tests/bench/ws_load.c); %d CPUs, load %s; streamer threads %s" % (
                  RATE, SECONDS, os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3]), threads),
              flush=True)
        print("  idle streamer RSS %.1f MB" % (proc_status(st.procs["streamer"].pid)["VmRSS"] / 1024), flush=True)
        for nfilt, nall in SCENARIOS:
            ok = scenario(st, nfilt, nall) and ok
    finally:
        st.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
