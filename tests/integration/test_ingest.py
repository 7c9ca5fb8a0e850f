"""Ingest path: POST -> Redis stream -> processor -> PostgreSQL row, every field
mapped, bulk and NDJSON, idempotency on the event id, every bad input answered
with a clear error while the service keeps serving, dead-lettering, safe trim."""
import json
import os
import subprocess
import time
import uuid

from harness import BUILD, ROOT, Stack, free_port, request, wait_for


def setup():
    # Fast trim so the trim test can watch it; keep nothing acknowledged.
    st = Stack("ingest")
    st.start_redis()
    st.start_pg()
    st.start("processor", OBS_PROCESSOR_TRIM_INTERVAL_MS=200, OBS_PROCESSOR_STREAM_RETAIN_MS=0)
    st.start("collector")
    return st


def teardown(st):
    st.close()


def count(st, session):
    return int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", session))


def test_seed_snippet_readable_from_stream_within_1s(st):
    st.redis("XGROUP", "CREATE", "agent_events", "seedcheck", "$", "MKSTREAM")
    t0 = time.time()
    status, _, body = st.post({"event_type": "PostToolUse", "payload": {"success": False}},
                              path="/observability/event")
    assert status == 202 and body == {"status": "queued"}, (status, body)
    # the seed PRD reads with XREAD STREAMS agent_events 0: our entry must be there
    def seen():
        out = st.redis_raw("XREAD", "COUNT", "100000", "STREAMS", "agent_events", "0")
        return '"payload":{"success":false}' in out
    wait_for(seen, 1.0, what="entry in XREAD")
    assert time.time() - t0 < 1.0
    st.redis("XGROUP", "DESTROY", "agent_events", "seedcheck")


def test_post_maps_every_field(st):
    eid = str(uuid.uuid4())
    ev = {
        "id": eid, "event_type": "PostToolUse", "session_id": "map-s1", "agent_id": "sub-7",
        "agent_role": "subagent", "parent_agent_id": "main", "source_app": "claude-code",
        "tool": "Bash", "status": "success", "latency_ms": 123.5,
        "tokens": {"input": 10, "output": 20, "cache_read": 30, "cache_creation": 40},
        "cost_usd": 0.0125, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
        "timestamp": "2026-01-02T03:04:05.678Z",
        "payload": {"command": "ls -la", "nested": {"a": [1, 2, 3]}, "text": "tab\there \\ \"quoted\"\nline"},
        "custom_top_level": "moves into payload",
    }
    status, _, body = st.post(ev)
    assert status == 202, body
    assert body == {"status": "queued", "ids": [eid]}
    wait_for(lambda: count(st, "map-s1") == 1, 10, what="row")
    row = st.sql("""SELECT id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'), session_id,
                    agent_id, agent_role, parent_agent_id, source_app, event_type, tool, status,
                    latency_ms, tokens_input, tokens_output, tokens_cache_read, tokens_cache_creation,
                    cost_usd, trace_id, span_id, payload::text, received_at IS NOT NULL,
                    stream_id IS NOT NULL, created_at >= received_at
                    FROM agent_events WHERE session_id = 'map-s1'""")[0]
    assert row[:10] == [eid, "2026-01-02T03:04:05.678", "map-s1", "sub-7", "subagent", "main",
                        "claude-code", "PostToolUse", "Bash", "success"], row
    assert row[10:18] == ["123.5", "10", "20", "30", "40", "0.0125",
                          "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"], row
    payload = json.loads(row[18])
    assert payload == {"command": "ls -la", "nested": {"a": [1, 2, 3]},
                       "text": "tab\there \\ \"quoted\"\nline",
                       "custom_top_level": "moves into payload"}, payload
    assert row[19:] == ["t", "t", "t"], row


def test_status_derived_and_defaults(st):
    evs = [
        {"event_type": "PostToolUse", "session_id": "derive", "payload": {"success": False}, "tool": "a"},
        {"event_type": "PostToolUseFailure", "session_id": "derive", "tool": "b"},
        {"event_type": "PreToolUse", "session_id": "derive", "payload": {"blocked": True}, "tool": "c"},
        {"event_type": "Notification", "session_id": "derive", "tool": "d"},
        {"event_type": "custom.thing_1", "session_id": "derive", "status": "Timeout", "tool": "e",
         "timestamp": 1767225600},
    ]
    status, _, body = st.post(evs)
    assert status == 202 and len(body["ids"]) == 5, body
    wait_for(lambda: count(st, "derive") == 5, 10, what="rows")
    rows = st.sql("SELECT tool, status FROM agent_events WHERE session_id='derive' ORDER BY tool")
    assert rows == [["a", "error"], ["b", "error"], ["c", "blocked"], ["d", "success"], ["e", "timeout"]], rows
    ts = st.scalar("SELECT extract(epoch FROM ts)::bigint FROM agent_events WHERE tool='e' AND session_id='derive'")
    assert ts == "1767225600", ts


def test_bulk_array_of_1000(st):
    evs = [{"event_type": "PreToolUse", "session_id": "bulk-array", "tool": "Read", "payload": {"i": i}}
           for i in range(1000)]
    status, _, body = st.post(evs)
    assert status == 202 and len(body["ids"]) == 1000 and len(set(body["ids"])) == 1000
    wait_for(lambda: count(st, "bulk-array") == 1000, 20, what="1000 rows")
    assert st.scalar("SELECT count(DISTINCT payload->>'i') FROM agent_events WHERE session_id='bulk-array'") == "1000"


def test_ndjson_of_1000(st):
    lines = "\n".join(json.dumps({"event_type": "PostToolUse", "session_id": "bulk-nd", "payload": {"i": i}})
                      for i in range(1000)) + "\n"
    status, _, body = st.post(lines, ctype="application/x-ndjson")
    assert status == 202 and len(body["ids"]) == 1000, body
    wait_for(lambda: count(st, "bulk-nd") == 1000, 20, what="1000 rows")


def test_same_id_three_times_gives_one_row(st):
    eid = str(uuid.uuid4())
    for _ in range(3):  # no timestamp: each post is stamped with a new receive time
        status, _, _ = st.post({"id": eid, "event_type": "Stop", "session_id": "dup-1"})
        assert status == 202
    eid2 = str(uuid.uuid4())
    ev = {"id": eid2, "event_type": "Stop", "session_id": "dup-2", "timestamp": int(time.time() * 1000)}
    status, _, _ = st.post([ev, ev, ev])  # three in one request, same timestamp
    assert status == 202
    # a marker posted afterwards proves the processor got past the duplicates
    st.post({"event_type": "Stop", "session_id": "dup-marker"})
    wait_for(lambda: count(st, "dup-marker") == 1, 10, what="marker")
    assert count(st, "dup-1") == 1
    assert count(st, "dup-2") == 1
    assert st.scalar("SELECT count(*) FROM agent_events WHERE id = :'p1'", eid) == "1"


BAD = [
    # (name, body, content-type, status, field, message fragment)
    ("malformed json", b'{"event_type": "Stop",', "application/json", 400, "", "malformed JSON"),
    ("trailing garbage", b'{"event_type": "Stop"} x', "application/json", 400, "", "malformed JSON"),
    ("invalid utf-8", b'{"event_type": "Stop", "payload": {"x": "\xff\xfe"}}', "application/json", 400, "", "UTF-8"),
    ("overlong utf-8", b'{"event_type": "Stop", "payload": {"x": "\xc0\xaf"}}', "application/json", 400, "", "UTF-8"),
    ("not an object", b'"hello"', "application/json", 400, "", "JSON object"),
    ("missing event_type", b'{"session_id": "x"}', "application/json", 400, "event_type", "required"),
    ("event_type wrong type", b'{"event_type": 5}', "application/json", 400, "event_type", "string"),
    ("event_type bad chars", b'{"event_type": "Pre Tool"}', "application/json", 400, "event_type", "letters"),
    ("session_id wrong type", b'{"event_type": "Stop", "session_id": 12}', "application/json", 400, "session_id", "string"),
    ("payload wrong type", b'{"event_type": "Stop", "payload": [1]}', "application/json", 400, "payload", "object"),
    ("negative latency", b'{"event_type": "Stop", "latency_ms": -1}', "application/json", 400, "latency_ms", ">= 0"),
    ("latency wrong type", b'{"event_type": "Stop", "latency_ms": "fast"}', "application/json", 400, "latency_ms", "number"),
    ("bad timestamp", b'{"event_type": "Stop", "timestamp": "yesterday"}', "application/json", 400, "timestamp", "ISO-8601"),
    ("impossible date", b'{"event_type": "Stop", "timestamp": "2026-02-30T00:00:00Z"}', "application/json", 400, "timestamp", "ISO-8601"),
    ("timestamp far future", b'{"event_type": "Stop", "timestamp": "2999-01-01T00:00:00Z"}', "application/json", 400, "timestamp", "range"),
    ("bad id", b'{"event_type": "Stop", "id": "not-a-uuid"}', "application/json", 400, "id", "UUID"),
    ("tokens wrong type", b'{"event_type": "Stop", "tokens": {"input": -3}}', "application/json", 400, "tokens.input", "non-negative"),
    ("tokens unknown kind", b'{"event_type": "Stop", "tokens": {"bogus": 3}}', "application/json", 400, "tokens.bogus", "unknown"),
    ("status bad", b'{"event_type": "Stop", "status": "no way"}', "application/json", 400, "status", "letters"),
    ("too deep", ('{"event_type": "Stop", "payload": ' + '{"a":' * 40 + '1' + '}' * 40 + '}').encode(),
     "application/json", 400, "payload", "nesting"),
    ("string too long", ('{"event_type": "Stop", "payload": {"out": "' + "x" * 200000 + '"}}').encode(),
     "application/json", 413, "payload.out", "more than the 196608-byte limit"),
    ("too many fields", ('{"event_type": "Stop", "payload": {"env": {' +
                         ",".join('"k%d": 1' % i for i in range(1001)) + '}}}').encode(),
     "application/json", 413, "payload.env", "1001 fields, more than the 1000-field limit"),
    ("array too long", ('{"event_type": "Stop", "payload": {"files": [' + ",".join(["0"] * 10001) + ']}}').encode(),
     "application/json", 413, "payload.files", "10001 elements, more than the 10000-element limit"),
    ("empty body", b'', "application/json", 400, "", "empty"),
    ("empty array", b'[]', "application/json", 400, "", "no events"),
    ("wrong content type", b'{"event_type": "Stop"}', "application/x-www-form-urlencoded", 415, "Content-Type", "application/json"),
    ("xml content type", b'<event/>', "application/xml", 415, "Content-Type", "application/json"),
]


def test_bad_inputs_get_clear_errors(st):
    failures = []
    for name, body, ctype, want_status, want_field, frag in BAD:
        status, hdrs, resp = st.post(body, ctype=ctype)
        err = resp.get("error", {}) if isinstance(resp, dict) else {}
        ok = (status == want_status and hdrs.get("content-type", "").startswith("application/json")
              and err.get("status") == want_status
              and (err.get("field", "") == want_field or err.get("field", "").startswith(want_field + "."))
              and frag in err.get("message", ""))
        if not ok:
            failures.append((name, status, resp))
    assert not failures, failures
    # nothing from the bad requests reached the stream or the table
    assert st.scalar("SELECT count(*) FROM agent_events WHERE session_id = 'x'") == "0"
    # and the service keeps serving
    status, _, _ = st.post({"event_type": "Stop", "session_id": "after-bad"})
    assert status == 202
    wait_for(lambda: count(st, "after-bad") == 1, 10, what="row after bad inputs")


def test_size_limits(st):
    big = json.dumps({"event_type": "Stop", "payload": {"blob": "x" * (2 * 1024 * 1024)}})
    status, _, resp = st.post(big)
    assert status == 413 and "1048576-byte limit" in resp["error"]["message"], (status, resp)
    one = json.dumps({"event_type": "Stop", "payload": {"b%d" % i: "y" * 60000 for i in range(5)}})
    status, _, resp = st.post(one)
    assert status == 413 and "262144-byte limit" in resp["error"]["message"], (status, resp)
    # chunked upload without Content-Length is counted too
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", st.collector_port, timeout=10)
    c.putrequest("POST", "/events")
    c.putheader("Content-Type", "application/json")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    chunk = b"x" * 65536
    try:
        for _ in range(20):
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        assert r.status == 413, r.status
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close early after answering 413
    finally:
        c.close()
    status, _, _ = st.post({"event_type": "Stop", "session_id": "after-big"})
    assert status == 202


def test_limits_are_settings(st):
    """collector.max_string_bytes, max_fields and max_array, lowered through the environment."""
    port = free_port()
    env = st.env(OBS_COLLECTOR_PORT=port, OBS_COLLECTOR_MAX_STRING_BYTES=100, OBS_COLLECTOR_MAX_FIELDS=5,
                 OBS_COLLECTOR_MAX_ARRAY=3)
    p = subprocess.Popen([os.path.join(BUILD, "collector")], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_for(lambda: st._healthy(port), 10, what="second collector")
        cases = [({"event_type": "Stop", "payload": {"t": "x" * 101}}, "payload.t", "more than the 100-byte limit"),
                 ({"event_type": "Stop", "payload": {"m": {"a%d" % i: i for i in range(6)}}}, "payload.m",
                  "6 fields, more than the 5-field limit"),
                 ({"event_type": "Stop", "payload": {"a": [[1, 2, 3, 4]]}}, "payload.a[0]",
                  "4 elements, more than the 3-element limit")]
        for ev, field, frag in cases:
            status, _, resp = request(port, "POST", "/events", json.dumps(ev), {"Content-Type": "application/json"})
            assert status == 413 and resp["error"]["field"] == field and frag in resp["error"]["message"], resp
        ok = {"event_type": "Stop", "session_id": "at-limits", "payload": {"t": "x" * 100, "a": [1, 2, 3]}}
        status, _, resp = request(port, "POST", "/events", json.dumps(ok), {"Content-Type": "application/json"})
        assert status == 202, resp
    finally:
        p.terminate()
        p.wait(10)


def test_bulk_with_invalid_events_names_indexes_and_keeps_none(st):
    evs = [{"event_type": "Stop", "session_id": "partial"},
           {"event_type": "Stop", "session_id": "partial", "latency_ms": -5},
           {"event_type": "Stop", "session_id": "partial"},
           {"session_id": "partial"}]
    status, _, resp = st.post(evs)
    assert status == 400, resp
    bad = {(e["index"], e["field"]) for e in resp["error"]["events"]}
    assert bad == {(1, "latency_ms"), (3, "event_type")}, resp
    nd = '{"event_type":"Stop","session_id":"partial"}\n{oops\n'
    status, _, resp = st.post(nd, ctype="application/x-ndjson")
    assert status == 400 and resp["error"]["events"][0]["index"] == 1, resp
    st.post({"event_type": "Stop", "session_id": "partial-marker"})
    wait_for(lambda: count(st, "partial-marker") == 1, 10, what="marker")
    assert count(st, "partial") == 0


def test_methods_and_unknown_paths(st):
    status, _, resp = request(st.collector_port, "GET", "/events")
    assert status in (405, 400, 200) and status != 500
    status, _, resp = request(st.collector_port, "GET", "/nope")
    assert status == 404 and resp["error"]["status"] == 404
    status, _, resp = request(st.collector_port, "PUT", "/events", b"{}", {"Content-Type": "application/json"})
    assert status == 405, status


def test_poison_entry_is_dead_lettered_and_pipeline_continues(st):
    st.redis("XADD", "agent_events", "*", "e", "{not json")
    st.redis("XADD", "agent_events", "*", "e", json.dumps({"id": "nope", "event_type": "Stop"}))
    st.post({"event_type": "Stop", "session_id": "after-poison"})
    wait_for(lambda: count(st, "after-poison") == 1, 10, what="row after poison")
    wait_for(lambda: int(st.redis_raw("XLEN", "agent_events:dead")) >= 2, 5, what="dead letters")
    dead = st.redis_raw("XRANGE", "agent_events:dead", "-", "+")
    assert "{not json" in dead and "invalid_event" in dead and "not a JSON object" in dead, dead
    pending = st.redis_raw("XPENDING", "agent_events", "processor")
    assert pending.splitlines()[0] == "0", pending


def test_trim_never_drops_entries_a_group_still_needs(st):
    st.redis("XGROUP", "CREATE", "agent_events", "laggard", "$")
    evs = [{"event_type": "Stop", "session_id": "trim"} for _ in range(500)]
    assert st.post(evs)[0] == 202
    wait_for(lambda: count(st, "trim") == 500, 20, what="rows")
    time.sleep(1.0)  # several trim rounds
    # the laggard group has read nothing: all 500 entries must still be there
    out = st.redis_raw("XREADGROUP", "GROUP", "laggard", "c1", "COUNT", "1000", "STREAMS", "agent_events", ">")
    assert out.count('"session_id":"trim"') == 500, out.count('"session_id":"trim"')
    st.redis("XGROUP", "DESTROY", "agent_events", "laggard")
    assert st.post([{"event_type": "Stop", "session_id": "trim2"} for _ in range(500)])[0] == 202
    wait_for(lambda: int(st.redis_raw("XLEN", "agent_events")) < 300, 10, what="trim after ack")


def test_health_ready_metrics(st):
    for port in (st.collector_port, st.processor_port):
        assert request(port, "GET", "/healthz")[0] == 200
        assert request(port, "GET", "/readyz")[0] == 200
    m = st.metrics(st.collector_port)
    assert m["agent_obs_events_accepted_total"] > 3000
    assert any(k.startswith("agent_obs_events_rejected_total{reason=\"invalid\"}") for k in m)
    assert any(k.startswith("agent_obs_http_request_duration_seconds_bucket") for k in m)
    p = st.metrics(st.processor_port)
    assert p["agent_obs_processor_events_stored_total"] >= 3000
    assert p["agent_obs_processor_emit_to_stored_seconds_count"] >= 3000
    assert p["agent_obs_processor_dead_lettered_total{reason=\"invalid_event\"}"] >= 2
    assert p["agent_obs_processor_events_duplicate_total"] >= 4
