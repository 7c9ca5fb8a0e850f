-- wrk script: POST one small canonical event per request (keep-alive); the
-- event is tests/bench/single_event.json (peer_bench.py XADDs the same one).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local f = assert(io.open(dir .. "single_event.json", "r"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = f:read("*l")
f:close()
