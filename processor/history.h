/* history.h -- the processor's history work (issue 6), beside the event
 * pipeline of main.c/store.c:
 *   history.c      hooks main.c calls, metrics, the history PostgreSQL connection
 *   transcripts.c  consumer group on stream agent_transcripts -> chat_transcripts
 *                  + transcript_messages (ack after commit, dead letters)
 *   retention.c    drops daily partitions older than processor.retention_days
 *   prices.c       config/prices.yaml -> cost_usd for events with tokens and a model
 * Everything runs on the processor's main thread. */
#ifndef HISTORY_H
#define HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "ev.h"

struct processor_conf;
struct met_registry;

/* ---- history.c: the hooks main.c calls ---- */

/* Load the price table and register metrics. 0 / -1 with err (a malformed
 * price file; a missing one only disables pricing). */
int history_init(const struct processor_conf *cf, struct met_registry *reg, char *err,
                 size_t errlen);
/* Before storing: set cost_usd from the price table when the event has
 * tokens and a model (payload.model) but no cost. */
void history_price(struct ev_row *row);
/* After the row's transaction committed: token and cost counters. */
void history_count(const struct ev_row *row);
/* Once per consume-loop iteration: transcripts (non-blocking read), and on
 * their timers partition upkeep and retention. Never blocks on Redis; a
 * PostgreSQL outage only backs off. rc may be NULL or broken (then skipped). */
void history_tick(redisContext *rc, const char *consumer);
void history_free(void);

/* The history PostgreSQL connection (connects when needed). NULL with err. */
PGconn *history_pg(char *err, size_t errlen);
/* Forget the connection after a failure that broke it. */
void history_pg_check(void);

/* ---- prices.c ---- */

enum { PRICE_INPUT, PRICE_OUTPUT, PRICE_CACHE_READ, PRICE_CACHE_CREATION, PRICE_KINDS };
extern const char *const price_kinds[PRICE_KINDS]; /* "input", "output", ... */

struct price {
	char *model;                     /* name or prefix ("claude-sonnet-4") */
	double usd_per_mtok[PRICE_KINDS]; /* USD per million tokens */
};
struct prices {
	struct price *v;
	size_t n;
};

/* Parse a price file (see config/prices.yaml). 0; 1 when the file does not
 * exist (*out empty); -1 with "file:line: problem" in err. */
int prices_load(const char *path, struct prices *out, char *err, size_t errlen);
void prices_free(struct prices *p);
/* Exact name (case-insensitive), else the longest entry that is a prefix of
 * the model ("claude-sonnet-4-5-20250929" -> "claude-sonnet-4-5"). */
const struct price *prices_find(const struct prices *p, const char *model);
/* Sum over the kinds present: tokens * price / 1e6. */
double prices_cost(const struct price *pr, const long long tokens[PRICE_KINDS],
                   const int has[PRICE_KINDS]);

/* ---- transcripts.c ---- */

struct transcripts_stats {
	struct met_series *stored, *duplicates, *entries, *dead, *errors;
};
void transcripts_setup(const struct processor_conf *cf, const struct transcripts_stats *st);
/* Read, store and acknowledge what is waiting (bounded work per call). */
void transcripts_tick(redisContext *rc, const char *consumer);
/* Partitions were dropped: forget which days are known to exist. */
void transcripts_forget_days(void);
/* Create transcript_messages partitions from yesterday to days_ahead. */
int transcripts_ensure_partitions(PGconn *pg, int days_ahead, char *err, size_t errlen);

/* ---- retention.c ---- */

/* Drop partitions of agent_events and transcript_messages whose day is
 * older than keep_days, and the summaries of sessions and transcripts last
 * seen before that day; calls dropped(name) for each partition. 0 / -1. */
int retention_run(PGconn *pg, int keep_days, void (*dropped)(const char *name), char *err,
                  size_t errlen);

#endif
