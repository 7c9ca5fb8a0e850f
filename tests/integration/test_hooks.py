"""Hooks (issue 5): build/agent-hook fed realistic Claude Code hook payloads
into the real collector -> rows mapped (sub-agent attribution, Pre/Post
correlation on tool_use_id, transcript tokens); the guard blocks with exit 2,
a one-line reason and a `blocked` row; collector down -> exit 0 fast and
spooled, back -> flushed once, in order; the installer round trip; the
collector's POST /hooks/claude-code and POST /v1/logs."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

from harness import BUILD, ROOT, Stack, free_port, request, wait_for

HOOK = os.path.join(BUILD, "agent-hook")
INSTALL = os.path.join(ROOT, "hooks", "install")


def setup():
    st = Stack("hooks")
    st.up()
    st.tmp = tempfile.mkdtemp(prefix="agent-obs-hooks-", dir=st.dir)
    st.home = os.path.join(st.tmp, "home", "dev")
    os.makedirs(st.home)
    return st


def teardown(st):
    st.close()


def hook_env(st, **extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_", "XDG_"))}
    e.update({
        "HOME": st.home,
        "OBS_COLLECTOR_URL": "http://127.0.0.1:%d" % st.collector_port,
        "OBS_HOOK_STATE_DIR": os.path.join(st.tmp, "state"),
        "OBS_HOOK_POLICY": os.path.join(ROOT, "config", "hook-policy.yaml"),
    })
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run_hook(st, payload, arg=None, env=None, timeout=10):
    cmd = [HOOK] + ([arg] if arg else [])
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    t0 = time.time()
    r = subprocess.run(cmd, input=data if isinstance(data, bytes) else data.encode(),
                       capture_output=True, env=env or hook_env(st), timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode(), time.time() - t0


def rows(st, session, cols="event_type"):
    return st.sql("SELECT %s FROM agent_events WHERE session_id = :'p1' ORDER BY ts, id" % cols, session)


def count(st, session):
    return int(st.scalar("SELECT count(*) FROM agent_events WHERE session_id = :'p1'", session))


def base(session, event, cwd="/home/dev/shop", **kw):
    d = {"session_id": session, "transcript_path": "/home/dev/.claude/projects/shop/%s.jsonl" % session,
         "cwd": cwd, "hook_event_name": event, "permission_mode": "default"}
    d.update(kw)
    return d


def assistant_line(msg_id, req_id, inp, out, cr=0, cc=0, model="claude-sonnet-4-5-20250929", text="ok"):
    return json.dumps({
        "parentUuid": str(uuid.uuid4()), "isSidechain": False, "type": "assistant",
        "uuid": str(uuid.uuid4()), "timestamp": "2026-11-23T10:00:00.000Z", "requestId": req_id,
        "message": {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": text}],
                    "usage": {"input_tokens": inp, "output_tokens": out,
                              "cache_read_input_tokens": cr, "cache_creation_input_tokens": cc}}})


def user_line(text):
    return json.dumps({"type": "user", "uuid": str(uuid.uuid4()),
                       "message": {"role": "user", "content": text}})


# ---------------------------------------------------------------------------
# core events through agent-hook

def test_core_events_mapped(st):
    s = "hk-core-" + uuid.uuid4().hex[:8]
    tp = os.path.join(st.tmp, s + ".jsonl")
    atp = os.path.join(st.tmp, s + "-agent.jsonl")
    with open(tp, "w") as f:
        f.write(user_line("fix the failing test") + "\n")
        # one API response written as two lines (two content blocks): counted once
        f.write(assistant_line("msg_01", "req_01", 1200, 80, cr=5000, cc=300) + "\n")
        f.write(assistant_line("msg_01", "req_01", 1200, 80, cr=5000, cc=300, text="more") + "\n")
        f.write(assistant_line("msg_02", "req_02", 300, 40, cr=6000, cc=0) + "\n")
    with open(atp, "w") as f:
        f.write(assistant_line("msg_a1", "req_a1", 900, 120, model="claude-haiku-4-5") + "\n")
    tu_bash, tu_edit, tu_sub = "toolu_01" + uuid.uuid4().hex[:20], "toolu_02" + uuid.uuid4().hex[:20], \
        "toolu_03" + uuid.uuid4().hex[:20]
    events = [
        base(s, "SessionStart", source="startup", model="claude-sonnet-4-5-20250929"),
        base(s, "UserPromptSubmit", prompt="The checkout test fails, please fix it", prompt_id="p-1"),
        base(s, "PreToolUse", tool_name="Bash", tool_use_id=tu_bash,
             tool_input={"command": "pytest -q tests/test_checkout.py", "description": "Run the failing test"}),
        base(s, "PostToolUse", tool_name="Bash", tool_use_id=tu_bash, duration_ms=1834,
             tool_input={"command": "pytest -q tests/test_checkout.py", "description": "Run the failing test"},
             tool_response={"stdout": "1 failed, 12 passed in 1.71s", "stderr": "", "interrupted": False,
                            "isImage": False}),
        base(s, "PreToolUse", tool_name="Edit", tool_use_id=tu_edit,
             tool_input={"file_path": "/home/dev/shop/checkout.py", "old_string": "total =",
                         "new_string": "total = round("}),
        base(s, "PostToolUseFailure", tool_name="Edit", tool_use_id=tu_edit, duration_ms=9,
             tool_input={"file_path": "/home/dev/shop/checkout.py"},
             error="String to replace not found in file.", is_interrupt=False),
        base(s, "Notification", message="Claude needs your permission to use Bash", title="Claude Code",
             notification_type="permission_prompt"),
        base(s, "SubagentStart", agent_id="agent-7f3a", agent_type="Explore"),
        base(s, "PreToolUse", agent_id="agent-7f3a", agent_type="Explore", tool_name="Grep",
             tool_use_id=tu_sub, tool_input={"pattern": "def total", "path": "/home/dev/shop"}),
        base(s, "PostToolUse", agent_id="agent-7f3a", agent_type="Explore", tool_name="Grep",
             tool_use_id=tu_sub, duration_ms=41, tool_input={"pattern": "def total"},
             tool_response={"mode": "files_with_matches", "filenames": ["checkout.py"], "numFiles": 1}),
        base(s, "SubagentStop", agent_id="agent-7f3a", agent_type="Explore", agent_transcript_path=atp,
             stop_hook_active=False, last_assistant_message="total() is defined in checkout.py:41"),
        base(s, "PreCompact", trigger="auto", custom_instructions=""),
        dict(base(s, "Stop", stop_hook_active=False, last_assistant_message="Fixed: rounding in total()."),
             transcript_path=tp),
        base(s, "SessionEnd", reason="prompt_input_exit"),
    ]
    for ev in events:
        rc, out, err, _ = run_hook(st, ev)
        assert rc == 0 and out == "", (ev["hook_event_name"], rc, out, err)
    wait_for(lambda: count(st, s) == len(events), 10, what="%d rows" % len(events))
    got = rows(st, s, "event_type, agent_id, agent_role, coalesce(parent_agent_id,''), coalesce(tool,''), "
                      "status, coalesce(latency_ms::text,''), coalesce(payload->>'tool_use_id',''), "
                      "source_app, payload->>'via'")
    by_type = {}
    for r in got:
        by_type.setdefault(r[0], []).append(r[1:8])
    assert sorted(by_type) == sorted({e["hook_event_name"] for e in events}), by_type.keys()
    for r in got:
        assert r[8] == "claude-code" and r[9] == "agent-hook", r
    # main-agent tool calls: Pre/Post correlate on tool_use_id
    pre = [r for r in by_type["PreToolUse"] if r[6] == tu_bash]
    post = [r for r in by_type["PostToolUse"] if r[6] == tu_bash]
    assert pre == [["main", "main", "", "Bash", "success", "", tu_bash]], pre
    assert post == [["main", "main", "", "Bash", "success", "1834", tu_bash]], post
    fail = by_type["PostToolUseFailure"]
    assert fail == [["main", "main", "", "Edit", "error", "9", tu_edit]], fail
    # sub-agent attribution
    sub = [r for r in got if r[1] == "agent-7f3a"]
    assert sorted(r[0] for r in sub) == ["PostToolUse", "PreToolUse", "SubagentStart", "SubagentStop"], sub
    for r in sub:
        assert r[2] == "Explore" and r[3] == "main", r
    assert [r for r in sub if r[0] == "PostToolUse"][0][4:8] == ["Grep", "success", "41", tu_sub]
    # typed payload fields
    p = dict(st.sql("SELECT event_type, payload::text FROM agent_events WHERE session_id = :'p1' "
                    "AND event_type IN ('UserPromptSubmit','Notification','SessionEnd','SessionStart','PreCompact')", s))
    assert json.loads(p["UserPromptSubmit"])["prompt"] == "The checkout test fails, please fix it"
    assert json.loads(p["UserPromptSubmit"])["cwd"] == "/home/dev/shop"
    n = json.loads(p["Notification"])
    assert n["message"].startswith("Claude needs your permission") and n["notification_type"] == "permission_prompt"
    assert json.loads(p["SessionEnd"])["reason"] == "prompt_input_exit"
    assert json.loads(p["SessionStart"])["source"] == "startup"
    assert json.loads(p["PreCompact"])["trigger"] == "auto"
    # transcript tokens: Stop (main transcript, msg_01 counted once) and SubagentStop (its own)
    tok = st.sql("SELECT event_type, tokens_input, tokens_output, tokens_cache_read, tokens_cache_creation, "
                 "payload->>'model', payload->'transcript'->>'responses' FROM agent_events "
                 "WHERE session_id = :'p1' AND event_type IN ('Stop','SubagentStop') ORDER BY event_type", s)
    assert tok == [["Stop", "1500", "120", "11000", "300", "claude-sonnet-4-5-20250929", "2"],
                   ["SubagentStop", "900", "120", "0", "0", "claude-haiku-4-5", "1"]], tok
    # the transcript messages went to the history API (POST /transcripts)
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM transcript_messages WHERE session_id = :'p1'", s)) == 5,
             10, what="5 transcript messages")
    msgs = st.sql("SELECT agent_id, role, left(text, 20), coalesce(tokens_input::text,'') FROM transcript_messages "
                  "WHERE session_id = :'p1' ORDER BY agent_id, ts, tokens_input NULLS LAST", s)
    assert sorted(msgs) == sorted([["", "user", "fix the failing test", ""], ["", "assistant", "ok", "1200"],
                                   ["", "assistant", "more", ""], ["", "assistant", "ok", "300"],
                                   ["agent-7f3a", "assistant", "ok", "900"]]), msgs
    # and the Stop hook's transcript is searchable through the history API
    import urllib.parse
    from harness import request
    q = urllib.parse.quote('"fix the failing test"')
    status, _, body = request(st.collector_port, "GET", "/transcripts/search?q=%s&session_id=%s" % (q, s))
    assert status == 200 and [h["role"] for h in body["hits"]] == ["user"], (status, body)


def test_transcript_read_incrementally(st):
    s = "hk-tr-" + uuid.uuid4().hex[:8]
    tp = os.path.join(st.tmp, s + ".jsonl")
    with open(tp, "w") as f:
        f.write(assistant_line("m1", "r1", 100, 10) + "\n")
        f.write(assistant_line("m2", "r2", 200, 20) + "\n")
        f.write(assistant_line("m3", "r3", 999, 99)[:40])  # partial line: not yet
    stop = dict(base(s, "Stop", stop_hook_active=False), transcript_path=tp)
    assert run_hook(st, stop)[0] == 0
    with open(tp, "a") as f:
        f.write(assistant_line("m3", "r3", 999, 99)[40:] + "\n")
        f.write(assistant_line("m2", "r2", 200, 20, text="second block") + "\n")  # m2 again: duplicate
        f.write(assistant_line("m4", "r4", 1, 2) + "\n")
    assert run_hook(st, stop)[0] == 0
    assert run_hook(st, stop)[0] == 0  # nothing new
    wait_for(lambda: count(st, s) == 3, 10, what="3 Stop rows")
    got = rows(st, s, "coalesce(tokens_input::text,'-'), coalesce(tokens_output::text,'-'), "
                      "payload->'transcript'->>'responses'")
    assert got == [["300", "30", "2"], ["1000", "101", "2"], ["-", "-", "0"]], got


def test_transcript_messages_sent_after_an_outage(st):
    s = "hk-trout-" + uuid.uuid4().hex[:8]
    tp = os.path.join(st.tmp, s + ".jsonl")
    secret = "sk-ant-api03-" + "Zz9" * 10
    with open(tp, "w") as f:
        f.write(user_line("deploy with ANTHROPIC_API_KEY=%s please" % secret) + "\n")
        f.write(assistant_line("m1", "r1", 10, 5, text="Deploying now.") + "\n")
    spool = os.path.join(st.tmp, "spool-trout")
    down = hook_env(st, OBS_HOOK_SPOOL_DIR=spool, OBS_COLLECTOR_URL="http://127.0.0.1:%d" % free_port())
    stop = dict(base(s, "Stop", stop_hook_active=False), transcript_path=tp)
    rc, _, _, dt = run_hook(st, stop, env=down)
    assert rc == 0 and dt < 0.5
    with open(tp, "a") as f:
        f.write(assistant_line("m2", "r2", 20, 7, text="Done.") + "\n")
    assert run_hook(st, stop, env=hook_env(st, OBS_HOOK_SPOOL_DIR=spool))[0] == 0
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM transcript_messages WHERE session_id = :'p1'", s)) == 3,
             10, what="3 messages")
    texts = [r[0] for r in st.sql("SELECT text FROM transcript_messages WHERE session_id = :'p1' ORDER BY ts", s)]
    assert secret not in " ".join(texts) and any("[REDACTED:anthropic_key]" in t for t in texts), texts
    wait_for(lambda: count(st, s) == 2, 10, what="2 Stop rows")  # the spooled Stop went too


def test_all_31_event_names_accepted(st):
    names = ["SessionStart", "Setup", "InstructionsLoaded", "UserPromptSubmit", "UserPromptExpansion",
             "MessageDisplay", "PreToolUse", "PermissionRequest", "PermissionDenied", "PostToolUse",
             "PostToolUseFailure", "PostToolBatch", "Notification", "SubagentStart", "SubagentStop",
             "TaskCreated", "TaskCompleted", "Stop", "StopFailure", "TeammateIdle", "ConfigChange",
             "CwdChanged", "DirectoryAdded", "FileChanged", "WorktreeCreate", "WorktreeRemove",
             "PreCompact", "PostCompact", "SessionEnd", "Elicitation", "ElicitationResult"]
    s = "hk-all-" + uuid.uuid4().hex[:8]
    for i, n in enumerate(names):
        ev = base(s, n, tool_name="Read", tool_input={"file_path": "/home/dev/shop/README.md"})
        if i % 2:  # the name may also come only from the command line
            del ev["hook_event_name"]
        rc, out, err, _ = run_hook(st, ev, arg=n)
        assert rc == 0, (n, rc, err)
    wait_for(lambda: count(st, s) == 31, 15, what="31 rows")
    got = sorted(r[0] for r in rows(st, s))
    assert got == sorted(names), got
    st_rows = dict(st.sql("SELECT event_type, status FROM agent_events WHERE session_id = :'p1'", s))
    assert st_rows["PostToolUseFailure"] == "error" and st_rows["StopFailure"] == "error"
    assert st_rows["PermissionDenied"] == "denied"


def test_secrets_redacted_before_sending(st):
    s = "hk-red-" + uuid.uuid4().hex[:8]
    key = "sk-ant-api03-" + "Ab3" * 12
    ev = base(s, "PostToolUse", tool_name="Bash", tool_use_id="toolu_red",
              tool_input={"command": "curl -H 'Authorization: Bearer ghp_%s' https://api.github.com" % ("x1Y2" * 9)},
              tool_response={"stdout": "ANTHROPIC_API_KEY=%s\nDATABASE_URL=postgres://app:hunter2pass@db:5432/shop\n"
                                       "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n" % key, "stderr": ""})
    assert run_hook(st, ev)[0] == 0
    wait_for(lambda: count(st, s) == 1, 10, what="row")
    text = st.scalar("SELECT payload::text FROM agent_events WHERE session_id = :'p1'", s)
    for secret in (key, "x1Y2x1Y2", "hunter2pass", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in text, (secret, text)
    for kind in ("[REDACTED:", "url_password", "aws_access_key"):
        assert kind in text, text
    assert json.loads(text)["redacted"] >= 4


def test_unparsable_input_exits_0_and_is_recorded(st):
    s = "hk-bad-" + uuid.uuid4().hex[:8]
    rc, out, err, _ = run_hook(st, b'{"session_id": "%s", "hook_event_name": "Stop", oops' % s.encode(), arg="Stop")
    assert rc == 0 and out == "", (rc, out, err)
    wait_for(lambda: int(st.scalar("SELECT count(*) FROM agent_events WHERE payload->>'raw_input' LIKE :'p1'",
                                   "%" + s + "%")) == 1, 10, what="raw_input row")


# ---------------------------------------------------------------------------
# the guard

BLOCKED = ["rm -rf /", "sudo rm -rf --no-preserve-root /", "rm -fr /*", "rm -r -f ~",
           "cd / && rm -rf *", "bash -c 'rm -rf $HOME'", "mkfs.ext4 /dev/sda1",
           "dd if=/dev/zero of=/dev/nvme0n1 bs=1M", ":(){ :|:& };:", "chmod -R 777 /"]
ALLOWED = ["rm -rf ./build", "rm -rf node_modules", "rm -rf /tmp/some-dir", "ls -la",
           "git commit -m \"$(cat <<'EOF'\nguard: block rm -rf /\nEOF\n)\""]


def test_guard_blocks_with_exit_2_reason_and_blocked_row(st):
    s = "hk-guard-" + uuid.uuid4().hex[:8]
    for i, cmd in enumerate(BLOCKED):
        ev = base(s, "PreToolUse", tool_name="Bash", tool_use_id="toolu_b%d" % i,
                  tool_input={"command": cmd, "description": "cleanup"})
        rc, out, err, _ = run_hook(st, ev)
        assert rc == 2, (cmd, rc, out, err)
        lines = err.strip().split("\n")
        assert len(lines) == 1 and "agent-obs guard blocked" in lines[0], (cmd, err)
        d = json.loads(out)["hookSpecificOutput"]
        assert d["hookEventName"] == "PreToolUse" and d["permissionDecision"] == "deny", out
        assert d["permissionDecisionReason"] == lines[0]
    for i, cmd in enumerate(ALLOWED):
        ev = base(s, "PreToolUse", tool_name="Bash", tool_use_id="toolu_a%d" % i, tool_input={"command": cmd})
        rc, out, err, _ = run_hook(st, ev)
        assert rc == 0 and out == "", (cmd, rc, out, err)
    # a Write to a disk device is blocked too
    ev = base(s, "PreToolUse", tool_name="Write", tool_use_id="toolu_w",
              tool_input={"file_path": "/dev/sda", "content": "x"})
    assert run_hook(st, ev)[0] == 2
    total = len(BLOCKED) + len(ALLOWED) + 1
    wait_for(lambda: count(st, s) == total, 10, what="%d rows" % total)
    got = st.sql("SELECT payload->>'tool_use_id', status, payload->'guard'->>'rule', payload->>'blocked' "
                 "FROM agent_events WHERE session_id = :'p1' ORDER BY 1", s)
    blocked = [r for r in got if r[1] == "blocked"]
    assert len(blocked) == len(BLOCKED) + 1, got
    assert all(r[3] == "true" and r[2] for r in blocked), blocked
    rules = {r[0]: r[2] for r in blocked}
    assert rules["toolu_b0"] == "rm-root" and rules["toolu_b6"] == "disk-format" and \
        rules["toolu_b8"] == "fork-bomb" and rules["toolu_w"] == "disk-write", rules
    assert all(r[1] == "success" for r in got if r[0].startswith("toolu_a")), got


def test_guard_blocks_even_when_collector_is_down(st):
    spool = os.path.join(st.tmp, "spool-guard")
    env = hook_env(st, OBS_COLLECTOR_URL="http://127.0.0.1:%d" % free_port(), OBS_HOOK_SPOOL_DIR=spool)
    ev = base("hk-guard-down", "PreToolUse", tool_name="Bash", tool_input={"command": "sudo rm -rf ~/"})
    rc, out, err, dt = run_hook(st, ev, env=env)
    assert rc == 2 and json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert len(err.strip().split("\n")) == 1, err
    assert len([f for f in os.listdir(spool) if f.endswith(".json")]) == 1
    shutil.rmtree(spool)


def test_user_policy_rule_and_broken_policy_falls_back(st):
    pol = os.path.join(st.tmp, "policy.yaml")
    with open(pol, "w") as f:
        f.write("deny:\n  - name: no-force-push\n    command: 'git[[:space:]]+push.*--force'\n"
                "    reason: force-pushing rewrites shared history\n")
    env = hook_env(st, OBS_HOOK_POLICY=pol)
    ev = base("hk-pol", "PreToolUse", tool_name="Bash", tool_input={"command": "git push --force origin main"})
    rc, out, err, _ = run_hook(st, ev, env=env)
    assert rc == 2 and "no-force-push" in err, (rc, err)
    with open(pol, "w") as f:
        f.write("deny: [ {name: x, command: '(' } ]\n")  # bad regex: built-in rules still apply
    env = hook_env(st, OBS_HOOK_POLICY=pol)
    ev["tool_input"]["command"] = "rm -rf /"
    rc, out, err, _ = run_hook(st, ev, env=env)
    assert rc == 2 and "rm-root" in err, (rc, err)


# ---------------------------------------------------------------------------
# spool

def spooled(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".json")) if os.path.isdir(d) else []


def test_collector_down_spools_then_flushes_in_order_once(st):
    s = "hk-spool-" + uuid.uuid4().hex[:8]
    spool = os.path.join(st.tmp, "spool-down")
    env = hook_env(st, OBS_HOOK_SPOOL_DIR=spool)
    st.kill("collector", signal.SIGTERM)
    try:
        for i in range(6):
            ev = base(s, "PostToolUse", tool_name="Bash", tool_use_id="toolu_s%d" % i, duration_ms=i,
                      tool_input={"command": "echo %d" % i}, tool_response={"stdout": str(i)})
            rc, out, err, dt = run_hook(st, ev, env=env)
            assert rc == 0 and out == "", (rc, out, err)
            assert dt < 0.5, "hook took %.3fs with the collector down" % dt
        assert len(spooled(spool)) == 6, spooled(spool)
        # a collector that accepts but never answers: the timeout (300 ms) applies
        hung = socket.socket()
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        env_h = dict(env, OBS_COLLECTOR_URL="http://127.0.0.1:%d" % hung.getsockname()[1])
        rc, out, err, dt = run_hook(st, base(s, "Notification", message="waiting"), env=env_h)
        hung.close()
        assert rc == 0 and dt < 0.5, (rc, dt, err)
        assert len(spooled(spool)) == 7
    finally:
        st.start("collector")
    saved = {f: open(os.path.join(spool, f)).read() for f in spooled(spool)}
    # the next hook that reaches the collector sends the spool first, then itself
    rc, out, err, _ = run_hook(st, base(s, "Stop", stop_hook_active=False), env=env)
    assert rc == 0, err
    assert spooled(spool) == []
    wait_for(lambda: count(st, s) == 8, 10, what="8 rows")
    order = [r[0] for r in st.sql("SELECT coalesce(payload->>'tool_use_id', event_type) FROM agent_events "
                                   "WHERE session_id = :'p1' ORDER BY ts, received_at", s)]
    assert order == ["toolu_s%d" % i for i in range(6)] + ["Notification", "Stop"], order
    # a lost answer means the same batch comes again: stored once
    for f, text in saved.items():
        with open(os.path.join(spool, f), "w") as fh:
            fh.write(text)
    rc, out, err, _ = run_hook(st, base(s, "SessionEnd", reason="other"), env=env)
    assert rc == 0 and spooled(spool) == []
    wait_for(lambda: count(st, s) == 9, 10, what="9 rows")
    time.sleep(1.0)
    assert count(st, s) == 9
    assert int(st.scalar("SELECT count(DISTINCT id) FROM agent_events WHERE session_id = :'p1'", s)) == 9


def test_concurrent_hooks_flush_without_duplicates(st):
    s = "hk-conc-" + uuid.uuid4().hex[:8]
    spool = os.path.join(st.tmp, "spool-conc")
    down = hook_env(st, OBS_HOOK_SPOOL_DIR=spool, OBS_COLLECTOR_URL="http://127.0.0.1:%d" % free_port())
    for i in range(40):
        assert run_hook(st, base(s, "PostToolUse", tool_name="Read", tool_use_id="toolu_c%d" % i),
                        env=down)[0] == 0
    assert len(spooled(spool)) == 40
    up = hook_env(st, OBS_HOOK_SPOOL_DIR=spool)
    results = []

    def one(i):
        results.append(run_hook(st, base(s, "PreToolUse", tool_name="Read", tool_use_id="toolu_p%d" % i),
                                env=up)[0])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0] * 12
    # one more (a late appender may have queued behind the last flush)
    assert run_hook(st, base(s, "Stop"), env=up)[0] == 0
    wait_for(lambda: count(st, s) == 53, 15, what="53 rows")
    time.sleep(1.0)
    assert count(st, s) == 53
    assert int(st.scalar("SELECT count(DISTINCT id) FROM agent_events WHERE session_id = :'p1'", s)) == 53
    assert spooled(spool) == []


def test_spool_is_bounded(st):
    spool = os.path.join(st.tmp, "spool-bound")
    env = hook_env(st, OBS_HOOK_SPOOL_DIR=spool, OBS_HOOK_SPOOL_MAX_FILES=5,
                   OBS_COLLECTOR_URL="http://127.0.0.1:%d" % free_port())
    for i in range(8):
        rc, _, err, _ = run_hook(st, base("hk-bound", "PostToolUse", tool_use_id="toolu_%d" % i), env=env)
        assert rc == 0
    files = spooled(spool)
    assert len(files) == 5, files
    kept = [json.loads(open(os.path.join(spool, f)).read())["payload"]["tool_use_id"] for f in files]
    assert kept == ["toolu_%d" % i for i in range(3, 8)], kept  # the oldest were dropped
    shutil.rmtree(spool)


def test_emit_from_scripts(st):
    s = "hk-emit-" + uuid.uuid4().hex[:8]
    r = subprocess.run([HOOK, "emit", "--type", "DeployFinished", "--session", s, "--agent", "ci",
                        "--latency-ms", "5100", "--payload", '{"env":"staging","ok":true}'],
                       capture_output=True, text=True, env=hook_env(st))
    assert r.returncode == 0, r.stderr
    eid = r.stdout.strip()
    wait_for(lambda: count(st, s) == 1, 10, what="row")
    row = st.sql("SELECT id, event_type, agent_id, latency_ms, payload->>'env' FROM agent_events "
                 "WHERE session_id = :'p1'", s)[0]
    assert row == [eid, "DeployFinished", "ci", "5100", "staging"], row
    r = subprocess.run([HOOK, "emit", "--type", "bad type!", "--session", s], capture_output=True, text=True,
                       env=hook_env(st))
    assert r.returncode == 64 and "event_type" in r.stderr, (r.returncode, r.stderr)
    r = subprocess.run([HOOK, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "OBS_COLLECTOR_URL" in r.stdout and "OBS_HOOK_SPOOL_DIR" in r.stdout


def test_libcurl_transport(st):
    """OBS_HOOK_TRANSPORT=curl (and every https:// URL) sends through libcurl, loaded on demand."""
    s = "hk-curl-" + uuid.uuid4().hex[:8]
    env = hook_env(st, OBS_HOOK_TRANSPORT="curl", OBS_HOOK_SPOOL_DIR=os.path.join(st.tmp, "spool-curl"))
    rc, out, err, _ = run_hook(st, base(s, "UserPromptSubmit", prompt="via libcurl"), env=env)
    assert rc == 0 and err == "", (rc, err)
    wait_for(lambda: count(st, s) == 1, 10, what="row")
    down = dict(env, OBS_COLLECTOR_URL="http://127.0.0.1:%d" % free_port())
    rc, out, err, dt = run_hook(st, base(s, "Stop"), env=down)
    assert rc == 0 and dt < 0.5 and len(spooled(env["OBS_HOOK_SPOOL_DIR"])) == 1, (rc, dt, err)
    rc, out, err, _ = run_hook(st, base(s, "SessionEnd", reason="other"), env=env)
    assert rc == 0
    wait_for(lambda: count(st, s) == 3, 10, what="3 rows")


# ---------------------------------------------------------------------------
# installer

def install(*args, home=None):
    env = dict(os.environ)
    if home:
        env["HOME"] = home
    r = subprocess.run([INSTALL] + list(args), capture_output=True, text=True, env=env)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def check_shape(settings, http=False):
    hooks = settings["hooks"]
    assert isinstance(hooks, dict)
    for event, groups in hooks.items():
        assert isinstance(groups, list) and groups, event
        for g in groups:
            assert set(g) <= {"matcher", "hooks"} and isinstance(g["hooks"], list), g
            for h in g["hooks"]:
                assert h["type"] in ("command", "http"), h
                assert (h["type"] == "command" and isinstance(h["command"], str)) or \
                    (h["type"] == "http" and h["url"].startswith("http")), h


def test_installer_round_trip(st):
    proj = os.path.join(st.tmp, "proj")
    os.makedirs(os.path.join(proj, ".claude"))
    original = {
        "model": "opus",
        "permissions": {"allow": ["Bash(npm test:*)"]},
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "~/bin/my-guard.sh"}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "say done"}]}],
        },
    }
    path = os.path.join(proj, ".claude", "settings.json")
    with open(path, "w") as f:
        json.dump(original, f, indent=2)
    install("--project", proj)
    first = open(path).read()
    s = json.loads(first)
    check_shape(s)
    assert s["model"] == "opus" and s["permissions"] == original["permissions"]
    assert len(s["hooks"]) == 31, sorted(s["hooks"])
    pre = s["hooks"]["PreToolUse"]
    assert pre[0] == original["hooks"]["PreToolUse"][0], pre  # the user's entry is kept, first
    ours = [h for g in pre for h in g["hooks"] if "agent-hook" in h.get("command", "")]
    assert len(ours) == 1 and ours[0]["command"].endswith("agent-hook PreToolUse"), ours
    assert os.access(ours[0]["command"].split()[0].strip("'"), os.X_OK)
    assert s["hooks"]["Stop"][0] == original["hooks"]["Stop"][0]
    install("--project", proj)
    assert open(path).read() == first  # idempotent
    install("--project", proj, "--http", "--url", "http://127.0.0.1:%d" % st.collector_port)
    s = json.loads(open(path).read())
    check_shape(s, http=True)
    cmds = [h for gs in s["hooks"].values() for g in gs for h in g["hooks"] if "agent-hook" in h.get("command", "")]
    assert cmds == [], cmds  # switching mode replaces ours
    urls = [h["url"] for gs in s["hooks"].values() for g in gs for h in g["hooks"] if h["type"] == "http"]
    assert len(urls) == 31 and all(u.endswith("/hooks/claude-code") for u in urls)
    install("--project", proj, "--uninstall")
    assert json.loads(open(path).read()) == original
    # --user writes ~/.claude/settings.json (created when missing)
    home = os.path.join(st.tmp, "userhome")
    os.makedirs(home)
    install("--user", home=home)
    us = json.loads(open(os.path.join(home, ".claude", "settings.json")).read())
    check_shape(us)
    install("--user", "--uninstall", home=home)
    assert json.loads(open(os.path.join(home, ".claude", "settings.json")).read()) == {}
    # invalid JSON is never overwritten
    with open(path, "w") as f:
        f.write("{not json")
    r = subprocess.run([INSTALL, "--project", proj], capture_output=True, text=True)
    assert r.returncode != 0 and open(path).read() == "{not json"


def test_installed_command_runs(st):
    """The command string the installer writes, run through a shell like Claude Code does."""
    proj = os.path.join(st.tmp, "proj-run")
    os.makedirs(proj)
    install("--project", proj)
    s = json.loads(open(os.path.join(proj, ".claude", "settings.json")).read())
    cmd = s["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
    sess = "hk-inst-" + uuid.uuid4().hex[:8]
    r = subprocess.run(["sh", "-c", cmd], input=json.dumps(base(sess, "UserPromptSubmit", prompt="hi")),
                       capture_output=True, text=True, env=hook_env(st))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: count(st, sess) == 1, 10, what="row")


# ---------------------------------------------------------------------------
# collector endpoints

def test_http_hook_endpoint(st):
    s = "hk-http-" + uuid.uuid4().hex[:8]
    ok = base(s, "PreToolUse", tool_name="Bash", tool_use_id="toolu_h1",
              tool_input={"command": "npm test", "description": "Run tests"})
    before = st.metrics(st.collector_port)["agent_obs_events_accepted_total"]
    status, _, body = st.post(ok, path="/hooks/claude-code")
    assert status == 200 and body == {}, (status, body)
    assert st.metrics(st.collector_port)["agent_obs_events_accepted_total"] == before + 1
    bad = base(s, "PreToolUse", tool_name="Bash", tool_use_id="toolu_h2",
               tool_input={"command": "sudo rm -rf --no-preserve-root /"})
    status, _, body = st.post(bad, path="/hooks/claude-code")
    assert status == 200, (status, body)
    d = body["hookSpecificOutput"]
    assert d["permissionDecision"] == "deny" and "rm-no-preserve-root" in d["permissionDecisionReason"], d
    post = base(s, "PostToolUse", tool_name="Bash", tool_use_id="toolu_h1", duration_ms=2300,
                agent_id="agent-9", agent_type="general-purpose",
                tool_input={"command": "npm test"}, tool_response={"stdout": "ok", "stderr": ""})
    status, _, body = st.post(post, path="/hooks/claude-code")
    assert status == 200 and body == {}, (status, body)
    status, _, body = st.post(base(s, "UserPromptSubmit", prompt="use key sk-proj-AbCdEf0123456789AbCdEf0123"),
                              path="/hooks/claude-code")
    assert status == 200
    wait_for(lambda: count(st, s) == 4, 10, what="4 rows")
    got = rows(st, s, "event_type, status, coalesce(tool,''), agent_id, coalesce(latency_ms::text,''), "
                      "payload->>'tool_use_id', payload->>'via'")
    assert ["PreToolUse", "success", "Bash", "main", "", "toolu_h1", "http"] in got, got
    assert ["PreToolUse", "blocked", "Bash", "main", "", "toolu_h2", "http"] in got, got
    assert ["PostToolUse", "success", "Bash", "agent-9", "2300", "toolu_h1", "http"] in got, got
    prompt = st.scalar("SELECT payload->>'prompt' FROM agent_events WHERE session_id = :'p1' "
                       "AND event_type = 'UserPromptSubmit'", s)
    assert prompt == "use key [REDACTED:openai_key]", prompt
    # protocol errors
    st_, _, _ = request(st.collector_port, "GET", "/hooks/claude-code")
    assert st_ == 405
    st_, _, _ = st.post("<x/>", path="/hooks/claude-code", ctype="application/xml")
    assert st_ == 415
    st_, _, b = st.post("{oops", path="/hooks/claude-code")
    assert st_ == 400, b
    st_, _, b = st.post("[1,2]", path="/hooks/claude-code")
    assert st_ == 400, b


def otlp_body(session, prompt_id):
    def attr(k, v):
        if isinstance(v, bool):
            return {"key": k, "value": {"boolValue": v}}
        if isinstance(v, int):
            return {"key": k, "value": {"intValue": str(v)}}
        if isinstance(v, float):
            return {"key": k, "value": {"doubleValue": v}}
        return {"key": k, "value": {"stringValue": v}}

    now = time.time_ns()
    common = [attr("session.id", session), attr("user.id", "u-1f2e"), attr("organization.id", "org-9"),
              attr("terminal.type", "vscode"), attr("prompt.id", prompt_id)]

    def rec(name, t, attrs):
        return {"timeUnixNano": str(t), "observedTimeUnixNano": str(t + 1000), "severityNumber": 9,
                "severityText": "INFO", "body": {"stringValue": "claude_code." + name},
                "attributes": common + [attr("event.name", name),
                                        attr("event.timestamp", "2026-11-23T10:00:00.000Z")] + attrs}
    return {"resourceLogs": [{
        "resource": {"attributes": [attr("service.name", "claude-code"), attr("service.version", "2.0.50"),
                                    attr("os.type", "linux")]},
        "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events", "version": "2.0.50"},
                       "logRecords": [
            rec("user_prompt", now, [attr("prompt_length", 42), attr("prompt", "deploy with token=abcdef123456")]),
            rec("api_request", now + 1, [attr("model", "claude-sonnet-4-5-20250929"), attr("cost_usd", 0.0123),
                                         attr("duration_ms", 4210), attr("input_tokens", 1520),
                                         attr("output_tokens", 318), attr("cache_read_tokens", 20480),
                                         attr("cache_creation_tokens", 1024)]),
            rec("tool_result", now + 2, [attr("tool_name", "Bash"), attr("success", "false"),
                                         attr("duration_ms", 1250), attr("error", "Exit code 1"),
                                         attr("decision", "accept"), attr("source", "config")]),
            rec("tool_result", now + 3, [attr("tool_name", "Read"), attr("success", "true"),
                                         attr("duration_ms", 12)]),
            rec("api_error", now + 4, [attr("model", "claude-sonnet-4-5-20250929"), attr("error", "overloaded"),
                                       attr("status_code", "529"), attr("duration_ms", 800), attr("attempt", 1)]),
        ]}]}]}


def test_otlp_logs_endpoint(st):
    s = "hk-otlp-" + uuid.uuid4().hex[:8]
    body = otlp_body(s, "p-" + s)
    status, _, resp = st.post(body, path="/v1/logs")
    assert status == 200 and resp == {}, (status, resp)
    status, _, resp = st.post(body, path="/v1/logs")  # an exporter retry: same events
    assert status == 200
    wait_for(lambda: count(st, s) == 5, 10, what="5 rows")
    time.sleep(1.0)
    assert count(st, s) == 5
    got = {(r[0], r[1]): r for r in rows(
        st, s, "event_type, coalesce(tool,''), status, coalesce(latency_ms::text,''), "
               "coalesce(tokens_input::text,''), coalesce(tokens_output::text,''), "
               "coalesce(tokens_cache_read::text,''), coalesce(tokens_cache_creation::text,''), "
               "coalesce(cost_usd::text,''), coalesce(payload->>'model',''), source_app")}
    assert got[("claude_code.api_request", "")][2:] == [
        "success", "4210", "1520", "318", "20480", "1024", "0.0123", "claude-sonnet-4-5-20250929",
        "claude-code"], got
    assert got[("claude_code.tool_result", "Bash")][2:4] == ["error", "1250"], got
    assert got[("claude_code.tool_result", "Read")][2:4] == ["success", "12"], got
    assert got[("claude_code.api_error", "")][2] == "error"
    prompt = st.scalar("SELECT payload->>'prompt' FROM agent_events WHERE session_id = :'p1' "
                       "AND event_type = 'claude_code.user_prompt'", s)
    assert prompt == "deploy with token=[REDACTED:secret]", prompt
    res = json.loads(st.scalar("SELECT payload->'resource'::text FROM agent_events WHERE session_id = :'p1' "
                               "AND event_type = 'claude_code.api_request'", s))
    assert res["service.version"] == "2.0.50", res
    # protobuf is not supported; a non-OTLP body is refused
    st_, _, _ = st.post(b"\x0a\x00", path="/v1/logs", ctype="application/x-protobuf")
    assert st_ == 415
    st_, _, b = st.post({"resourceLogs": 5}, path="/v1/logs")
    assert st_ == 400, b
    st_, _, b = st.post({"resourceLogs": [{"scopeLogs": [{"logRecords": [7, {"body": {"stringValue": "hello"}}]}]}]},
                        path="/v1/logs")
    assert st_ == 200 and b["partialSuccess"]["rejectedLogRecords"] == "1", b


def test_http_hook_guard_answers_without_redis(st):
    """Last in this module: stops Redis. A PreToolUse still gets its decision."""
    s = "hk-noredis-" + uuid.uuid4().hex[:8]
    st.stop_redis()
    try:
        wait_for(lambda: request(st.collector_port, "GET", "/readyz")[0] == 503, 10, what="collector not ready")
        bad = base(s, "PreToolUse", tool_name="Bash", tool_input={"command": "rm -rf ~"})
        status, _, body = st.post(bad, path="/hooks/claude-code")
        assert status == 200 and body["hookSpecificOutput"]["permissionDecision"] == "deny", (status, body)
        ok = base(s, "PreToolUse", tool_name="Bash", tool_input={"command": "ls"})
        status, _, body = st.post(ok, path="/hooks/claude-code")
        assert status == 200 and body == {}, (status, body)
        status, hdrs, body = st.post(base(s, "Notification", message="x"), path="/hooks/claude-code")
        assert status == 503 and "retry-after" in hdrs, (status, body)
        status, hdrs, body = st.post(otlp_body(s, "p"), path="/v1/logs")
        assert status == 503, (status, body)
    finally:
        st.start_redis()
        wait_for(lambda: request(st.collector_port, "GET", "/readyz")[0] == 200, 15, what="collector ready")
