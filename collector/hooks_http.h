/* hooks_http.h -- the collector's agent endpoints (issue 5):
 *   POST /hooks/claude-code  Claude Code's native "http" hooks: the raw hook
 *                            JSON, mapped like agent-hook does; a PreToolUse
 *                            gets the guard's decision as the answer
 *   POST /v1/logs            Claude Code's OpenTelemetry logs (OTLP/HTTP JSON)
 * server.c calls hooks_http_route() on a request's first call and hands the
 * later calls to hooks_http_handle(); hooks_http_free() on completion. The
 * events go through ev_normalise_print and the writer like POST /events. */
#ifndef HOOKS_HTTP_H
#define HOOKS_HTTP_H

#include <stddef.h>

#include <microhttpd.h>

struct collector_conf;

/* 1 when the URL is one of ours (any method: others get 405). */
int hooks_http_route(const char *method, const char *url);
/* The access handler from the request's second call on. *state is the
 * request's (freed by hooks_http_free); *code gets the HTTP status. */
enum MHD_Result hooks_http_handle(struct MHD_Connection *c, const struct collector_conf *cf,
                                  const char *method, const char *url, const char *upload,
                                  size_t *upload_size, void **state, int *code);
void hooks_http_free(void *state); /* NULL is a no-op */

#endif
