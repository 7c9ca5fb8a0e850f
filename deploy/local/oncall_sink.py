#!/usr/bin/env python3
"""oncall_sink.py -- the on-call end of the alert path for the local stack: a
tiny webhook receiver for Alertmanager that appends every notification it
receives, as one JSON line, to a file (default var/oncall.jsonl), and serves
GET /healthz. Python standard library only.

Usage: deploy/local/oncall_sink.py [--bind 127.0.0.1] [--port 7079] [--out FILE]
Environment: OBS_ONCALL_PORT, OBS_ONCALL_OUT override the defaults.

Each line is {"received_at": ISO-8601, "path": "/...", "notification": <the
webhook body as Alertmanager sent it>}. A body that is not JSON is kept as a
string under "raw". POST answers 200 once the line is written and flushed.
Refuses to listen on a non-loopback address.
"""
import argparse
import datetime
import ipaddress
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAX_BODY = 4 << 20


class Sink(BaseHTTPRequestHandler):
    server_version = "agent-obs-oncall-sink/1"
    lock = threading.Lock()
    out_path = None

    def log_message(self, fmt, *args):  # one line per request on stderr
        sys.stderr.write("oncall_sink: %s %s\n" % (self.address_string(), fmt % args))

    def _reply(self, code, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/healthz", "/readyz"):
            self._reply(200, {"status": "ok"})
        else:
            self._reply(404, {"error": {"status": 404, "message": "POST a notification to any path"}})

    def do_POST(self):
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self._reply(413 if n > 0 else 400, {"error": {"status": 413, "message": "bad Content-Length"}})
            return
        raw = self.rfile.read(n)
        line = {"received_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                "path": self.path}
        try:
            line["notification"] = json.loads(raw)
        except ValueError:
            line["raw"] = raw.decode("utf-8", "replace")
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self.lock:
            with open(self.out_path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        self._reply(200, {"status": "ok"})


def main():
    ap = argparse.ArgumentParser(description="Alertmanager webhook sink: appends notifications to a JSONL file")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("OBS_ONCALL_PORT", "7079")))
    ap.add_argument("--out", default=os.environ.get("OBS_ONCALL_OUT", os.path.join(ROOT, "var", "oncall.jsonl")))
    ap.add_argument("--allow-any-address", action="store_true",
                    help="allow a non-loopback --bind (containers only)")
    a = ap.parse_args()
    try:
        loop = a.bind == "localhost" or ipaddress.ip_address(a.bind).is_loopback
    except ValueError:
        loop = False
    if not loop and not a.allow_any_address:
        sys.exit("oncall_sink: refusing to listen on non-loopback address %s" % a.bind)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    Sink.out_path = a.out
    srv = ThreadingHTTPServer((a.bind, a.port), Sink)
    srv.daemon_threads = True

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write("oncall_sink: listening on %s:%d, appending to %s\n" % (a.bind, a.port, a.out))
    sys.stderr.flush()
    srv.serve_forever()
    srv.server_close()


if __name__ == "__main__":
    main()
