"""Access control (issue 7): API keys with roles, signed requests, per-key
rate limits, and the refusal to listen publicly without keys.

The whole stack runs with one keys file (made here with deploy/local/mkkey.sh's
format: SHA-256 of each key): collector, processor, streamer and alerter.
Every endpoint is tried without a key, with a wrong key and with a key of
each role; signed requests are tried good, bad, stale, replayed and missing;
a key with a small bucket gets 429 with Retry-After; agent-hook sends its key
and signs; and each daemon refuses a non-loopback address without keys."""
import hashlib
import hmac
import json
import os
import subprocess
import time
import uuid

from harness import BUILD, ROOT, Stack, free_port, request, wait_for
from wsclient import WS, HandshakeError

KEYS = {  # id -> (key, roles)
    "ingest": "aok_test-ingest-" + uuid.uuid4().hex,
    "read": "aok_test-read-" + uuid.uuid4().hex,
    "admin": "aok_test-admin-" + uuid.uuid4().hex,
    "signer": "aok_test-signer-" + uuid.uuid4().hex,
    "optsign": "aok_test-optsign-" + uuid.uuid4().hex,
    "limited": "aok_test-limited-" + uuid.uuid4().hex,
}
SECRET = "signing-secret-" + uuid.uuid4().hex
OPT_SECRET = "optional-secret-" + uuid.uuid4().hex
WRONG = "aok_wrong-" + uuid.uuid4().hex


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def keys_yaml():
    return "\n".join([
        "keys:",
        "  - {id: ingest, role: ingest, sha256: %s}" % sha(KEYS["ingest"]),
        "  - {id: read, role: read, sha256: %s}" % sha(KEYS["read"]),
        "  - {id: admin, role: admin, sha256: %s}" % sha(KEYS["admin"]),
        "  - id: signer",
        "    role: ingest",
        "    sha256: %s" % sha(KEYS["signer"]),
        "    signing_secret_env: OBS_TEST_SIGNER_SECRET",
        "    require_signature: true",
        "  - id: optsign",
        "    role: ingest",
        "    sha256: %s" % sha(KEYS["optsign"]),
        "    signing_secret: \"%s\"" % OPT_SECRET,
        "  - {id: limited, role: ingest, sha256: %s, rate_per_s: 0.2, burst: 3}" % sha(KEYS["limited"]),
        ""])


def setup():
    st = Stack("auth")
    st.keys_file = os.path.join(st.dir, "keys.yaml")
    with open(st.keys_file, "w") as f:
        f.write(keys_yaml())
    os.chmod(st.keys_file, 0o600)
    st.auth_env = {"OBS_AUTH_KEYS_FILE": st.keys_file, "OBS_TEST_SIGNER_SECRET": SECRET,
                   "OBS_AUTH_RATE_PER_S": 1000, "OBS_AUTH_BURST": 1000}
    st.start_redis()
    st.start_pg()
    st.start("processor", **st.auth_env)
    st.start("collector", **st.auth_env)
    st.streamer_port = free_port()
    st.start("streamer", wait_port=st.streamer_port, OBS_STREAMER_PORT=st.streamer_port, **st.auth_env)
    st.alerter_port = free_port()
    st.start("alerter", wait_port=st.alerter_port, OBS_ALERTER_METRICS_PORT=st.alerter_port,
             OBS_ALERTER_RULES=os.path.join(ROOT, "config", "alerts.yaml"),
             OBS_ALERTER_ALERTMANAGER_URL="http://127.0.0.1:%d" % free_port(), **st.auth_env)
    return st


def teardown(st):
    st.close()


def bearer(who):
    if who is None:
        return {}
    return {"Authorization": "Bearer " + (WRONG if who == "wrong" else KEYS[who])}


def call(port, method, path, who, body=None, headers=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(bearer(who))
    h.update(headers or {})
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return request(port, method, path, body, h)


def event(session="auth-" + uuid.uuid4().hex[:8]):
    return {"session_id": session, "agent_id": "a1", "event_type": "Stop", "source_app": "test"}


def hook_payload(session):
    return {"session_id": session, "transcript_path": "/tmp/none.jsonl", "cwd": "/tmp",
            "hook_event_name": "Stop", "stop_hook_active": False}


def otlp_body():
    return {"resourceLogs": []}


def transcript_body(session):
    return {"session_id": session, "agent_id": "a1",
            "messages": [{"role": "user", "text": "hi", "timestamp": "2026-11-23T10:00:00Z"}]}


def check_matrix(port, method, path, need, body_fn=None, ok=None):
    """No key and a wrong key: 401; each role: allowed (admin always) or 403."""
    roles = {"ingest": {"ingest"}, "read": {"read"}, "admin": {"ingest", "read", "admin"}}
    for who in (None, "wrong"):
        status, hdrs, resp = call(port, method, path, who, body_fn() if body_fn else None)
        assert status == 401, (method, path, who, status, resp)
        assert resp["error"]["status"] == 401 and resp["error"]["field"] == "Authorization", resp
        assert hdrs.get("www-authenticate", "").startswith("Bearer"), hdrs
    for who, has in roles.items():
        status, _, resp = call(port, method, path, who, body_fn() if body_fn else None)
        if need in has:
            assert status not in (401, 403, 429), (method, path, who, status, resp)
            if ok:
                assert status == ok, (method, path, who, status, resp)
        else:
            assert status == 403, (method, path, who, status, resp)
            assert "lacks the %s role" % need in resp["error"]["message"], resp


# ---------------------------------------------------------------------------
# the matrix

def test_collector_post_endpoints(st):
    s = "auth-post-" + uuid.uuid4().hex[:8]
    p = st.collector_port
    check_matrix(p, "POST", "/events", "ingest", lambda: event(s), ok=202)
    check_matrix(p, "POST", "/observability/event", "ingest", lambda: event(s), ok=202)
    check_matrix(p, "POST", "/observability/events", "ingest", lambda: [event(s)], ok=202)
    check_matrix(p, "POST", "/hooks/claude-code", "ingest", lambda: hook_payload(s), ok=200)
    check_matrix(p, "POST", "/v1/logs", "ingest", otlp_body, ok=200)
    check_matrix(p, "POST", "/transcripts", "ingest", lambda: transcript_body(s), ok=202)
    # refused requests wrote nothing: only the ingest and admin keys' events are stored
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", s) or 0) == 2 * 4,
             15, what="8 stored events (2 allowed keys x 4 event requests)")


def test_collector_get_endpoints(st):
    p = st.collector_port
    for path in ("/events?session_id=x", "/events/recent?session=x", "/sessions", "/sessions/x",
                 "/observability/events?session_id=x", "/transcripts?session_id=x",
                 "/transcripts/search?q=hello", "/metrics"):
        check_matrix(p, "GET", path, "read")
    # health probes stay open
    for path in ("/healthz", "/readyz"):
        assert call(p, "GET", path, None)[0] == 200, path


def test_processor_metrics(st):
    check_matrix(st.processor_port, "GET", "/metrics", "read", ok=200)
    assert call(st.processor_port, "GET", "/healthz", None)[0] == 200


def test_alerter_admin(st):
    p = st.alerter_port
    check_matrix(p, "GET", "/rules", "read", ok=200)
    check_matrix(p, "GET", "/metrics", "read", ok=200)
    assert call(p, "GET", "/healthz", None)[0] == 200

    def reloads():
        st_, _, body = request(p, "GET", "/metrics", headers=bearer("read"), raw=True)
        for line in body.decode().splitlines():
            if line.startswith('agent_obs_alerter_reloads_total{result="ok"}'):
                return float(line.split()[-1])
        return 0.0
    before = reloads()
    # reload is admin only
    for who, want in ((None, 401), ("wrong", 401), ("ingest", 403), ("read", 403)):
        status, _, resp = call(p, "POST", "/rules/reload", who)
        assert status == want, (who, status, resp)
    status, _, resp = call(p, "POST", "/rules/reload", "admin")
    assert status == 202 and resp["status"] == "reload requested", (status, resp)
    wait_for(lambda: reloads() == before + 1, 10, what="a rule reload counted")
    assert call(p, "GET", "/rules/reload", "admin")[0] == 405


def ws(st, who=None, how="protocol", path="/stream"):
    if who is None:
        return WS(st.streamer_port, path)
    key = WRONG if who == "wrong" else KEYS[who]
    if how == "protocol":
        return WS(st.streamer_port, path, protocol="agent-obs-stream, agent-obs.key." + key)
    # a non-browser client may send the header instead
    return WS(st.streamer_port, path, headers={"Authorization": "Bearer " + key})


def test_streamer_websocket(st):
    for who, want in ((None, 401), ("wrong", 401), ("ingest", 403)):
        try:
            ws(st, who).close()
            raise AssertionError("%s: upgrade accepted" % who)
        except HandshakeError as e:
            assert e.status == want, (who, e.status, e.body)
            err = e.json()["error"]
            assert err["status"] == want and err["field"] == "Authorization", err
    for who in ("read", "admin"):
        c = ws(st, who)
        try:
            assert c.protocol == "agent-obs-stream", c.protocol
            m = c.recv_json(5)
            assert m and m["type"] == "hello", m
        finally:
            c.close()
    # events flow to an authenticated client
    s = "auth-ws-" + uuid.uuid4().hex[:8]
    c = ws(st, "read", path="/stream?filter=session:" + s)
    try:
        assert c.recv_json(5)["type"] == "hello"
        assert call(st.collector_port, "POST", "/events", "ingest", event(s))[0] == 202
        got = None
        deadline = time.time() + 10
        while time.time() < deadline and not got:
            m = c.recv_json(1)
            items = m if isinstance(m, list) else [m] if m else []
            got = [x for x in items if x.get("type") == "event" and x["event"]["session_id"] == s]
        assert got, "event did not arrive"
    finally:
        c.close()
    # the streamer's /metrics needs read; the dashboard's files and probes are open
    check_matrix(st.streamer_port, "GET", "/metrics", "read", ok=200)
    assert request(st.streamer_port, "GET", "/healthz")[0] == 200
    # the key appears in no log
    time.sleep(0.2)
    for name in ("streamer", "collector", "alerter", "processor"):
        text = open(st.logs[name], errors="replace").read()
        for k in list(KEYS.values()) + [WRONG, SECRET, OPT_SECRET]:
            assert k not in text, (name, "key in log")


def test_streamer_key_without_our_subprotocol(st):
    try:
        WS(st.streamer_port, "/stream", protocol="agent-obs.key." + KEYS["read"]).close()
        raise AssertionError("accepted")
    except HandshakeError as e:
        assert e.status == 400 and e.json()["error"]["field"] == "Sec-WebSocket-Protocol", (e.status, e.body)


def test_streamer_authorization_header(st):
    c = ws(st, "read", how="header")
    try:
        assert c.recv_json(5)["type"] == "hello"
    finally:
        c.close()
    try:
        ws(st, "ingest", how="header").close()
        raise AssertionError("ingest key accepted")
    except HandshakeError as e:
        assert e.status == 403


# ---------------------------------------------------------------------------
# signed events

def signed(body, secret=SECRET, ts=None):
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body.encode(), hashlib.sha256).hexdigest()
    return {"X-Obs-Timestamp": ts, "X-Obs-Signature": "sha256=" + mac}


def test_signatures(st):
    p = st.collector_port
    s = "auth-sig-" + uuid.uuid4().hex[:8]
    body = json.dumps(event(s))
    good = signed(body)
    status, _, resp = call(p, "POST", "/events", "signer", body, good)
    assert status == 202, (status, resp)
    # the same request again: replayed
    status, _, resp = call(p, "POST", "/events", "signer", body, good)
    assert status == 401 and "already used" in resp["error"]["message"], (status, resp)
    # a changed body under the old signature
    status, _, resp = call(p, "POST", "/events", "signer", body.replace("Stop", "Notification"),
                           signed(body, ts=int(time.time()) - 1))
    assert status == 401 and "does not match" in resp["error"]["message"], (status, resp)
    # the wrong secret
    status, _, resp = call(p, "POST", "/events", "signer", body, signed(body, secret="x" * 32))
    assert status == 401 and resp["error"]["field"] == "X-Obs-Signature", (status, resp)
    # stale and future timestamps (window 300 s)
    for ts in (int(time.time()) - 400, int(time.time()) + 400):
        status, _, resp = call(p, "POST", "/events", "signer", body, signed(body, ts=ts))
        assert status == 401 and resp["error"]["field"] == "X-Obs-Timestamp", (status, resp)
    # required but missing
    status, _, resp = call(p, "POST", "/events", "signer", body)
    assert status == 401 and "requires signed requests" in resp["error"]["message"], (status, resp)
    # malformed
    status, _, resp = call(p, "POST", "/events", "signer", body,
                           {"X-Obs-Timestamp": "soon", "X-Obs-Signature": "sha256=00"})
    assert status == 401, (status, resp)
    # signing is optional for a key that has a secret but does not require it
    assert call(p, "POST", "/events", "optsign", json.dumps(event(s)))[0] == 202
    b2 = json.dumps(event(s))
    assert call(p, "POST", "/events", "optsign", b2, signed(b2, secret=OPT_SECRET))[0] == 202
    bad = call(p, "POST", "/events", "optsign", b2, signed(b2 + " ", secret=OPT_SECRET))
    assert bad[0] == 401, bad
    # a key without a secret cannot send a signature it could be checked against
    status, _, resp = call(p, "POST", "/events", "ingest", b2, signed(b2))
    assert status == 401 and "no signing secret" in resp["error"]["message"], (status, resp)
    # signed transcripts and hook posts are checked the same way
    tb = json.dumps(transcript_body(s))
    assert call(p, "POST", "/transcripts", "signer", tb, signed(tb))[0] == 202
    assert call(p, "POST", "/transcripts", "signer", tb, signed(tb + "x"))[0] == 401
    hb = json.dumps(hook_payload(s))
    assert call(p, "POST", "/hooks/claude-code", "signer", hb, signed(hb))[0] == 200
    # only the accepted ones were stored: 1 signer + 2 optsign + 1 hook Stop
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", s) or 0) == 4,
             15, what="4 stored events")
    time.sleep(0.5)
    assert int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", s)) == 4
    m = st_metrics(st, p)
    assert m.get('agent_obs_auth_denied_total{reason="signature_replayed"}', 0) >= 1, m
    assert m.get('agent_obs_auth_denied_total{reason="signature_stale"}', 0) >= 2, m


def st_metrics(st, port):
    return st.metrics(port, headers=bearer("read"))


def test_agent_hook_sends_key_and_signs(st):
    s = "auth-hook-" + uuid.uuid4().hex[:8]
    tmp = os.path.join(st.dir, "hook-" + s)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_", "XDG_"))}
    env.update({"HOME": tmp, "OBS_COLLECTOR_URL": "http://127.0.0.1:%d" % st.collector_port,
                "OBS_HOOK_STATE_DIR": os.path.join(tmp, "state"),
                "OBS_HOOK_POLICY": os.path.join(ROOT, "config", "hook-policy.yaml")})
    os.makedirs(tmp)
    spool = os.path.join(tmp, "state", "spool")

    def run(payload, **extra):
        e = dict(env, **extra)
        r = subprocess.run([os.path.join(BUILD, "agent-hook")], input=json.dumps(payload).encode(),
                           capture_output=True, env=e, timeout=10)
        return r.returncode, r.stderr.decode()

    def spooled():
        return sorted(f for f in os.listdir(spool) if not f.startswith(".")) if os.path.isdir(spool) else []

    def stored():
        return int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", s) or 0)

    # no key: refused (401), kept in the spool, not dropped
    rc, err = run(hook_payload(s) | {"hook_event_name": "Notification", "message": "one"})
    assert rc == 0 and "401" in err, err
    assert len(spooled()) == 1, spooled()
    # the signer key without the secret: 401 (signature required), still spooled
    rc, err = run(hook_payload(s) | {"hook_event_name": "Notification", "message": "two"},
                  OBS_COLLECTOR_KEY=KEYS["signer"])
    assert rc == 0 and len(spooled()) == 2, (err, spooled())
    # key and secret: the spool goes first, then the event, all signed
    rc, err = run(hook_payload(s), OBS_COLLECTOR_KEY=KEYS["signer"], OBS_COLLECTOR_SIGNING_SECRET=SECRET)
    assert rc == 0, err
    assert spooled() == [], spooled()
    wait_for(lambda: stored() == 3, 15, what="3 events stored")
    # through libcurl too
    rc, err = run(hook_payload(s) | {"hook_event_name": "SessionEnd", "reason": "other"},
                  OBS_COLLECTOR_KEY=KEYS["signer"], OBS_COLLECTOR_SIGNING_SECRET=SECRET,
                  OBS_HOOK_TRANSPORT="curl")
    assert rc == 0 and spooled() == [], err
    wait_for(lambda: stored() == 4, 15, what="4 events stored")


# ---------------------------------------------------------------------------
# rate limit

def test_rate_limit_429(st):
    p = st.collector_port
    s = "auth-rl-" + uuid.uuid4().hex[:8]
    codes = []
    last = None
    for _ in range(6):
        status, hdrs, resp = call(p, "POST", "/events", "limited", event(s))
        codes.append(status)
        if status == 429:
            last = (hdrs, resp)
    # burst 3 at 0.2/s: three pass, the rest wait ~5 s for a token
    assert codes[:3] == [202] * 3 and codes[3:] == [429] * 3, codes
    hdrs, resp = last
    ra = int(hdrs["retry-after"])
    assert 1 <= ra <= 5, hdrs
    assert resp["error"]["status"] == 429 and "rate limit" in resp["error"]["message"], resp
    # another key is not affected
    assert call(p, "POST", "/events", "ingest", event(s))[0] == 202
    m = st_metrics(st, p)
    assert m.get('agent_obs_rate_limited_total{key="limited"}') == 3, m
    # after Retry-After, a token is back
    time.sleep(ra)
    assert call(p, "POST", "/events", "limited", event(s))[0] == 202


# ---------------------------------------------------------------------------
# binding

DAEMONS = {"collector": "OBS_COLLECTOR_BIND", "processor": "OBS_PROCESSOR_METRICS_BIND",
           "streamer": "OBS_STREAMER_BIND", "alerter": "OBS_ALERTER_METRICS_BIND"}


def test_refuses_public_bind_without_keys(st):
    for name, var in DAEMONS.items():
        env = st.env(**{var: "0.0.0.0", "OBS_COLLECTOR_PORT": free_port(),
                        "OBS_PROCESSOR_METRICS_PORT": free_port(), "OBS_STREAMER_PORT": free_port(),
                        "OBS_ALERTER_METRICS_PORT": free_port(),
                        "OBS_ALERTER_RULES": os.path.join(ROOT, "config", "alerts.yaml")})
        env.pop("OBS_AUTH_KEYS_FILE", None)
        r = subprocess.run([os.path.join(BUILD, name)], env=env, capture_output=True, text=True, timeout=10)
        assert r.returncode != 0, (name, r.returncode, r.stderr)
        assert "refusing to listen on a non-loopback address without authentication" in r.stderr, (name, r.stderr)
        assert var.replace("OBS_", "").lower().replace("_", ".", 1) in r.stderr, (name, r.stderr)


def test_bad_keys_file_stops_start(st):
    bad = os.path.join(st.dir, "bad-keys.yaml")
    with open(bad, "w") as f:
        f.write("keys:\n  - {id: x, role: root, sha256: abc}\n")
    for name in DAEMONS:
        env = st.env(OBS_AUTH_KEYS_FILE=bad, OBS_COLLECTOR_PORT=free_port(),
                     OBS_PROCESSOR_METRICS_PORT=free_port(), OBS_STREAMER_PORT=free_port(),
                     OBS_ALERTER_METRICS_PORT=free_port(),
                     OBS_ALERTER_RULES=os.path.join(ROOT, "config", "alerts.yaml"))
        r = subprocess.run([os.path.join(BUILD, name)], env=env, capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "cannot load API keys" in r.stderr and "role" in r.stderr, (name, r.stderr)


def test_public_bind_with_keys(st):
    port = free_port()
    env = st.env(OBS_COLLECTOR_BIND="0.0.0.0", OBS_COLLECTOR_PORT=port, **st.auth_env)
    log = open(os.path.join(st.dir, "collector-public.log"), "wb")
    p = subprocess.Popen([os.path.join(BUILD, "collector")], env=env, stdout=log, stderr=log, cwd=ROOT)
    try:
        wait_for(lambda: st._healthy(port) or p.poll() is not None, 10, what="collector on 0.0.0.0")
        assert p.poll() is None
        assert call(port, "POST", "/events", None, event())[0] == 401
        assert call(port, "POST", "/events", "ingest", event())[0] == 202
    finally:
        p.terminate()
        p.wait(15)


# ---------------------------------------------------------------------------
# the dashboard in a real browser

def test_dashboard_prompts_for_a_key(st):
    from test_dashboard import BROWSER, CHROMIUM, npm_ci
    chromium, browser_dir = CHROMIUM, BROWSER
    assert os.path.exists(chromium), "install chromium (deploy/local/install-deps.sh)"
    npm_ci()
    env = dict(os.environ, STREAMER="http://127.0.0.1:%d" % st.streamer_port,
               COLLECTOR="http://127.0.0.1:%d" % st.collector_port, CHROMIUM=chromium,
               READ_KEY=KEYS["read"], INGEST_KEY=KEYS["ingest"])
    r = subprocess.run(["node", os.path.join(browser_dir, "auth.mjs")], env=env, capture_output=True,
                       text=True, timeout=120)
    print(r.stdout.rstrip())
    assert r.returncode == 0, "browser test failed:\n%s\n%s" % (r.stdout[-3000:], r.stderr[-3000:])


def test_refusal_reads_no_large_body(st):
    import socket
    # a client waiting for 100-continue gets its 401 at once, before sending the body
    s = socket.create_connection(("127.0.0.1", st.collector_port), timeout=5)
    s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n")
    head = s.recv(4096).decode("latin-1")
    s.close()
    assert head.startswith("HTTP/1.1 401"), head
    # a refused client that sends more than collector.max_body_bytes anyway is cut off
    s = socket.create_connection(("127.0.0.1", st.collector_port), timeout=5)
    s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 50000000\r\n\r\n")
    sent, cut = 0, False
    try:
        while sent < 50000000:
            s.sendall(b"x" * 65536)
            sent += 65536
    except OSError:
        cut = True
    s.close()
    assert cut and sent < 8 * 1048576, sent
    assert call(st.collector_port, "POST", "/events", "ingest", event())[0] == 202


def test_installer_http_hooks_carry_the_key_by_reference(st):
    proj = os.path.join(st.dir, "proj-" + uuid.uuid4().hex[:6])
    os.makedirs(proj)
    env = dict(os.environ, OBS_COLLECTOR_KEY=KEYS["ingest"])
    r = subprocess.run([os.path.join(ROOT, "hooks", "install"), "--project", proj, "--http", "--url",
                        "http://127.0.0.1:%d" % st.collector_port], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = open(os.path.join(proj, ".claude", "settings.json")).read()
    assert KEYS["ingest"] not in text
    hooks = [h for gs in json.loads(text)["hooks"].values() for g in gs for h in g["hooks"]]
    assert hooks and all(h["headers"] == {"Authorization": "Bearer $OBS_COLLECTOR_KEY"} and
                         h["allowedEnvVars"] == ["OBS_COLLECTOR_KEY"] for h in hooks), hooks[0]
