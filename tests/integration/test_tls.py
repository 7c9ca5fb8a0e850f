"""Transport security (issue 7): TLS and secrets.

A throwaway CA-less self-signed certificate is made with the openssl CLI; the
collector serves HTTPS (libmicrohttpd + GnuTLS) and the streamer HTTPS + WSS
(libwebsockets + OpenSSL) with it. Redis runs with requirepass (the streamer
logs in as an ACL user), PostgreSQL requires scram-sha-256 passwords. Events go
in over https, are stored in PostgreSQL, read back through the history API
(the read role's password) and arrive on wss:///stream; agent-hook delivers
over https trusting the certificate through OBS_HOOK_CA_FILE. Plain HTTP on
the TLS ports is refused, bad certificate settings stop a daemon at start-up
with a clear message, and no password shows up in any log or command line.
"""
import http.client
import json
import os
import ssl
import subprocess
import time
import uuid

from harness import BUILD, Stack, free_port, request, tls_context, wait_for
from wsclient import WS, HandshakeError, flatten

REDIS_PW = "redis-pw-%s" % uuid.uuid4().hex[:12]
STREAMER_PW = "acl-pw-%s" % uuid.uuid4().hex[:12]
PG_PW = "pg-writer-%s" % uuid.uuid4().hex[:12]
PG_READ_PW = "pg-reader-%s" % uuid.uuid4().hex[:12]
CONNINFO_PW = "conninfo-pw-%s" % uuid.uuid4().hex[:12]
SECRETS = (REDIS_PW, STREAMER_PW, PG_PW, PG_READ_PW, CONNINFO_PW)
HOOK = os.path.join(BUILD, "agent-hook")


def openssl_cert(d, name, cn="localhost"):
    """A self-signed P-256 certificate for localhost / 127.0.0.1."""
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=%s" % cn, "-keyout", key, "-out", cert,
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def secret_file(d, name, value):
    p = os.path.join(d, name)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return p


def setup():
    st = Stack("tls", redis_password=REDIS_PW)
    try:
        d = st.tls = os.path.join(st.dir, "tls")
        os.makedirs(d)
        st.cert, st.key = openssl_cert(d, "server")
        st.other_cert, st.other_key = openssl_cert(d, "other", cn="other")
        st.start_redis()
        # the streamer logs in as its own ACL user (AUTH username password)
        assert st.redis("ACL", "SETUSER", "obs_streamer", "on", ">" + STREAMER_PW, "~*", "&*", "+@all") == "OK"
        st.start_pg()
        st.pg_require_password({"agent_obs": PG_PW, "agent_obs_read": PG_READ_PW})

        # processor: both passwords from files named in the environment
        st.start("processor", OBS_REDIS_PASSWORD_FILE=secret_file(d, "redis.pw", REDIS_PW),
                 OBS_PG_PASSWORD_FILE=secret_file(d, "pg.pw", PG_PW), OBS_PG_SSLMODE="disable")
        # collector: everything from a private YAML config file
        conf = os.path.join(d, "collector.yaml")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("redis:\n  password_file: %s\ncollector:\n  tls_cert: %s\n  tls_key: %s\n"
                    "  pg_password: \"%s\"\n  pg_sslmode: prefer\n"
                    % (os.path.join(d, "redis.pw"), st.cert, st.key, PG_READ_PW))
        st.start("collector", ca=st.cert, OBS_CONFIG=conf)
        # streamer: ACL user and password from the environment
        st.streamer_port = free_port()
        st.start("streamer", wait_port=st.streamer_port, ca=st.cert, OBS_STREAMER_PORT=st.streamer_port,
                 OBS_STREAMER_TLS_CERT=st.cert, OBS_STREAMER_TLS_KEY=st.key,
                 OBS_REDIS_USERNAME="obs_streamer", OBS_REDIS_PASSWORD=STREAMER_PW)
    except Exception:
        st.close()
        raise
    return st


def teardown(st):
    st.close()


def post(st, body, path="/events"):
    return request(st.collector_port, "POST", path, json.dumps(body), {"Content-Type": "application/json"},
                   ca=st.cert)


def stored(st, eid):
    return st.scalar("SELECT count(*) FROM agent_events WHERE id = :'p1'", eid) == "1"


def event(session, **kw):
    e = {"id": str(uuid.uuid4()), "session_id": session, "event_type": "PreToolUse", "tool": "Bash",
         "source_app": "tls-test", "payload": {"command": "ls"}}
    e.update(kw)
    return e


# --------------------------------------------------------------------------

def test_https_event_stored_and_streamed_over_wss(st):
    session = "tls-" + uuid.uuid4().hex[:8]
    ws = WS(st.streamer_port, "/stream?filter=session:%s" % session, ssl_context=tls_context(st.cert))
    try:
        assert ws.sock.version().startswith("TLS"), ws.sock.version()
        hello = ws.recv_json(5)
        assert hello and hello["type"] == "hello", hello
        ev = event(session)
        status, _, body = post(st, ev)
        assert status == 202, (status, body)
        assert body["ids"] == [ev["id"]]
        got = []
        deadline = time.time() + 10
        while not got and time.time() < deadline:
            m = ws.recv_json(1)
            got += [x for x in flatten(m) if m and x.get("type") == "event"]
        assert got and got[0]["event"]["id"] == ev["id"] and got[0]["event"]["session_id"] == session, got
    finally:
        ws.close()
    wait_for(lambda: stored(st, ev["id"]), 15, what="event stored in postgres")
    # read back through the history API: the collector's read role logs in with its password
    status, _, body = request(st.collector_port, "GET", "/events?session_id=%s" % session, ca=st.cert)
    assert status == 200, (status, body)
    assert [e["id"] for e in body["events"]] == [ev["id"]], body


def test_dashboard_served_over_https(st):
    status, hdrs, body = request(st.streamer_port, "GET", "/healthz", ca=st.cert)
    assert status == 200, (status, body)
    status, _, body = request(st.streamer_port, "GET", "/metrics", ca=st.cert, raw=True)
    assert status == 200 and b"agent_obs_streamer_clients" in body


def test_certificate_is_verified(st):
    # a client that trusts another certificate must not get through
    for port in (st.collector_port, st.streamer_port):
        try:
            request(port, "GET", "/healthz", ca=st.other_cert, timeout=5)
            raise AssertionError("TLS handshake on %d succeeded with the wrong CA" % port)
        except ssl.SSLCertVerificationError:
            pass


def test_plain_http_refused_on_tls_ports(st):
    session = "plain-" + uuid.uuid4().hex[:8]
    ev = event(session)
    for port in (st.collector_port, st.streamer_port):
        try:
            status, _, _ = request(port, "POST", "/events", json.dumps(ev), {"Content-Type": "application/json"},
                                   timeout=5)
            raise AssertionError("plain HTTP answered %s on TLS port %d" % (status, port))
        except (OSError, http.client.HTTPException):
            pass
    try:
        WS(st.streamer_port, "/stream", timeout=5).close()
        raise AssertionError("plain ws:// accepted on the TLS port")
    except (OSError, HandshakeError):
        pass
    # the plain request never became an event
    time.sleep(0.5)
    assert ev["id"] not in st.redis_raw("XRANGE", "agent_events", "-", "+")
    # and the daemons are still serving https
    assert request(st.collector_port, "GET", "/healthz", ca=st.cert)[0] == 200
    assert request(st.streamer_port, "GET", "/healthz", ca=st.cert)[0] == 200


def test_agent_hook_with_ca_file(st):
    home = os.path.join(st.tls, "home")
    os.makedirs(home, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_", "XDG_"))}
    env.update({"HOME": home, "OBS_COLLECTOR_URL": "https://127.0.0.1:%d" % st.collector_port,
                "OBS_HOOK_STATE_DIR": os.path.join(st.tls, "hook-state"), "OBS_HOOK_TIMEOUT_MS": "3000"})

    def hook(session, **extra):
        payload = {"session_id": session, "transcript_path": "/nonexistent/%s.jsonl" % session,
                   "cwd": home, "hook_event_name": "Stop", "permission_mode": "default"}
        return subprocess.run([HOOK], input=json.dumps(payload).encode(), capture_output=True,
                              env=dict(env, **extra), timeout=20)

    def count(session):
        return int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", session))

    # without the CA file the self-signed certificate is not trusted: spooled, not sent
    s1 = "hook-noca-" + uuid.uuid4().hex[:8]
    r = hook(s1, OBS_HOOK_SPOOL_DIR=os.path.join(st.tls, "spool-noca"))
    assert r.returncode == 0, r.stderr
    assert b"certificate" in r.stderr.lower() or b"ssl" in r.stderr.lower(), r.stderr
    assert os.listdir(os.path.join(st.tls, "spool-noca")), "the event should wait in the spool"
    # a CA file that does not exist is named in the warning
    r = hook(s1, OBS_HOOK_SPOOL_DIR=os.path.join(st.tls, "spool-badca"), OBS_HOOK_CA_FILE="/nonexistent/ca.pem")
    assert b"/nonexistent/ca.pem" in r.stderr, r.stderr
    # with it, delivered over https
    s2 = "hook-ca-" + uuid.uuid4().hex[:8]
    r = hook(s2, OBS_HOOK_CA_FILE=st.cert, OBS_HOOK_SPOOL_DIR=os.path.join(st.tls, "spool-ca"))
    assert r.returncode == 0, r.stderr
    assert b"unreachable" not in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(st.tls, "spool-ca")) or not os.listdir(os.path.join(st.tls, "spool-ca"))
    wait_for(lambda: count(s2) == 1, 15, what="hook event stored")
    assert count(s1) == 0


def log_text(out):
    """Log output with each JSON line's fields also given unescaped."""
    parts = [out]
    for line in out.splitlines():
        try:
            parts += [str(v) for v in json.loads(line).values()]
        except ValueError:
            pass
    return "\n".join(parts)


def run_fail(st, name, **env):
    """Start a daemon that must refuse to start; returns its log text."""
    e = st.env(**env)
    r = subprocess.run([os.path.join(BUILD, name)], env=e, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0, "%s started with %r" % (name, env)
    return log_text(r.stderr + r.stdout)


def test_bad_certificate_settings_stop_start_up(st):
    d = st.tls
    junk = os.path.join(d, "junk.pem")
    with open(junk, "w") as f:
        f.write("not a certificate\n")
    cases = [
        (dict(TLS_CERT=os.path.join(d, "missing.crt"), TLS_KEY=st.key),
         'tls_cert: cannot read "%s": No such file or directory' % os.path.join(d, "missing.crt")),
        (dict(TLS_CERT=st.cert, TLS_KEY=st.other_key), "tls_key (\"%s\") does not match" % st.other_key),
        (dict(TLS_CERT=junk, TLS_KEY=st.key), 'tls_cert: "%s" holds no PEM certificate' % junk),
        (dict(TLS_CERT=st.cert, TLS_KEY=junk), 'tls_key: "%s" holds no unencrypted PEM private key' % junk),
        (dict(TLS_CERT=st.cert), "set both for TLS, or neither"),
    ]
    for name, prefix, port_var in (("collector", "OBS_COLLECTOR_", "OBS_COLLECTOR_PORT"),
                                   ("streamer", "OBS_STREAMER_", "OBS_STREAMER_PORT")):
        for settings, want in cases:
            env = {prefix + k: v for k, v in settings.items()}
            env[port_var] = free_port()
            out = run_fail(st, name, **env)
            assert want in out, (name, settings, out)
            assert "start failed" in out, out


def test_wrong_or_missing_passwords_are_clear_and_unlogged(st):
    # Redis without the password: the streamer keeps retrying and says why
    out = run_fail_quick(st, "streamer", OBS_STREAMER_PORT=free_port())
    assert "redis unavailable, retrying" in out and "NOAUTH" in out, out
    # a wrong password
    out = run_fail_quick(st, "streamer", OBS_STREAMER_PORT=free_port(), OBS_REDIS_PASSWORD="wrong-" + REDIS_PW)
    assert "redis AUTH" in out and "WRONGPASS" in out, out
    assert REDIS_PW not in out
    # a password file that does not exist
    out = run_fail(st, "processor", OBS_PROCESSOR_METRICS_PORT=free_port(),
                   OBS_REDIS_PASSWORD_FILE=os.path.join(st.tls, "nope.pw"))
    assert 'redis.password_file: cannot read "%s' % os.path.join(st.tls, "nope.pw") in out, out
    # both a password and a password file
    out = run_fail(st, "processor", OBS_PROCESSOR_METRICS_PORT=free_port(), OBS_PG_PASSWORD=PG_PW,
                   OBS_PG_PASSWORD_FILE=os.path.join(st.tls, "pg.pw"))
    assert "set either pg.password or pg.password_file, not both" in out, out
    assert PG_PW not in out
    out = run_fail(st, "processor", OBS_PROCESSOR_METRICS_PORT=free_port(), OBS_PG_SSLMODE="sometimes")
    assert 'pg.sslmode: unknown sslmode "sometimes"' in out, out


def run_fail_quick(st, name, wait=2.0, **env):
    """Run a daemon briefly (it may start fine) and return what it logged."""
    p = subprocess.Popen([os.path.join(BUILD, name)], env=st.env(**env), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    time.sleep(wait)
    p.terminate()
    out, _ = p.communicate(timeout=15)
    return log_text(out)


def test_conninfo_password_is_masked_in_logs(st):
    """A password written into a connection string (not recommended) still
    never reaches the log: the start-up line shows password=***."""
    conninfo = "host=127.0.0.1 port=%d dbname=agent_obs user=agent_obs_read password=%s" % (
        st.pg_port, CONNINFO_PW)
    port = free_port()
    out = run_fail_quick(st, "collector", OBS_COLLECTOR_PORT=port, OBS_COLLECTOR_PG_CONNINFO=conninfo,
                         OBS_REDIS_PASSWORD=REDIS_PW)
    assert "collector listening" in out, out
    assert "password=***" in out, out
    assert CONNINFO_PW not in out


def test_no_secret_in_logs_or_command_lines(st):
    # something to log first: a full round trip already happened in the tests above
    pids = {name: p.pid for name, p in st.procs.items() if p.poll() is None}
    assert set(pids) == {"processor", "collector", "streamer"}, pids
    with open(os.path.join(st.dir, "redis", "redis.pid")) as f:
        pids["redis-server"] = int(f.readline())
    with open(os.path.join(st.dir, "pg", "postmaster.pid")) as f:
        pids["postgres"] = int(f.readline())
    for name, pid in pids.items():
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().decode("utf-8", "replace")
        for s in SECRETS:
            assert s not in argv, (name, "password on the command line")
    logs = [st.logs[n] for n in st.procs] + [os.path.join(st.dir, "redis", "redis.log"),
                                            os.path.join(st.dir, "pg", "postgres.log")]
    for path in logs:
        with open(path, errors="replace") as f:
            text = f.read()
        assert text, path
        for s in SECRETS:
            assert s not in text, (path, "password in the log")
    # the daemons really use the passwords: Redis refuses clients without one
    r = subprocess.run(["redis-cli", "-p", str(st.redis_port), "ping"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"})
    assert "NOAUTH" in r.stdout + r.stderr, r.stdout + r.stderr
    # the processor's start-up line names its PostgreSQL target (masked when it holds a password)
    with open(st.logs["processor"]) as f:
        assert '"postgres":"host=127.0.0.1 port=%d' % st.pg_port in f.read()
