/* otlp.h -- OTLP/HTTP JSON logs (an ExportLogsServiceRequest, as Claude
 * Code sends with OTEL_LOGS_EXPORTER=otlp, OTEL_EXPORTER_OTLP_PROTOCOL=
 * http/json) -> canonical events. Used by the collector's POST /v1/logs.
 *   claude_code.api_request -> model, tokens, cost_usd, latency_ms
 *   claude_code.api_error   -> status error, latency_ms
 *   claude_code.tool_result -> tool, status (success/error), latency_ms
 *   anything else           -> an event named after the record
 * Attributes go into payload (resource attributes into payload.resource).
 * Each event's id is derived from the record's content, so an exporter's
 * retry of the same batch stores nothing twice. Pure; thread-safe. */
#ifndef OTLP_H
#define OTLP_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Append one event object per log record of `req` to the array `out`.
 * *rejected counts records that are not log records at all. Returns 0, or
 * -1 with err when req is not an ExportLogsServiceRequest. */
int otlp_logs_to_events(const cJSON *req, int64_t now_ms, cJSON *out, size_t *rejected, char *err,
                        size_t errlen);

/* An OTLP AnyValue ({"stringValue": ...}, intValue, doubleValue, boolValue,
 * arrayValue, kvlistValue, bytesValue) as plain JSON; NULL for none. */
cJSON *otlp_value(const cJSON *any);

#endif
