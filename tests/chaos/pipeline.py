"""pipeline.py -- the whole stack for `make chaos` and `make soak`, on top of
tests/integration/harness.py: Redis (AOF everysec), PostgreSQL, the four
daemons, Alertmanager and the on-call sink on throwaway ports; a WebSocket
watcher that reconnects with since=<last stream id>; a driver that runs
build/agent-hook like Claude Code does; RSS sampling and log scanning.
Python standard library only; every helper runs on the caller's threads.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import BUILD, ROOT, Stack, free_port, request, wait_for  # noqa: E402
from wsclient import WS, Closed, HandshakeError, flatten  # noqa: E402

DAEMONS = ["collector", "processor", "streamer", "alerter"]

# A test rule: every blocked PreToolUse fires one alert per session, held 2 s,
# so each firing resolves quickly and a second firing would show at the sink.
ALERT_RULES = """
rules:
  - name: DangerousCommandBlocked
    severity: critical
    match: {event_type: PreToolUse, status: blocked}
    condition: {kind: every, hold: 2s}
    group_by: [session_id]
"""


def say(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def sid_key(sid):
    """A stream id "ms-seq" as a comparable tuple."""
    a, _, b = sid.partition("-")
    return int(a), int(b or 0)


class Pipeline:
    """Stack plus streamer, alerter, Alertmanager and the on-call sink; keeps
    each daemon's environment so that a killed daemon restarts the same way.
    The alerter runs `rules` (default: ALERT_RULES)."""

    def __init__(self, name, rules=None):
        self.st = Stack(name)
        st = self.st
        st.streamer_port = free_port()
        st.alerter_port = free_port()
        self.am_port = free_port()
        self.sink_port = free_port()
        self.oncall = os.path.join(st.dir, "oncall.jsonl")
        self.rules = rules or os.path.join(st.dir, "alerts.yaml")
        if not rules:
            with open(self.rules, "w") as f:
                f.write(ALERT_RULES)
        self.port = {"collector": st.collector_port, "processor": st.processor_port,
                     "streamer": st.streamer_port, "alerter": st.alerter_port}
        self.denv = {
            "collector": {},
            "processor": {"OBS_PROCESSOR_CLAIM_IDLE_MS": 2000, "OBS_PROCESSOR_CLAIM_INTERVAL_MS": 500},
            "streamer": {"OBS_STREAMER_PORT": st.streamer_port, "OBS_STREAMER_CLIENT_QUEUE_BYTES": 8 << 20},
            "alerter": {"OBS_ALERTER_RULES": self.rules, "OBS_ALERTER_METRICS_PORT": st.alerter_port,
                        "OBS_ALERTER_ALERTMANAGER_URL": "http://127.0.0.1:%d" % self.am_port,
                        "OBS_ALERTER_EVAL_INTERVAL_MS": 100, "OBS_ALERTER_RESEND_INTERVAL_MS": 1000,
                        "OBS_ALERTER_MIN_FIRING_MS": 1000, "OBS_ALERTER_CLAIM_IDLE_MS": 2000,
                        "OBS_ALERTER_CLAIM_INTERVAL_MS": 500, "OBS_LOG_LEVEL": "debug"},
        }

    def up(self):
        st = self.st
        st.start_redis()
        st.start_pg()
        st.start_oncall_sink(self.sink_port, self.oncall)
        st.start_alertmanager(self.am_port, self.sink_port)
        for d in ["processor", "collector", "streamer", "alerter"]:
            self.start(d)
        wait_for(lambda: request(st.alerter_port, "GET", "/readyz")[0] == 200, 10, what="alerter ready")
        return self

    def start(self, name):
        self.st.start(name, wait_port=self.port[name], **self.denv[name])

    def pid(self, name):
        if name in ("redis", "pg"):
            return self.st.pid_of(name)
        return self.st.procs[name].pid

    def healthy(self, name):
        try:
            return request(self.port[name], "GET", "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def stop_daemons(self, sig=signal.SIGTERM):
        """Stop the daemons (SIGTERM: a sanitizer's exit-time checks run); exit codes by name."""
        return {d: self.st.kill(d, sig) for d in DAEMONS}

    def close(self):
        self.st.close()

    # ---------- reading the results ----------
    def notifications(self):
        try:
            with open(self.oncall) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def firings(self, alertname):
        """{session_id: number of firing notifications} at the on-call sink."""
        out = {}
        for n in self.notifications():
            for a in n["notification"].get("alerts", []):
                if a["labels"].get("alertname") == alertname and a["status"] == "firing":
                    s = a["labels"].get("session_id")
                    out[s] = out.get(s, 0) + 1
        return out

    def log_lines(self, name, level="error"):
        """Log lines of a daemon at `level` (JSON lines from common/log.c)."""
        out = []
        try:
            with open(self.st.logs[name], errors="replace") as f:
                for line in f:
                    if ('"level":"%s"' % level) in line:
                        out.append(line.rstrip())
        except (KeyError, OSError):
            pass
        return out

    def sanitizer_reports(self, name):
        pat = re.compile(r"(ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer)")
        out = []
        try:
            with open(self.st.logs[name], errors="replace") as f:
                for line in f:
                    if pat.search(line):
                        out.append(line.rstrip())
        except (KeyError, OSError):
            pass
        return out


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def postgres_pids(postmaster):
    """The postmaster and every process it forked (backends, walwriter, ...)."""
    out = [postmaster]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            out.append(int(d))
    return out


class WsWatcher(threading.Thread):
    """One dashboard client: watches `filt`, remembers every (stream id, event
    id) it is sent, and when the connection drops reconnects with
    since=<the last stream id it saw>, as the dashboard does."""

    def __init__(self, port, filt):
        super().__init__(daemon=True)
        self.port, self.filt = port, filt
        self.seen = []          # (stream id, event id) in arrival order
        self.reconnects = 0
        self.incomplete = []    # replay_done messages with complete:false
        self.out_of_order = 0
        self.stop_flag = False
        self.error = None

    def _connect(self):
        path = "/stream?filter=" + self.filt
        if self.seen:
            path += "&since=" + self.seen[-1][0]
        while not self.stop_flag:
            try:
                return WS(self.port, path, timeout=5)
            except (OSError, HandshakeError):
                time.sleep(0.2)
        return None

    def run(self):
        try:
            c = self._connect()
            while not self.stop_flag and c:
                try:
                    m = c.recv_json(0.5)
                except (Closed, OSError, ValueError):
                    c.close()
                    self.reconnects += 1
                    c = self._connect()
                    continue
                if m is None:
                    continue
                for x in flatten(m):
                    if x.get("type") == "event":
                        if self.seen and sid_key(x["id"]) <= sid_key(self.seen[-1][0]):
                            self.out_of_order += 1
                        self.seen.append((x["id"], x["event"]["id"]))
                    elif x.get("type") == "replay_done" and not x.get("complete", True):
                        self.incomplete.append(x)
            if c:
                c.close()
        except Exception as e:  # reported by the caller
            self.error = e


class HookDriver(threading.Thread):
    """Runs build/agent-hook `rate` times a second with a PostToolUse payload,
    each with its own tool_use_id, in session `session`, spooling to `spool`."""

    def __init__(self, st, session, spool, rate=5.0):
        super().__init__(daemon=True)
        self.st, self.session, self.spool, self.rate = st, session, spool, rate
        self.sent = []           # tool_use_ids whose hook exited 0
        self.sent_at = []        # time.time() the hook exited, per entry of sent
        self.failed = []         # (tool_use_id, exit code, stderr)
        self.max_spooled = 0
        self.stop_flag = False
        self.error = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_", "XDG_"))}
        self.env.update({"HOME": os.path.join(st.dir, "home"),
                         "OBS_COLLECTOR_URL": "http://127.0.0.1:%d" % st.collector_port,
                         "OBS_HOOK_STATE_DIR": os.path.join(st.dir, "hook-state"),
                         "OBS_HOOK_SPOOL_DIR": spool, "OBS_HOOK_QUIET": "1",
                         "OBS_HOOK_POLICY": os.path.join(ROOT, "config", "hook-policy.yaml")})

    def spooled(self):
        try:
            return len([f for f in os.listdir(self.spool) if f.endswith(".json")])
        except FileNotFoundError:
            return 0

    def hook(self, event, **kw):
        d = {"session_id": self.session, "cwd": "/home/dev/shop", "hook_event_name": event,
             "transcript_path": "/home/dev/.claude/projects/shop/%s.jsonl" % self.session}
        d.update(kw)
        r = subprocess.run([os.path.join(BUILD, "agent-hook")], input=json.dumps(d).encode(),
                           capture_output=True, env=self.env, timeout=30)
        return r.returncode, r.stderr.decode(errors="replace")

    def run(self):
        try:
            i = 0
            t0 = time.time()
            while not self.stop_flag:
                d = t0 + i / self.rate - time.time()
                if d > 0:
                    time.sleep(d)
                tu = "toolu_chaos_%06d" % i
                rc, err = self.hook("PostToolUse", tool_name="Bash", tool_use_id=tu, duration_ms=i % 100,
                                    tool_input={"command": "echo %d" % i}, tool_response={"stdout": str(i)})
                if rc == 0:
                    self.sent.append(tu)
                    self.sent_at.append(time.time())
                else:
                    self.failed.append((tu, rc, err[-300:]))
                self.max_spooled = max(self.max_spooled, self.spooled())
                i += 1
        except Exception as e:  # reported by the caller
            self.error = e

    def flush(self, timeout=60):
        """Hooks with the collector up until the spool is empty; each one sends
        the spool first. Returns the tool_use_ids of these extra hooks."""
        extra = []
        deadline = time.time() + timeout
        while True:
            tu = "toolu_flush_%d" % len(extra)
            rc, err = self.hook("PostToolUse", tool_name="Read", tool_use_id=tu)
            if rc == 0:
                extra.append(tu)
            if self.spooled() == 0 or time.time() > deadline:
                return extra
            time.sleep(0.5)
