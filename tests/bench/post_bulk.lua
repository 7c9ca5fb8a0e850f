-- wrk script: POST a JSON array of 1,000 events per request.
local evs = {}
for i = 1, 1000 do
  evs[i] = string.format('{"event_type":"PostToolUse","session_id":"bench-bulk","agent_id":"main","tool":"Read","latency_ms":%d,"payload":{"file_path":"/src/file%d.c","success":true}}', i, i)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "[" .. table.concat(evs, ",") .. "]"
