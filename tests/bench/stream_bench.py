"""stream_bench.py -- `make bench`: the streamer's fan-out lag and memory.

Events are XADDed straight into the stream at 1,000 events/s (each stamped
with its send time, spread over 100 sessions). One probe client takes every
event and measures event -> client lag = receive time - send time; N - 1
other clients read and discard in separate processes. Scenarios: 100 and
1,000 clients, first each watching one session (filter=session:..., the
dashboard case), then with no filter at all (the worst case: N x 1,000
deliveries/s).
Prints lag p50/p95/p99/max, deliveries, drops and the streamer's RSS.
Everything (bench clients, streamer, Redis) shares this machine's 2 cores.
Asserts nothing but that the probe saw every event.
"""
import json
import multiprocessing as mp
import os
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import Stack, free_port  # noqa: E402
from wsclient import WS, flatten  # noqa: E402

RATE = int(os.environ.get("STREAM_BENCH_RATE", "1000"))
SECONDS = int(os.environ.get("STREAM_BENCH_SECONDS", "10"))
CLIENTS = [int(x) for x in os.environ.get("STREAM_BENCH_CLIENTS", "100,1000").split(",")]
SESSIONS = 100  # filtered scenarios: client i watches session i % 100


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


class Redis:
    """Just enough RESP to XADD quickly (hiredis-free, stdlib only)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        line = self.f.readline()
        if line[:1] == b"$":
            n = int(line[1:])
            return self.f.read(n + 2)[:-2]
        return line.strip()


def drain(port, n, ready, stop, filtered):
    """n clients that read and throw away everything (a separate process)."""
    raise_nofile(n + 64)
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(n):
        ws = WS(port, "/stream?filter=session:bench-s%d" % (i % SESSIONS) if filtered else "/stream", timeout=30)
        ws.sock.setblocking(False)
        sel.register(ws.sock, selectors.EVENT_READ)
        socks.append(ws)
    ready.set()
    buf = bytearray(1 << 18)
    while not stop.is_set():
        for key, _ in sel.select(0.2):
            try:
                if not key.fileobj.recv_into(buf):
                    sel.unregister(key.fileobj)
            except BlockingIOError:
                pass
            except OSError:
                sel.unregister(key.fileobj)
    for ws in socks:
        ws.sock.close()


def rss_kb(pid):
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                vals[k] = int(v.split()[0])
    return vals


def hist_quantile(m, m0, name, q):
    """Upper bound of the bucket holding quantile q of a Prometheus histogram,
    counting only what was observed between snapshots m0 and m."""
    buckets = sorted((float(k.split('le="')[1].rstrip('"}')), v - m0.get(k, 0)) for k, v in m.items()
                     if k.startswith(name + "_bucket{") and "+Inf" not in k)
    total = m.get(name + "_count", 0) - m0.get(name + "_count", 0)
    for le, n in buckets:
        if total and n >= q * total:
            return le * 1000
    return float("nan")


def pct(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def scenario(st, nclients, filtered):
    ready, stop = mp.Event(), mp.Event()
    procs = []
    per = 500
    for i in range(0, nclients - 1, per):
        k = min(per, nclients - 1 - i)
        p = mp.Process(target=drain, args=(st.streamer_port, k, ready, stop, filtered))
        p.start()
        procs.append((p, ready))
        ready.wait(60)
        ready = mp.Event()
    probe = WS(st.streamer_port, "/stream", timeout=30)
    assert probe.recv_json(5)["type"] == "hello"
    time.sleep(0.5)
    connected = st.metrics(st.streamer_port)["agent_obs_streamer_clients"]

    m0 = st.metrics(st.streamer_port)
    r = Redis(st.redis_port)
    tag = "bench-%d-%s" % (nclients, "f" if filtered else "all")
    total = RATE * SECONDS
    lags = []
    got = 0
    t0 = time.time()
    sent = 0
    while sent < total or got < total:
        now = time.time()
        due = min(total, int((now - t0) * RATE) + 1)
        while sent < due:
            ev = {"id": "%s-%d" % (tag, sent), "event_type": "PostToolUse",
                  "session_id": "bench-s%d" % (sent % SESSIONS),
                  "tool": "Bash", "status": "success", "latency_ms": 12,
                  "timestamp": "2026-01-01T00:00:00.000Z", "payload": {"t": time.time()}}
            r.cmd("XADD", "agent_events", "*", "e", json.dumps(ev))
            sent += 1
        # read whatever the probe has, without blocking the pacing
        while True:
            m = probe.recv_text(0.0005 if sent < total else 2.0)
            if m is None:
                break
            t = time.time()
            for x in flatten(json.loads(m)):
                if x.get("type") == "event":
                    lags.append((t - x["event"]["payload"]["t"]) * 1000)
                    got += 1
            if sent < total:
                break
        if sent >= total and time.time() - t0 > SECONDS + 20:
            break
    elapsed = time.time() - t0
    m = st.metrics(st.streamer_port)
    mem = rss_kb(st.procs["streamer"].pid)
    stop.set()
    for p, _ in procs:
        p.join(10)
    probe.close()
    lags.sort()
    dropped = sum(v - m0.get(k, 0) for k, v in m.items()
                  if k.startswith("agent_obs_streamer_clients_dropped_total"))
    print("  %4d clients, %s (%d connected): %d events in %.1f s; probe got %d; lag p50 %.2f ms, "
          "p95 %.2f ms, p99 %.2f ms, max %.1f ms; frames %d, events sent %d, dropped %d; "
          "streamer RSS %.1f MB (peak %.1f MB); streamer's own entry->write histogram (all clients, "
          "ms-resolution entry ids): p50 <= %g ms, p99 <= %g ms" % (
              nclients, "each watching 1 of %d sessions" % SESSIONS if filtered else "every client takes every event",
              connected, sent, elapsed, got, pct(lags, 0.5), pct(lags, 0.95), pct(lags, 0.99),
              lags[-1], m["agent_obs_streamer_frames_sent_total"] - m0["agent_obs_streamer_frames_sent_total"],
              m["agent_obs_streamer_events_sent_total"] - m0["agent_obs_streamer_events_sent_total"],
              dropped, mem["VmRSS"] / 1024, mem["VmHWM"] / 1024,
              hist_quantile(m, m0, "agent_obs_streamer_send_lag_seconds", 0.5),
              hist_quantile(m, m0, "agent_obs_streamer_send_lag_seconds", 0.99)), flush=True)
    return got == total


def main():
    raise_nofile(4096)
    st = Stack("streambench")
    ok = True
    try:
        st.start_redis()
        st.streamer_port = free_port()
        st.start("streamer", wait_port=st.streamer_port, OBS_STREAMER_PORT=st.streamer_port,
                 OBS_STREAMER_PING_INTERVAL_S=600, OBS_STREAMER_PING_TIMEOUT_S=1200,
                 OBS_STREAMER_CLIENT_MAX_LAG_MS=120000,
                 OBS_LOG_LEVEL="warn")
        print("streamer fan-out: %d events/s for %d s; lag measured on one probe client that takes every event"
              % (RATE, SECONDS), flush=True)
        base = rss_kb(st.procs["streamer"].pid)
        print("  idle streamer RSS %.1f MB" % (base["VmRSS"] / 1024), flush=True)
        for filtered in (True, False):
            for n in CLIENTS:
                ok = scenario(st, n, filtered) and ok
    finally:
        st.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
