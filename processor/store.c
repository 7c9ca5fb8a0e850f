/* store.c -- PostgreSQL side of the processor: one libpq connection, rows
 * COPYed into a temporary staging table and moved into agent_events with
 * INSERT ... SELECT ... ON CONFLICT DO NOTHING in one transaction. No SQL is
 * built from data: values travel only as COPY data or bound parameters.
 * A batch can be sent and its result collected later (store_send /
 * store_collect), so the caller prepares the next batch meanwhile. A
 * struct store_copy (the encoded rows) belongs to whoever made it.
 * Owned and run by the processor's main thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "processor.h"

#define COLS "id, ts, session_id, agent_id, agent_role, parent_agent_id, source_app, " \
             "event_type, tool, status, payload, latency_ms, tokens_input, tokens_output, " \
             "tokens_cache_read, tokens_cache_creation, cost_usd, trace_id, span_id, " \
             "received_at, stream_id"

static const char *const setup_sql =
	"SET TIME ZONE 'UTC';"
	/* The dedup probe below must stay an index nested loop on the small stage. */
	"SET enable_hashjoin = off; SET enable_mergejoin = off;"
	"CREATE TEMP TABLE IF NOT EXISTS stage ("
	" id uuid, ts timestamptz, session_id text, agent_id text, agent_role text,"
	" parent_agent_id text, source_app text, event_type text, tool text, status text,"
	" payload jsonb, latency_ms double precision, tokens_input bigint, tokens_output bigint,"
	" tokens_cache_read bigint, tokens_cache_creation bigint, cost_usd double precision,"
	" trace_id text, span_id text, received_at timestamptz, stream_id text, probe boolean"
	") ON COMMIT DELETE ROWS;";

/* An id is stored once: a redelivered entry, or a re-sent event that carries
 * its own timestamp, collides with itself on the primary key (id, ts). Only
 * an event whose client gave an id but no timestamp (probe) can come back
 * with another ts: for those, look for the id within a day either side. The
 * batch holds each id once (the caller de-duplicates). */
#define MOVE_SQL \
	"INSERT INTO agent_events (" COLS ") " \
	"SELECT " COLS " FROM stage s " \
	"WHERE NOT (s.probe AND EXISTS (SELECT 1 FROM agent_events e WHERE e.id = s.id" \
	" AND e.ts >= s.ts - interval '1 day' AND e.ts <= s.ts + interval '1 day')) " \
	"ON CONFLICT DO NOTHING"

struct store {
	char *conninfo;
	struct pg_auth auth; /* borrowed strings (the configuration) */
	PGconn *pg;
	struct store_copy copy; /* store_write's encoding */
	int in_flight;          /* a batch sent, its results not collected */
	long known_days[64]; /* days (since epoch) whose partition exists */
	int n_known;
};

struct store *store_new(const char *conninfo, const struct pg_auth *auth)
{
	struct store *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	if (auth)
		s->auth = *auth;
	s->conninfo = strdup(conninfo);
	if (!s->conninfo) {
		free(s);
		return NULL;
	}
	return s;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	if (s->pg)
		PQfinish(s->pg);
	free(s->conninfo);
	store_copy_free(&s->copy);
	free(s);
}

int store_connected(const struct store *s)
{
	return s->pg && PQstatus(s->pg) == CONNECTION_OK;
}

static void drop(struct store *s)
{
	if (s->pg)
		PQfinish(s->pg);
	s->pg = NULL;
	s->n_known = 0;
	s->in_flight = 0;
}

int store_connect(struct store *s, char *err, size_t errlen)
{
	if (store_connected(s))
		return 0;
	drop(s);
	s->pg = pg_connect(s->conninfo, &s->auth, NULL, NULL, err, errlen);
	if (!s->pg)
		return -1;
	PGresult *r = PQexec(s->pg, setup_sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "postgres session setup: %s", PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = '\0';
		PQclear(r);
		drop(s);
		return -1;
	}
	PQclear(r);
	return 0;
}

/* Transient (retry the whole batch) or a problem with the data? */
static enum store_result classify(struct store *s, const PGresult *r)
{
	if (!s->pg || PQstatus(s->pg) != CONNECTION_OK)
		return STORE_RETRY;
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (!st)
		return STORE_RETRY;
	/* No partition for a row: our cache of existing partitions is stale
	 * (retention dropped one). Forget it; the retry re-creates what is needed. */
	if (strcmp(st, "23514") == 0 && s->n_known > 0) {
		s->n_known = 0;
		return STORE_RETRY;
	}
	/* 22 data exception, 23 integrity, 42 syntax/undefined (e.g. bad JSON), 54 limits */
	if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0 || strncmp(st, "54", 2) == 0)
		return STORE_DATA;
	return STORE_RETRY;
}

static enum store_result exec_ok(struct store *s, const char *sql, ExecStatusType want,
                                 PGresult **keep, char *err, size_t errlen)
{
	PGresult *r = PQexec(s->pg, sql);
	if (PQresultStatus(r) != want) {
		snprintf(err, errlen, "postgres: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(s->pg));
		err[strcspn(err, "\n")] = '\0';
		enum store_result c = classify(s, r);
		PQclear(r);
		return c;
	}
	if (keep)
		*keep = r;
	else
		PQclear(r);
	return STORE_OK;
}

static int day_known(struct store *s, long day)
{
	for (int i = 0; i < s->n_known; i++)
		if (s->known_days[i] == day)
			return 1;
	return 0;
}

static int ensure_day(struct store *s, long day, char *err, size_t errlen)
{
	if (day_known(s, day))
		return 0;
	char date[32];
	time_t t = (time_t)day * 86400;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%Y-%m-%d", &tm);
	const char *params[1] = {date};
	PGresult *r = PQexecParams(s->pg, "SELECT agent_events_ensure_partition($1::date)", 1, NULL,
	                           params, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "postgres: create partition for %s: %s", date, PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = '\0';
		rc = -1;
	} else {
		if (s->n_known == 64)
			s->n_known = 0;
		s->known_days[s->n_known++] = day;
	}
	PQclear(r);
	return rc;
}

int store_ensure_partitions(struct store *s, int days_ahead, char *err, size_t errlen)
{
	long today = (long)(time(NULL) / 86400);
	for (long d = today - 1; d <= today + days_ahead; d++)
		if (ensure_day(s, d, err, errlen))
			return -1;
	return 0;
}

/* ---------- COPY text format ---------- */

void store_copy_free(struct store_copy *c)
{
	if (!c)
		return;
	free(c->buf);
	free(c->days);
	*c = (struct store_copy){0};
}

static int reserve(struct store_copy *s, size_t more)
{
	if (s->len + more <= s->cap)
		return 0;
	size_t cap = s->cap ? s->cap : 65536;
	while (cap < s->len + more)
		cap *= 2;
	char *b = realloc(s->buf, cap);
	if (!b)
		return -1;
	s->buf = b;
	s->cap = cap;
	return 0;
}

static int put_text(struct store_copy *s, const char *v, char sep)
{
	if (!v) {
		if (reserve(s, 3))
			return -1;
		s->buf[s->len++] = '\\';
		s->buf[s->len++] = 'N';
		s->buf[s->len++] = sep;
		return 0;
	}
	size_t n = strlen(v);
	if (reserve(s, 2 * n + 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		switch (c) {
		case '\\': s->buf[s->len++] = '\\'; s->buf[s->len++] = '\\'; break;
		case '\n': s->buf[s->len++] = '\\'; s->buf[s->len++] = 'n'; break;
		case '\r': s->buf[s->len++] = '\\'; s->buf[s->len++] = 'r'; break;
		case '\t': s->buf[s->len++] = '\\'; s->buf[s->len++] = 't'; break;
		default: s->buf[s->len++] = c;
		}
	}
	s->buf[s->len++] = sep;
	return 0;
}

static int put_num(struct store_copy *s, int has, double v, int integer, char sep)
{
	char tmp[40];
	if (!has || !isfinite(v))
		return put_text(s, NULL, sep);
	if (integer)
		snprintf(tmp, sizeof tmp, "%lld", (long long)v);
	else
		snprintf(tmp, sizeof tmp, "%.17g", v);
	return put_text(s, tmp, sep);
}

static int put_row(struct store_copy *s, const struct ev_row *r, const char *stream_id, int probe)
{
	int rc = 0;
	rc |= put_text(s, r->id, '\t');
	rc |= put_text(s, r->timestamp, '\t');
	rc |= put_text(s, r->session_id, '\t');
	rc |= put_text(s, r->agent_id, '\t');
	rc |= put_text(s, r->agent_role, '\t');
	rc |= put_text(s, r->parent_agent_id, '\t');
	rc |= put_text(s, r->source_app, '\t');
	rc |= put_text(s, r->event_type, '\t');
	rc |= put_text(s, r->tool, '\t');
	rc |= put_text(s, r->status, '\t');
	rc |= put_text(s, r->payload, '\t');
	rc |= put_num(s, r->has_latency, r->latency_ms, 0, '\t');
	for (int i = 0; i < 4; i++)
		rc |= put_num(s, r->has_tokens[i], (double)r->tokens[i], 1, '\t');
	rc |= put_num(s, r->has_cost, r->cost_usd, 0, '\t');
	rc |= put_text(s, r->trace_id, '\t');
	rc |= put_text(s, r->span_id, '\t');
	rc |= put_text(s, r->received_at, '\t');
	rc |= put_text(s, stream_id, '\t');
	rc |= put_text(s, probe ? "t" : "f", '\n');
	return rc;
}

int store_encode(struct store_copy *c, struct ev_row *const *rows, const char *const *stream_ids,
                 const int *probe, size_t n)
{
	c->len = 0;
	c->ndays = 0;
	for (size_t i = 0; i < n; i++) {
		long day = (long)(rows[i]->ts_ms >= 0 ? rows[i]->ts_ms / 86400000 : -1);
		size_t k = c->ndays;
		while (k > 0 && c->days[k - 1] != day)
			k--;
		if (k == 0) { /* a day not seen in this batch yet */
			if (c->ndays == c->days_cap) {
				size_t cap = c->days_cap ? 2 * c->days_cap : 8;
				long *d = realloc(c->days, cap * sizeof *d);
				if (!d)
					return -1;
				c->days = d;
				c->days_cap = cap;
			}
			c->days[c->ndays++] = day;
		}
		if (put_row(c, rows[i], stream_ids[i], probe[i]))
			return -1;
	}
	return 0;
}

/* Roll back a failed batch, or drop a connection in an unknown state. */
static enum store_result failed(struct store *s, enum store_result res, char *err)
{
	err[strcspn(err, "\n")] = '\0';
	s->in_flight = 0;
	if (store_connected(s) && PQtransactionStatus(s->pg) != PQTRANS_ACTIVE) {
		PGresult *rb = PQexec(s->pg, "ROLLBACK");
		int ok = PQresultStatus(rb) == PGRES_COMMAND_OK;
		PQclear(rb);
		if (ok)
			return res;
	}
	drop(s);
	return STORE_RETRY;
}

enum store_result store_send(struct store *s, const struct store_copy *c, char *err, size_t errlen)
{
	enum store_result res;
	if (s->in_flight) {
		snprintf(err, errlen, "postgres: a batch is already in flight");
		return STORE_RETRY;
	}
	if (store_connect(s, err, errlen))
		return STORE_RETRY;
	/* Each day of the batch needs its partition (known days cost nothing). */
	for (size_t i = 0; i < c->ndays; i++) {
		if (ensure_day(s, c->days[i], err, errlen))
			return classify(s, NULL) == STORE_RETRY && !store_connected(s) ? STORE_RETRY : STORE_DATA;
	}
	/* One simple-query string, two round trips: the server runs BEGIN and
	 * stops at COPY for the data; after the data it runs the move and the
	 * COMMIT without waiting for us. An error skips the rest of the string
	 * and leaves the transaction aborted (rolled back by failed()). */
	res = exec_ok(s, "BEGIN; COPY stage (" COLS ", probe) FROM STDIN; " MOVE_SQL "; COMMIT",
	              PGRES_COPY_IN, NULL, err, errlen);
	if (res)
		return failed(s, res, err);
	if (PQputCopyData(s->pg, c->buf, (int)c->len) != 1 || PQputCopyEnd(s->pg, NULL) != 1) {
		snprintf(err, errlen, "postgres COPY: %s", PQerrorMessage(s->pg));
		return failed(s, STORE_RETRY, err);
	}
	s->in_flight = 1;
	return STORE_OK;
}

enum store_result store_collect(struct store *s, long long *inserted, char *err, size_t errlen)
{
	enum store_result res = STORE_OK;
	PGresult *r;
	*inserted = 0;
	if (!s->in_flight) {
		snprintf(err, errlen, "postgres: no batch in flight");
		return STORE_RETRY;
	}
	/* Results in order: COPY, INSERT (its row count), COMMIT; the first
	 * error ends the string. */
	static const char *const step[] = {"COPY", "move into agent_events", "COMMIT"};
	int k = 0;
	while ((r = PQgetResult(s->pg))) {
		if (res == STORE_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
			snprintf(err, errlen, "postgres %s: %s", step[k < 3 ? k : 2], PQresultErrorMessage(r));
			res = classify(s, r);
		} else if (res == STORE_OK && k == 1) {
			*inserted = strtoll(PQcmdTuples(r), NULL, 10);
		}
		PQclear(r);
		k++;
	}
	s->in_flight = 0;
	if (res == STORE_OK && k != 3) {
		snprintf(err, errlen, "postgres: expected 3 results from the batch, got %d: %s", k,
		         PQerrorMessage(s->pg));
		res = classify(s, NULL);
	}
	if (res) {
		*inserted = 0;
		return failed(s, res, err);
	}
	return STORE_OK;
}

enum store_result store_write(struct store *s, struct ev_row *const *rows,
                              const char *const *stream_ids, const int *probe, size_t n,
                              long long *inserted, char *err, size_t errlen)
{
	*inserted = 0;
	if (store_encode(&s->copy, rows, stream_ids, probe, n)) {
		snprintf(err, errlen, "out of memory building COPY data");
		return STORE_RETRY;
	}
	enum store_result res = store_send(s, &s->copy, err, errlen);
	return res ? res : store_collect(s, inserted, err, errlen);
}
