"""Dashboard in a real browser: Debian's Chromium driven by playwright-core
(tests/browser/dashboard.mjs) against the SPA the streamer serves, with events
and transcripts POSTed to the collector: the live view, then the history view
reading the collector's API across origins (collector.cors_origin,
streamer.api_url). Screenshots land in tests/artifacts/ (git-ignored).
Needs the built SPA (make), node, and /usr/bin/chromium (install-deps.sh)."""
import os
import shutil
import subprocess

from harness import ROOT, Stack, free_port

BROWSER = os.path.join(ROOT, "tests", "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def npm_ci():
    """Install playwright-core (no browser download) when the lock file changed."""
    mod = os.path.join(BROWSER, "node_modules", ".package-lock.json")
    lock = os.path.join(BROWSER, "package-lock.json")
    if os.path.exists(mod) and os.path.getmtime(mod) >= os.path.getmtime(lock):
        return
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER, capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("npm ci in tests/browser failed:\n" + r.stdout + r.stderr)


def setup():
    for need, hint in ((CHROMIUM, "install chromium (deploy/local/install-deps.sh)"),
                       (shutil.which("node") or "", "install Node.js"),
                       (os.path.join(ROOT, "streamer", "web", "dist", "index.html"), "build the dashboard: make")):
        if not need or not os.path.exists(need):
            raise RuntimeError("missing %s: %s" % (need or "node", hint))
    npm_ci()
    st = Stack("dashboard")
    st.start_redis()
    st.start_pg()
    st.start("processor")
    # the history view: the dashboard reads the collector's API across origins
    st.streamer_port = free_port()
    st.start("collector", OBS_COLLECTOR_CORS_ORIGIN="http://127.0.0.1:%d" % st.streamer_port)
    st.start("streamer", wait_port=st.streamer_port, OBS_STREAMER_PORT=st.streamer_port,
             OBS_STREAMER_API_URL="http://127.0.0.1:%d" % st.collector_port)
    return st


def teardown(st):
    st.close()


def test_dashboard_in_chromium(st):
    env = dict(os.environ, STREAMER="http://127.0.0.1:%d" % st.streamer_port,
               COLLECTOR="http://127.0.0.1:%d" % st.collector_port, CHROMIUM=CHROMIUM)
    r = subprocess.run(["node", os.path.join(BROWSER, "dashboard.mjs")], env=env, capture_output=True,
                       text=True, timeout=120)
    print(r.stdout.rstrip())
    assert r.returncode == 0, "browser test failed:\n%s\n%s" % (r.stdout[-3000:], r.stderr[-3000:])
    for name in ("dashboard.png", "dashboard-drawer.png", "dashboard-dark-wall.png", "dashboard-history-search.png",
                 "dashboard-history-session.png"):
        assert os.path.getsize(os.path.join(ROOT, "tests", "artifacts", name)) > 10000, name
