/* main.c -- the processor daemon: consumer group "processor" on the event
 * stream -> batched, idempotent writes to PostgreSQL -> XACK only after
 * COMMIT. Reads top to bottom: config, connect, re-read own pending entries,
 * consume loop (batches pipelined over several PostgreSQL connections while a
 * backlog lasts; periodic claim / trim / partition upkeep), drain, exit.
 * Single-threaded except for the admin HTTP server (metrics, health). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "history.h"
#include "http.h"
#include "lease.h"
#include "log.h"
#include "mask.h"
#include "met.h"
#include "processor.h"
#include "rs.h"
#include "sig.h"
#include "ev.h"

#define DEPTH_MAX 4 /* most batches in flight (processor.pipeline_depth) */

#define T struct processor_conf
static const struct cfg_setting settings[] = {
	{"processor.metrics_bind", CFG_STR, "127.0.0.1", "Admin HTTP address (/healthz /readyz /metrics)",
	 offsetof(T, metrics_bind), 0, -1},
	{"processor.metrics_port", CFG_INT, "7072", "Admin HTTP port", offsetof(T, metrics_port), 1, 65535},
	{"pg.conninfo", CFG_STR, "host=127.0.0.1 port=5440 dbname=agent_obs user=agent_obs",
	 "libpq connection string (no password here: pg.password_file, OBS_PG_PASSWORD, PGPASSWORD or .pgpass)",
	 offsetof(T, pg_conninfo), 0, -1},
	{"pg.password", CFG_STR, "", "PostgreSQL password (prefer pg.password_file)", offsetof(T, pg_password), 0, -1},
	{"pg.password_file", CFG_STR, "", "File holding the PostgreSQL password (one line)",
	 offsetof(T, pg_password_file), 0, -1},
	{"pg.sslmode", CFG_STR, "", "libpq sslmode (disable..verify-full; empty: the conninfo's, else prefer)",
	 offsetof(T, pg_sslmode), 0, -1},
	{"pg.sslrootcert", CFG_STR, "", "CA file for sslmode verify-ca/verify-full", offsetof(T, pg_sslrootcert), 0, -1},
	{"processor.group", CFG_STR, "processor", "Consumer group name", offsetof(T, group), 0, -1},
	{"processor.consumer", CFG_STR, "", "Consumer name (empty: first free <hostname>-N)",
	 offsetof(T, consumer), 0, -1},
	{"processor.batch_max", CFG_INT, "5000", "Most events per PostgreSQL transaction",
	 offsetof(T, batch_max), 1, 100000},
	{"processor.batch_max_bytes", CFG_INT, "33554432",
	 "Bound on a batch's size (entries asked for adapt to the size seen)",
	 offsetof(T, batch_max_bytes), 65536, 4294967296.0},
	{"processor.pipeline_depth", CFG_INT, "2",
	 "Batches PostgreSQL may store at once while a backlog lasts (each on its own connection)",
	 offsetof(T, pipeline_depth), 1, DEPTH_MAX},
	{"processor.batch_wait_ms", CFG_INT, "0",
	 "How long a small batch waits for more events (0: none; batches grow while a write is in flight)",
	 offsetof(T, batch_wait_ms), 0, 10000},
	{"processor.claim_idle_ms", CFG_INT, "30000", "Claim entries pending this long on dead consumers",
	 offsetof(T, claim_idle_ms), 1000, 86400000},
	{"processor.claim_interval_ms", CFG_INT, "5000", "How often to look for entries to claim",
	 offsetof(T, claim_interval_ms), 100, 3600000},
	{"processor.dead_stream", CFG_STR, "agent_events:dead", "Stream for entries that can never be stored",
	 offsetof(T, dead_stream), 0, -1},
	{"processor.trim_interval_ms", CFG_INT, "5000", "How often to trim acknowledged entries",
	 offsetof(T, trim_interval_ms), 100, 3600000},
	{"processor.stream_retain_ms", CFG_INT, "60000",
	 "Keep entries at least this long after they are acknowledged (live replay)",
	 offsetof(T, stream_retain_ms), 0, 86400000},
	{"processor.partition_days_ahead", CFG_INT, "7", "Daily partitions created ahead of time",
	 offsetof(T, partition_days_ahead), 1, 365},
	{"processor.retention_days", CFG_INT, "30",
	 "Drop daily partitions (events, transcript messages) older than this many days",
	 offsetof(T, retention_days), 1, 36500},
	{"processor.retention_interval_ms", CFG_INT, "3600000", "How often retention runs",
	 offsetof(T, retention_interval_ms), 100, 86400000},
	{"processor.transcript_stream", CFG_STR, "agent_transcripts",
	 "Stream of chat transcripts (POST /transcripts), read by the same group",
	 offsetof(T, transcript_stream), 0, -1},
	{"processor.prices_file", CFG_STR, "config/prices.yaml",
	 "Model prices for cost_usd from tokens (empty: off)", offsetof(T, prices_file), 0, -1},
	CFG_ROWS_COMMON(T),
};
#undef T
#define N_SETTINGS (sizeof settings / sizeof settings[0])

static struct processor_conf cf;
static struct rs_conf rconf;
static struct pg_auth pg_auth;
static redisContext *rc;
static struct store *db;
static char consumer[256];
static atomic_int redis_ok, pg_ok;

static struct {
	struct met_registry *reg;
	struct met_series *stored, *duplicates, *batch, *emit_lat, *recv_lat, *db_errors,
		*redis_errors, *pending, *lag, *trimmed, *missing, *overlapped;
	struct met_family *dead, *by_type, *tool_lat;
} m;

static int ready(void *ud, char *why, size_t whylen)
{
	(void)ud;
	if (!atomic_load(&redis_ok)) {
		snprintf(why, whylen, "redis unavailable");
		return 0;
	}
	if (!atomic_load(&pg_ok)) {
		snprintf(why, whylen, "postgres unavailable");
		return 0;
	}
	return 1;
}

static void setup_metrics(void)
{
	struct met_registry *g = m.reg;
	static const double batch_b[] = {1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000};
	m.stored = met_series(met_counter(g, "agent_obs_processor_events_stored_total",
	                                  "Events committed to PostgreSQL", NULL));
	m.duplicates = met_series(met_counter(g, "agent_obs_processor_events_duplicate_total",
	                                      "Redelivered or re-sent events already stored", NULL));
	m.batch = met_series(met_histogram(g, "agent_obs_processor_batch_size",
	                                   "Events per PostgreSQL transaction", NULL, batch_b,
	                                   sizeof batch_b / sizeof batch_b[0]));
	m.emit_lat = met_series(met_histogram(g, "agent_obs_processor_emit_to_stored_seconds",
	                                      "Event timestamp to committed row", NULL,
	                                      met_latency_buckets, met_latency_nbuckets));
	m.recv_lat = met_series(met_histogram(g, "agent_obs_processor_received_to_stored_seconds",
	                                      "Collector receipt to committed row", NULL,
	                                      met_latency_buckets, met_latency_nbuckets));
	m.db_errors = met_series(met_counter(g, "agent_obs_processor_db_errors_total",
	                                     "PostgreSQL failures (each retried batch counts once)", NULL));
	m.redis_errors = met_series(met_counter(g, "agent_obs_processor_redis_errors_total",
	                                        "Redis failures", NULL));
	m.pending = met_series(met_gauge(g, "agent_obs_processor_pending",
	                                 "Entries delivered to the group but not yet acknowledged", NULL));
	m.lag = met_series(met_gauge(g, "agent_obs_processor_lag",
	                             "Entries in the stream not yet delivered to the group", NULL));
	m.trimmed = met_series(met_counter(g, "agent_obs_processor_stream_trimmed_total",
	                                   "Acknowledged entries trimmed from the stream", NULL));
	m.missing = met_series(met_counter(g, "agent_obs_processor_entries_missing_total",
	                                   "Pending entries already deleted from the stream", NULL));
	m.overlapped = met_series(met_counter(g, "agent_obs_processor_batches_overlapped_total",
	                                      "Batches read and sent while the one before was being stored "
	                                      "(there was a backlog)", NULL));
	m.dead = met_counter(g, "agent_obs_processor_dead_lettered_total",
	                     "Entries moved to the dead-letter stream, by reason", "reason");
	m.by_type = met_counter(g, "agent_obs_events_total",
	                        "Stored events by event type and status", "event_type,status");
	m.tool_lat = met_histogram(g, "agent_obs_tool_latency_seconds",
	                           "Tool latency reported by events (latency_ms)", "tool",
	                           met_latency_buckets, met_latency_nbuckets);
}

/* ---------- Redis connection ---------- */

static int redis_connect(void)
{
	char err[256];
	if (rc)
		redisFree(rc);
	atomic_store(&redis_ok, 0);
	rc = rs_connect_retry(&rconf, &sig_stop);
	if (!rc)
		return -1;
	if (rs_group_ensure(rc, cf.stream, cf.group, "0", err, sizeof err)) {
		log_kv(LOG_ERROR, "cannot create consumer group", "error", err, NULL);
		return -1;
	}
	atomic_store(&redis_ok, 1);
	return 0;
}

static void redis_failed(const char *what, const char *err)
{
	met_inc(m.redis_errors, 1);
	log_kv(LOG_WARN, what, "error", err, NULL);
	if (rc && rc->err) {
		redisFree(rc);
		rc = NULL;
		atomic_store(&redis_ok, 0);
	}
}

/* ---------- storing a batch ---------- */

static int dead_letter(const struct rs_entry *e, const char *reason, const char *detail)
{
	if (!rc) /* Redis lost meanwhile: the entry stays pending and is read again */
		return -1;
	if (rs_dead_letter(rc, cf.dead_stream, e, reason, detail))
		return -1;
	met_inc(met_series(m.dead, reason), 1);
	log_kv(LOG_WARN, "entry dead-lettered", "stream_id", e->id, "reason", reason, "detail", detail, NULL);
	return 0;
}

/* rows[0..n) are committed (inserted of them new): count them, mark done[]. */
static void stored(struct ev_row **rows, size_t n, long long inserted, int *done)
{
	atomic_store(&pg_ok, 1);
	int64_t now = ev_now_ms();
	met_inc(m.stored, (double)inserted);
	met_inc(m.duplicates, (double)((long long)n - inserted));
	met_observe(m.batch, (double)n);
	/* Rows in a batch mostly share their labels: look a series up again
	 * only when they change (a lookup takes the family's lock). */
	const char *type = NULL, *status = NULL, *tool = NULL;
	struct met_series *by_type = NULL, *tool_lat = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct ev_row *r = rows[i];
		const char *st = r->status ? r->status : "";
		done[i] = 1;
		met_observe(m.emit_lat, (double)(now - r->ts_ms) / 1000.0);
		met_observe(m.recv_lat, (double)(now - r->received_ms) / 1000.0);
		if (!type || strcmp(type, r->event_type) != 0 || strcmp(status, st) != 0) {
			by_type = met_series(m.by_type, r->event_type, st);
			type = r->event_type;
			status = st;
		}
		met_inc(by_type, 1);
		if (r->has_latency && r->tool) {
			if (!tool || strcmp(tool, r->tool) != 0) {
				tool_lat = met_series(m.tool_lat, r->tool);
				tool = r->tool;
			}
			met_observe(tool_lat, r->latency_ms / 1000.0);
		}
		history_count(r);
	}
}

/* Store rows[0..n) or dead-letter the ones PostgreSQL refuses; marks done[]
 * for each entry that may be acknowledged. -1 when stopping mid-retry. */
static int store_rows(struct store *st, struct ev_row **rows, const char **ids, struct rs_entry **ents,
                      const int *probe, size_t n, int *done)
{
	char err[512];
	long backoff = 100;
	long long inserted;
	for (;;) {
		enum store_result res = store_write(st, rows, ids, probe, n, &inserted, err, sizeof err);
		if (res == STORE_OK) {
			stored(rows, n, inserted, done);
			return 0;
		}
		met_inc(m.db_errors, 1);
		if (res == STORE_DATA) {
			if (n == 1) {
				if (dead_letter(ents[0], "db_rejected", err) == 0)
					done[0] = 1;
				return 0;
			}
			size_t h = n / 2;
			if (store_rows(st, rows, ids, ents, probe, h, done))
				return -1;
			return store_rows(st, rows + h, ids + h, ents + h, probe + h, n - h, done + h);
		}
		atomic_store(&pg_ok, 0);
		log_kv(LOG_WARN, "postgres write failed, will retry (nothing acknowledged)", "error", err, NULL);
		if (sig_stop)
			return -1;
		sig_sleep_ms(backoff);
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
	}
}

/* Index of ids already seen in this batch (open addressing over 2n slots). */
static int seen_before(const char **slots, size_t nslots, const char *id)
{
	size_t h = 1469598103934665603ULL;
	for (const char *p = id; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	for (size_t i = h % nslots;; i = (i + 1) % nslots) {
		if (!slots[i]) {
			slots[i] = id;
			return 0;
		}
		if (strcmp(slots[i], id) == 0)
			return 1;
	}
}

/* One batch from the stream: its entries, the rows parsed from them, the
 * ids to acknowledge, and the rows encoded for COPY. Owned by the consume
 * loop; batch_clear() frees what one batch used and keeps the struct. */
struct batch {
	struct rs_batch b; /* the entries (own their data) */
	size_t nrows, nack, dups;
	struct ev_row *rowv;
	struct ev_row **rows;
	const char **ids;     /* stream id of rows[i] */
	struct rs_entry **ents;
	const char **acks;    /* entries to acknowledge */
	int *done, *probe;
	struct store_copy copy;
};

static void batch_clear(struct batch *t)
{
	for (size_t i = 0; i < t->nrows; i++)
		ev_row_free(&t->rowv[i]);
	free(t->rowv);
	free(t->rows);
	free(t->ids);
	free(t->ents);
	free(t->acks);
	free(t->done);
	free(t->probe);
	rs_batch_clear(&t->b);
	*t = (struct batch){.b = t->b, .copy = t->copy}; /* storage kept for the next batch */
}

static void batch_free(struct batch *t)
{
	batch_clear(t);
	rs_batch_free(&t->b);
	store_copy_free(&t->copy);
}

/* Parse t->b into rows: invalid entries are dead-lettered, entries gone from
 * the stream and repeats of an event within the batch are only
 * acknowledged. With encode, also the COPY data. -1: out of memory. */
static int batch_prepare(struct batch *t, int encode)
{
	size_t n = t->b.n;
	int rc = -1;
	const char **slots = calloc(2 * n + 1, sizeof *slots);
	t->rowv = calloc(n + 1, sizeof *t->rowv);
	t->rows = calloc(n + 1, sizeof *t->rows);
	t->ids = calloc(n + 1, sizeof *t->ids);
	t->ents = calloc(n + 1, sizeof *t->ents);
	t->acks = calloc(n + 1, sizeof *t->acks);
	t->done = calloc(n + 1, sizeof *t->done);
	t->probe = calloc(n + 1, sizeof *t->probe);
	if (!slots || !t->rowv || !t->rows || !t->ids || !t->ents || !t->acks || !t->done || !t->probe) {
		log_error("process batch: out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct rs_entry *e = &t->b.v[i];
		struct ev_row *row = &t->rowv[t->nrows];
		struct ev_error ee;
		if (!e->data) {
			met_inc(m.missing, 1);
			log_kv(LOG_WARN, "pending entry no longer in the stream (trimmed or deleted)",
			       "stream_id", e->id, NULL);
			t->acks[t->nack++] = e->id;
			continue;
		}
		if (ev_row_parse(e->data, e->len, row, &ee)) {
			char detail[320];
			snprintf(detail, sizeof detail, "%s: %s", ee.field, ee.problem);
			if (dead_letter(e, "invalid_event", detail) == 0)
				t->acks[t->nack++] = e->id;
			continue;
		}
		if (seen_before(slots, 2 * n, row->id)) {
			/* the same event twice in one batch: store the first */
			ev_row_free(row);
			t->acks[t->nack++] = e->id;
			t->dups++;
			continue;
		}
		history_price(row); /* cost from tokens (history.c) */
		t->rows[t->nrows] = row;
		t->ids[t->nrows] = e->id;
		t->ents[t->nrows] = e;
		t->probe[t->nrows] = e->probe;
		t->nrows++;
	}
	if (t->dups)
		met_inc(m.duplicates, (double)t->dups);
	if (encode && t->nrows &&
	    store_encode(&t->copy, t->rows, t->ids, t->probe, t->nrows)) {
		log_error("process batch: out of memory encoding rows");
		goto out;
	}
	rc = 0;
out:
	free(slots);
	return rc;
}

/* Store the batch's rows now through st, which has nothing in flight
 * (retrying, dead-lettering refused rows). -1 when stopping mid-retry. */
static int batch_store(struct batch *t, struct store *st)
{
	return t->nrows ? store_rows(st, t->rows, t->ids, t->ents, t->probe, t->nrows, t->done) : 0;
}

/* Acknowledge what may be: entries only acked, and rows marked done. -1 on
 * Redis failure (the entries are redelivered; writes are idempotent). */
static int batch_ack(struct batch *t)
{
	char err[256];
	for (size_t i = 0; i < t->nrows; i++)
		if (t->done[i])
			t->acks[t->nack++] = t->ids[i];
	if (t->nack && rs_ack(rc, cf.stream, cf.group, t->acks, t->nack, err, sizeof err)) {
		redis_failed("XACK failed; entries will be redelivered (writes are idempotent)", err);
		return -1;
	}
	return 0;
}

/* Parse, store and acknowledge the entries read into t->b, then clear t.
 * -1 on Redis failure or stop. Not pipelined: db has nothing in flight. */
static int process(struct batch *t)
{
	int rcode = -1;
	if (batch_prepare(t, 0) == 0 && batch_store(t, db) == 0 && batch_ack(t) == 0)
		rcode = 0;
	batch_clear(t);
	return rcode;
}

static double entry_avg = 512; /* bytes per stream entry, from the last batch */

/* Entries to ask for: batch_max, fewer when entries are large, at least 1. */
static long batch_count(double avg_bytes)
{
	double fit = (double)cf.batch_max_bytes / (avg_bytes > 1 ? avg_bytes : 1);
	long n = fit < (double)cf.batch_max ? (long)fit : (long)cf.batch_max;
	return n > 0 ? n : 1;
}

/* ---------- upkeep ---------- */

static void claim(void)
{
	char next[48] = "0-0", err[256];
	struct batch t = {0};
	for (int rounds = 0; rounds < 100 && !sig_stop; rounds++) {
		char start[48];
		snprintf(start, sizeof start, "%s", next);
		batch_clear(&t);
		if (rs_autoclaim(rc, cf.stream, cf.group, consumer, cf.claim_idle_ms, start,
		                 batch_count(entry_avg), next, &t.b, err, sizeof err) < 0) {
			redis_failed("XAUTOCLAIM failed", err);
			break;
		}
		if (t.b.n) {
			char cnt[24];
			snprintf(cnt, sizeof cnt, "%zu", t.b.n);
			log_kv(LOG_INFO, "claimed entries idle on another consumer", "count", cnt, NULL);
			if (process(&t))
				break;
		}
		if (strcmp(next, "0-0") == 0)
			break;
	}
	batch_free(&t);
}

static void trim_and_measure(void)
{
	char err[256], floor_s[48];
	struct rs_id floor, keep;
	int has;
	if (rs_trim_floor(rc, cf.stream, &floor, &has, err, sizeof err)) {
		redis_failed("trim floor failed", err);
		return;
	}
	if (has) {
		int64_t now = ev_now_ms();
		keep.ms = (uint64_t)(now > cf.stream_retain_ms ? now - cf.stream_retain_ms : 0);
		keep.seq = 0;
		if (rs_id_cmp(keep, floor) < 0)
			floor = keep;
		rs_id_format(floor, floor_s);
		long long trimmed;
		if (rs_int(rc, &trimmed, err, sizeof err, "XTRIM %s MINID ~ %s", cf.stream, floor_s) == 0)
			met_inc(m.trimmed, (double)trimmed);
		else
			redis_failed("XTRIM failed", err);
	}
	if (!rc)
		return;
	redisReply *r = redisCommand(rc, "XPENDING %s %s", cf.stream, cf.group);
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER)
		met_set(m.pending, (double)r->element[0]->integer);
	if (r)
		freeReplyObject(r);
	r = redisCommand(rc, "XINFO GROUPS %s", cf.stream);
	for (size_t g = 0; r && r->type == REDIS_REPLY_ARRAY && g < r->elements; g++) {
		const redisReply *info = r->element[g];
		int mine = 0;
		for (size_t i = 0; i + 1 < info->elements; i += 2) {
			const redisReply *k = info->element[i], *v = info->element[i + 1];
			if (k->type != REDIS_REPLY_STRING)
				continue;
			if (strcmp(k->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
				mine = strcmp(v->str, cf.group) == 0;
			if (mine && strcmp(k->str, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
				met_set(m.lag, (double)v->integer);
		}
	}
	if (r)
		freeReplyObject(r);
}

/* ---------- the consume loop ---------- */

/* With a backlog the loop keeps up to processor.pipeline_depth batches in
 * flight, each on its own PostgreSQL connection: while PostgreSQL stores
 * them, the next one is read, parsed and encoded, and the oldest is landed
 * and acknowledged. Without a backlog each batch is landed before the next
 * read. flights[0] is the oldest; stores[0] is db. */
static struct batch batches[DEPTH_MAX + 1];
static struct store *stores[DEPTH_MAX];
static struct flight {
	struct batch *b;
	struct store *s;
} flights[DEPTH_MAX];
static int nflights;

/* Finish the oldest batch in flight: collect its outcome (a failure is
 * retried synchronously, which also dead-letters refused rows). -1 when
 * stopping mid-retry (nothing acknowledged). Acknowledging is the caller's. */
static int land(struct flight *f)
{
	char err[512];
	long long inserted;
	enum store_result res = store_collect(f->s, &inserted, err, sizeof err);
	if (res == STORE_OK) {
		stored(f->b->rows, f->b->nrows, inserted, f->b->done);
		return 0;
	}
	met_inc(m.db_errors, 1);
	if (res == STORE_RETRY) {
		atomic_store(&pg_ok, 0);
		log_kv(LOG_WARN, "postgres write failed, will retry (nothing acknowledged)", "error", err, NULL);
	}
	return batch_store(f->b, f->s);
}

/* Take flights[0] off the list; its batch is the caller's to clear. */
static struct batch *shift_flight(void)
{
	struct batch *b = flights[0].b;
	memmove(flights, flights + 1, (size_t)(nflights - 1) * sizeof *flights);
	nflights--;
	return b;
}

/* Drop flights[0] (landed, or given up when stopping). */
static void pop_flight(void)
{
	batch_clear(shift_flight());
}

/* Stopping interrupted a retry: give up every flight, unacknowledged (the
 * entries are redelivered after a restart). Returns -1 for the caller. */
static int abandon_all(void)
{
	while (nflights)
		pop_flight();
	return -1;
}

/* Land and acknowledge every batch in flight, oldest first. -1 when
 * stopping interrupted a retry (the rest stay unacknowledged). */
static int land_all(void)
{
	while (nflights) {
		if (land(&flights[0]))
			return abandon_all();
		if (rc)
			batch_ack(flights[0].b);
		pop_flight();
	}
	return 0;
}

/* A batch struct and a store that no flight holds. */
static struct batch *free_batch(void)
{
	for (int i = 0;; i++) {
		int used = 0;
		for (int k = 0; k < nflights; k++)
			used |= flights[k].b == &batches[i];
		if (!used)
			return &batches[i];
	}
}

static struct store *free_store(void)
{
	for (int i = 0;; i++) {
		int used = 0;
		for (int k = 0; k < nflights; k++)
			used |= flights[k].s == stores[i];
		if (!used)
			return stores[i];
	}
}

/* A new batch in cur (entries read): store it, pipelined with those in
 * flight. -1 when stopping mid-retry. */
static int pipeline(struct batch *cur)
{
	char err[512];
	if (batch_prepare(cur, 1)) {
		batch_clear(cur); /* nothing acknowledged: read again after a restart */
		return land_all();
	}
	struct batch *landed = NULL;
	if (nflights == (int)cf.pipeline_depth) { /* full: land the oldest, ack it after sending */
		if (land(&flights[0]))
			return abandon_all();
		landed = shift_flight();
	}
	struct store *st = free_store();
	int sent = cur->nrows && store_send(st, &cur->copy, err, sizeof err) == STORE_OK;
	if (sent && (nflights || landed))
		met_inc(m.overlapped, 1);
	if (landed) { /* PostgreSQL is busy with cur meanwhile */
		if (rc)
			batch_ack(landed);
		batch_clear(landed);
	}
	if (sent) {
		flights[nflights++] = (struct flight){cur, st};
		return 0;
	}
	int r = batch_store(cur, st); /* not sent (PostgreSQL down?): the retrying path */
	if (r == 0 && rc)
		batch_ack(cur);
	batch_clear(cur);
	return r;
}

static void consume(void)
{
	struct batch pend = {0}; /* the pending phase's batch */
	char err[256];
	int pending_phase = 1, backlog = 0;
	int64_t next_claim = 0, next_trim = 0, next_lease = 0, next_parts = 0;

	while (!sig_stop) {
		if (!rc) {
			if (land_all() || redis_connect())
				break;
			if (lease_refresh(rc, cf.group, consumer))
				log_kv(LOG_WARN, "consumer lease lost; continuing", "consumer", consumer, NULL);
			pending_phase = 1;
		}
		int64_t now = ev_mono_ms();
		if (now >= next_lease) {
			lease_refresh(rc, cf.group, consumer);
			next_lease = now + 10000;
		}
		if (now >= next_parts) {
			if (land_all())
				break;
			if (!rc) /* the acknowledgement lost the connection */
				continue;
			if (store_connect(db, err, sizeof err) ||
			    store_ensure_partitions(db, (int)cf.partition_days_ahead, err, sizeof err)) {
				atomic_store(&pg_ok, 0);
				log_kv(LOG_WARN, "partition upkeep failed; will retry", "error", err, NULL);
				next_parts = now + 5000;
			} else {
				atomic_store(&pg_ok, 1);
				next_parts = now + 3600 * 1000;
			}
		}
		if (!pending_phase && now >= next_claim) {
			if (land_all())
				break;
			if (!rc)
				continue;
			claim();
			next_claim = now + cf.claim_interval_ms;
			if (!rc)
				continue;
		}
		if (now >= next_trim) {
			trim_and_measure();
			next_trim = now + cf.trim_interval_ms;
			if (!rc)
				continue;
		}
		/* history.c: transcripts (non-blocking read), partitions, retention */
		history_tick(rc, consumer);

		if (pending_phase) {
			/* Our own entries delivered before a crash: read them all first,
			 * one batch at a time. */
			batch_clear(&pend);
			int got = rs_readgroup(rc, cf.stream, cf.group, consumer, "0", batch_count(entry_avg), -1,
			                       &pend.b, err, sizeof err);
			if (got == 0) {
				pending_phase = 0;
				continue;
			}
			if (got > 0 && process(&pend) == 0)
				continue;
			if (got < 0)
				redis_failed("XREADGROUP failed", err);
			else if (rc && rc->err)
				redis_failed("redis connection lost", rc->errstr);
			continue;
		}
		/* Pipelining pays only with a backlog (the last read was a full
		 * batch). Without one, land the batches in flight before reading, so
		 * that the next batch grows meanwhile: fewer, larger transactions
		 * leave more CPU to the rest of the pipeline. */
		long want = batch_count(entry_avg);
		if (nflights && !backlog && land_all())
			break;
		if (!rc)
			continue;
		/* Bound a batch by bytes as well as by count: ask for as many
		 * entries as fit in batch_max_bytes at the size seen so far. With
		 * batches in flight, do not wait for new entries: land them first. */
		struct batch *cur = free_batch();
		int got = rs_readgroup(rc, cf.stream, cf.group, consumer, ">", want, nflights ? -1 : 1000, &cur->b,
		                       err, sizeof err);
		int64_t deadline = ev_mono_ms() + cf.batch_wait_ms;
		while (got > 0 && (long)cur->b.n < want && cf.batch_wait_ms > 0) {
			int64_t left = deadline - ev_mono_ms();
			if (left <= 0)
				break;
			int more = rs_readgroup(rc, cf.stream, cf.group, consumer, ">", want - (long)cur->b.n,
			                        (long)left, &cur->b, err, sizeof err);
			if (more <= 0) {
				if (more < 0)
					got = -1;
				break;
			}
		}
		if (got < 0) {
			if (strstr(err, "NOGROUP") && rc && !rc->err) {
				log_kv(LOG_WARN, "consumer group missing (stream deleted?); recreating", NULL);
				rs_group_ensure(rc, cf.stream, cf.group, "0", err, sizeof err);
			} else {
				redis_failed("XREADGROUP failed", err);
			}
			/* A batch topped up by a read that failed: without a connection
			 * it could not be acknowledged; its entries are pending and are
			 * read again after the reconnect. */
			if (cur->b.n == 0 || !rc) {
				batch_clear(cur);
				if (land_all())
					break;
				continue;
			}
		}
		if (cur->b.n == 0) {
			if (land_all())
				break;
			continue;
		}
		backlog = (long)cur->b.n >= want;
		size_t bytes = 0;
		for (size_t i = 0; i < cur->b.n; i++)
			bytes += cur->b.v[i].len;
		entry_avg = (double)bytes / (double)cur->b.n;
		if (pipeline(cur))
			break;
		if (rc && rc->err)
			redis_failed("redis connection lost", rc->errstr);
	}
	/* Drain: the batches in flight are stored and acknowledged unless
	 * stopping interrupts a retry (then they are redelivered after a restart). */
	land_all();
	batch_free(&pend);
	for (int i = 0; i <= DEPTH_MAX; i++)
		batch_free(&batches[i]);
}

int main(int argc, char **argv)
{
	struct http_admin *admin = NULL;
	struct auth *auth = NULL;
	char err[512];

	int code;
	if (daemon_setup(argc, argv, "processor", "processor: Redis stream consumer group -> PostgreSQL",
	                 settings, N_SETTINGS, &cf, "processor.", &cf.log_level, NULL, NULL, &code))
		return code;
	daemon_keep_heap();
	code = 1;
	rconf = CFG_RS_CONF(cf);

	m.reg = met_registry_new();
	if (pg_sslmode_check("pg.sslmode", cf.pg_sslmode, err, sizeof err)) {
		log_kv(LOG_ERROR, "start failed", "error", err, NULL);
		goto out;
	}
	pg_auth = (struct pg_auth){cf.pg_password, cf.pg_sslmode, cf.pg_sslrootcert};
	db = stores[0] = store_new(cf.pg_conninfo, &pg_auth);
	int stores_ok = db != NULL;
	for (int i = 1; i < (int)cf.pipeline_depth && stores_ok; i++)
		stores_ok = (stores[i] = store_new(cf.pg_conninfo, &pg_auth)) != NULL;
	if (!m.reg || !stores_ok) {
		log_error("start: out of memory");
		goto out;
	}
	if (daemon_load_auth(cf.auth_keys_file, CFG_AUTH_OPTS(&cf), m.reg, &auth) ||
	    daemon_check_bind("processor.metrics_bind", cf.metrics_bind, auth != NULL))
		goto out;
	setup_metrics();
	if (history_init(&cf, m.reg, err, sizeof err)) {
		log_kv(LOG_ERROR, "start failed", "error", err, NULL);
		goto out;
	}
	admin = http_admin_start(cf.metrics_bind, (int)cf.metrics_port, m.reg, ready, NULL, auth, NULL, err,
	                         sizeof err);
	if (!admin) {
		log_kv(LOG_ERROR, "start failed", "error", err, NULL);
		goto out;
	}
	if (redis_connect())
		goto stopped;
	if (lease_acquire(rc, cf.group, cf.consumer, "processor", "processor.consumer / OBS_PROCESSOR_CONSUMER",
	                  consumer, sizeof consumer, err, sizeof err)) {
		log_kv(LOG_ERROR, "start failed", "error", err, NULL);
		goto out;
	}
	char pg_shown[512];
	mask_conninfo(cf.pg_conninfo, pg_shown, sizeof pg_shown);
	log_kv(LOG_INFO, "processor consuming", "stream", cf.stream, "group", cf.group, "consumer",
	       consumer, "postgres", pg_shown, NULL);

	consume();

	if (rc)
		lease_release(rc, cf.group, consumer);
stopped:
	log_info("stopped");
	code = 0;
out:
	http_admin_stop(admin);
	auth_free(auth);
	if (rc)
		redisFree(rc);
	for (int i = 0; i < DEPTH_MAX; i++)
		store_free(stores[i]); /* stores[0] is db */
	history_free();
	met_registry_free(m.reg);
	cfg_free(settings, N_SETTINGS, &cf);
	return code;
}
