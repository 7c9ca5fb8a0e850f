/* hook.h -- agent-hook's parts. Start reading at main.c.
 *   main.c        modes (hook, emit, check, flush), settings, the hook's story
 *   send.c        HTTP POST: a built-in HTTP/1.1 client for http:// URLs
 *                 (the hot path), libcurl (loaded on demand) for https://
 *   spool.c       the bounded on-disk spool and delivery (spool first, in order)
 *   transcript.c  incremental token usage from transcript JSONL, and its
 *                 messages forwarded to POST /transcripts
 * The mapping, guard and redaction are shared with the collector:
 * common/hookmap.c, common/guard.c, common/redact.c. */
#ifndef HOOK_H
#define HOOK_H

#include <limits.h>
#include <stddef.h>

#include "hookmap.h"

#define HOOK_DIR_MAX 3584 /* leaves room for file names within PATH_MAX */

struct hook_conf {
	const char *url;            /* OBS_COLLECTOR_URL */
	long timeout_ms;            /* OBS_HOOK_TIMEOUT_MS: per HTTP request */
	long flush_ms;              /* OBS_HOOK_FLUSH_MS: time budget for flushing the spool */
	char state_dir[HOOK_DIR_MAX];/* OBS_HOOK_STATE_DIR */
	char spool_dir[HOOK_DIR_MAX];/* OBS_HOOK_SPOOL_DIR */
	long long spool_max_bytes;  /* OBS_HOOK_SPOOL_MAX_BYTES */
	long spool_max_files;       /* OBS_HOOK_SPOOL_MAX_FILES */
	const char *policy;         /* OBS_HOOK_POLICY (NULL: search) */
	long max_string;            /* OBS_HOOK_MAX_STRING */
	const char *source_app;     /* OBS_HOOK_SOURCE_APP */
	int use_curl;               /* OBS_HOOK_TRANSPORT=curl */
	const char *ca_file;        /* OBS_HOOK_CA_FILE: CA bundle for https:// (NULL: system CAs) */
	int quiet;                  /* OBS_HOOK_QUIET=1: no warnings on stderr */
	const char *key;            /* OBS_COLLECTOR_KEY: API key (ingest role), or NULL */
	const char *signing_secret; /* OBS_COLLECTOR_SIGNING_SECRET: HMAC secret, or NULL */
};

/* One-line warning on stderr ("agent-hook: ..."), unless quiet. */
void hook_warn(const struct hook_conf *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- send.c ---- */
enum send_result {
	SEND_OK,       /* 2xx: the collector has it */
	SEND_RETRY,    /* unreachable, timed out, 401/403 (key to fix), 408/429/5xx: keep it, try later */
	SEND_REJECTED, /* other 4xx: re-sending the same bytes cannot help */
};
/* POST body to c->url + path within timeout_ms. *status gets the HTTP
 * status (0 when none); err a one-line cause. */
enum send_result send_post(const struct hook_conf *c, const char *path, const char *ctype,
                           const char *body, size_t len, long timeout_ms, int *status, char *err,
                           size_t errlen);

/* ---- spool.c ---- */
/* Deliver one serialised event: events already in the spool go first, in
 * order, in the same request when they fit. Returns 0 delivered, 1 spooled
 * (collector unreachable), -1 dropped (refused by the collector, or the
 * spool could not be written). */
int spool_deliver(const struct hook_conf *c, const char *ev, size_t len);
/* Flush the spool only (agent-hook flush). Returns the events left. */
long spool_flush_only(const struct hook_conf *c);
/* Events waiting (0 when the directory does not exist). */
long spool_count(const struct hook_conf *c);

/* ---- transcript.c ---- */
/* Add the usage of transcript lines appended since the last call for this
 * file (offset and seen responses kept under c->state_dir). 0 / -1. */
int transcript_usage(const struct hook_conf *c, const char *path, struct hook_usage *u);
/* POST the messages appended since the last accepted send to /transcripts
 * (agent_id NULL: the main agent); *sent counts them. 0, or -1 when the
 * collector could not be reached (they go next time). */
int transcript_forward(const struct hook_conf *c, const char *path, const char *session_id,
                       const char *agent_id, long *sent);

#endif
