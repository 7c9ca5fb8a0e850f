"""harness.py -- a real stack on throwaway ports for integration tests.

Starts redis-server and PostgreSQL (through deploy/local/lib.sh) in a temporary
directory, applies the migrations, and runs build/collector and build/processor
against them; on request also Alertmanager and the on-call webhook sink.
Python standard library only; talks to PostgreSQL with psql and to Redis with
redis-cli, the real servers, never mocks. Shared by tests/integration,
tests/bench and tests/chaos (Loader: a load generator that records every id
the collector acknowledged).
"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("OBS_BUILD_DIR", os.path.join(ROOT, "build"))
LIB = os.path.join(ROOT, "deploy", "local", "lib.sh")
AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

# Alertmanager for tests: every alert to the on-call sink, quickly.
AM_CONFIG = """
route:
  receiver: oncall
  group_by: [alertname, session_id]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: oncall
    webhook_configs:
      - url: http://127.0.0.1:%d/alertmanager
        send_resolved: true
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


class Stack:
    """redis_password: the Redis server gets requirepass (the daemons get no
    password unless a test passes OBS_REDIS_PASSWORD or a password file).
    pg_require_password() switches PostgreSQL from trust to password logins."""

    def __init__(self, name="stack", redis_password=None):
        base = os.environ.get("OBS_TEST_TMP", "/tmp")
        self.dir = tempfile.mkdtemp(prefix="agent-obs-%s-" % name, dir=base)
        os.chmod(self.dir, 0o755)
        self.redis_port = free_port()
        self.pg_port = free_port()
        self.collector_port = free_port()
        self.processor_port = free_port()
        self.procs = {}
        self.logs = {}
        self.redis_password = redis_password
        self.pg_password = None

    # ---------- servers ----------
    def lib(self, *args, check=True):
        cmd = "source %s; %s" % (LIB, " ".join(args))
        r = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True,
                           env=self._client_env(PG_FSYNC=os.environ.get("PG_FSYNC", "off")))
        if check and r.returncode != 0:
            raise RuntimeError("%s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def start_redis(self):
        self.lib("redis_start", os.path.join(self.dir, "redis"), str(self.redis_port))

    def stop_redis(self):
        self.lib("redis_stop", os.path.join(self.dir, "redis"), str(self.redis_port))

    def start_pg(self, migrate=True):
        self.lib("pg_start", os.path.join(self.dir, "pg"), str(self.pg_port))
        if migrate:
            self.lib("pg_migrate", str(self.pg_port))

    def stop_pg(self):
        self.lib("pg_stop", os.path.join(self.dir, "pg"))

    def _client_env(self, **extra):
        """Environment for redis-cli, psql and lib.sh: secrets via env, never argv."""
        e = dict(os.environ, **extra)
        e.pop("REDIS_PASSWORD", None)
        e.pop("PGPASSWORD", None)
        if self.redis_password:
            e["REDIS_PASSWORD"] = e["REDISCLI_AUTH"] = self.redis_password
        if self.pg_password:
            e["PGPASSWORD"] = self.pg_password
        return e

    def pg_require_password(self, passwords, method="scram-sha-256"):
        """Give roles passwords ({role: password}, hashed as `method`: md5 or
        scram-sha-256) and make TCP logins require them (pg_hba.conf, reload).
        The first password becomes the one psql uses from then on."""
        enc = "md5" if method == "md5" else "scram-sha-256"
        q = "SET password_encryption = '%s';\n" % enc
        for role, pw in passwords.items():
            q += "ALTER ROLE %s PASSWORD '%s';\n" % (role, pw.replace("'", "''"))
        self.sql(q)
        with open(os.path.join(self.dir, "pg", "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nhost all all 127.0.0.1/32 %s\nhost all all ::1/128 %s\n"
                    % (method, method))
        self.sql("SELECT pg_reload_conf()")
        self.pg_password = next(iter(passwords.values()))
        # from now on a login without the password must fail
        bare = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
        bare["PGCONNECT_TIMEOUT"] = "3"

        def refused():
            r = subprocess.run(["psql", "-X", "-w", "-At", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U",
                                "agent_obs", "-d", "agent_obs", "-c", "SELECT 1"],
                               capture_output=True, text=True, env=bare)
            return r.returncode != 0 and "password" in r.stderr
        wait_for(refused, 10, what="postgres to require passwords")

    def env(self, **extra):
        e = dict(os.environ)
        e.update({
            "OBS_REDIS_PORT": str(self.redis_port),
            "OBS_COLLECTOR_PORT": str(self.collector_port),
            "OBS_PROCESSOR_METRICS_PORT": str(self.processor_port),
            "OBS_PG_CONNINFO": "host=127.0.0.1 port=%d dbname=agent_obs user=agent_obs" % self.pg_port,
            "OBS_COLLECTOR_PG_CONNINFO":
                "host=127.0.0.1 port=%d dbname=agent_obs user=agent_obs_read" % self.pg_port,
            "OBS_LOG_LEVEL": "info",
        })
        e.pop("OBS_CONFIG", None)
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def start(self, name, wait_port=None, ca=None, **env):
        """Run build/<name>; wait for GET /healthz on its port (over https
        trusting the CA file `ca` when given)."""
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        self.logs[name] = log.name
        p = subprocess.Popen([os.path.join(BUILD, name)], env=self.env(**env), stdout=log,
                             stderr=log, cwd=ROOT)
        self.procs[name] = p
        port = wait_port or {"collector": self.collector_port,
                             "processor": self.processor_port}.get(name)
        if port:
            wait_for(lambda: self._healthy(port, ca) or p.poll() is not None, 10,
                     what="%s health" % name)
            if p.poll() is not None:
                raise RuntimeError("%s exited with %s:\n%s" % (name, p.returncode, self.log(name)))
        return p

    def _healthy(self, port, ca=None):
        try:
            st, _, _ = request(port, "GET", "/healthz", timeout=1, ca=ca)
            return st == 200
        except OSError:
            return False

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.get(name)
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode if p else None

    def pid_of(self, name):
        """Pid of a server started through lib.sh: "redis" or "pg" (the postmaster)."""
        path = os.path.join(self.dir, "redis", "redis.pid") if name == "redis" else \
            os.path.join(self.dir, "pg", "postmaster.pid")
        with open(path) as f:
            return int(f.readline())

    def start_alertmanager(self, am_port, sink_port):
        """Alertmanager on am_port sending every alert to the on-call sink on sink_port."""
        assert AM_BIN, "prometheus-alertmanager not installed (deploy/local/install-deps.sh)"
        cfg = os.path.join(self.dir, "alertmanager.yml")
        with open(cfg, "w") as f:
            f.write(AM_CONFIG % sink_port)
        log = open(os.path.join(self.dir, "alertmanager.log"), "ab")
        self.logs["alertmanager"] = log.name
        self.procs["alertmanager"] = subprocess.Popen(
            [AM_BIN, "--config.file=" + cfg, "--storage.path=" + os.path.join(self.dir, "am"),
             "--web.listen-address=127.0.0.1:%d" % am_port, "--cluster.listen-address="],
            stdout=log, stderr=log, cwd=self.dir)

        def ready():
            try:
                return request(am_port, "GET", "/-/ready", timeout=1)[0] == 200
            except OSError:
                return False
        wait_for(ready, 20, what="alertmanager ready")

    def start_oncall_sink(self, port, out):
        """deploy/local/oncall_sink.py on port, one JSON line per notification in out."""
        log = open(os.path.join(self.dir, "oncall.log"), "ab")
        self.logs["oncall"] = log.name
        self.procs["oncall"] = subprocess.Popen(
            ["python3", os.path.join(ROOT, "deploy", "local", "oncall_sink.py"), "--port",
             str(port), "--out", out], stdout=log, stderr=log)
        wait_for(lambda: self._healthy(port), 10, what="on-call sink")

    def log(self, name):
        try:
            with open(self.logs[name], "r", errors="replace") as f:
                return f.read()[-4000:]
        except (KeyError, OSError):
            return ""

    def up(self):
        self.start_redis()
        self.start_pg()
        self.start("processor")
        self.start("collector")
        return self

    def close(self):
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)
        self.lib("redis_stop", os.path.join(self.dir, "redis"), str(self.redis_port), check=False)
        self.lib("pg_stop", os.path.join(self.dir, "pg"), check=False)
        if not os.environ.get("OBS_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---------- clients ----------
    def post(self, body, path="/events", ctype="application/json", headers=None):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        h = {"Content-Type": ctype} if ctype else {}
        h.update(headers or {})
        return request(self.collector_port, "POST", path, body, h)

    def sql(self, query, *params):
        """Rows of a query as lists of strings (psql -At). Params via psql variables."""
        args = ["psql", "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                "-p", str(self.pg_port), "-U", "agent_obs", "-d", "agent_obs"]
        for i, p in enumerate(params):
            args += ["-v", "p%d=%s" % (i + 1, p)]
        r = subprocess.run(args, input=query, capture_output=True, text=True, env=self._client_env())
        if r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr)
        return [line.split("\t") for line in r.stdout.splitlines() if line != ""]

    def scalar(self, query, *params):
        rows = self.sql(query, *params)
        return rows[0][0] if rows else None

    def redis(self, *args):
        r = subprocess.run(["redis-cli", "--no-auth-warning", "-p", str(self.redis_port), "--no-raw"] +
                           [str(a) for a in args], capture_output=True, text=True, env=self._client_env())
        return r.stdout.strip()

    def redis_raw(self, *args):
        r = subprocess.run(["redis-cli", "--no-auth-warning", "-p", str(self.redis_port)] +
                           [str(a) for a in args], capture_output=True, text=True, env=self._client_env())
        return r.stdout.strip()

    def metrics(self, port, headers=None):
        st, _, body = request(port, "GET", "/metrics", headers=headers, raw=True)
        assert st == 200, st
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


def tls_context(ca):
    """A client context that trusts only the CA file `ca` (verification on)."""
    return ssl.create_default_context(cafile=ca)


def request(port, method, path, body=None, headers=None, timeout=10, raw=False, ca=None):
    """One HTTP request to 127.0.0.1:port; https (trusting the CA file `ca`) when ca is given."""
    if ca:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls_context(ca))
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if raw:
            return r.status, hdrs, data
        try:
            return r.status, hdrs, json.loads(data) if data else None
        except ValueError:
            return r.status, hdrs, data
    finally:
        c.close()


class KeepAlive:
    """One persistent HTTP/1.1 connection for many requests."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, body, path="/events", ctype="application/json"):
        self.c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = self.c.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def close(self):
        self.c.close()


class Loader(threading.Thread):
    """Posts events in bulk requests of `per` until `total` are acknowledged
    (or stop() is called), retrying a refused (503) or cut-off request with the
    same ids like a real client, and remembers every id the collector
    acknowledged (202) with the time of the answer. With `rate` (events/s) the
    requests are paced; `pause` sleeps after each request instead."""

    def __init__(self, st, session, total, per=100, pause=0.0, rate=None, make=None):
        super().__init__(daemon=True)
        self.st, self.session, self.total, self.per, self.pause = st, session, total, per, pause
        self.rate = rate
        self.make = make or (lambda i: {"id": str(uuid.uuid4()), "event_type": "PostToolUse",
                                        "session_id": self.session, "tool": "Bash", "payload": {"n": i}})
        self.acked = []
        self.acked_at = []  # time.time() of the 202 answer, per entry of acked
        self.sent = set()
        self.refused = 0     # 503 answers
        self.cut = 0         # connection errors (collector gone, answer lost)
        self.error = None

    def stop(self):
        self.total = 0

    def run(self):
        try:
            c = KeepAlive(self.st.collector_port)
            sent = 0
            t0 = time.time()
            while sent < self.total:
                if self.rate:
                    d = t0 + sent / self.rate - time.time()
                    if d > 0:
                        time.sleep(d)
                n = min(self.per, self.total - sent)
                if n <= 0:
                    break
                evs = [self.make(sent + i) for i in range(n)]
                body = json.dumps(evs)
                self.sent.update(e["id"] for e in evs)
                while True:
                    try:
                        status, resp = c.post(body)
                    except (OSError, http.client.HTTPException):
                        c.close()
                        self.cut += 1
                        time.sleep(0.05)
                        c = KeepAlive(self.st.collector_port)
                        continue
                    if status == 202:
                        assert resp["ids"] == [e["id"] for e in evs]
                        now = time.time()
                        self.acked.extend(resp["ids"])
                        self.acked_at.extend([now] * len(evs))
                        break
                    assert status == 503, (status, resp)
                    self.refused += 1
                    time.sleep(0.05)
                sent += n
                if self.pause:
                    time.sleep(self.pause)
            c.close()
        except Exception as e:  # reported by the caller
            self.error = e
