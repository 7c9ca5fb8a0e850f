/* api.c -- the collector's history API (see api.h): the hooks server.c calls
 * for GET /events, /sessions, /transcripts ... and POST /transcripts.
 *
 * Reads never run on libmicrohttpd's threads: the request's parameters are
 * checked there (400 at once), then the connection is suspended and the
 * query goes to a small pool of query threads, each taking a read-only
 * connection (role agent_obs_read, statement_timeout) from common/pgpool.
 * A slow or unreachable PostgreSQL therefore never delays ingest on the
 * same worker thread; reads answer 503 while it is down and 504 when a
 * query runs past the timeout. POST /transcripts is validated here and
 * handed to the Redis writer (writer.c) for stream agent_transcripts.
 *
 * Ownership: struct api_state belongs to the request (server.c's req holds
 * it, api_free releases it); while suspended, a query thread fills st->status
 * and st->body and then resumes the connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "api.h"
#include "collector.h"
#include "http.h"
#include "log.h"
#include "pgpool.h"

#define MAX_THREADS 16
#define MAX_QUEUE 256                    /* queued reads beyond this: 503 */
#define MAX_ARGS 64                      /* query parameters in one request */
#define MAX_RESPONSE (32u << 20)          /* a page stops growing here (next_cursor goes on) */
#define MAX_TRANSCRIPT_BODY (4u << 20)    /* POST /transcripts body (at least max_body_bytes) */

enum phase { PH_NEW, PH_QUEUED, PH_DONE };

struct api_state {
	enum api_endpoint ep;
	enum phase phase;
	struct MHD_Connection *conn;
	struct timespec start;
	/* reads */
	struct api_params params;
	int status;
	char *body; /* malloc'd reply */
	size_t body_len;
	struct api_state *next; /* query queue */
	/* POST /transcripts */
	char *buf;
	size_t len, cap;
	int too_large, bad_type, checked, submitted;
	size_t n_messages;
	struct ingest_result entry;
	struct job job;
};

static const struct collector_conf *conf;
static struct pgpool *pool;
static struct api_limits limits;
static size_t transcript_body_max;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static struct api_state *q_head, *q_tail;
static int q_len, q_stopping, started;
static pthread_t threads[MAX_THREADS];
static int n_threads;

static struct met_family *m_dur, *m_errors;
static struct met_series *m_messages;

/* ---------------------------------------------------------------- buffers -- */

struct sbuf {
	char *p;
	size_t len, cap;
	int failed;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->failed = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_json_str(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	if (!s) {
		sb_puts(b, "null");
		return;
	}
	sb_put(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			sb_put(b, esc, 2);
		} else if (*p < 0x20) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			sb_put(b, esc, 6);
		} else {
			sb_put(b, (const char *)p, 1);
		}
	}
	sb_put(b, "\"", 1);
}

/* ---------------------------------------------------------------- replies -- */

static void set_body(struct api_state *st, int status, char *body)
{
	free(st->body);
	st->status = status;
	st->body = body;
	st->body_len = body ? strlen(body) : 0;
}

static void set_error(struct api_state *st, int status, const char *field, const char *msg)
{
	char *s = http_error_body((unsigned)status, field, msg, NULL);
	set_body(st, status, s ? strdup(s) : NULL);
	cJSON_free(s);
}

static enum MHD_Result reply(struct MHD_Connection *c, struct api_state *st, int *code)
{
	if (!st->body)
		set_error(st, st->status ? st->status : 500, NULL, "out of memory");
	if (!st->body)
		return MHD_NO;
	struct MHD_Response *r = MHD_create_response_from_buffer(st->body_len, st->body,
	                                                         MHD_RESPMEM_MUST_FREE);
	if (!r)
		return MHD_NO;
	st->body = NULL;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (st->status == 503) {
		char ra[24];
		snprintf(ra, sizeof ra, "%lld", conf ? conf->retry_after_s : 1);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (st->status == 405)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
		                        st->ep == API_TRANSCRIPTS ? "GET, HEAD, POST" : "GET, HEAD");
	*code = st->status;
	enum MHD_Result ret = http_queue(c, (unsigned)st->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, struct api_state *st, int status,
                                   const char *field, const char *msg, int *code)
{
	set_error(st, status, field, msg);
	return reply(c, st, code);
}

/* ------------------------------------------------------------- PostgreSQL -- */

/* Run one statement. A connection found broken (PostgreSQL restarted since
 * it was pooled) is replaced once: reads are safe to repeat. NULL with the
 * state's error set. */
static PGresult *run(struct api_state *st, PGconn **pg, const char *sql, int n,
                     const char *const *vals)
{
	char err[320];
	for (int attempt = 0;; attempt++) {
		PGresult *r = PQexecParams(*pg, sql, n, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			return r;
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		snprintf(err, sizeof err, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(*pg));
		err[strcspn(err, "\n")] = '\0';
		PQclear(r);
		met_inc(met_series(m_errors, api_endpoint_name(st->ep)), 1);
		if (PQstatus(*pg) == CONNECTION_BAD) {
			pgpool_discard(pool, *pg);
			*pg = NULL;
			if (attempt == 0 && (*pg = pgpool_get(pool, 2000, err, sizeof err)))
				continue;
			char msg[400];
			snprintf(msg, sizeof msg, "postgres unavailable: %s", err);
			set_error(st, 503, NULL, msg);
			return NULL;
		}
		if (state && strcmp(state, "57014") == 0) {
			char msg[200];
			snprintf(msg, sizeof msg,
			         "query took longer than %lld ms (collector.api_statement_timeout_ms): "
			         "narrow the time range or add filters", conf->api_statement_timeout_ms);
			set_error(st, 504, NULL, msg);
			return NULL;
		}
		log_kv(LOG_ERROR, "history query failed", "endpoint", api_endpoint_name(st->ep), "sqlstate",
		       state ? state : "", "error", err, NULL);
		set_error(st, 500, NULL, "query failed (see the collector log)");
		return NULL;
	}
}

static PGresult *run_sql(struct api_state *st, PGconn **pg, const struct api_sql *q)
{
	if (q->overflow) {
		set_error(st, 500, NULL, "query too large (bug)");
		return NULL;
	}
	return run(st, pg, q->text, q->n, q->values);
}

/* Append `"name":[rows...]` (column 0 is each row's JSON) and, with a cursor
 * kind, `,"next_cursor":...` from columns 1 (ts_us) and 2 (key) of the last
 * row shown. Rows beyond `limit` only signal a next page. 0 / -1. */
static int page(struct api_state *st, PGconn **pg, const struct api_sql *q, const char *name,
                char kind, int desc, long limit, struct sbuf *b)
{
	PGresult *r = run_sql(st, pg, q);
	if (!r)
		return -1;
	int rows = PQntuples(r), shown = 0, more = rows > limit;
	sb_puts(b, "\"");
	sb_puts(b, name);
	sb_puts(b, "\":[");
	for (int i = 0; i < rows && i < limit; i++) {
		size_t len = (size_t)PQgetlength(r, i, 0);
		if (shown && b->len + len > MAX_RESPONSE) {
			more = 1; /* the rest on the next page */
			break;
		}
		if (shown)
			sb_put(b, ",", 1);
		sb_put(b, PQgetvalue(r, i, 0), len);
		shown++;
	}
	sb_puts(b, "]");
	if (kind) {
		sb_puts(b, ",\"next_cursor\":");
		if (more && shown) {
			struct api_cursor c = {.kind = kind, .desc = desc};
			char enc[API_MAX_ID * 2];
			c.ts_us = strtoll(PQgetvalue(r, shown - 1, 1), NULL, 10);
			snprintf(c.key, sizeof c.key, "%s", PQgetvalue(r, shown - 1, 2));
			if (api_cursor_encode(&c, enc, sizeof enc) == 0)
				sb_json_str(b, enc);
			else
				sb_puts(b, "null");
		} else {
			sb_puts(b, "null");
		}
	}
	PQclear(r);
	return 0;
}

/* ------------------------------------------------------------- endpoints -- */

static void url_encode(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			sb_put(b, (const char *)p, 1);
		} else {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			sb_put(b, e, 3);
		}
	}
}

/* ts_headline output with \x02 / \x03 around matches -> HTML-escaped text
 * with <mark>...</mark>. */
static char *snippet_html(const char *s)
{
	struct sbuf b = {0};
	for (const char *p = s; *p; p++) {
		switch (*p) {
		case '\x02': sb_puts(&b, "<mark>"); break;
		case '\x03': sb_puts(&b, "</mark>"); break;
		case '&': sb_puts(&b, "&amp;"); break;
		case '<': sb_puts(&b, "&lt;"); break;
		case '>': sb_puts(&b, "&gt;"); break;
		case '"': sb_puts(&b, "&quot;"); break;
		case '\'': sb_puts(&b, "&#39;"); break;
		default: sb_put(&b, p, 1);
		}
	}
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	return b.p ? b.p : strdup("");
}

static void do_search(struct api_state *st, PGconn **pg)
{
	struct api_sql q;
	api_sql_search(&st->params, &q);
	PGresult *r = run_sql(st, pg, &q);
	if (!r)
		return;
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "query", st->params.q);
	cJSON *hits = cJSON_AddArrayToObject(root, "hits");
	for (int i = 0; i < PQntuples(r); i++) {
		cJSON *h = cJSON_CreateObject();
		const char *sid = PQgetvalue(r, i, 0);
		cJSON_AddStringToObject(h, "session_id", sid);
		if (PQgetisnull(r, i, 1))
			cJSON_AddNullToObject(h, "agent_id");
		else
			cJSON_AddStringToObject(h, "agent_id", PQgetvalue(r, i, 1));
		cJSON_AddStringToObject(h, "message_id", PQgetvalue(r, i, 2));
		cJSON_AddStringToObject(h, "timestamp", PQgetvalue(r, i, 3));
		cJSON_AddStringToObject(h, "role", PQgetvalue(r, i, 4));
		if (PQgetisnull(r, i, 5))
			cJSON_AddNullToObject(h, "model");
		else
			cJSON_AddStringToObject(h, "model", PQgetvalue(r, i, 5));
		cJSON_AddNumberToObject(h, "rank", strtod(PQgetvalue(r, i, 6), NULL));
		char *snip = snippet_html(PQgetvalue(r, i, 7));
		cJSON_AddStringToObject(h, "snippet", snip ? snip : "");
		free(snip);
		struct sbuf u = {0};
		sb_puts(&u, "/sessions/");
		url_encode(&u, sid);
		cJSON_AddStringToObject(h, "session_url", u.p ? u.p : "");
		u.len = 0;
		sb_puts(&u, "/transcripts?session_id=");
		url_encode(&u, sid);
		cJSON_AddStringToObject(h, "transcript_url", u.p ? u.p : "");
		free(u.p);
		cJSON_AddItemToArray(hits, h);
	}
	PQclear(r);
	char *s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	set_body(st, 200, s ? strdup(s) : NULL);
	cJSON_free(s);
}

/* Agents of a session as a tree: an agent hangs under its parent_agent_id
 * when that agent is known, else under the session's main agent (the one
 * with no agent_id) when there is one; cycles are cut. */
static cJSON *agent_tree(PGresult *r)
{
	int n = PQntuples(r);
	cJSON *tree = cJSON_CreateArray();
	cJSON **node = calloc((size_t)(n ? n : 1), sizeof *node);
	int *up = calloc((size_t)(n ? n : 1), sizeof *up);
	int root = -1;
	if (!node || !up)
		goto out;
	for (int i = 0; i < n; i++) {
		node[i] = cJSON_Parse(PQgetvalue(r, i, 0));
		if (node[i])
			cJSON_AddArrayToObject(node[i], "children");
		if (PQgetisnull(r, i, 1) && root < 0)
			root = i;
	}
	for (int i = 0; i < n; i++) {
		up[i] = -1;
		if (i == root)
			continue;
		const char *parent = PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2);
		for (int j = 0; parent && j < n; j++)
			if (j != i && !PQgetisnull(r, j, 1) && strcmp(PQgetvalue(r, j, 1), parent) == 0)
				up[i] = j;
		if (up[i] < 0)
			up[i] = root;
	}
	for (int i = 0; i < n; i++) { /* cut cycles */
		int j = up[i], steps = 0;
		while (j >= 0 && j != i && steps++ <= n)
			j = up[j];
		if (j == i)
			up[i] = -1;
	}
	for (int i = 0; i < n; i++) {
		if (!node[i])
			continue;
		if (up[i] >= 0 && node[up[i]])
			cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(node[up[i]], "children"), node[i]);
		else
			cJSON_AddItemToArray(tree, node[i]);
	}
out:
	free(node);
	free(up);
	return tree;
}

static void do_session(struct api_state *st, PGconn **pg)
{
	const char *vals[1] = {st->params.session_id};
	PGresult *r = run(st, pg, api_sql_session_summary, 1, vals);
	if (!r)
		return;
	if (PQntuples(r) == 0) {
		char msg[400];
		snprintf(msg, sizeof msg, "no session \"%.300s\" (unknown, or older than the retention)",
		         st->params.session_id);
		PQclear(r);
		set_error(st, 404, "session_id", msg);
		return;
	}
	cJSON *root = cJSON_CreateObject();
	cJSON *summary = cJSON_Parse(PQgetvalue(r, 0, 0));
	PQclear(r);
	cJSON_AddItemToObject(root, "session", summary ? summary : cJSON_CreateNull());
	r = run(st, pg, api_sql_session_agents, 1, vals);
	if (!r)
		goto fail;
	cJSON_AddItemToObject(root, "agent_tree", agent_tree(r));
	PQclear(r);
	r = run(st, pg, api_sql_session_transcripts, 1, vals);
	if (!r)
		goto fail;
	cJSON *tr = cJSON_AddArrayToObject(root, "transcripts");
	for (int i = 0; i < PQntuples(r); i++) {
		cJSON *t = cJSON_Parse(PQgetvalue(r, i, 0));
		if (t)
			cJSON_AddItemToArray(tr, t);
	}
	PQclear(r);
	char *s = cJSON_PrintUnformatted(root);
	set_body(st, 200, s ? strdup(s) : NULL);
	cJSON_free(s);
fail:
	cJSON_Delete(root);
}

static void do_transcripts(struct api_state *st, PGconn **pg)
{
	struct sbuf b = {0};
	struct api_sql q;
	const char *vals[1] = {st->params.session_id};
	sb_puts(&b, "{\"session_id\":");
	sb_json_str(&b, st->params.session_id);
	sb_puts(&b, ",\"transcripts\":[");
	PGresult *r = run(st, pg, api_sql_session_transcripts, 1, vals);
	if (!r)
		goto fail;
	for (int i = 0; i < PQntuples(r); i++) {
		if (i)
			sb_put(&b, ",", 1);
		sb_put(&b, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
	}
	PQclear(r);
	sb_puts(&b, "],");
	api_sql_messages(&st->params, &q);
	if (page(st, pg, &q, "messages", 'm', 0, st->params.limit, &b))
		goto fail;
	sb_puts(&b, "}");
	if (b.failed)
		goto fail;
	set_body(st, 200, b.p);
	return;
fail:
	free(b.p);
	if (!st->body)
		set_error(st, 500, NULL, "out of memory");
}

static void do_page(struct api_state *st, PGconn **pg)
{
	struct sbuf b = {0};
	struct api_sql q;
	const struct api_params *p = &st->params;
	sb_puts(&b, "{");
	int rc;
	switch (st->ep) {
	case API_EVENTS:
		api_sql_events(p, &q);
		rc = page(st, pg, &q, "events", 'e', p->desc, p->limit, &b);
		break;
	case API_EVENTS_RECENT:
		sb_puts(&b, "\"session_id\":");
		sb_json_str(&b, p->session_id);
		sb_puts(&b, ",");
		api_sql_recent(p, &q);
		rc = page(st, pg, &q, "events", 0, 0, p->limit, &b);
		break;
	default:
		api_sql_sessions(p, &q);
		rc = page(st, pg, &q, "sessions", 's', 1, p->limit, &b);
		break;
	}
	sb_puts(&b, "}");
	if (rc || b.failed) {
		free(b.p);
		if (!st->body)
			set_error(st, 500, NULL, "out of memory");
		return;
	}
	set_body(st, 200, b.p);
}

static double since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void execute(struct api_state *st)
{
	char err[300];
	PGconn *pg = pgpool_get(pool, 2000, err, sizeof err);
	if (!pg) {
		char msg[400];
		snprintf(msg, sizeof msg, "postgres unavailable: %s", err);
		set_error(st, 503, NULL, msg);
		return;
	}
	switch (st->ep) {
	case API_SEARCH: do_search(st, &pg); break;
	case API_SESSION: do_session(st, &pg); break;
	case API_TRANSCRIPTS: do_transcripts(st, &pg); break;
	default: do_page(st, &pg); break;
	}
	if (pg)
		pgpool_put(pool, pg);
}

/* ---------------------------------------------------------- query threads -- */

static struct api_state *take(void)
{
	pthread_mutex_lock(&q_lock);
	while (!q_head && !q_stopping)
		pthread_cond_wait(&q_cond, &q_lock);
	struct api_state *st = q_head;
	if (st) {
		q_head = st->next;
		if (!q_head)
			q_tail = NULL;
		q_len--;
	}
	pthread_mutex_unlock(&q_lock);
	return st;
}

static void *query_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct api_state *st = take();
		if (!st)
			break; /* stopping and nothing queued */
		execute(st);
		met_observe(met_series(m_dur, api_endpoint_name(st->ep)), since(&st->start));
		st->phase = PH_DONE;
		MHD_resume_connection(st->conn); /* the request thread owns st again */
	}
	return NULL;
}

/* Queue a read; -1 (nothing queued) when stopping or full. */
static int enqueue(struct api_state *st, char *why, size_t whylen)
{
	int rc = 0;
	pthread_mutex_lock(&q_lock);
	if (q_stopping || !started) {
		snprintf(why, whylen, "collector is shutting down; retry later");
		rc = -1;
	} else if (q_len >= MAX_QUEUE) {
		snprintf(why, whylen, "too many history queries waiting (%d); retry later", q_len);
		rc = -1;
	} else {
		st->next = NULL;
		st->phase = PH_QUEUED;
		if (q_tail)
			q_tail->next = st;
		else
			q_head = st;
		q_tail = st;
		q_len++;
		/* suspend before a thread can resume it */
		MHD_suspend_connection(st->conn);
		pthread_cond_signal(&q_cond);
	}
	pthread_mutex_unlock(&q_lock);
	return rc;
}

int api_start(const struct collector_conf *cf, struct met_registry *reg, char *err, size_t errlen)
{
	char setup[256];
	conf = cf;
	limits.max_limit = 1000;
	limits.max_range_ms = (int64_t)cf->api_max_range_days * 86400000LL;
	transcript_body_max = (size_t)cf->max_body_bytes > MAX_TRANSCRIPT_BODY ? (size_t)cf->max_body_bytes
	                                                                        : MAX_TRANSCRIPT_BODY;
	/* read-only even if the role were not; no JIT (its compile time dwarfs these queries) */
	snprintf(setup, sizeof setup,
	         "SET statement_timeout = %lld; SET default_transaction_read_only = on; "
	         "SET TIME ZONE 'UTC'; SET jit = off", cf->api_statement_timeout_ms);
	n_threads = (int)(cf->api_threads < MAX_THREADS ? cf->api_threads : MAX_THREADS);
	if (pg_sslmode_check("collector.pg_sslmode", cf->pg_sslmode, err, errlen))
		return -1;
	struct pg_auth auth = {cf->pg_password, cf->pg_sslmode, cf->pg_sslrootcert};
	pool = pgpool_new(cf->pg_conninfo, &auth, n_threads, setup, "agent-obs-collector");
	if (!pool) {
		snprintf(err, errlen, "history api: out of memory");
		return -1;
	}
	m_dur = met_histogram(reg, "agent_obs_api_query_duration_seconds",
	                      "History API requests, queued to answered, by endpoint", "endpoint",
	                      met_latency_buckets, met_latency_nbuckets);
	m_errors = met_counter(reg, "agent_obs_api_postgres_errors_total",
	                       "History API queries that failed in PostgreSQL, by endpoint", "endpoint");
	m_messages = met_series(met_counter(reg, "agent_obs_transcript_messages_accepted_total",
	                                    "Transcript messages appended to the transcript stream", NULL));
	pthread_mutex_lock(&q_lock);
	q_stopping = 0;
	started = 1;
	pthread_mutex_unlock(&q_lock);
	for (int i = 0; i < n_threads; i++) {
		if (pthread_create(&threads[i], NULL, query_main, NULL)) {
			n_threads = i;
			snprintf(err, errlen, "history api: cannot start query threads");
			api_stop();
			return -1;
		}
	}
	return 0;
}

void api_stop(void)
{
	pthread_mutex_lock(&q_lock);
	int was = started;
	started = 0;
	q_stopping = 1;
	pthread_cond_broadcast(&q_cond);
	pthread_mutex_unlock(&q_lock);
	if (!was)
		return;
	for (int i = 0; i < n_threads; i++)
		pthread_join(threads[i], NULL); /* they answer what is queued first */
	n_threads = 0;
	pgpool_free(pool);
	pool = NULL;
}

/* ------------------------------------------------------------ HTTP hooks -- */

int api_route(const char *method, const char *url)
{
	enum api_endpoint ep = api_endpoint_of(url, NULL);
	if (ep == API_NONE)
		return 0;
	/* POST /events and POST /observability/events stay ingest */
	if (ep == API_EVENTS)
		return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	return 1;
}

struct arg_list {
	struct api_kv kv[MAX_ARGS];
	size_t n;
	int overflow;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	struct arg_list *a = cls;
	(void)kind;
	if (a->n == MAX_ARGS) {
		a->overflow = 1;
		return MHD_NO;
	}
	a->kv[a->n].key = key;
	a->kv[a->n].value = value;
	a->n++;
	return MHD_YES;
}

static int json_type(struct MHD_Connection *c)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ct || !*ct)
		return 1;
	size_t n = strcspn(ct, "; \t");
	return (n == 16 && strncasecmp(ct, "application/json", n) == 0) ||
	       (n == 10 && strncasecmp(ct, "text/plain", n) == 0);
}

static enum MHD_Result post_transcript(struct MHD_Connection *c, struct api_state *st,
                                       const char *upload, size_t *upload_size, int *code)
{
	char why[192];
	if (!st->checked) {
		/* Refusals are answered after the body was read (and dropped):
		 * a reply queued mid-upload would cut the connection. */
		st->checked = 1;
		st->bad_type = !json_type(c);
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		                                             MHD_HTTP_HEADER_CONTENT_LENGTH);
		long long clen = cl ? strtoll(cl, NULL, 10) : 0;
		if (clen > (long long)transcript_body_max)
			st->too_large = 1;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (st->bad_type)
			return MHD_YES;
		if (st->too_large || st->len + n > transcript_body_max) {
			st->too_large = 1;
			free(st->buf);
			st->buf = NULL;
			st->len = st->cap = 0;
			return MHD_YES;
		}
		if (st->len + n > st->cap) {
			size_t cap = st->cap ? st->cap : 8192;
			while (cap < st->len + n)
				cap *= 2;
			char *b = realloc(st->buf, cap);
			if (!b)
				return MHD_NO;
			st->buf = b;
			st->cap = cap;
		}
		memcpy(st->buf + st->len, upload, n);
		st->len += n;
		return MHD_YES;
	}
	if (st->submitted) {
		if (st->job.status == 0)
			return MHD_YES; /* Redis has not answered yet: called again next pass */
		if (st->job.status == 202) {
			char ok[96];
			met_inc(m_messages, (double)st->n_messages);
			snprintf(ok, sizeof ok, "{\"status\":\"queued\",\"messages\":%zu}", st->n_messages);
			set_body(st, 202, strdup(ok));
			return reply(c, st, code);
		}
		return reply_error(c, st, 503, NULL, st->job.err, code);
	}
	if (st->bad_type)
		return reply_error(c, st, 415, "Content-Type", "use application/json", code);
	if (st->too_large) {
		snprintf(why, sizeof why, "body exceeds the %zu-byte limit: send fewer messages per request",
		         transcript_body_max);
		return reply_error(c, st, 413, "", why, code);
	}
	if (st->len == 0)
		return reply_error(c, st, 400, "", "empty body: send {session_id, agent_id, messages: [...]}",
		                   code);
	if (writer_admit(why, sizeof why))
		return reply_error(c, st, 503, NULL, why, code);
	struct api_error e;
	char *norm = NULL;
	size_t norm_len = 0;
	if (transcript_normalise(st->buf, st->len, ev_now_ms(), &transcript_default_limits, &norm,
	                         &norm_len, &st->n_messages, &e))
		return reply_error(c, st, e.status, e.field, e.message, code);
	free(st->buf);
	st->buf = NULL;
	struct ingest_result *en = &st->entry;
	en->data = calloc(1, sizeof *en->data);
	en->lens = calloc(1, sizeof *en->lens);
	en->ids = calloc(1, sizeof *en->ids);
	en->probe = calloc(1, 1); /* no "p" field: transcripts are keyed by message id */
	if (!en->data || !en->lens || !en->ids || !en->probe) {
		cJSON_free(norm);
		return reply_error(c, st, 503, NULL, "out of memory", code);
	}
	en->data[0] = norm;
	en->lens[0] = norm_len;
	en->n = 1;
	st->job.events = en;
	st->job.stream = conf->transcript_stream;
	st->submitted = 1;
	writer_submit(&st->job);
	return MHD_YES;
}

enum MHD_Result api_handle(struct MHD_Connection *c, const char *method, const char *url,
                           const char *upload, size_t *upload_size, void **state, int *code)
{
	struct api_state *st = *state;
	char why[192];
	if (!st) {
		st = calloc(1, sizeof *st);
		if (!st)
			return MHD_NO;
		*state = st;
		st->conn = c;
		clock_gettime(CLOCK_MONOTONIC, &st->start);
		st->ep = api_endpoint_of(url, NULL);
		if (st->ep == API_TRANSCRIPTS && strcmp(method, "POST") == 0)
			st->ep = API_POST_TRANSCRIPT;
	}
	if (st->ep == API_POST_TRANSCRIPT)
		return post_transcript(c, st, upload, upload_size, code);
	if (*upload_size) { /* reads take no body */
		*upload_size = 0;
		return MHD_YES;
	}
	if (st->phase == PH_DONE)
		return reply(c, st, code);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply_error(c, st, 405, NULL,
		                   st->ep == API_TRANSCRIPTS ? "use GET to read or POST to send transcripts"
		                                              : "use GET",
		                   code);

	struct arg_list args = {.n = 0};
	const char *path_arg = NULL;
	struct api_error e;
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &args);
	if (args.overflow) {
		snprintf(why, sizeof why, "more than %d query parameters", MAX_ARGS);
		return reply_error(c, st, 400, "", why, code);
	}
	api_endpoint_of(url, &path_arg);
	if (api_params_parse(st->ep, args.kv, args.n, path_arg, ev_now_ms(), &limits, &st->params, &e))
		return reply_error(c, st, e.status, e.field, e.message, code);
	if (enqueue(st, why, sizeof why))
		return reply_error(c, st, 503, NULL, why, code);
	return MHD_YES;
}

void api_free(void *state)
{
	struct api_state *st = state;
	if (!st)
		return;
	writer_cancel(&st->job);
	api_params_free(&st->params);
	ingest_result_free(&st->entry);
	free(st->body);
	free(st->buf);
	free(st);
}
