"""soak.py -- `make soak`: SOAK_MINUTES (30) at SOAK_RATE (1,000) events/s
on the whole stack with 100 WebSocket clients (each watching one of the 100
sessions the load spreads over; one event in 1,000 is a blocked command, one
in 20 a failure, so the alerter, running config/alerts.yaml, fires too).

Every SOAK_SAMPLE_S (10) seconds it samples the RSS of every daemon and
prints a row. Fails when: a daemon's RSS keeps growing (of the samples
after SOAK_WARMUP_S (420 s: the alerter's 5-minute rule windows fill
until then), the last third's mean above the middle third's by more than
SOAK_RSS_TOLERANCE (10 %) + 2 MB; not judged with fewer than 6 samples after
the warm-up, and informational only for a sanitizer build, whose allocator
quarantine grows by design); any daemon logs an error-level
line; any sanitizer report appears in a daemon's log (the daemons are stopped
with SIGTERM at the end, so LeakSanitizer runs); a daemon dies or exits
non-zero; an acknowledged event is not stored exactly once; a WebSocket
client misses an event or is dropped.
"""
import json
import os
import selectors
import signal
import sys
import time
import uuid

from pipeline import DAEMONS, Pipeline, rss_kb, say
from harness import BUILD, ROOT, Loader, wait_for
from wsclient import WS, OP_CLOSE, OP_PING, OP_TEXT, frame, flatten

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
RATE = int(os.environ.get("SOAK_RATE", "1000"))
SAMPLE_S = float(os.environ.get("SOAK_SAMPLE_S", "10"))
TOLERANCE = float(os.environ.get("SOAK_RSS_TOLERANCE", "0.10"))
WARMUP_S = float(os.environ.get("SOAK_WARMUP_S", "420"))
CLIENTS = 100


def sanitized():
    try:
        with open(os.path.join(BUILD, ".flags")) as f:
            return "-fsanitize" in f.read()
    except OSError:
        return False


def event(i):
    e = {"id": str(uuid.uuid4()), "event_type": "PostToolUse", "session_id": "soak-%02d" % (i % CLIENTS),
         "tool": ["Bash", "Read", "Edit", "Grep"][i % 4], "latency_ms": i % 250, "payload": {"n": i}}
    if i % 1000 == 999:
        e.update(event_type="PreToolUse", payload={"blocked": True, "command": "rm -rf /"})
    elif i % 20 == 0:
        e["payload"] = {"success": False, "error": "exit 1"}
    return e


class Clients:
    """100 WebSocket clients in one selector loop (run from the main thread
    between samples); counts the events each one receives."""

    def __init__(self, port):
        self.sel = selectors.DefaultSelector()
        self.got = [0] * CLIENTS
        self.closed = []
        for k in range(CLIENTS):
            c = WS(port, "/stream?filter=session:soak-%02d" % k)
            c.sock.setblocking(False)
            c.k = k
            self.count(c, c.pending)
            c.pending = []
            self.sel.register(c.sock, selectors.EVENT_READ, c)

    def count(self, c, texts):
        for t in texts:
            for m in flatten(json.loads(t)):
                if m.get("type") == "event":
                    self.got[c.k] += 1

    def pump(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            for key, _ in self.sel.select(max(0.0, min(0.5, end - time.time()))):
                c = key.data
                try:
                    data = c.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.closed.append((c.k, "connection closed"))
                    self.sel.unregister(c.sock)
                    continue
                c.reader.feed(data)
                for op, payload in c.reader.messages():
                    if op == OP_TEXT:
                        self.count(c, [payload.decode()])
                    elif op == OP_PING:
                        c.sock.setblocking(True)
                        c.sock.sendall(frame(10, payload))
                        c.sock.setblocking(False)
                    elif op == OP_CLOSE:
                        self.closed.append((c.k, payload[2:].decode(errors="replace")))
                        self.sel.unregister(c.sock)

    def close(self):
        for key in list(self.sel.get_map().values()):
            key.data.close()


def main():
    violations = []

    def fail(msg):
        violations.append(msg)
        say("VIOLATION: " + msg)

    san = sanitized()
    p = Pipeline("soak", rules=os.path.join(ROOT, "config", "alerts.yaml"))
    st = p.st
    samples = []  # (t, {daemon: rss kB})
    try:
        say("soak: %g min at %d events/s, %d WebSocket clients, build %s%s" %
            (MINUTES, RATE, CLIENTS, BUILD, " (sanitizers)" if san else ""))
        p.up()
        clients = Clients(st.streamer_port)
        total = int(MINUTES * 60 * RATE)
        load = Loader(st, None, total, per=max(1, RATE // 20), rate=RATE, make=event)
        t0 = time.time()
        load.start()
        print("%8s %10s %10s %10s | %s" % ("t s", "acked", "stored", "ws recv",
                                           " ".join("%10s" % ("%s MB" % d[:9]) for d in DAEMONS)), flush=True)
        while load.is_alive():
            clients.pump(SAMPLE_S)
            rss = {d: rss_kb(p.pid(d)) for d in DAEMONS}
            samples.append((time.time() - t0, rss))
            stored = st.scalar("SELECT count(*) FROM agent_events")
            print("%8.0f %10d %10s %10d | %s" % (time.time() - t0, len(load.acked), stored, sum(clients.got),
                                                 " ".join("%10.1f" % ((v or 0) / 1024) for v in rss.values())),
                  flush=True)
            for d in DAEMONS:
                if st.procs[d].poll() is not None:
                    fail("%s exited with %s during the soak" % (d, st.procs[d].returncode))
            if violations:
                load.stop()
        load.join(30)
        if load.error:
            fail("load generator failed: %r" % load.error)
        say("load done: %d events acknowledged, %d refused (503); draining" % (len(load.acked), load.refused))
        want = len(load.acked)

        def stored_all():
            return int(st.scalar("SELECT count(*) FROM agent_events")) >= want
        try:
            wait_for(stored_all, 300, interval=1, what="every acknowledged event stored")
        except AssertionError as e:
            fail(str(e))
        n, distinct = st.sql("SELECT count(*), count(DISTINCT id) FROM agent_events")[0]
        if int(n) != want or int(distinct) != want:
            fail("%d acknowledged, %s rows, %s distinct ids" % (want, n, distinct))
        else:
            say("verified: %d acknowledged events stored exactly once" % want)
        end = time.time() + 60
        while sum(clients.got) < want and time.time() < end and not clients.closed:
            clients.pump(1)
        if clients.closed:
            fail("%d WebSocket clients were closed, e.g. %r" % (len(clients.closed), clients.closed[0]))
        if sum(clients.got) != want:
            fail("WebSocket clients received %d events, %d were acknowledged" % (sum(clients.got), want))
        else:
            say("verified: the %d WebSocket clients received all %d events" % (CLIENTS, want))
        clients.close()
        fired = st.metrics(st.alerter_port).get("agent_obs_alerter_alerts_fired_total", 0)
        say("alerter fired %d alerts, on-call sink received %d notifications" % (fired, len(p.notifications())))
        if want >= 1000 and not fired:
            fail("the alerter fired no alert")
    except Exception as e:
        import traceback
        traceback.print_exc()
        fail("soak aborted: %r" % e)
    finally:
        codes = p.stop_daemons(signal.SIGTERM)
        for d, code in codes.items():
            if code not in (0, None):
                fail("%s exited with %s on SIGTERM" % (d, code))
        print("\n== soak: RSS per daemon (MB): first, max; after the %g s warm-up: middle third mean, "
              "last third mean" % WARMUP_S)
        for d in DAEMONS:
            every = [s[1][d] / 1024 for s in samples if s[1].get(d)]
            xs = [s[1][d] / 1024 for s in samples if s[1].get(d) and s[0] >= WARMUP_S]
            if len(xs) < 6:
                print("%-10s %8.1f %8.1f  not judged: %d samples after the warm-up (run longer)"
                      % (d, every[0] if every else 0, max(every) if every else 0, len(xs)))
                continue
            k = len(xs) // 3
            mid, last = sum(xs[k:2 * k]) / k, sum(xs[len(xs) - k:]) / k
            grow = last > mid * (1 + TOLERANCE) + 2
            print("%-10s %8.1f %8.1f %8.1f %8.1f  %s" % (d, every[0], max(every), mid, last,
                                                         "GROWING" if grow else "flat"))
            if grow and not san:
                fail("%s RSS keeps growing: %.1f MB (middle third) -> %.1f MB (last third)" % (d, mid, last))
            elif grow:
                say("%s RSS grew (sanitizer build: informational only)" % d)
        for d in DAEMONS:
            errs = p.log_lines(d, "error")
            if errs:
                fail("%s logged %d error lines, e.g. %s" % (d, len(errs), errs[0][:300]))
            rep = p.sanitizer_reports(d)
            if rep:
                fail("%s: sanitizer report: %s" % (d, rep[0][:300]))
                print(st.log(d)[-3000:])
        print("soak: %s%d violations" % ("sanitizer build, " if san else "", len(violations)), flush=True)
        p.close()
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
