/* processor.h -- shared declarations of the processor's parts: main.c (life
 * cycle and the consume loop), store.c (PostgreSQL writes); the consumer-name
 * lease in Redis is common/lease.c. Everything runs on the main thread except
 * the admin HTTP server, which only reads metrics and the ready flag. */
#ifndef PROCESSOR_H
#define PROCESSOR_H

#include <stddef.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "ev.h"
#include "pgconn.h"
#include "settings.h"

struct processor_conf {
	char *metrics_bind;
	long long metrics_port;
	char *pg_conninfo;
	char *pg_password, *pg_password_file, *pg_sslmode, *pg_sslrootcert;
	char *group;
	char *consumer;
	long long batch_max;
	long long batch_max_bytes;
	long long batch_wait_ms;
	long long pipeline_depth;
	long long claim_idle_ms;
	long long claim_interval_ms;
	char *dead_stream;
	long long trim_interval_ms;
	long long stream_retain_ms;
	long long partition_days_ahead;
	/* history (history.c) */
	long long retention_days;
	long long retention_interval_ms;
	char *transcript_stream;
	char *prices_file;
	CFG_FIELDS_COMMON;
};

/* ---- store.c ---- */
enum store_result { STORE_OK = 0, STORE_RETRY = 1, STORE_DATA = 2 };

struct store;
struct store *store_new(const char *conninfo, const struct pg_auth *auth); /* auth: borrowed, must outlive the store */
void store_free(struct store *s); /* NULL is a no-op */
/* (Re)connect if needed; 0 / -1 with err. */
int store_connect(struct store *s, char *err, size_t errlen);
int store_connected(const struct store *s);
/* Make sure partitions exist from yesterday to days_ahead (UTC). */
int store_ensure_partitions(struct store *s, int days_ahead, char *err, size_t errlen);
/* Insert rows (with their stream ids) in one transaction, idempotently.
 * Each id must appear once in rows; probe[i] asks to look for an earlier
 * copy of rows[i] stored under another timestamp.
 * *inserted receives the number of new rows. STORE_RETRY: connection or
 * transient failure (nothing committed); STORE_DATA: a row was refused. */
enum store_result store_write(struct store *s, struct ev_row *const *rows,
                              const char *const *stream_ids, const int *probe, size_t n,
                              long long *inserted, char *err, size_t errlen);

/* store_write in three steps, so that the caller can read and parse the next
 * batch while PostgreSQL stores this one: encode the rows (no I/O), send
 * them (BEGIN, COPY, move, COMMIT; returns once PostgreSQL has the data),
 * collect the outcome. One batch in flight per store; nothing else may use
 * the store's connection until it is collected. A failed send or collect
 * leaves nothing committed (STORE_RETRY / STORE_DATA as above). */
struct store_copy {
	char *buf;  /* COPY text rows */
	size_t len, cap;
	long *days; /* distinct event days (since the epoch, UTC) */
	size_t ndays, days_cap;
};
void store_copy_free(struct store_copy *c); /* frees the buffers, zeroes *c; NULL is a no-op */
/* 0, or -1 when out of memory. Same arguments as store_write. */
int store_encode(struct store_copy *c, struct ev_row *const *rows, const char *const *stream_ids,
                 const int *probe, size_t n);
enum store_result store_send(struct store *s, const struct store_copy *c, char *err, size_t errlen);
enum store_result store_collect(struct store *s, long long *inserted, char *err, size_t errlen);

#endif
