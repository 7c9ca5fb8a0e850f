-- wrk script: POST one small canonical event per request (keep-alive).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"event_type":"PostToolUse","session_id":"bench-s1","agent_id":"main","tool":"Bash","latency_ms":12,"payload":{"success":true,"command":"ls -la"}}'
