"""Streamer: WebSocket fan-out from the event stream. Events go in through the
collector (POST /events) and come out of build/streamer's WS /stream:
100 clients with 100 different filters get exactly their events, a bad filter
is refused before the upgrade, a client changes its filter on the socket, a
slow client is dropped (4008) without delaying a fast one, a reconnect with
since= fills the gap exactly, backlog= replays the newest matching events,
keep-alive pings flow, the streamer refuses a non-loopback bind, and
/config.json names the history API that the page's CSP lets it reach."""
import json
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid

from harness import BUILD, ROOT, Stack, free_port, request, wait_for
from wsclient import WS, Closed, HandshakeError, flatten

TYPES = ["PreToolUse", "PostToolUse", "Stop", "Notification", "UserPromptSubmit"]
TOOLS = ["Bash", "Read", "Edit", "mcp__github__create_issue"]
STATUSES = ["success", "error", "blocked"]
KEYS = {"session": "session_id", "agent": "agent_id", "parent": "parent_agent_id",
        "type": "event_type", "tool": "tool", "status": "status", "role": "agent_role",
        "app": "source_app"}


def setup():
    st = Stack("streamer")
    st.start_redis()
    st.start_pg()
    st.start("processor")
    st.start("collector")
    st.streamer_port = free_port()
    st.start("streamer", wait_port=st.streamer_port, OBS_STREAMER_PORT=st.streamer_port,
             OBS_STREAMER_CLIENT_QUEUE_BYTES=1 << 20, OBS_STREAMER_PING_INTERVAL_S=1,
             OBS_STREAMER_PING_TIMEOUT_S=5)
    return st


def teardown(st):
    st.close()


def ws(st, path="/stream", **kw):
    return WS(st.streamer_port, path, **kw)


def post_all(st, events, chunk=200):
    """POST events in bulk requests; returns the ids in order."""
    ids = []
    for i in range(0, len(events), chunk):
        status, _, body = st.post(events[i:i + chunk])
        assert status == 202, (status, body)
        ids += body["ids"]
    return ids


def hello(c):
    m = c.recv_json(5)
    assert m and m.get("type") == "hello", m
    return m


def matches(flt, ev):
    """The filter grammar (README "Live dashboard"), without escapes."""
    if not flt:
        return True
    for clause in flt.split(","):
        neg = clause.startswith("!")
        key, _, vals = clause.lstrip("!").partition(":")
        v = ev.get(KEYS[key])
        hit = isinstance(v, str) and any(
            v.startswith(x[:-1]) if x.endswith("*") else v == x for x in vals.split("|"))
        if hit == neg:
            return False
    return True


def collect(clients, done, timeout):
    """Read every client in one selector loop until done() or timeout.
    clients: {name: WS}; returns {name: [event messages]} and control messages."""
    sel = selectors.DefaultSelector()
    got = {n: [] for n in clients}
    ctl = {n: [] for n in clients}
    for n, c in clients.items():
        sel.register(c.sock, selectors.EVENT_READ, n)
        for text in c.pending:  # anything read before
            for m in flatten(json.loads(text)):
                (got if m.get("type") == "event" else ctl)[n].append(m)
        c.pending = []
    deadline = time.time() + timeout
    while time.time() < deadline and not done(got):
        for key, _ in sel.select(0.05):
            n = key.data
            c = clients[n]
            data = c.sock.recv(1 << 20)
            if not data:
                sel.unregister(c.sock)
                continue
            c.reader.feed(data)
            for op, payload in c.reader.messages():
                c.handle(op, payload)
            for text in c.pending:
                for m in flatten(json.loads(text)):
                    (got if m.get("type") == "event" else ctl)[n].append(m)
            c.pending = []
    sel.close()
    return got, ctl


# ---------------------------------------------------------------- tests --

def test_bad_filter_is_refused_before_upgrade(st):
    cases = [
        ("/stream?filter=sesion:x", "filter", "unknown key \"sesion\""),
        ("/stream?filter=session:", "filter", "empty value"),
        ("/stream?filter=session:a,,type:b", "filter", "empty clause"),
        ("/stream?filter=type:a&filter=type:b", "filter", "twice"),
        ("/stream?since=yesterday", "since", "not a stream id"),
        ("/stream?backlog=-1", "backlog", "integer"),
        ("/stream?backlog=99999999", "backlog", "integer"),
        ("/stream?since=1-0&backlog=5", "backlog", "not both"),
        ("/stream?fliter=session:x", "query", "unknown parameter"),
    ]
    for path, field, text in cases:
        try:
            ws(st, path).close()
            raise AssertionError("%s was accepted" % path)
        except HandshakeError as e:
            assert e.status == 400, (path, e.status, e.body)
            assert e.headers.get("content-type") == "application/json", e.headers
            err = e.json()["error"]
            assert err["status"] == 400 and err["field"] == field and text in err["message"], (path, err)
    try:
        ws(st, "/elsewhere")
        raise AssertionError("upgrade outside /stream accepted")
    except HandshakeError as e:
        assert e.status == 404, e.status
    # the same check without an upgrade, for tools that probe with plain GET
    status, _, body = request(st.streamer_port, "GET", "/stream?filter=tool:")
    assert status == 400 and body["error"]["field"] == "filter", (status, body)
    status, _, body = request(st.streamer_port, "GET", "/stream?filter=tool:Bash")
    assert status == 426, (status, body)
    # percent-encoding and escapes survive the query string
    c = ws(st, "/stream?filter=session%3Aa%5C%2Cb%2Ctype%3AStop%7CPreToolUse")
    assert hello(c)["filter"] == "session:a\\,b,type:Stop|PreToolUse"
    c.close()
    m = st.metrics(st.streamer_port)
    assert m["agent_obs_streamer_bad_requests_total"] >= len(cases) + 1, m


def test_100_clients_each_receive_exactly_their_events(st):
    tag = uuid.uuid4().hex[:6]
    sess = ["%s-s%d" % (tag, i) for i in range(20)]
    filters = (
        ["session:%s" % s for s in sess] +                                     # 20
        ["session:%s,type:%s" % (s, TYPES[i % 5]) for i, s in enumerate(sess)] +  # 20
        ["session:%s|%s,status:error" % (sess[i], sess[i + 10]) for i in range(10)] +  # 10
        ["session:%s-s1*,type:%s" % (tag, t) for t in TYPES] +                 # 5 (prefix)
        ["session:%s*,tool:%s" % (tag, t) for t in TOOLS] +                    # 4
        ["session:%s*,!type:%s" % (tag, t) for t in TYPES] +                   # 5 (negation)
        ["session:%s*,agent:%s-a%d" % (tag, tag, i) for i in range(5)] +       # 5
        ["session:%s*,role:%s" % (tag, r) for r in ("main", "subagent")] +     # 2
        ["session:%s*,status:%s" % (tag, s) for s in STATUSES] +               # 3
        ["session:%s*,parent:%s-a0,tool:Bash|Edit" % (tag, tag)] +             # 1
        ["session:%s*,tool:mcp__*" % tag, "session:%s*,!tool:*" % tag] +       # 2
        ["session:%s*,type:%s|%s" % (tag, TYPES[i], TYPES[(i + 2) % 5]) for i in range(5)] +  # 5
        ["session:%s,agent:%s-a%d,!status:success" % (sess[i], tag, i % 5) for i in range(17)] +  # 17
        ["session:%s*" % tag]                                                  # 1: everything
    )
    assert len(filters) == 100 and len(set(filters)) == 100
    clients = {}
    for i, f in enumerate(filters):
        c = ws(st, "/stream?filter=" + f)
        assert hello(c)["filter"] == f
        clients[i] = c
    wait_for(lambda: st.metrics(st.streamer_port)["agent_obs_streamer_clients"] >= 100, 5,
             what="100 clients")

    events = []
    for i in range(1000):
        t = TYPES[(i // 20) % 5]
        ev = {"id": str(uuid.uuid4()), "event_type": t, "session_id": sess[i % 20],
              "agent_id": "%s-a%d" % (tag, (i // 7) % 5), "agent_role": "main" if i % 3 else "subagent",
              "status": STATUSES[(i // 3) % 3], "payload": {"i": i}}
        if i % 4 != 0:
            ev["parent_agent_id"] = "%s-a%d" % (tag, (i // 11) % 5)
        if t in ("PreToolUse", "PostToolUse"):
            ev["tool"] = TOOLS[(i // 2) % 4]
        events.append(ev)
    want = {n: [e["id"] for e in events if matches(f, e)] for n, f in enumerate(filters)}
    assert all(want[n] for n in want), [filters[n] for n in want if not want[n]]

    # POST while the clients read: 20 requests of 50, paced over about 2 s
    posted = []
    def poster():
        for i in range(0, len(events), 50):
            posted.extend(post_all(st, events[i:i + 50], 50))
            time.sleep(0.1)
    th = threading.Thread(target=poster)
    th.start()
    got, ctl = collect(clients, lambda g: all(len(g[n]) >= len(want[n]) for n in want), 30)
    th.join()
    assert posted == [e["id"] for e in events]
    extra, _ = collect(clients, lambda g: False, 0.5)  # anything foreign arriving late?
    for n in clients:
        ids = [m["event"]["id"] for m in got[n] + extra[n]]
        assert ids == want[n], "client %d (%s): got %d, want %d; missing %s, foreign %s" % (
            n, filters[n], len(ids), len(want[n]), set(want[n]) - set(ids), set(ids) - set(want[n]))
        sids = [tuple(map(int, m["id"].split("-"))) for m in got[n]]
        assert sids == sorted(sids), "client %d: stream ids out of order" % n
        assert not [m for m in ctl[n] if m.get("type") == "error"], ctl[n]
    for c in clients.values():
        c.close()
    m = st.metrics(st.streamer_port)
    assert m["agent_obs_streamer_send_lag_seconds_count"] >= sum(len(w) for w in want.values())


def test_filter_change_over_the_socket(st):
    s = "chg-" + uuid.uuid4().hex[:6]
    c = ws(st, "/stream?filter=session:%s,type:Stop" % s)
    hello(c)
    c.send_json({"type": "filter", "filter": "session:%s,type:Notification" % s})
    assert c.recv_json(5) == {"type": "filter", "filter": "session:%s,type:Notification" % s}
    ids = post_all(st, [{"event_type": t, "session_id": s} for t in ("Stop", "Notification") * 3])
    got = []
    while len(got) < 3:
        m = c.recv_json(5)
        assert m is not None, got
        got += flatten(m)
    assert [m["event"]["id"] for m in got] == ids[1::2], got
    assert all(m["event"]["event_type"] == "Notification" for m in got)
    # a bad filter is answered with an error and the old filter stays
    c.send_json({"type": "filter", "filter": "session:%s,colour:red" % s})
    err = c.recv_json(5)
    assert err["type"] == "error" and err["error"]["field"] == "filter", err
    assert "unknown key \"colour\"" in err["error"]["message"], err
    c.send_json({"type": "nonsense"})
    assert c.recv_json(5)["type"] == "error"
    c.send_json({"type": "ping", "t": 42})
    pong = c.recv_json(5)
    assert pong["type"] == "pong" and pong["t"] == 42 and pong["server_ms"] > 0, pong
    more = post_all(st, [{"event_type": "Notification", "session_id": s}, {"event_type": "Stop", "session_id": s}])
    m = flatten(c.recv_json(5))
    assert [x["event"]["id"] for x in m] == more[:1], m
    assert c.recv_json(0.3) is None
    # the empty filter means everything
    c.send_json({"type": "filter", "filter": ""})
    assert c.recv_json(5)["type"] == "filter"
    c.close()


def test_slow_client_is_dropped_without_delaying_others(st):
    s = "slow-" + uuid.uuid4().hex[:6]
    fast = ws(st, "/stream?filter=session:" + s)
    slow = ws(st, "/stream?filter=session:" + s, rcvbuf=4096)  # and never reads
    hello(fast)
    def dropped():
        return st.metrics(st.streamer_port).get(
            'agent_obs_streamer_clients_dropped_total{reason="queue_bytes"}', 0)
    before = dropped()
    # Once dropped, the slow client starts reading: what was in flight, then
    # the close frame (lws sends it when the socket drains, within 2 s).
    slow_closed = []
    def watch_slow():
        deadline = time.time() + 30
        while time.time() < deadline and dropped() == before:
            time.sleep(0.05)
        slow_closed.append(slow.wait_closed(10))
    watcher = threading.Thread(target=watch_slow)
    watcher.start()
    blob = "x" * 2000
    events = [{"event_type": "Notification", "session_id": s, "payload": {"blob": blob, "i": i}}
              for i in range(3000)]
    arrivals = {}
    def reader():
        n = 0
        while n < len(events):
            m = fast.recv_json(10)
            if m is None:
                return
            for x in flatten(m):
                if x.get("type") == "event":
                    arrivals[x["event"]["id"]] = time.time()
                    n += 1
    th = threading.Thread(target=reader)
    th.start()
    posted_at = {}
    for i in range(0, len(events), 200):
        ids = post_all(st, events[i:i + 200])
        now = time.time()
        posted_at.update((x, now) for x in ids)
    th.join(30)
    assert len(arrivals) == len(events), "fast client got %d of %d" % (len(arrivals), len(events))
    lags = sorted(arrivals[i] - posted_at[i] for i in posted_at)
    assert lags[-1] < 2.0, "fast client delayed: worst %.3f s" % lags[-1]
    watcher.join(40)
    assert dropped() == before + 1
    code, reason = slow_closed[0]
    assert code == 4008 and "too slow" in reason, (code, reason)
    assert st.metrics(st.streamer_port)["agent_obs_streamer_clients"] >= 1  # fast is still there
    fast.close()
    slow.close()


def test_reconnect_with_since_fills_the_gap_exactly(st):
    s = "gap-" + uuid.uuid4().hex[:6]
    other = "gap-other-" + uuid.uuid4().hex[:6]
    c = ws(st, "/stream?filter=session:" + s)
    hello(c)
    first = post_all(st, [{"event_type": "PreToolUse", "tool": "Bash", "session_id": s} for _ in range(5)])
    seen = []
    while len(seen) < 5:
        seen += flatten(c.recv_json(5))
    assert [m["event"]["id"] for m in seen] == first
    last_stream_id = seen[-1]["id"]
    c.close()
    # while disconnected: ours and someone else's
    missed = post_all(st, [{"event_type": "PostToolUse", "tool": "Bash", "session_id": s if i % 2 else other}
                           for i in range(40)])
    missed = missed[1::2]
    c = ws(st, "/stream?filter=session:%s&since=%s" % (s, last_stream_id))
    h = hello(c)
    assert h["replay"] == "since", h
    replayed, done = [], None
    while done is None:
        m = c.recv_json(5)
        assert m is not None, replayed
        for x in flatten(m):
            if x["type"] == "event":
                replayed.append(x)
            elif x["type"] == "replay_done":
                done = x
    assert [m["event"]["id"] for m in replayed] == missed
    assert done["count"] == 20 and done["complete"] is True, done
    # and live again, with nothing repeated
    after = post_all(st, [{"event_type": "Stop", "session_id": s} for _ in range(3)])
    live = []
    while len(live) < 3:
        live += flatten(c.recv_json(5))
    assert [m["event"]["id"] for m in live] == after
    assert c.recv_json(0.3) is None
    c.close()
    # since=0 replays everything the stream still holds for this session
    c = ws(st, "/stream?filter=session:%s&since=0" % s)
    hello(c)
    allofit = []
    while True:
        m = c.recv_json(5)
        xs = flatten(m)
        allofit += [x for x in xs if x["type"] == "event"]
        if any(x["type"] == "replay_done" for x in xs):
            break
    assert [m["event"]["id"] for m in allofit] == first + missed + after
    c.close()


def test_backlog_replays_the_newest_matching_events(st):
    s = "bl-" + uuid.uuid4().hex[:6]
    ids = post_all(st, [{"event_type": "Stop" if i % 2 else "Notification", "session_id": s}
                        for i in range(30)])
    c = ws(st, "/stream?backlog=4&filter=session:%s,type:Stop" % s)
    assert hello(c)["replay"] == "backlog"
    batch = flatten(c.recv_json(5))
    assert [m["event"]["id"] for m in batch] == ids[1::2][-4:], batch
    done = c.recv_json(5)
    assert done["type"] == "replay_done" and done["count"] == 4 and done["complete"], done
    c.close()


def test_pings_keep_the_connection_alive(st):
    c = ws(st, "/stream?filter=session:nobody-" + uuid.uuid4().hex[:6])
    hello(c)
    assert c.recv_json(2.5) is None  # idle: only pings arrive, answered by the client
    assert c.pings >= 1, c.pings
    c.send_json({"type": "ping"})
    assert c.recv_json(2)["type"] == "pong"
    c.close()


def test_health_ready_metrics_and_dashboard(st):
    status, _, body = request(st.streamer_port, "GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}
    status, _, body = request(st.streamer_port, "GET", "/readyz")
    assert status == 200 and body == {"status": "ready"}, body
    status, hdrs, text = request(st.streamer_port, "GET", "/metrics", raw=True)
    assert status == 200 and hdrs["content-type"].startswith("text/plain")
    text = text.decode()
    for name in ("agent_obs_streamer_clients ", "agent_obs_streamer_frames_sent_total ",
                 "agent_obs_streamer_events_sent_total ", "agent_obs_streamer_send_lag_seconds_bucket",
                 'agent_obs_streamer_clients_dropped_total{reason="queue_bytes"}'):
        assert name in text, name
    status, _, _ = request(st.streamer_port, "POST", "/healthz", body="x")
    assert status == 405
    status, _, _ = request(st.streamer_port, "GET", "/nope.js")
    assert status == 404
    if os.path.exists(os.path.join(os.path.dirname(__file__), "..", "..", "streamer", "web", "dist",
                                   "index.html")):
        status, hdrs, page = request(st.streamer_port, "GET", "/", raw=True)
        assert status == 200 and b"<div id=\"app\"" in page, page[:200]
        assert hdrs["content-type"].startswith("text/html")


def test_service_threads_share_the_clients(st):
    """streamer.threads = 3: the connections are dealt over three service
    threads; each client still gets exactly its events (live, and a since=
    replay answered to the right thread), the gauges add up over the threads,
    HTTP works whichever thread answers, the listening socket stays exclusive,
    and SIGTERM says goodbye on every thread."""
    port = free_port()
    log = open(os.path.join(st.dir, "streamer3.log"), "wb")
    p = subprocess.Popen([os.path.join(BUILD, "streamer")], stdout=log, stderr=log, cwd=ROOT,
                         env=st.env(OBS_STREAMER_PORT=port, OBS_STREAMER_THREADS=3))
    try:
        wait_for(lambda: st._healthy(port) or p.poll() is not None, 10, what="streamer with 3 threads")
        assert p.poll() is None, open(log.name).read()
        # a second streamer cannot take the port beside it
        r = subprocess.run([os.path.join(BUILD, "streamer")], capture_output=True, text=True, timeout=10,
                           env=st.env(OBS_STREAMER_PORT=port, OBS_STREAMER_THREADS=2))
        assert r.returncode != 0 and "cannot listen on 127.0.0.1:%d" % port in r.stderr, r.stderr

        s = "thr-" + uuid.uuid4().hex[:6]
        # ready: the reader has placed its cursor at the stream's end
        wait_for(lambda: request(port, "GET", "/readyz")[0] == 200, 5, what="streamer ready")
        read0 = st.metrics(port)["agent_obs_streamer_events_read_total"]
        before = post_all(st, [{"event_type": "Stop", "session_id": s} for _ in range(3)])
        wait_for(lambda: st.metrics(port)["agent_obs_streamer_events_read_total"] >= read0 + 3, 5,
                 what="the first events read")  # so that only the replay brings them
        filters = ["session:%s" % s, "session:%s,type:Stop" % s, "session:%s,!type:Stop" % s] * 4
        clients = {}
        for i, f in enumerate(filters):
            c = WS(port, "/stream?filter=" + f)
            assert hello(c)["filter"] == f
            clients[i] = c
        replayer = WS(port, "/stream?filter=session:%s&since=0" % s)
        assert hello(replayer)["replay"] == "since"
        clients["replay"] = replayer
        wait_for(lambda: st.metrics(port)["agent_obs_streamer_clients"] == 13, 5, what="13 clients")

        events = [{"event_type": "Stop" if i % 2 else "Notification", "session_id": s} for i in range(60)]
        ids = post_all(st, events)
        stops = [x for x, e in zip(ids, events) if e["event_type"] == "Stop"]
        others = [x for x in ids if x not in stops]
        want = {i: (ids, stops, others)[i % 3] for i in range(len(filters))}
        want["replay"] = before + ids
        got, ctl = collect(clients, lambda g: all(len(g[n]) >= len(want[n]) for n in want), 15)
        for n in want:
            assert [m["event"]["id"] for m in got[n]] == want[n], (n, filters[n] if n != "replay" else n)
        while not any(m.get("type") == "replay_done" for m in ctl["replay"]):  # may follow the last event
            m = replayer.recv_json(5)
            assert m is not None, ctl["replay"]
            ctl["replay"] += [x for x in flatten(m) if x.get("type") != "event"]
            assert not [x for x in flatten(m) if x.get("type") == "event"], m  # nothing more

        m = st.metrics(port)
        sent = sum(len(w) for w in want.values())
        assert m["agent_obs_streamer_events_sent_total"] == sent, (m, sent)
        # live deliveries only: the 12 live clients' at least (the replay may carry some of the rest)
        lag_n = m["agent_obs_streamer_send_lag_seconds_count"]
        assert sent - len(before) - len(ids) <= lag_n <= sent - len(before), (lag_n, sent)
        for _ in range(6):  # each a new connection, dealt like any other
            assert request(port, "GET", "/healthz")[0] == 200
        for c in clients.values():
            c.close()
        wait_for(lambda: st.metrics(port)["agent_obs_streamer_clients"] == 0, 5, what="clients gone")
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        assert "\"msg\":\"stopped\"" in open(log.name).read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()


def test_refuses_non_loopback_bind(st):
    env = st.env(OBS_STREAMER_BIND="0.0.0.0", OBS_STREAMER_PORT=free_port())
    r = subprocess.run([os.path.join(BUILD, "streamer")], env=env, capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0
    assert "refusing to listen on a non-loopback address" in r.stderr, r.stderr


def test_config_json_and_security_headers(st):
    """/config.json tells the dashboard where the history API is
    (streamer.api_url); the Content-Security-Policy of every answer lets the
    page connect to that API's origin and nowhere else."""
    status, hdrs, body = request(st.streamer_port, "GET", "/config.json")
    assert status == 200 and body == {"api_url": ""}, body
    assert hdrs["content-type"] == "application/json" and hdrs["cache-control"] == "no-store"
    assert "connect-src 'self' ws: wss:;" in hdrs["content-security-policy"], hdrs
    assert hdrs["x-frame-options"] == "deny" and hdrs["x-content-type-options"] == "nosniff"

    port = free_port()
    p = subprocess.Popen([os.path.join(BUILD, "streamer")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=st.env(OBS_STREAMER_PORT=port, OBS_STREAMER_API_URL="http://127.0.0.1:7070/"))
    try:
        wait_for(lambda: st._healthy(port) or p.poll() is not None, 10, what="second streamer")
        assert p.poll() is None
        status, hdrs, body = request(port, "GET", "/config.json")
        assert status == 200 and body == {"api_url": "http://127.0.0.1:7070"}, body
        for path in ("/config.json", "/", "/healthz"):
            _, hdrs, _ = request(port, "GET", path, raw=True)
            csp = hdrs["content-security-policy"]
            assert "connect-src 'self' ws: wss: http://127.0.0.1:7070;" in csp, (path, csp)
            assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        status, _, _ = request(port, "POST", "/config.json", body="x")
        assert status == 405
    finally:
        p.terminate()
        p.wait(10)

    for bad, why in (("ftp://h", "not an http"), ("http://h/api?x=1", "query or fragment"),
                     ("http://h'; script-src *", "not allowed")):
        r = subprocess.run([os.path.join(BUILD, "streamer")], capture_output=True, text=True, timeout=10,
                           env=st.env(OBS_STREAMER_PORT=free_port(), OBS_STREAMER_API_URL=bad))
        assert r.returncode != 0 and "streamer.api_url" in r.stderr and why in r.stderr, (bad, r.stderr)
