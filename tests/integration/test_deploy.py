"""Deployment files: Prometheus and Alertmanager configs and rules (promtool,
amtool), every daemon's /metrics through `promtool check metrics`, the
Grafana provisioning and dashboards (structure, datasource uids, variables,
and every SQL query run against the real schema, every PromQL expression
parsed by promtool), and compose.yaml (structure, health checks, volumes,
files it refers to, and that it stays in step with deploy/local/stack.sh).
Docker cannot run here, so compose.yaml is checked by parsing it.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import yaml

from harness import BUILD, ROOT, Stack, free_port, request, wait_for

D = os.path.join(ROOT, "deploy")
PROM = os.path.join(D, "prometheus")
AM_CONFIG = os.path.join(D, "alertmanager", "alertmanager.yml")
GRAFANA = os.path.join(D, "grafana")
COMPOSE = os.path.join(ROOT, "compose.yaml")


def run(*cmd, stdin=None):
    r = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, "%s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr)
    return r.stdout + r.stderr


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


class Fixture:
    """A running stack whose /metrics endpoints and PostgreSQL schema the
    tests check: redis, postgres, collector, processor, alerter, streamer."""

    def __init__(self):
        self.st = Stack("deploy")
        self.st.start_redis()
        self.st.start_pg()
        self.st.start("processor")
        self.st.start("collector")
        self.alerter_port = free_port()
        self.st.start("alerter", wait_port=self.alerter_port, OBS_ALERTER_METRICS_PORT=self.alerter_port,
                      OBS_ALERTER_ALERTMANAGER_URL="http://127.0.0.1:%d" % free_port(),
                      OBS_ALERTER_RULES=os.path.join(ROOT, "config", "alerts.yaml"),
                      OBS_ALERTER_DRAIN_TIMEOUT_MS=0)
        self.ports = {"collector": self.st.collector_port, "processor": self.st.processor_port,
                      "alerter": self.alerter_port}
        if os.path.exists(os.path.join(BUILD, "streamer")):
            self.ports["streamer"] = free_port()
            self.st.start("streamer", wait_port=self.ports["streamer"], OBS_STREAMER_PORT=self.ports["streamer"])
        # events of every kind, so that labelled families have series
        sid = "deploy-" + uuid.uuid4().hex[:8]
        evs = [{"event_type": "PostToolUse", "session_id": sid, "agent_id": "main", "tool": "Bash",
                "latency_ms": 12, "tokens": {"input": 10, "output": 5}, "cost_usd": 0.01,
                "payload": {"success": i % 2 == 0}} for i in range(8)]
        evs.append({"event_type": "PreToolUse", "session_id": sid, "tool": "Bash",
                    "payload": {"blocked": True, "command": "rm -rf /"}})
        st, _, body = self.st.post(evs)
        assert st == 202, body
        self.st.post("not json")  # a rejected request
        wait_for(lambda: int(self.st.scalar("SELECT count(*) FROM agent_events")) >= len(evs), 10,
                 what="events stored")
        self.session = sid


def setup():
    return Fixture()


def teardown(fx):
    fx.st.close()


# ---------------------------------------------------------------- prometheus --

def test_promtool_check_config(fx):
    for f in ("prometheus.yml", "prometheus.compose.yml"):
        out = run("promtool", "check", "config", os.path.join(PROM, f))
        assert "SUCCESS" in out, out


def test_promtool_check_rules(fx):
    out = run("promtool", "check", "rules", os.path.join(PROM, "rules.yml"))
    assert "SUCCESS: 9 rules found" in out, out
    # the pipeline alerts the issue asks for are there
    names = [r["alert"] for g in load_yaml(os.path.join(PROM, "rules.yml"))["groups"] for r in g["rules"]]
    for want in ("AgentObsDaemonDown", "AgentObsIngestErrors", "AgentObsStreamBacklogGrowing",
                 "AgentObsProcessorLag", "AgentObsWebSocketDrops"):
        assert want in names, names


def test_promtool_test_rules(fx):
    out = run("promtool", "test", "rules", os.path.join(PROM, "rules_test.yml"))
    assert "SUCCESS" in out, out
    # every alert of rules.yml has a unit test
    tested = set()
    for t in load_yaml(os.path.join(PROM, "rules_test.yml"))["tests"]:
        tested |= {a["alertname"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    names = {r["alert"] for g in load_yaml(os.path.join(PROM, "rules.yml"))["groups"] for r in g["rules"]}
    assert names == tested, names ^ tested


def test_amtool_check_config(fx):
    out = run("amtool", "check-config", AM_CONFIG)
    assert "SUCCESS" in out, out
    am = load_yaml(AM_CONFIG)
    hooks = [w["url"] for r in am["receivers"] for w in r.get("webhook_configs", [])]
    assert hooks == ["http://127.0.0.1:7079/alertmanager"], hooks


def test_every_daemon_metrics_pass_promtool(fx):
    for name, port in fx.ports.items():
        st, _, body = request(port, "GET", "/metrics", raw=True)
        assert st == 200, (name, st)
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
        assert r.returncode == 0, "%s /metrics: %s%s" % (name, r.stdout.decode(), r.stderr.decode())
    assert "streamer" in fx.ports or not os.path.exists(os.path.join(ROOT, "streamer", "main.c")), \
        "build/streamer missing: run make"
    # the alerter's metrics the issue names
    text = request(fx.alerter_port, "GET", "/metrics", raw=True)[2].decode()
    for fam in ("agent_obs_alerter_rule_evaluations_total", "agent_obs_alerter_alerts_firing",
                "agent_obs_alerter_notifications_sent_total", "agent_obs_alerter_notifications_failed_total",
                "agent_obs_alerter_event_to_alert_seconds_bucket"):
        assert fam in text, fam


# ------------------------------------------------------------------- grafana --

def datasources():
    ds = {}
    for f in glob.glob(os.path.join(GRAFANA, "provisioning", "datasources", "*.yml")):
        doc = load_yaml(f)
        assert doc["apiVersion"] == 1
        for d in doc["datasources"]:
            assert d["uid"] not in ds, d["uid"]
            ds[d["uid"]] = d
    return ds


def dashboards():
    out = {}
    for f in sorted(glob.glob(os.path.join(GRAFANA, "dashboards", "*.json"))):
        with open(f) as fh:
            out[os.path.basename(f)] = json.load(fh)
    return out


def test_grafana_provisioning_structure(fx):
    ds = datasources()
    types = {d["type"] for d in ds.values()}
    assert types == {"prometheus", "grafana-postgresql-datasource"}, types
    pg = [d for d in ds.values() if d["type"] == "grafana-postgresql-datasource"][0]
    assert pg["jsonData"]["database"] == "agent_obs" and "password" in pg["secureJsonData"]
    provs = load_yaml(os.path.join(GRAFANA, "provisioning", "dashboards", "agent-obs.yml"))
    assert provs["apiVersion"] == 1 and provs["providers"][0]["options"]["path"]
    dbs = dashboards()
    uids = [d["uid"] for d in dbs.values()]
    assert len(set(uids)) == len(uids) and "session-timeline" in uids and "agent-obs-overview" in uids
    for name, d in dbs.items():
        assert d["title"] and isinstance(d["panels"], list) and d["panels"], name
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), (name, ids)
        for p in d["panels"]:
            assert p["type"] in ("timeseries", "state-timeline", "heatmap", "histogram", "table", "stat",
                                 "bargauge"), (name, p["type"])
            assert set(p["gridPos"]) >= {"h", "w", "x", "y"}, (name, p["id"])
            assert p["datasource"]["uid"] in ds, (name, p["id"], p["datasource"])
            assert p["targets"], (name, p["id"])
            for t in p["targets"]:
                assert t["datasource"]["uid"] in ds, (name, p["id"])
                assert t["datasource"]["type"] == ds[t["datasource"]["uid"]]["type"], (name, p["id"])
        for v in d["templating"]["list"]:
            assert v["datasource"]["uid"] in ds, (name, v["name"])
    st = dbs["session-timeline.json"]
    var = [v for v in st["templating"]["list"] if v["name"] == "session_id"]
    assert var and var[0]["type"] == "query" and "agent_events" in var[0]["query"], var
    assert any(p["type"] == "state-timeline" for p in st["panels"])
    ov = dbs["overview.json"]
    titles = " | ".join(p["title"].lower() for p in ov["panels"])
    for want in ("event rate", "error rate", "latency histogram", "token usage per agent", "errors"):
        assert want in titles, (want, titles)
    assert any(p["type"] == "table" and "payload" in p["targets"][0]["rawSql"] for p in ov["panels"])


def grafana_sql(sql, session):
    """Substitute the Grafana macros the dashboards use, as Grafana would."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '1 day' AND now() + interval '1 day'", sql)
    sql = re.sub(r"\$__timeGroupAlias\((\w+),\s*'(\d+)m'\)",
                 lambda m: "date_bin(interval '%s minutes', %s, timestamptz '2000-01-01') AS \"time\""
                 % (m.group(2), m.group(1)), sql)
    sql = sql.replace("${session_id}", session)
    assert "$" not in sql, sql
    return sql


def test_grafana_sql_runs_against_the_schema(fx):
    ds = datasources()
    n = 0
    for name, d in dashboards().items():
        queries = [v["query"] for v in d["templating"]["list"] if ds[v["datasource"]["uid"]]["type"] != "prometheus"]
        queries += [t["rawSql"] for p in d["panels"] for t in p["targets"] if "rawSql" in t]
        for q in queries:
            rows = fx.st.sql(grafana_sql(q, fx.session))
            n += 1
            if "session_id = " in q and "count(*)" in q:
                assert rows[0][0] == "9", rows  # the session totals see our events
    assert n >= 6, n
    # the variable's query lists our session
    st = dashboards()["session-timeline.json"]
    rows = fx.st.sql(st["templating"]["list"][0]["query"])
    assert [fx.session] in rows


def test_grafana_promql_parses(fx):
    exprs = [t["expr"] for d in dashboards().values() for p in d["panels"] for t in p["targets"] if "expr" in t]
    assert exprs
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": "dashboard:expr_%d" % i, "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    try:
        run("promtool", "check", "rules", f.name)
    finally:
        os.unlink(f.name)


# ------------------------------------------------------------------- compose --

def stack_services():
    """(name, kind, health URL, command) rows of deploy/local/stack.sh SERVICES."""
    src = open(os.path.join(D, "local", "stack.sh")).read()
    block = re.search(r"^SERVICES=\(\n(.*?)^\)", src, re.S | re.M).group(1)
    rows = []
    for line in block.splitlines():
        line = line.strip()
        if line.startswith('"'):
            rows.append([c.strip() for c in line.strip('"').split("|")])
    return rows


def test_compose_structure(fx):
    c = load_yaml(COMPOSE)
    svc = c["services"]
    for want in ("redis", "postgres", "collector", "processor", "streamer", "alerter", "prometheus",
                 "alertmanager", "grafana", "redis-exporter", "postgres-exporter", "oncall"):
        assert want in svc, want
    declared = set(c["volumes"])
    used = set()
    for name, s in svc.items():
        if name != "migrate":
            hc = s.get("healthcheck")
            assert hc and hc.get("test"), "%s has no health check" % name
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("./"):
                assert os.path.exists(os.path.join(ROOT, src)), (name, src)
            else:
                assert src in declared, (name, src)
                used.add(src)
        if "build" in s:
            b = s["build"]
            assert os.path.exists(os.path.join(ROOT, b["context"], b["dockerfile"])), (name, b)
        for p in s.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), (name, p)
        for dep in (s.get("depends_on") or []):
            assert dep in svc, (name, dep)
        if s.get("network_mode", "").startswith("service:"):
            assert s["network_mode"][8:] in svc
    assert used == declared, declared ^ used
    assert svc["redis"]["command"].count("--appendonly") == 1  # AOF, as the local stack
    # the Dockerfile copies only what exists
    for line in open(os.path.join(D, "docker", "Dockerfile")):
        m = re.match(r"COPY (?!--from)(.+) \S+$", line.strip())
        if m:
            for src in m.group(1).split():
                assert glob.glob(os.path.join(ROOT, src)), src


def test_compose_in_step_with_local_stack(fx):
    c = load_yaml(COMPOSE)
    svc = c["services"]
    published = {int(str(p).split(":")[1]) for s in svc.values() for p in s.get("ports", [])}
    rows = stack_services()
    names = [r[0] for r in rows]
    for want in ("alerter", "prometheus", "alertmanager", "oncall"):
        assert want in names, names
    env_defaults = dict(re.findall(r': "\$\{(OBS_\w+):=(\d+)\}"', open(os.path.join(D, "local", "stack.sh")).read()))
    for name, kind, health, cmd in rows:
        assert name in svc, "%s runs in the local stack but not under compose" % name
        if health != "-":
            port = re.sub(r"\$\{(\w+)\}", lambda m: env_defaults[m.group(1)], health).split(":")[2].split("/")[0]
            assert int(port) in published, (name, port)
    for port in (6390, 5440):  # redis and postgres at the local stack's ports
        assert port in published
    # the same Alertmanager configuration file, the same Prometheus jobs and targets
    am_cmd = " ".join(svc["alertmanager"]["command"])
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am_cmd
    assert "--cluster.listen-address=" in am_cmd
    local = {j["job_name"]: j["static_configs"][0]["targets"]
             for j in load_yaml(os.path.join(PROM, "prometheus.yml"))["scrape_configs"]}
    comp = {j["job_name"]: j["static_configs"][0]["targets"]
            for j in load_yaml(os.path.join(PROM, "prometheus.compose.yml"))["scrape_configs"]}
    for job, targets in local.items():
        assert comp.get(job) == targets, (job, targets, comp.get(job))
    assert {"redis", "postgres"} <= set(comp) - set(local)
    assert "prometheus.compose.yml" in " ".join(svc["prometheus"]["command"])
    # every daemon binary the stack runs is built by the image
    dockerfile = open(os.path.join(D, "docker", "Dockerfile")).read()
    for name, kind, _, cmd in rows:
        if kind == "daemon":
            assert "build/" + name in dockerfile, name


def test_stack_lists_the_alert_services(fx):
    r = subprocess.run(["bash", os.path.join(D, "local", "stack.sh"), "status"], capture_output=True,
                       text=True, cwd=ROOT, env=dict(os.environ, OBS_ALERTER_METRICS_PORT="7073"))
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    for want in ("oncall", "alertmanager", "alerter", "prometheus"):
        assert want in listed, r.stdout
    assert shutil.which("prometheus") and shutil.which("prometheus-alertmanager")
