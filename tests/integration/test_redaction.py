"""Secret redaction in the collector (issue 7, acceptance point 2): a corpus of
realistic, format-valid fake secrets (redaction_corpus.json) is POSTed through
every ingest route -- POST /events, /observability/event, /hooks/claude-code,
/transcripts, /v1/logs -- and afterwards none of them appears anywhere in
Redis (every key of every type, and the append-only file on disk) or in
PostgreSQL (pg_dump of the whole database); each stored copy carries its
[REDACTED:<kind>] markers, and agent_obs_redactions_total counted exactly
the markers written. Ordinary text (paths, SHAs, UUIDs, commands) is stored
unchanged, and a bad pattern in config/redaction.yaml stops the collector
with an error naming it."""
import json
import os
import re
import subprocess
import time

from harness import BUILD, Stack, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = json.load(open(os.path.join(HERE, "redaction_corpus.json")))
SAMPLES, FIELDS, PLAIN = CORPUS["samples"], CORPUS["fields"], CORPUS["plain"]

CONFIG = """# test configuration: e-mail on, two named patterns
email: true
disable: []
patterns:
  - name: acme_token
    regex: 'acme_[0-9a-f]{32}'
  - name: employee_id
    regex: 'EMP-[0-9]{6}'
"""


def setup():
    st = Stack("redaction")
    st.start_redis()
    st.start_pg()
    # keep every stream entry for the whole test: the dump must see them all
    st.start("processor", OBS_PROCESSOR_STREAM_RETAIN_MS=3600000)
    st.redaction_file = os.path.join(st.dir, "redaction.yaml")
    with open(st.redaction_file, "w") as f:
        f.write(CONFIG)
    st.start("collector", OBS_COLLECTOR_REDACTION_FILE=st.redaction_file)
    return st


def teardown(st):
    st.close()


def redaction_metrics(st):
    out = {}
    for k, v in st.metrics(st.collector_port).items():
        m = re.match(r'agent_obs_redactions_total\{kind="([^"]+)"\}$', k)
        if m:
            out[m.group(1)] = v
    return out


def attr(k, v):
    return {"key": k, "value": {"stringValue": v}}


def otlp(session, records):
    return {"resourceLogs": [{"resource": {"attributes": [attr("service.name", "claude-code")]},
                              "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events"},
                                             "logRecords": records}]}]}


def dump_redis(st):
    """Every key of every type, read back as text (DUMP would compress)."""
    parts = []
    keys = subprocess.run(["redis-cli", "-p", str(st.redis_port), "--scan"], capture_output=True,
                          text=True).stdout.split()
    assert keys, "no keys in Redis"
    for k in keys:
        t = st.redis_raw("TYPE", k)
        read = {"stream": ("XRANGE", k, "-", "+"), "string": ("GET", k), "hash": ("HGETALL", k),
                "list": ("LRANGE", k, "0", "-1"), "set": ("SMEMBERS", k),
                "zset": ("ZRANGE", k, "0", "-1", "WITHSCORES")}.get(t)
        assert read, "unexpected Redis type %s of %s" % (t, k)
        parts.append("== %s %s\n%s" % (t, k, st.redis_raw(*read)))
    return "\n".join(parts), keys


def redis_files(st):
    """Redis's own files (append-only file, snapshots): every write ever made."""
    blob = b""
    for root, _, files in os.walk(os.path.join(st.dir, "redis")):
        for f in files:
            if not f.endswith((".log", ".pid", ".conf")):
                with open(os.path.join(root, f), "rb") as fh:
                    blob += fh.read()
    return blob.decode("utf-8", "replace")


def dump_pg(st):
    r = subprocess.run(["pg_dump", "-h", "127.0.0.1", "-p", str(st.pg_port), "-U", "agent_obs", "-d",
                        "agent_obs", "--data-only"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def count_events(st, prefix):
    return int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id LIKE :'p1'", prefix + "%"))


def test_corpus_is_big_and_varied(st):
    kinds = {k for s in SAMPLES for k in s["kinds"]}
    assert len(SAMPLES) >= 30, len(SAMPLES)
    assert len(kinds) >= 15, kinds
    for want in ("anthropic_key", "openai_key", "github_token", "gitlab_token", "slack_token", "stripe_key",
                 "google_api_key", "aws_access_key", "aws_secret_key", "npm_token", "huggingface_token", "jwt",
                 "authorization", "bearer_token", "url_password", "private_key", "secret", "email",
                 "acme_token", "employee_id"):
        assert want in kinds, want
    # each secret is distinct enough that a hit in a dump can only be a leak
    secrets = [x for s in SAMPLES for x in s["secrets"]] + FIELDS["secrets"]
    assert all(len(x) >= 10 for x in secrets) and len(set(secrets)) == len(secrets)


def test_secrets_never_reach_redis_or_postgres(st):
    before = redaction_metrics(st)
    # the series of every enabled kind exist from the start, custom ones included
    for k in ("anthropic_key", "secret", "email", "acme_token", "employee_id"):
        assert k in before, before
    n = len(SAMPLES)

    # 1. POST /events: one bulk array; POST /observability/event: one at a time
    evs = [{"event_type": "PostToolUse", "session_id": "rd-ev-%d" % i, "tool": "Bash",
            "payload": {"sample": s["name"], "command": s["text"]}} for i, s in enumerate(SAMPLES)]
    evs.append({"event_type": "Notification", "session_id": "rd-ev-fields", "payload": {"env": FIELDS["fields"]}})
    status, _, body = st.post(evs)
    assert status == 202 and len(body["ids"]) == n + 1, (status, body)
    for i, s in enumerate(SAMPLES):
        status, _, body = st.post({"event_type": "Notification", "session_id": "rd-obs-%d" % i,
                                   "message": s["text"]}, path="/observability/event")
        assert status == 202, (status, body)

    # 2. POST /hooks/claude-code: the text as a command and as its output
    for i, s in enumerate(SAMPLES):
        hook = {"session_id": "rd-hk-%d" % i, "transcript_path": "/home/dev/.claude/projects/x/rd.jsonl",
                "cwd": "/home/dev/shop", "hook_event_name": "PostToolUse", "permission_mode": "default",
                "tool_name": "Bash", "tool_use_id": "toolu_rd%d" % i,
                "tool_input": {"command": s["text"], "description": s["name"]},
                "tool_response": {"stdout": s["text"], "stderr": "", "interrupted": False}}
        status, _, body = st.post(hook, path="/hooks/claude-code")
        assert status == 200 and body == {}, (s["name"], status, body)
    hook = {"session_id": "rd-hk-fields", "cwd": "/home/dev/shop", "hook_event_name": "PostToolUse",
            "tool_name": "Bash", "tool_use_id": "toolu_rdf", "tool_input": {"env": FIELDS["fields"]},
            "tool_response": {"stdout": "ok"}}
    status, _, body = st.post(hook, path="/hooks/claude-code")
    assert status == 200, (status, body)

    # 3. POST /transcripts: the text as message text
    msgs = [{"uuid": "rd-tr-%d" % i, "role": "user" if i % 2 else "assistant", "text": s["text"],
             "timestamp": "2026-11-23T10:00:%02d.000Z" % (i % 60)} for i, s in enumerate(SAMPLES)]
    status, _, body = st.post({"session_id": "rd-tr", "agent_id": "main", "messages": msgs}, path="/transcripts")
    assert status == 202 and body["messages"] == n, (status, body)

    # 4. POST /v1/logs: the text as the log body and as an attribute
    now = time.time_ns()
    recs = [{"timeUnixNano": str(now + i), "body": {"stringValue": s["text"]},
             "attributes": [attr("session.id", "rd-ot-%d" % i), attr("event.name", "tool_output"),
                            attr("tool.output", s["text"])]} for i, s in enumerate(SAMPLES)]
    recs.append({"timeUnixNano": str(now + n), "body": {"stringValue": "claude_code.config"},
                 "attributes": [attr("session.id", "rd-ot-fields")] +
                               [attr(k, v) for k, v in FIELDS["fields"].items()]})
    status, _, body = st.post(otlp("rd-ot", recs), path="/v1/logs")
    assert status == 200 and body == {}, (status, body)

    # everything is stored
    want = {"rd-ev-": n + 1, "rd-obs-": n, "rd-hk-": n + 1, "rd-ot-": n + 1}
    for prefix, k in want.items():
        wait_for(lambda: count_events(st, prefix) == k, 20, what="%d events %s*" % (k, prefix))
    wait_for(lambda: st.scalar("SELECT count(*) FROM transcript_messages WHERE session_id = 'rd-tr'") == str(n),
             20, what="transcript messages")

    # no secret anywhere: Redis keys, Redis files, PostgreSQL
    rdump, keys = dump_redis(st)
    assert "agent_events" in keys and "agent_transcripts" in keys, keys
    rfiles = redis_files(st)
    assert "rd-ev-0" in rfiles, "append-only file not found"
    pdump = dump_pg(st)
    assert "rd-tr-0" in pdump and "rd-ot-fields" in pdump
    leaks = []
    for s in SAMPLES + [FIELDS]:
        for secret in s["secrets"]:
            for where, text in (("redis", rdump), ("redis files", rfiles), ("postgres", pdump)):
                if secret in text:
                    leaks.append((s["name"], where, secret))
    assert not leaks, leaks

    # each stored copy carries the markers of its kinds
    def stored(sql, prefix):
        # to_json: psql -At would print a multi-line value over several lines
        return {r[0]: json.loads(r[1]) for r in st.sql(sql, prefix + "%")}
    routes = {
        "/events": stored("SELECT session_id, to_json(coalesce(payload->>'command', '')) FROM agent_events "
                          "WHERE session_id LIKE :'p1'", "rd-ev-"),
        "/observability/event": stored("SELECT session_id, to_json(payload->>'message') FROM agent_events "
                                       "WHERE session_id LIKE :'p1'", "rd-obs-"),
        "/hooks": stored("SELECT session_id, to_json(payload::text) FROM agent_events "
                         "WHERE session_id LIKE :'p1'", "rd-hk-"),
        "/transcripts": stored("SELECT message_id, to_json(text) FROM transcript_messages "
                               "WHERE message_id LIKE :'p1'", "rd-tr-"),
        "/v1/logs": stored("SELECT session_id, to_json(payload::text) FROM agent_events "
                           "WHERE session_id LIKE :'p1'", "rd-ot-"),
    }
    prefix = {"/events": "rd-ev-", "/observability/event": "rd-obs-", "/hooks": "rd-hk-",
              "/transcripts": "rd-tr-", "/v1/logs": "rd-ot-"}
    missing = []
    for i, s in enumerate(SAMPLES):
        for route, rows in routes.items():
            text = rows.get("%s%d" % (prefix[route], i)) or ""
            for kind in s["kinds"]:
                if "[REDACTED:%s]" % kind not in text:
                    missing.append((s["name"], route, kind, text))
    for route in ("/events", "/hooks", "/v1/logs"):
        sess = prefix[route] + "fields"
        text = st.scalar("SELECT payload::text FROM agent_events WHERE session_id = :'p1'", sess)
        if text.count("[REDACTED:secret]") < 3:
            missing.append(("fields", sess, "secret", text))
    assert not missing, missing
    # the event says how many secrets it lost
    aws = [i for i, s in enumerate(SAMPLES) if s["name"] == "aws credentials file"][0]
    assert st.scalar("SELECT payload->>'redacted' FROM agent_events WHERE session_id = :'p1'", "rd-ev-%d" % aws) == "2"

    # the metric counted every marker written to the streams, by kind
    after = redaction_metrics(st)
    streams = st.redis_raw("XRANGE", "agent_events", "-", "+") + st.redis_raw("XRANGE", "agent_transcripts", "-", "+")
    written = {}
    for kind in re.findall(r"\[REDACTED:([a-z0-9_]+)\]", streams):
        written[kind] = written.get(kind, 0) + 1
    counted = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
    assert counted == written, (counted, written)
    for s in SAMPLES:
        for kind in s["kinds"]:
            assert counted.get(kind, 0) >= 5, (kind, counted)


def test_false_positives_left_alone(st):
    before = redaction_metrics(st)
    evs = [{"event_type": "PostToolUse", "session_id": "fp-%d" % i, "agent_id": "main",
            "payload": {"text": t}} for i, t in enumerate(PLAIN)]
    status, _, _ = st.post(evs)
    assert status == 202
    msgs = [{"uuid": "fp-tr-%d" % i, "role": "assistant", "text": t} for i, t in enumerate(PLAIN)]
    status, _, _ = st.post({"session_id": "fp-tr", "messages": msgs}, path="/transcripts")
    assert status == 202
    wait_for(lambda: count_events(st, "fp-") == len(PLAIN), 20, what="plain events")
    wait_for(lambda: st.scalar("SELECT count(*) FROM transcript_messages WHERE session_id = 'fp-tr'") ==
             str(len(PLAIN)), 20, what="plain transcript")
    changed = []
    # payload::text is one line; to_json keeps a multi-line text on one line for psql -At
    events = {r[0]: json.loads(r[1]) for r in st.sql("SELECT session_id, payload::text FROM agent_events "
                                                     "WHERE session_id LIKE 'fp-%'")}
    msgs = {r[0]: json.loads(r[1]) for r in st.sql("SELECT message_id, to_json(text) FROM transcript_messages "
                                                   "WHERE session_id = 'fp-tr'")}
    for i, t in enumerate(PLAIN):
        payload = events["fp-%d" % i]
        if payload.get("text") != t or "redacted" in payload:
            changed.append(("event", t, payload))
        if msgs["fp-tr-%d" % i] != t:
            changed.append(("transcript", t, msgs["fp-tr-%d" % i]))
    assert not changed, changed
    assert redaction_metrics(st) == before


def test_bad_pattern_stops_the_collector(st):
    bad = os.path.join(st.dir, "bad-redaction.yaml")
    with open(bad, "w") as f:
        f.write("patterns:\n  - name: fine\n    regex: 'ok[0-9]+'\n  - name: broken\n    regex: 'abc(['\n")
    env = st.env(OBS_COLLECTOR_REDACTION_FILE=bad, OBS_COLLECTOR_PORT=free_port())
    r = subprocess.run([os.path.join(BUILD, "collector")], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert 'bad-redaction.yaml:4: pattern \\"broken\\": invalid regular expression' in r.stderr, r.stderr
    with open(bad, "w") as f:
        f.write("disable: [jwt, passwords]\n")
    r = subprocess.run([os.path.join(BUILD, "collector")], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and 'unknown kind \\"passwords\\"' in r.stderr, r.stderr
