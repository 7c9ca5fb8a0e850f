"""harness.py -- a real stack on throwaway ports for integration tests.

Starts redis-server and PostgreSQL (through deploy/local/lib.sh) in a temporary
directory, applies the migrations, and runs build/collector and build/processor
against them. Python standard library only; talks to PostgreSQL with psql and
to Redis with redis-cli, the real servers, never mocks.
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
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("OBS_BUILD_DIR", os.path.join(ROOT, "build"))
LIB = os.path.join(ROOT, "deploy", "local", "lib.sh")


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

    def metrics(self, port):
        st, _, body = request(port, "GET", "/metrics", raw=True)
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
