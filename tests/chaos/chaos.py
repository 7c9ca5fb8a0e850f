"""chaos.py -- `make chaos`: faults under a steady load on the whole stack,
then proof that nothing acknowledged was lost or doubled.

Load (all the time): CHAOS_RATE (1,000) events/s in bulk requests to the
collector, every id acknowledged with 202 recorded with its time; agent-hook
run 5 times a second (PostToolUse, its own spool directory); a blocked
PreToolUse in a new session twice a second (one alert each); a WebSocket
client on the streamer that reconnects with since=<last stream id>.

Faults, in turn: kill -9 of the collector (5 s down: the hooks spool), the
processor, the streamer, the alerter (three times right after a blocked
event, once while Alertmanager is down with an alert queued); Redis restarted gracefully, then killed with -9 and restarted from its
AOF; PostgreSQL restarted; PostgreSQL paused (SIGSTOP of the postmaster and
every backend) for CHAOS_PG_PAUSE_S (60) seconds.

Verified afterwards, and printed: every acknowledged event is in PostgreSQL
exactly once (an event acknowledged within WINDOW_S before a Redis kill -9
may be lost: counted and printed; any other loss fails); the hook spool
drained and every hook event is stored once; the WebSocket client got every
stored event after its first one, with no gap, no repeat and no incomplete
replay; every blocked event reached the on-call sink exactly once. Exits 1
on any violation.
"""
import os
import random
import signal
import sys
import time
import uuid

from pipeline import (DAEMONS, HookDriver, Pipeline, WsWatcher, postgres_pids, say, sid_key)
from harness import Loader, request, wait_for

RATE = int(os.environ.get("CHAOS_RATE", "1000"))
PG_PAUSE_S = float(os.environ.get("CHAOS_PG_PAUSE_S", "60"))
SETTLE_S = float(os.environ.get("CHAOS_SETTLE_S", "5"))
WINDOW_S = 1.0  # Redis appendfsync everysec: up to one second of acknowledged writes
LOAD, HOOKS, ALERT = "chaos-load", "chaos-hooks", "chaos-alert-"


class Chaos:
    def __init__(self):
        self.p = Pipeline("chaos")
        self.st = self.p.st
        self.steps = []          # (fault, downtime s, acked during, note)
        self.redis_kills = []    # times of Redis kill -9
        self.violations = []
        self.checks = []

    def fail(self, msg):
        self.violations.append(msg)
        say("VIOLATION: " + msg)

    def ok(self, msg):
        self.checks.append(msg)
        say("verified: " + msg)

    def blocked(self, i):
        return {"id": str(uuid.uuid4()), "event_type": "PreToolUse", "session_id": "%s%05d" % (ALERT, i),
                "tool": "Bash", "agent_id": "main", "payload": {"blocked": True, "command": "rm -rf /"}}

    # ---------- the run ----------
    def start(self):
        say("starting the stack in %s" % self.st.dir)
        self.p.up()
        self.ws = WsWatcher(self.st.streamer_port, "session:" + LOAD)
        self.ws.start()
        time.sleep(0.5)
        self.load = Loader(self.st, LOAD, 10 ** 9, per=max(1, RATE // 20), rate=RATE)
        self.alerts = Loader(self.st, None, 10 ** 9, per=1, rate=2, make=self.blocked)
        self.hooks = HookDriver(self.st, HOOKS, os.path.join(self.st.dir, "spool"), rate=5)
        for t in (self.load, self.alerts, self.hooks):
            t.start()
        say("load: %d events/s to the collector, agent-hook 5/s, 2 blocked commands/s, "
            "1 WebSocket client (filter session:%s)" % (RATE, LOAD))
        time.sleep(SETTLE_S)

    def step(self, fault, fn):
        n0, r0 = len(self.load.acked), self.load.refused
        say("FAULT: " + fault)
        t0 = time.time()
        note = fn() or ""
        down = time.time() - t0
        time.sleep(SETTLE_S)
        acked = len(self.load.acked) - n0
        self.steps.append((fault, down, acked, self.load.refused - r0, note))
        say("  back after %.1f s; %d events acknowledged during the step, %d requests refused (503)%s"
            % (down, acked, self.load.refused - r0, "; " + note if note else ""))
        for d in DAEMONS:
            proc = self.st.procs[d]
            if proc.poll() is not None:
                self.fail("%s died during '%s' (exit %s); restarting it. Log tail:\n%s"
                          % (d, fault, proc.returncode, self.st.log(d)[-1500:]))
                self.p.start(d)
            elif not self.p.healthy(d):
                self.fail("%s does not answer /healthz after '%s'" % (d, fault))
        for t, what in ((self.load, "load"), (self.alerts, "alert probe"), (self.hooks, "hooks"),
                        (self.ws, "websocket")):
            if t.error:
                self.fail("%s generator died: %r" % (what, t.error))
                t.error = None

    def restart(self, name, down=1.0):
        self.st.kill(name, signal.SIGKILL)
        time.sleep(down)
        self.p.start(name)

    def kill_collector(self):
        self.st.kill("collector", signal.SIGKILL)
        time.sleep(5)  # hooks keep running: they must spool
        spooled = self.hooks.spooled()
        self.p.start("collector")
        if spooled == 0:
            self.fail("no hook event spooled while the collector was down")
        t = time.time()
        try:
            wait_for(lambda: self.hooks.spooled() == 0, 30, interval=0.1, what="hook spool drained")
            return "%d hook events spooled while down, spool drained %.1f s after the restart" % (
                spooled, time.time() - t)
        except AssertionError as e:
            self.fail("hook spool did not drain: %s" % e)
            return "%d hook events spooled; spool NOT drained" % spooled

    def kill_alerter(self):
        notes = []
        for k in range(3):
            # a blocked event right before the kill: read, maybe evaluated, maybe sent
            ev = self.blocked(90000 + k)
            status, _, body = self.st.post([ev])
            if status == 202:
                self.extra_alert_acked.append((ev["session_id"], time.time()))
            time.sleep(random.uniform(0.0, 0.15))
            self.restart("alerter", down=0.5)
            notes.append(ev["session_id"])
        # an alert the alerter could not deliver yet (Alertmanager down) when it died
        self.st.kill("alertmanager", signal.SIGTERM)
        try:
            ev = self.blocked(90100)
            status, _, body = self.st.post([ev])
            if status == 202:
                self.extra_alert_acked.append((ev["session_id"], time.time()))
            time.sleep(1.5)  # read and evaluated; Alertmanager refuses the POST
            self.restart("alerter", down=0.5)
        finally:
            self.st.start_alertmanager(self.p.am_port, self.p.sink_port)
        notes.append(ev["session_id"] + " with Alertmanager down")
        return "killed 4 times, each right after a blocked event (%s)" % ", ".join(notes)

    def redis_graceful(self):
        self.st.stop_redis()
        time.sleep(1)
        self.st.start_redis()

    def redis_kill9(self):
        pid = self.p.pid("redis")
        self.redis_kills.append(time.time())
        os.kill(pid, signal.SIGKILL)
        time.sleep(1)
        self.st.start_redis()

    def pg_restart(self):
        self.st.stop_pg()
        time.sleep(2)
        self.st.start_pg(migrate=False)

    def pg_pause(self):
        pids = postgres_pids(self.p.pid("pg"))
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(PG_PAUSE_S)
        for pid in reversed(pids):
            os.kill(pid, signal.SIGCONT)
        return "SIGSTOP/SIGCONT of %d PostgreSQL processes" % len(pids)

    def run_faults(self):
        self.extra_alert_acked = []
        self.step("kill -9 collector (down 5 s while agent-hook runs)", self.kill_collector)
        self.step("kill -9 processor", lambda: self.restart("processor"))
        self.step("kill -9 streamer", lambda: self.restart("streamer"))
        self.step("kill -9 alerter", self.kill_alerter)
        self.step("Redis graceful restart (SHUTDOWN, start)", self.redis_graceful)
        self.step("Redis kill -9, restart from AOF", self.redis_kill9)
        self.step("PostgreSQL restart (pg_ctl stop -m fast, start)", self.pg_restart)
        self.step("PostgreSQL paused %g s" % PG_PAUSE_S, self.pg_pause)

    # ---------- verification ----------
    def in_window(self, t):
        return any(k - WINDOW_S <= t <= k + 0.05 for k in self.redis_kills)

    def group_drained(self, group):
        raw = self.st.redis_raw("XINFO", "GROUPS", "agent_events").splitlines()
        groups, cur = {}, None
        for k, v in zip(raw[0::2], raw[1::2]):
            if k == "name":
                cur = groups.setdefault(v, {})
            elif cur is not None:
                cur[k] = v
        g = groups.get(group, {})
        return g.get("pending") == "0" and g.get("lag") in ("0", "")

    def drain(self):
        say("load stopped; waiting for the pipeline to drain")
        for t in (self.load, self.alerts):
            t.stop()
        self.hooks.stop_flag = True
        for t in (self.load, self.alerts, self.hooks):
            t.join(60)
        self.flush_hooks = self.hooks.flush()
        for g in ("processor", "alerter"):
            try:
                wait_for(lambda: self.group_drained(g), 180, interval=0.5, what="group %s drained" % g)
            except AssertionError as e:
                self.fail(str(e))
        time.sleep(1)

    def verify_load(self):
        acked_at = dict(zip(self.load.acked, self.load.acked_at))
        rows = self.st.sql("SELECT id, count(*) FROM agent_events WHERE session_id = :'p1' GROUP BY id", LOAD)
        stored = {r[0]: int(r[1]) for r in rows}
        dup = [i for i, n in stored.items() if n > 1]
        missing = [i for i in acked_at if i not in stored]
        in_win = [i for i in missing if self.in_window(acked_at[i])]
        outside = [i for i in missing if not self.in_window(acked_at[i])]
        unknown = [i for i in stored if i not in self.load.sent]
        unacked = [i for i in stored if i not in acked_at and i in self.load.sent]
        say("load: %d events acknowledged, %d rows stored, %d duplicates, %d acknowledged but missing "
            "(%d within %.0f s before a Redis kill -9, %d outside), %d stored whose answer was cut off "
            "(client would retry)" % (len(acked_at), sum(stored.values()), len(dup), len(missing),
                                      len(in_win), WINDOW_S, len(outside), len(unacked)))
        self.redis_lost = set(in_win)
        if dup:
            self.fail("%d acknowledged events stored more than once (e.g. %s)" % (len(dup), dup[0]))
        if outside:
            self.fail("%d acknowledged events lost outside the Redis fsync window (e.g. %s acked at %.3f)"
                      % (len(outside), outside[0], acked_at[outside[0]]))
        if unknown:
            self.fail("%d stored events were never sent" % len(unknown))
        if not dup and not outside and not unknown:
            self.ok("%d acknowledged load events in PostgreSQL exactly once; Redis kill -9 lost %d "
                    "(all within the %.0f s AOF fsync window)" % (len(acked_at), len(in_win), WINDOW_S))

    def verify_hooks(self):
        h = self.hooks
        done = dict(zip(h.sent, h.sent_at))
        done.update((t, time.time()) for t in self.flush_hooks)
        rows = self.st.sql("SELECT payload->>'tool_use_id', count(*) FROM agent_events WHERE session_id = :'p1' "
                           "GROUP BY 1", HOOKS)
        stored = {r[0]: int(r[1]) for r in rows}
        missing = [t for t in done if t not in stored]
        outside = [t for t in missing if not self.in_window(done[t])]
        dup = [t for t, n in stored.items() if n > 1]
        say("hooks: %d agent-hook runs exited 0 (%d failed), at most %d events spooled at once, "
            "%d left in the spool, %d stored, %d missing (%d outside the Redis kill -9 window), %d duplicates"
            % (len(done), len(h.failed), h.max_spooled, h.spooled(), len(stored), len(missing), len(outside),
               len(dup)))
        bad = len(self.violations)
        if h.failed:
            self.fail("%d agent-hook runs exited non-zero, e.g. %r" % (len(h.failed), h.failed[0]))
        if h.spooled():
            self.fail("%d events left in the hook spool" % h.spooled())
        if outside:
            self.fail("%d hook events lost, e.g. %s" % (len(outside), outside[0]))
        if dup:
            self.fail("%d hook events stored more than once, e.g. %s" % (len(dup), dup[0]))
        if len(self.violations) == bad:
            self.ok("agent-hook: spool drained, %d hook events stored exactly once (%d lost within the "
                    "Redis kill -9 window)" % (len(done) - len(missing), len(missing)))

    def verify_ws(self):
        rows = self.st.sql("SELECT id, stream_id FROM agent_events WHERE session_id = :'p1'", LOAD)
        ws = self.ws
        if not ws.seen:
            self.fail("the WebSocket client received nothing")
            return
        first = sid_key(ws.seen[0][0])
        expect = {r[0] for r in rows if sid_key(r[1]) >= first}
        stored = {r[0] for r in rows}

        def caught_up():
            got = {e for _, e in ws.seen}
            return len(expect - got) == 0
        try:
            wait_for(caught_up, 60, interval=0.5, what="WebSocket client caught up")
        except AssertionError:
            pass
        ws.stop_flag = True
        ws.join(10)
        got = {e for _, e in ws.seen}
        sids = [s for s, _ in ws.seen]
        gap = expect - got
        dup_sids = len(sids) - len(set(sids))
        extra = got - stored
        resent = len(set(sids)) - len(got)  # distinct stream entries carrying an id already seen
        say("websocket: %d events received over %d reconnects (since=<last id>), %d stored events after "
            "the first one, %d not received, %d stream ids received twice, %d out of order, %d incomplete "
            "replays, %d received but not stored, %d events in the stream twice (re-sent by the client "
            "after a 503 or a lost answer; stored once)" % (len(ws.seen), ws.reconnects, len(expect), len(gap),
                                                            dup_sids, ws.out_of_order, len(ws.incomplete),
                                                            len(extra), resent))
        if ws.reconnects < 1:
            self.fail("the WebSocket client never had to reconnect (streamer kill did not reach it)")
        if gap:
            self.fail("%d stored events never reached the WebSocket client, e.g. %s" % (len(gap), next(iter(gap))))
        if dup_sids or ws.out_of_order:
            self.fail("WebSocket client got %d repeated and %d out-of-order stream ids" % (dup_sids, ws.out_of_order))
        if ws.incomplete:
            self.fail("replay after reconnect incomplete: %r" % ws.incomplete[0])
        if extra - self.redis_lost:
            self.fail("%d events received on the WebSocket are neither stored nor lost to Redis"
                      % len(extra - self.redis_lost))
        if ws.reconnects and not gap and not dup_sids and not ws.out_of_order and not ws.incomplete:
            self.ok("dashboard client resumed after %d disconnects with no gap and no repeat (%d events)"
                    % (ws.reconnects, len(ws.seen)))

    def verify_alerts(self):
        # one event per request, so the k-th acknowledged is session k
        acked = [("%s%05d" % (ALERT, k), t) for k, t in enumerate(self.alerts.acked_at)]
        acked += self.extra_alert_acked
        expect = {s for s, t in acked if not self.in_window(t)}
        window = {s for s, t in acked if self.in_window(t)}
        try:
            wait_for(lambda: expect <= set(self.p.firings("DangerousCommandBlocked")), 60, interval=0.5,
                     what="every alert at the on-call sink")
        except AssertionError:
            pass
        time.sleep(8)  # late repeats: the hold (2 s) and Alertmanager's group interval pass
        f = self.p.firings("DangerousCommandBlocked")
        missing = sorted(expect - set(f))
        double = sorted(s for s, n in f.items() if n > 1)
        say("alerts: %d blocked commands acknowledged (%d within a Redis kill -9 window), %d firing "
            "notifications at the on-call sink, %d missing, %d fired more than once"
            % (len(acked), len(window), sum(f.values()), len(missing), len(double)))
        dups = self.st.metrics(self.st.alerter_port).get("agent_obs_alerter_events_duplicate_total", 0)
        say("  the alerter skipped %d re-sent events (same id) since its last start" % dups)
        if missing:
            self.fail("%d alerts never reached on-call, e.g. %s" % (len(missing), missing[0]))
        if double:
            self.fail("%d alerts fired more than once: %s" % (len(double), ", ".join(
                "%s (%d times)" % (x, f[x]) for x in double[:10])))
        if not missing and not double:
            self.ok("%d alerts, each at the on-call sink exactly once, across 4 alerter kill -9s" % len(expect))

    def report(self):
        print("\n== chaos: what was killed", flush=True)
        print("%-52s %8s %10s %8s  %s" % ("fault", "down s", "acked", "503s", "note"))
        for fault, down, acked, refused, note in self.steps:
            print("%-52s %8.1f %10d %8d  %s" % (fault, down, acked, refused, note))
        print("\n== chaos: what was verified")
        for c in self.checks:
            print("ok    " + c)
        for v in self.violations:
            print("FAIL  " + v)
        errs = {d: len(self.p.log_lines(d)) for d in DAEMONS}
        print("\nerror-level log lines (expected during faults): %s" %
              ", ".join("%s %d" % kv for kv in errs.items()))
        print("load: %d acknowledged, %d refused (503), %d cut-off requests retried"
              % (len(self.load.acked), self.load.refused, self.load.cut))
        print("chaos: %d checks passed, %d violations" % (len(self.checks), len(self.violations)), flush=True)


def main():
    c = Chaos()
    try:
        c.start()
        c.run_faults()
        c.drain()
        c.verify_load()
        c.verify_hooks()
        c.verify_ws()
        c.verify_alerts()
        for d in DAEMONS:
            if not c.p.healthy(d):
                c.fail("%s not healthy at the end" % d)
    except Exception as e:
        import traceback
        traceback.print_exc()
        c.fail("chaos run aborted: %r" % e)
        for d in DAEMONS:
            print("--- %s log tail ---\n%s" % (d, c.st.log(d)[-1500:]))
    finally:
        try:
            c.report()
        finally:
            if c.violations:
                os.environ["OBS_KEEP_TMP"] = "1"  # logs and data for the post-mortem
                print("logs kept in %s" % c.st.dir)
            c.p.close()
    return 1 if c.violations else 0


if __name__ == "__main__":
    sys.exit(main())
