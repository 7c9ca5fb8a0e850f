"""History (issue 6): the read API over PostgreSQL (events, sessions, transcripts,
search), transcripts through their own stream, tokens and cost, retention.

Every endpoint and filter is compared with the same question asked of PostgreSQL
directly; pagination is walked to the end and checked for gaps and repeats;
every bad parameter gets a 400 naming it; CORS only for the one configured
origin (the dashboard); PostgreSQL down answers 503 while ingest goes on;
retention drops old partitions while events keep flowing."""
import datetime
import json
import os
import subprocess
import threading
import time
import urllib.parse
import uuid

from harness import BUILD, Stack, free_port, request, wait_for

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def setup():
    st = Stack("history")
    st.start_redis()
    st.start_pg()
    st.start("processor")
    st.start("collector")
    seed(st)
    return st


def teardown(st):
    st.close()


def get(st, path, **params):
    q = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    return request(st.collector_port, "GET", path + ("?" + q if q else ""))


def ok(st, path, **params):
    status, _, body = get(st, path, **params)
    assert status == 200, (path, params, status, body)
    return body


def rows(st, sql, *params):
    return st.sql(sql, *params)


# ---------------------------------------------------------------- data --

S1 = "hist-s1"          # 300 events over the last 2 hours, 40 of them sharing one timestamp
S2 = "hist-s2"          # tokens and models: cost computed from config/prices.yaml
S3 = "hist-s3/odd id"   # an id that needs URL-encoding; events 5 days ago


def seed(st):
    base = NOW - datetime.timedelta(hours=2)
    evs = []
    for i in range(300):
        ts = base + datetime.timedelta(seconds=i * 20) if i < 260 else base + datetime.timedelta(hours=1)
        ev = {
            "event_type": ["PreToolUse", "PostToolUse", "Stop"][i % 3],
            "session_id": S1,
            "tool": ["Bash", "Read", "Edit", "Grep"][i % 4],
            "status": "error" if i % 7 == 0 else "success",
            "timestamp": iso(ts),
            "source_app": "claude-code",
            "payload": {"command": "ls -la" if i % 10 else "grep zebrafish src/", "i": i},
        }
        if i % 5 == 0:
            ev["agent_id"] = "sub-a"
            ev["parent_agent_id"] = "main-x"     # unknown parent: hangs under the main agent
            ev["agent_role"] = "reviewer"
        elif i % 5 == 1:
            ev["agent_id"] = "sub-b"
            ev["parent_agent_id"] = "sub-a"      # child of sub-a
        evs.append(ev)
    s2 = [
        {"event_type": "PostToolUse", "session_id": S2, "agent_id": "worker",
         "tokens": {"input": 1000000, "output": 100000, "cache_read": 2000000, "cache_creation": 10000},
         "payload": {"model": "claude-sonnet-4-5-20250929"}, "timestamp": iso(NOW - datetime.timedelta(minutes=30))},
        {"event_type": "Stop", "session_id": S2, "tokens": {"input_tokens": 10, "output_tokens": 20},
         "cost_usd": 0.5, "payload": {"model": "claude-opus-4-1"}, "timestamp": iso(NOW - datetime.timedelta(minutes=29))},
        {"event_type": "Stop", "session_id": S2, "tokens": {"input": 7},
         "payload": {"model": "some-unpriced-model"}, "timestamp": iso(NOW - datetime.timedelta(minutes=28))},
    ]
    s3 = [{"event_type": "Notification", "session_id": S3, "status": "error",
           "timestamp": iso(NOW - datetime.timedelta(days=5, minutes=i))} for i in range(5)]
    status, _, body = st.post(evs + s2 + s3)
    assert status == 202, body
    wait_for(lambda: st.scalar("SELECT count(*) FROM agent_events WHERE session_id IN (:'p1', :'p2', :'p3')",
                               S1, S2, S3) == "308", 20, what="seed rows")


def walk(st, path, key, limit, **params):
    """All pages of a paginated endpoint; returns (items, pages)."""
    items, pages, cursor = [], 0, None
    while True:
        p = dict(params, limit=limit)
        if cursor:
            p["cursor"] = cursor
        body = ok(st, path, **p)
        items += body[key]
        pages += 1
        cursor = body["next_cursor"]
        assert len(body[key]) <= limit
        if not cursor:
            return items, pages
        assert pages < 1000


# --------------------------------------------------------------- events --

def test_events_pages_have_no_gaps_or_repeats(st):
    want = [r[0] for r in rows(st, "SELECT id FROM agent_events WHERE session_id = :'p1' ORDER BY ts DESC, id DESC", S1)]
    got, pages = walk(st, "/events", "events", 37, session_id=S1)
    ids = [e["id"] for e in got]
    assert ids == want, "newest first, ties broken by id"
    assert len(set(ids)) == 300 and pages == 9
    # the 40 events sharing one timestamp are split across pages and still come once each
    asc, _ = walk(st, "/events", "events", 23, session_id=S1, order="asc")
    assert [e["id"] for e in asc] == list(reversed(want))
    # the event has the contract's shape
    e = got[0]
    for k in ("id", "event_type", "timestamp", "session_id", "agent_id", "tool", "status", "payload",
              "tokens", "cost_usd", "received_at", "stored_at"):
        assert k in e, k
    assert e["timestamp"].endswith("Z")


def test_pages_stay_stable_while_events_arrive(st):
    sid = "hist-stable"
    t0 = NOW - datetime.timedelta(minutes=20)
    evs = [{"event_type": "Stop", "session_id": sid, "timestamp": iso(t0 + datetime.timedelta(seconds=i))}
           for i in range(100)]
    assert st.post(evs)[0] == 202
    wait_for(lambda: st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", sid) == "100", 10,
             what="100 rows")
    want = [r[0] for r in rows(st, "SELECT id FROM agent_events WHERE session_id = :'p1' "
                                    "ORDER BY ts DESC, id DESC OFFSET 50", sid)]
    first = ok(st, "/events", session_id=sid, limit=50)
    # newer events arrive between two pages: the next (older) page is unaffected
    newer = [{"event_type": "Stop", "session_id": sid, "timestamp": iso(NOW)} for _ in range(10)]
    assert st.post(newer)[0] == 202
    wait_for(lambda: st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", sid) == "110", 10,
             what="110 rows")
    second = ok(st, "/events", session_id=sid, limit=50, cursor=first["next_cursor"])
    assert [e["id"] for e in second["events"]] == want
    assert second["next_cursor"] is None


def test_events_filters(st):
    def ids(**params):
        got, _ = walk(st, "/events", "events", 1000, **params)
        return sorted(e["id"] for e in got)

    def sql_ids(where, *p):
        return sorted(r[0] for r in rows(st, "SELECT id FROM agent_events WHERE " + where, *p))

    frm, to = iso(NOW - datetime.timedelta(minutes=100)), iso(NOW - datetime.timedelta(minutes=80))
    cases = [
        (dict(session_id=S1, agent_id="sub-a"), "session_id = :'p1' AND agent_id = 'sub-a'"),
        (dict(session_id=S1, type="Stop"), "session_id = :'p1' AND event_type = 'Stop'"),
        (dict(session_id=S1, tool="Grep"), "session_id = :'p1' AND tool = 'Grep'"),
        (dict(session_id=S1, status="ERROR"), "session_id = :'p1' AND status = 'error'"),
        (dict(session_id=S1, q="zebrafish"), "session_id = :'p1' AND payload->>'command' LIKE '%zebrafish%'"),
        (dict(session_id=S1, type="PostToolUse", tool="Read", status="success", agent_id="sub-b"),
         "session_id = :'p1' AND event_type = 'PostToolUse' AND tool = 'Read' AND status = 'success' "
         "AND agent_id = 'sub-b'"),
        (dict(session_id=S1, **{"from": frm, "to": to}),
         "session_id = :'p1' AND ts >= '%s' AND ts < '%s'" % (frm, to)),
        (dict(type="Notification"), "event_type = 'Notification'"),
        (dict(q="zebrafish"), "payload->>'command' LIKE '%zebrafish%'"),
    ]
    for params, where in cases:
        want = sql_ids(where, S1)
        assert want, params
        assert ids(**params) == want, params
    # epoch seconds and milliseconds work like ISO-8601
    t0 = int((NOW - datetime.timedelta(minutes=100)).timestamp())
    assert ids(session_id=S1, **{"from": str(t0), "to": str((t0 + 1200) * 1000)}) == \
        sql_ids("session_id = :'p1' AND ts >= to_timestamp(%d) AND ts < to_timestamp(%d)" % (t0, t0 + 1200), S1)
    # an event older than the default window (31 days) needs from/to; 5 days is inside it
    assert len(ids(session_id=S3)) == 5


def test_observability_events_alias(st):
    frm, to = iso(NOW - datetime.timedelta(hours=3)), iso(NOW)
    a = ok(st, "/observability/events", type="Stop", **{"from": frm, "to": to, "limit": 1000})
    b = ok(st, "/events", type="Stop", **{"from": frm, "to": to, "limit": 1000})
    assert a == b and len(a["events"]) >= 100


def test_events_recent(st):
    body = ok(st, "/events/recent", session=S1, limit=5)
    want = [r[0] for r in rows(st, "SELECT id FROM (SELECT id, ts FROM agent_events WHERE session_id = :'p1' "
                                    "ORDER BY ts DESC, id DESC LIMIT 5) x ORDER BY ts, id", S1)]
    assert body["session_id"] == S1
    assert [e["id"] for e in body["events"]] == want, "latest 5, oldest first"
    assert len(ok(st, "/events/recent", session_id=S2)["events"]) == 3


# ------------------------------------------------------------- sessions --

def test_sessions_summary_and_pagination(st):
    items, _ = walk(st, "/sessions", "sessions", 2)
    by_id = {s["session_id"]: s for s in items}
    assert len(by_id) == len(items), "no repeats"
    assert set(by_id) == {r[0] for r in rows(st, "SELECT DISTINCT session_id FROM agent_events "
                                                 "WHERE session_id IS NOT NULL")}, "no gaps"
    last = [s["last_seen"] for s in items]
    assert last == sorted(last, reverse=True), "most recently active first"
    s1 = by_id[S1]
    assert s1["events"] == 300
    assert s1["errors"] == int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1' "
                                         "AND status = 'error'", S1))
    assert s1["event_types"] == {"PreToolUse": 100, "PostToolUse": 100, "Stop": 100}
    assert sorted(s1["agents"]) == ["sub-a", "sub-b"]
    assert s1["source_app"] == "claude-code"
    assert s1["first_seen"] < s1["last_seen"]
    s2 = by_id[S2]
    assert s2["tokens"] == {"input": 1000017, "output": 100020, "cache_read": 2000000,
                            "cache_creation": 10000, "total": 3110037}
    # 3 + 1.5 + 0.6 + 0.0375 computed for the sonnet event, 0.5 reported, unpriced model: nothing
    assert abs(s2["cost_usd"] - (3 + 1.5 + 0.6 + 0.0375 + 0.5)) < 1e-9, s2["cost_usd"]


def test_sessions_filters(st):
    def ids(**params):
        items, _ = walk(st, "/sessions", "sessions", 1000, **params)
        return {s["session_id"] for s in items}
    assert ids(agent_id="sub-b") == {S1}
    assert S3 in ids(has_errors="true") and S2 not in ids(has_errors="true")
    assert S2 in ids(has_errors="false") and S1 not in ids(has_errors="false")
    assert ids(source_app="claude-code") == {S1}
    recent = ids(**{"from": iso(NOW - datetime.timedelta(days=1))})
    assert S1 in recent and S2 in recent and S3 not in recent
    old = ids(**{"to": iso(NOW - datetime.timedelta(days=4))})
    assert old == {S3}


def test_session_detail_with_agent_tree(st):
    body = ok(st, "/sessions/" + urllib.parse.quote(S1, safe=""))
    assert body["session"]["session_id"] == S1 and body["session"]["events"] == 300
    tree = body["agent_tree"]
    assert len(tree) == 1 and tree[0]["agent_id"] is None, "the main agent is the root"
    main = tree[0]
    assert [c["agent_id"] for c in main["children"]] == ["sub-a"]
    sub_a = main["children"][0]
    assert sub_a["agent_role"] == "reviewer"
    assert [c["agent_id"] for c in sub_a["children"]] == ["sub-b"]
    total = main["events"] + sub_a["events"] + sub_a["children"][0]["events"]
    assert total == 300
    # an id with a slash and a space, URL-encoded
    body = ok(st, "/sessions/" + urllib.parse.quote(S3, safe=""))
    assert body["session"]["events"] == 5 and body["session"]["errors"] == 5
    status, _, body = get(st, "/sessions/no-such-session")
    assert status == 404 and body["error"]["field"] == "session_id", body


# ---------------------------------------------------------- transcripts --

TS = "hist-tr-1"


def post_transcript(st, body):
    return st.post(body, path="/transcripts")


def test_transcripts_stored_once_and_listed(st):
    t0 = NOW - datetime.timedelta(minutes=10)
    msgs = [{"uuid": "m-%02d" % i, "role": "user" if i % 2 == 0 else "assistant",
             "text": "message number %d about the build" % i, "model": None if i % 2 == 0 else "claude-sonnet-4-5",
             "tokens": {} if i % 2 == 0 else {"input_tokens": 100, "output_tokens": 10 * i},
             "timestamp": iso(t0 + datetime.timedelta(seconds=i))} for i in range(30)]
    body = {"session_id": TS, "agent_id": None, "transcript_path": "/home/u/.claude/projects/x/t.jsonl",
            "messages": msgs[:20]}
    status, _, resp = post_transcript(st, body)
    assert status == 202 and resp == {"status": "queued", "messages": 20}, (status, resp)
    # the next Stop hook sends the new messages only, and one again (a retry)
    status, _, resp = post_transcript(st, dict(body, messages=msgs[19:]))
    assert status == 202, resp
    # a subagent's transcript, messages without uuid (ids derived)
    sub = {"session_id": TS, "agent_id": "sub-1", "messages": [
        {"role": "assistant", "text": "subagent says hi", "timestamp": iso(t0)},
        {"role": "assistant", "text": "subagent says bye", "timestamp": iso(t0 + datetime.timedelta(seconds=1))}]}
    assert post_transcript(st, sub)[0] == 202
    assert post_transcript(st, sub)[0] == 202  # resent whole: stored once
    wait_for(lambda: st.scalar("SELECT count(*) FROM transcript_messages WHERE session_id = :'p1'", TS) == "32",
             15, what="32 transcript messages")
    time.sleep(1.5)  # the repeats are processed too
    assert st.scalar("SELECT count(*) FROM transcript_messages WHERE session_id = :'p1'", TS) == "32"
    got, pages = walk(st, "/transcripts", "messages", 7, session_id=TS)
    assert pages == 5 and len(got) == 32
    want = [r[0] for r in rows(st, "SELECT message_id FROM transcript_messages WHERE session_id = :'p1' "
                                    "ORDER BY ts, message_id", TS)]
    assert [m["id"] for m in got] == want
    first = ok(st, "/transcripts", session_id=TS, limit=1)
    trs = {t["agent_id"]: t for t in first["transcripts"]}
    assert trs[None]["messages"] == 30 and trs["sub-1"]["messages"] == 2
    assert trs[None]["transcript_path"].endswith("t.jsonl")
    assert trs[None]["model"] == "claude-sonnet-4-5"
    assert trs[None]["tokens"]["input"] == 100 * 15
    m1 = [m for m in got if m["id"] == "m-01"][0]
    assert m1 == {"id": "m-01", "agent_id": None, "role": "assistant", "text": "message number 1 about the build",
                  "model": "claude-sonnet-4-5", "tokens": {"input": 100, "output": 10, "cache_read": None,
                                                          "cache_creation": None},
                  "timestamp": iso(t0 + datetime.timedelta(seconds=1))}
    only_sub = ok(st, "/transcripts", session_id=TS, agent_id="sub-1")["messages"]
    assert [m["text"] for m in only_sub] == ["subagent says hi", "subagent says bye"]
    assert ok(st, "/transcripts", session_id="nobody") == {"session_id": "nobody", "transcripts": [],
                                                          "messages": [], "next_cursor": None}


def test_full_text_search_finds_a_phrase_from_a_stop_hook(st):
    sid = "hist-search-" + uuid.uuid4().hex[:6]
    stop_hook = {"session_id": sid, "agent_id": None, "transcript_path": "/tmp/t.jsonl", "messages": [
        {"uuid": str(uuid.uuid4()), "role": "user", "text": "Why does the flux capacitor need 1.21 gigawatts?",
         "timestamp": iso(NOW - datetime.timedelta(seconds=30))},
        {"uuid": str(uuid.uuid4()), "role": "assistant", "model": "claude-opus-4-1",
         "text": "The flux capacitor is what makes time travel possible: if power < 1.21 gigawatts && "
                 "the flux capacitor is cold, nothing happens.",
         "timestamp": iso(NOW - datetime.timedelta(seconds=20))},
        {"uuid": str(uuid.uuid4()), "role": "assistant", "text": "A capacitor stores charge; flux is a field.",
         "timestamp": iso(NOW - datetime.timedelta(seconds=10))},
    ]}
    assert post_transcript(st, stop_hook)[0] == 202
    wait_for(lambda: st.scalar("SELECT count(*) FROM transcript_messages WHERE session_id = :'p1'", sid) == "3",
             15, what="transcript stored")
    body = ok(st, "/transcripts/search", q='"flux capacitor"')
    hits = [h for h in body["hits"] if h["session_id"] == sid]
    assert len(hits) == 2, body  # the phrase, not the two words apart
    assert hits[0]["role"] == "assistant", "two occurrences rank first"
    assert hits[0]["rank"] >= hits[1]["rank"]
    assert "<mark>flux</mark> <mark>capacitor</mark>" in hits[0]["snippet"], hits[0]
    assert "&lt; 1.21 gigawatts &amp;&amp;" in hits[0]["snippet"], "snippet text is HTML-escaped"
    assert hits[0]["session_url"] == "/sessions/" + sid
    assert hits[0]["transcript_url"] == "/transcripts?session_id=" + sid
    assert hits[0]["model"] == "claude-opus-4-1"
    # filters and words
    assert len(ok(st, "/transcripts/search", q="gigawatts", session_id=sid, role="user")["hits"]) == 1
    assert len(ok(st, "/transcripts/search", q="capacitor -flux", session_id=sid)["hits"]) == 0
    assert len(ok(st, "/transcripts/search", q="capacitor", session_id=sid, limit=1)["hits"]) == 1
    assert ok(st, "/transcripts/search", q="nonexistentword")["hits"] == []
    # the session's transcript count shows in /sessions/{id} once it has events
    assert st.post({"event_type": "Stop", "session_id": sid})[0] == 202
    wait_for(lambda: get(st, "/sessions/" + sid)[0] == 200, 10, what="session row")
    detail = ok(st, "/sessions/" + sid)
    assert detail["session"]["transcript_messages"] == 3 and len(detail["transcripts"]) == 1


def test_transcript_post_errors(st):
    cases = [
        (b'{"messages":[{"role":"user"}]}', "application/json", 400, "session_id"),
        (b'{"session_id":"s","messages":[]}', "application/json", 400, "messages"),
        (b'{"session_id":"s","messages":[{"text":"x"}]}', "application/json", 400, "messages[0].role"),
        (b'{"session_id":"s","messages":[{"role":"user","timestamp":"soon"}]}', "application/json", 400,
         "messages[0].timestamp"),
        (b'{"session_id":"s","messages":[{"role":"user","tokens":{"input":-1}}]}', "application/json", 400,
         "messages[0].tokens.input"),
        (b'{"session_id":', "application/json", 400, ""),
        (b'', "application/json", 400, ""),
        (b'{"session_id":"s","messages":[{"role":"user"}]}', "application/xml", 415, "Content-Type"),
    ]
    for body, ctype, want, field in cases:
        status, hdrs, resp = st.post(body, path="/transcripts", ctype=ctype)
        assert status == want and resp["error"]["status"] == want and resp["error"]["field"] == field, \
            (body, status, resp)
        assert hdrs["content-type"] == "application/json"
    big = json.dumps({"session_id": "s", "messages": [{"role": "user", "text": "x" * 200000}] * 25})
    status, _, resp = st.post(big, path="/transcripts")
    assert status == 413 and "limit" in resp["error"]["message"], (status, resp)
    status, hdrs, _ = request(st.collector_port, "PUT", "/transcripts", b"{}", {"Content-Type": "application/json"})
    assert status == 405 and "POST" in hdrs.get("allow", "")
    status, _, _ = request(st.collector_port, "POST", "/sessions", b"{}", {"Content-Type": "application/json"})
    assert status == 405


# --------------------------------------------------------------- errors --

def test_bad_parameters_answer_400_naming_them(st):
    ecur = ok(st, "/events", session_id=S1, limit=1)["next_cursor"]
    scur = ok(st, "/sessions", limit=1)["next_cursor"]
    cases = [
        ("/events", dict(limit="0"), "limit"),
        ("/events", dict(limit="1001"), "limit"),
        ("/events", dict(limit="ten"), "limit"),
        ("/events", dict(sesion_id="x"), "sesion_id"),
        ("/events", dict(session_id=""), "session_id"),
        ("/events", {"from": "last week"}, "from"),
        ("/events", {"from": iso(NOW - datetime.timedelta(days=60))}, "from"),
        ("/events", {"from": iso(NOW), "to": iso(NOW - datetime.timedelta(hours=1))}, "to"),
        ("/events", {"from": iso(NOW - datetime.timedelta(days=90)), "to": iso(NOW)}, "to"),
        ("/events", dict(order="sideways"), "order"),
        ("/events", dict(cursor="bm9wZQ"), "cursor"),
        ("/events", dict(cursor=scur), "cursor"),
        ("/events", dict(cursor=ecur, order="asc"), "cursor"),
        ("/events", dict(session_id="x" * 300), "session_id"),
        ("/events/recent", dict(limit="3"), "session"),
        ("/sessions", dict(cursor=ecur), "cursor"),
        ("/sessions", dict(has_errors="perhaps"), "has_errors"),
        ("/sessions", dict(type="Stop"), "type"),
        ("/transcripts", dict(limit="3"), "session_id"),
        ("/transcripts/search", dict(), "q"),
        ("/transcripts/search", dict(q="x", limit="500"), "limit"),
    ]
    for path, params, field in cases:
        status, hdrs, body = get(st, path, **params)
        assert status == 400, (path, params, status, body)
        assert hdrs["content-type"] == "application/json"
        assert body["error"]["status"] == 400 and body["error"]["field"] == field, (path, params, body)
        assert body["error"]["message"], body
    # repeated parameter and invalid UTF-8 come through the raw query string
    status, _, body = request(st.collector_port, "GET", "/events?tool=a&tool=b")
    assert status == 400 and body["error"]["field"] == "tool" and "more than once" in body["error"]["message"]
    status, _, body = request(st.collector_port, "GET", "/events?session_id=%ff%fe")
    assert status == 400 and "UTF-8" in body["error"]["message"], body
    status, _, body = request(st.collector_port, "DELETE", "/events/recent?session=x")
    assert status == 405, status
    # values are data, never SQL
    evil = "x' OR '1'='1"
    assert ok(st, "/events", session_id=evil)["events"] == []
    assert ok(st, "/sessions", agent_id=evil)["sessions"] == []


def test_cors_only_for_the_configured_origin(st):
    """The dashboard (another origin) may read the API: collector.cors_origin
    names exactly one origin; nothing else gets CORS headers, never `*`."""
    dash = "http://127.0.0.1:7071"
    pre = {"Origin": dash, "Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "authorization"}
    # default: no CORS at all
    status, hdrs, _ = request(st.collector_port, "GET", "/sessions?limit=1", headers={"Origin": dash})
    assert status == 200 and "access-control-allow-origin" not in hdrs and "vary" not in hdrs, hdrs
    status, hdrs, _ = request(st.collector_port, "OPTIONS", "/sessions", headers=pre)
    assert status == 204 and "access-control-allow-origin" not in hdrs, hdrs

    st.kill("collector", sig=15)
    st.start("collector", OBS_COLLECTOR_CORS_ORIGIN=dash)
    # the configured origin: every answer carries it, errors and 404s too
    for method, path, want in (("GET", "/sessions?limit=1", 200), ("GET", "/events?limit=0", 400),
                               ("GET", "/sessions/" + S1, 200), ("GET", "/transcripts/search?q=x", 200),
                               ("GET", "/nope", 404), ("GET", "/healthz", 200)):
        status, hdrs, body = request(st.collector_port, method, path, headers={"Origin": dash})
        assert status == want, (path, status, body)
        assert hdrs.get("access-control-allow-origin") == dash, (path, hdrs)
        assert hdrs.get("vary") == "Origin", (path, hdrs)
    status, hdrs, _ = st.post({"event_type": "Stop", "session_id": "hist-cors"}, headers={"Origin": dash})
    assert status == 202 and hdrs.get("access-control-allow-origin") == dash
    # preflight (GET with an Authorization header): allowed, with the header
    status, hdrs, body = request(st.collector_port, "OPTIONS", "/sessions", headers=pre)
    assert status == 204 and body is None, (status, body)
    assert hdrs["access-control-allow-origin"] == dash
    assert "GET" in hdrs["access-control-allow-methods"] and "POST" not in hdrs["access-control-allow-methods"]
    assert "authorization" in hdrs["access-control-allow-headers"].lower()
    assert int(hdrs["access-control-max-age"]) > 0 and "OPTIONS" in hdrs["allow"]
    # any other origin: no CORS headers (the browser then refuses the read)
    for other in ("http://evil.example", "http://127.0.0.1:7072", "https://127.0.0.1:7071", "null"):
        status, hdrs, _ = request(st.collector_port, "GET", "/sessions?limit=1", headers={"Origin": other})
        assert status == 200 and "access-control-allow-origin" not in hdrs, (other, hdrs)
        status, hdrs, _ = request(st.collector_port, "OPTIONS", "/sessions", headers=dict(pre, Origin=other))
        assert status == 204 and not [h for h in hdrs if h.startswith("access-control-")], (other, hdrs)
    status, hdrs, _ = request(st.collector_port, "GET", "/sessions?limit=1")
    assert "access-control-allow-origin" not in hdrs and hdrs["vary"] == "Origin"

    # a wildcard, a URL with a path, or no origin at all: refused at start
    for bad, why in (("*", "not an http"), (dash + "/", "not an origin"), ("null", "not an http")):
        r = subprocess.run([os.path.join(BUILD, "collector")], capture_output=True, text=True, timeout=10,
                           env=st.env(OBS_COLLECTOR_PORT=free_port(), OBS_COLLECTOR_CORS_ORIGIN=bad))
        assert r.returncode != 0 and "collector.cors_origin" in r.stderr and why in r.stderr, (bad, r.stderr)


def test_reads_use_a_read_only_role(st):
    r = st.sql("SELECT has_table_privilege('agent_obs_read', 'agent_events', 'INSERT'), "
               "has_table_privilege('agent_obs_read', 'agent_events', 'SELECT'), "
               "has_table_privilege('agent_obs_read', 'transcript_messages', 'DELETE')")
    assert r == [["f", "t", "f"]], r
    assert st.scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = 'agent_obs_read' "
                     "AND application_name = 'agent-obs-collector'") != "0"


# --------------------------------------------------------- tokens, cost --

def test_cost_computed_and_counted(st):
    r = rows(st, "SELECT payload->>'model', cost_usd FROM agent_events WHERE session_id = :'p1' ORDER BY ts", S2)
    assert r[0][0] == "claude-sonnet-4-5-20250929" and abs(float(r[0][1]) - 5.1375) < 1e-9, r
    assert r[1][1] == "0.5", "a reported cost is kept"
    assert r[2][1] == "", "no price for the model: no cost"
    m = st.metrics(st.processor_port)
    assert m['agent_obs_tokens_total{agent="worker",model="claude-sonnet-4-5-20250929",kind="input"}'] == 1000000
    assert m['agent_obs_tokens_total{agent="worker",model="claude-sonnet-4-5-20250929",kind="cache_read"}'] == 2000000
    assert m['agent_obs_tokens_total{agent="main",model="some-unpriced-model",kind="input"}'] == 7
    assert abs(m['agent_obs_cost_usd_total{agent="worker",model="claude-sonnet-4-5-20250929"}'] - 5.1375) < 1e-9
    assert m['agent_obs_cost_usd_total{agent="main",model="claude-opus-4-1"}'] == 0.5


# ------------------------------------------------------ PostgreSQL down --

def test_postgres_down_reads_503_ingest_keeps_working(st):
    st.stop_pg()
    try:
        for path, params in (("/events", dict(session_id=S1)), ("/sessions", {}), ("/sessions/" + S2, {}),
                             ("/transcripts", dict(session_id=TS)), ("/transcripts/search", dict(q="x"))):
            t0 = time.time()
            status, hdrs, body = get(st, path, **params)
            assert status == 503 and body["error"]["status"] == 503, (path, status, body)
            assert "postgres" in body["error"]["message"] and "retry-after" in hdrs
            assert time.time() - t0 < 5
        evs = [{"event_type": "Stop", "session_id": "hist-pgdown"} for _ in range(50)]
        t0 = time.time()
        status, _, _ = st.post(evs)
        assert status == 202 and time.time() - t0 < 2, "ingest does not wait on PostgreSQL"
        assert post_transcript(st, {"session_id": "hist-pgdown", "messages": [{"role": "user", "text": "x"}]})[0] == 202
    finally:
        st.start_pg()
    wait_for(lambda: get(st, "/events", session_id="hist-pgdown")[0] == 200 and
             len(get(st, "/events", session_id="hist-pgdown")[2]["events"]) == 50, 30, interval=0.5,
             what="reads back and the events stored")
    wait_for(lambda: ok(st, "/transcripts", session_id="hist-pgdown")["messages"], 30, interval=0.5,
             what="transcript stored after the outage")


# ------------------------------------------------------------ retention --

def test_retention_drops_old_partitions_while_ingest_continues(st):
    days = {40: None, 31: None, 30: None, 29: None}
    for d in days:
        day = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=d)).date()
        days[d] = day.strftime("%Y%m%d")
        st.sql("SELECT agent_events_ensure_partition('%s'::date); "
               "SELECT history_ensure_partition('transcript_messages', '%s'::date)" % (day, day))
        st.sql("INSERT INTO agent_events (id, ts, session_id, event_type, received_at) "
               "VALUES (gen_random_uuid(), '%s 12:00Z', 'hist-old-%d', 'Stop', now())" % (day, d))
        st.sql("INSERT INTO transcript_messages (session_id, message_id, ts, role, text) "
               "VALUES ('hist-old-%d', 'm', '%s 12:00Z', 'user', 'old words')" % (d, day))
    assert st.scalar("SELECT count(*) FROM session_summaries WHERE session_id LIKE 'hist-old-%'") == "4"

    # ingest keeps flowing while the processor restarts with a short retention interval
    stop = threading.Event()
    sent = []

    def sender():
        while not stop.is_set():
            status, _, body = st.post([{"event_type": "PostToolUse", "session_id": "hist-during-retention"}
                                       for _ in range(20)])
            if status == 202:
                sent.extend(body["ids"])
            time.sleep(0.05)
    t = threading.Thread(target=sender)
    t.start()
    try:
        st.kill("processor", sig=15)
        st.start("processor", OBS_PROCESSOR_RETENTION_INTERVAL_MS=300, OBS_PROCESSOR_RETENTION_DAYS=30)

        def parts():
            return {r[0] for r in st.sql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                          "WHERE i.inhparent IN ('agent_events'::regclass, "
                                          "'transcript_messages'::regclass)")}
        wait_for(lambda: "agent_events_" + days[31] not in parts(), 15, what="old partitions dropped")
        time.sleep(1)  # a few more rounds: nothing else goes
    finally:
        stop.set()
        t.join()
    p = parts()
    for d in (40, 31):
        assert "agent_events_" + days[d] not in p and "transcript_messages_" + days[d] not in p, d
    for d in (30, 29):
        assert "agent_events_" + days[d] in p and "transcript_messages_" + days[d] in p, d
    today_s = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    assert "agent_events_" + today_s in p and "transcript_messages_" + today_s in p
    assert {r[0] for r in st.sql("SELECT session_id FROM session_summaries WHERE session_id LIKE 'hist-old-%'")} == \
        {"hist-old-30", "hist-old-29"}
    m = st.metrics(st.processor_port)
    assert m['agent_obs_processor_partitions_dropped_total{table="agent_events"}'] == 2
    assert m['agent_obs_processor_partitions_dropped_total{table="transcript_messages"}'] == 2
    assert "retention: partition dropped" in st.log("processor")
    # every event accepted meanwhile is stored, once
    assert len(sent) > 100
    wait_for(lambda: st.scalar("SELECT count(DISTINCT id) FROM agent_events WHERE session_id = "
                               "'hist-during-retention'") == str(len(sent)), 20, what="events sent during retention")
    assert st.scalar("SELECT count(*) FROM agent_events WHERE session_id = 'hist-during-retention'") == str(len(sent))
