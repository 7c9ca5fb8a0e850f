/* transcripts.c -- consumer of stream agent_transcripts (see history.h): the
 * processor's group reads entries written by POST /transcripts, stores each
 * message once in transcript_messages (keyed by session and message id) and
 * keeps one chat_transcripts row per (session, agent), all in one statement
 * (one transaction), then acknowledges. Same guarantees as events: nothing
 * is acknowledged before its commit, our own pending entries are re-read
 * first after a restart or a failure, entries idle on a dead consumer are
 * claimed, entries that can never be stored go to "<stream>:dead", and the
 * stream is trimmed only below what every group has acknowledged.
 * Runs on the main thread, called between event batches: reads never block. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "history.h"
#include "log.h"
#include "met.h"
#include "processor.h"
#include "rs.h"

#define READ_COUNT 50      /* entries per read (each up to a few MiB) */
#define ROUNDS_PER_TICK 20 /* reads per tick while entries keep coming */
#define TICK_BUDGET_MS 200 /* ... or until this much time went by */

static const struct processor_conf *cf;
static struct transcripts_stats stats;
static char dead_stream[300];
static int pending_phase = 1, group_ok;
static int64_t next_try, backoff_ms, next_claim, next_trim;
static long known_days[64];
static int n_known;

/* Every message's session_id/agent_id/message_id/ts come from the entry:
 * the SQL expands a JSON array [{"s": stream id, "e": entry}, ...]. */
static const char *const insert_sql =
	"WITH src AS ("
	" SELECT x.value->>'s' AS stream_id, x.value->'e' AS e FROM jsonb_array_elements($1::jsonb) AS x"
	"), msgs AS ("
	" SELECT DISTINCT ON (e->>'session_id', m->>'uuid')"
	"  e->>'session_id' AS session_id, coalesce(e->>'agent_id', '') AS agent_id,"
	"  m->>'uuid' AS message_id, (m->>'timestamp')::timestamptz AS ts, m->>'role' AS role,"
	"  coalesce(m->>'text', '') AS text, m->>'model' AS model,"
	"  (m->'tokens'->>'input')::bigint AS ti, (m->'tokens'->>'output')::bigint AS tout,"
	"  (m->'tokens'->>'cache_read')::bigint AS tcr, (m->'tokens'->>'cache_creation')::bigint AS tcc,"
	"  src.stream_id, e->>'transcript_path' AS path"
	" FROM src, jsonb_array_elements(e->'messages') AS m"
	" ORDER BY e->>'session_id', m->>'uuid', src.stream_id"
	"), ins AS ("
	" INSERT INTO transcript_messages (session_id, agent_id, message_id, ts, role, text, model,"
	"  tokens_input, tokens_output, tokens_cache_read, tokens_cache_creation, stream_id)"
	" SELECT session_id, agent_id, message_id, ts, role, text, model, ti, tout, tcr, tcc, stream_id"
	" FROM msgs s WHERE NOT EXISTS (SELECT 1 FROM transcript_messages o"
	"  WHERE o.session_id = s.session_id AND o.message_id = s.message_id)"
	" ON CONFLICT DO NOTHING"
	" RETURNING session_id, agent_id, ts, model, tokens_input, tokens_output, tokens_cache_read,"
	"  tokens_cache_creation"
	"), paths AS ("
	" SELECT DISTINCT ON (session_id, agent_id) session_id, agent_id, path FROM msgs"
	" WHERE path IS NOT NULL ORDER BY session_id, agent_id, stream_id DESC"
	"), agg AS ("
	" SELECT session_id, agent_id, min(ts) AS f, max(ts) AS l, count(*) AS n,"
	"  (array_agg(model ORDER BY ts DESC) FILTER (WHERE model IS NOT NULL))[1] AS model,"
	"  coalesce(sum(tokens_input), 0) AS ti, coalesce(sum(tokens_output), 0) AS tout,"
	"  coalesce(sum(tokens_cache_read), 0) AS tcr, coalesce(sum(tokens_cache_creation), 0) AS tcc"
	" FROM ins GROUP BY session_id, agent_id"
	"), up AS ("
	" INSERT INTO chat_transcripts AS c (session_id, agent_id, transcript_path, first_ts, last_ts,"
	"  messages, model, tokens_input, tokens_output, tokens_cache_read, tokens_cache_creation)"
	" SELECT a.session_id, a.agent_id, p.path, a.f, a.l, a.n, a.model, a.ti, a.tout, a.tcr, a.tcc"
	" FROM agg a LEFT JOIN paths p USING (session_id, agent_id) ORDER BY a.session_id, a.agent_id"
	" ON CONFLICT (session_id, agent_id) DO UPDATE SET"
	"  transcript_path = coalesce(EXCLUDED.transcript_path, c.transcript_path),"
	"  first_ts = least(c.first_ts, EXCLUDED.first_ts),"
	"  last_ts = greatest(c.last_ts, EXCLUDED.last_ts),"
	"  messages = c.messages + EXCLUDED.messages,"
	"  model = CASE WHEN EXCLUDED.last_ts >= c.last_ts THEN coalesce(EXCLUDED.model, c.model)"
	"          ELSE coalesce(c.model, EXCLUDED.model) END,"
	"  tokens_input = c.tokens_input + EXCLUDED.tokens_input,"
	"  tokens_output = c.tokens_output + EXCLUDED.tokens_output,"
	"  tokens_cache_read = c.tokens_cache_read + EXCLUDED.tokens_cache_read,"
	"  tokens_cache_creation = c.tokens_cache_creation + EXCLUDED.tokens_cache_creation,"
	"  updated_at = now()"
	" RETURNING 1"
	") SELECT (SELECT count(*) FROM msgs), (SELECT count(*) FROM ins)";

void transcripts_setup(const struct processor_conf *conf, const struct transcripts_stats *st)
{
	cf = conf;
	stats = *st;
	snprintf(dead_stream, sizeof dead_stream, "%s:dead", cf->transcript_stream);
}

void transcripts_forget_days(void)
{
	n_known = 0;
}

/* ------------------------------------------------------------ partitions -- */

static int ensure_day(PGconn *pg, long day, char *err, size_t errlen)
{
	for (int i = 0; i < n_known; i++)
		if (known_days[i] == day)
			return 0;
	char date[32];
	time_t t = (time_t)day * 86400;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%Y-%m-%d", &tm);
	const char *vals[1] = {date};
	PGresult *r = PQexecParams(pg, "SELECT history_ensure_partition('transcript_messages', $1::date)",
	                           1, NULL, vals, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "postgres: transcript partition for %s: %s", date,
		         PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = '\0';
		rc = -1;
	} else {
		if (n_known == 64)
			n_known = 0;
		known_days[n_known++] = day;
	}
	PQclear(r);
	return rc;
}

int transcripts_ensure_partitions(PGconn *pg, int days_ahead, char *err, size_t errlen)
{
	long today = (long)(time(NULL) / 86400);
	for (long d = today - 1; d <= today + days_ahead; d++)
		if (ensure_day(pg, d, err, errlen))
			return -1;
	return 0;
}

/* ------------------------------------------------------------- validation -- */

/* The fields the SQL relies on; the day of each message into days[]. */
static int check_entry(const struct rs_entry *e, long *days, size_t *ndays, size_t maxdays,
                       char *why, size_t whylen)
{
	cJSON *j = cJSON_ParseWithLength(e->data, e->len);
	int rc = -1;
	if (!cJSON_IsObject(j)) {
		snprintf(why, whylen, "entry is not a JSON object");
		goto out;
	}
	const cJSON *sid = cJSON_GetObjectItemCaseSensitive(j, "session_id");
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
	const cJSON *aid = cJSON_GetObjectItemCaseSensitive(j, "agent_id");
	if (!cJSON_IsString(sid) || !*sid->valuestring || (aid && !cJSON_IsString(aid))) {
		snprintf(why, whylen, "session_id/agent_id: missing or not a string");
		goto out;
	}
	if (!cJSON_IsArray(msgs)) {
		snprintf(why, whylen, "messages: missing or not an array");
		goto out;
	}
	int i = 0;
	for (const cJSON *m = msgs->child; m; m = m->next, i++) {
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(m, "uuid");
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
		const cJSON *ts = cJSON_GetObjectItemCaseSensitive(m, "timestamp");
		int64_t ms;
		if (!cJSON_IsString(u) || !*u->valuestring || !cJSON_IsString(role) || !cJSON_IsString(ts) ||
		    ev_parse_iso8601(ts->valuestring, &ms)) {
			snprintf(why, whylen, "messages[%d]: uuid, role or timestamp missing or invalid", i);
			goto out;
		}
		long day = (long)(ms >= 0 ? ms / 86400000 : -1);
		size_t k = 0;
		while (k < *ndays && days[k] != day)
			k++;
		if (k == *ndays && *ndays < maxdays)
			days[(*ndays)++] = day;
	}
	rc = 0;
out:
	cJSON_Delete(j);
	return rc;
}

/* ---------------------------------------------------------------- storing -- */

enum outcome { OK, RETRY, DATA };

static enum outcome classify(PGconn *pg, const PGresult *r)
{
	if (PQstatus(pg) != CONNECTION_OK)
		return RETRY;
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (st && (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0 || strncmp(st, "54", 2) == 0))
		return DATA;
	return RETRY;
}

/* One statement over entries v[0..n). */
static enum outcome store(PGconn *pg, struct rs_entry *const *v, size_t n, char *err, size_t errlen)
{
	size_t cap = 2;
	for (size_t i = 0; i < n; i++)
		cap += v[i]->len + 80;
	char *arr = malloc(cap), *p = arr;
	if (!arr) {
		snprintf(err, errlen, "out of memory");
		return RETRY;
	}
	*p++ = '[';
	for (size_t i = 0; i < n; i++) {
		/* a stream id is digits and '-': nothing to escape */
		p += snprintf(p, cap - (size_t)(p - arr), "%s{\"s\":\"%s\",\"e\":", i ? "," : "", v[i]->id);
		memcpy(p, v[i]->data, v[i]->len);
		p += v[i]->len;
		*p++ = '}';
	}
	*p++ = ']';
	*p = '\0';
	const char *vals[1] = {arr};
	PGresult *r = PQexecParams(pg, insert_sql, 1, NULL, vals, NULL, NULL, 0);
	free(arr);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = '\0';
		enum outcome o = classify(pg, r);
		PQclear(r);
		return o;
	}
	double msgs = strtod(PQgetvalue(r, 0, 0), NULL), ins = strtod(PQgetvalue(r, 0, 1), NULL);
	met_inc(stats.stored, ins);
	met_inc(stats.duplicates, msgs - ins);
	met_inc(stats.entries, (double)n);
	PQclear(r);
	return OK;
}

static int dead_letter(redisContext *rc, const struct rs_entry *e, const char *reason,
                       const char *detail)
{
	if (rs_dead_letter(rc, dead_stream, e, reason, detail))
		return -1;
	met_inc(stats.dead, 1);
	log_kv(LOG_WARN, "transcript entry dead-lettered", "stream_id", e->id, "reason", reason,
	       "detail", detail, NULL);
	return 0;
}

/* Store and acknowledge a batch. -1: nothing more this tick (PostgreSQL or
 * Redis trouble; unacknowledged entries stay pending and come back). */
static int process(redisContext *rc, struct rs_batch *b)
{
	char err[512], why[256];
	size_t n = b->n, nok = 0, nack = 0, ndays = 0;
	struct rs_entry **ok = calloc(n ? n : 1, sizeof *ok);
	const char **acks = calloc(n ? n : 1, sizeof *acks);
	long days[64];
	int rcode = -1;
	if (!ok || !acks)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct rs_entry *e = &b->v[i];
		if (!e->data) { /* trimmed or deleted while pending */
			acks[nack++] = e->id;
			continue;
		}
		if (check_entry(e, days, &ndays, 64, why, sizeof why)) {
			if (dead_letter(rc, e, "invalid_transcript", why))
				goto out;
			acks[nack++] = e->id;
			continue;
		}
		ok[nok++] = e;
	}
	if (nok) {
		PGconn *pg = history_pg(err, sizeof err);
		if (!pg)
			goto pg_fail;
		for (size_t d = 0; d < ndays; d++)
			if (ensure_day(pg, days[d], err, sizeof err))
				goto pg_fail;
		enum outcome o = store(pg, ok, nok, err, sizeof err);
		if (o == DATA) {
			/* find the entry PostgreSQL refuses: one at a time */
			for (size_t i = 0; i < nok; i++) {
				o = store(pg, &ok[i], 1, err, sizeof err);
				if (o == RETRY)
					goto pg_fail;
				if (o == DATA && dead_letter(rc, ok[i], "db_rejected", err))
					goto out;
				acks[nack++] = ok[i]->id;
			}
		} else if (o == RETRY) {
			goto pg_fail;
		} else {
			for (size_t i = 0; i < nok; i++)
				acks[nack++] = ok[i]->id;
		}
	}
	if (nack && rs_ack(rc, cf->transcript_stream, cf->group, acks, nack, err, sizeof err)) {
		log_kv(LOG_WARN, "transcripts: XACK failed; entries will be redelivered", "error", err, NULL);
		goto out;
	}
	backoff_ms = 0;
	rcode = 0;
	goto out;
pg_fail:
	met_inc(stats.errors, 1);
	history_pg_check();
	backoff_ms = backoff_ms ? (backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2) : 100;
	next_try = ev_mono_ms() + backoff_ms;
	log_kv(LOG_WARN, "transcripts: postgres write failed, will retry (nothing acknowledged)", "error",
	       err, NULL);
	/* what was acknowledgeable (dead letters, missing) still is */
	if (nack)
		rs_ack(rc, cf->transcript_stream, cf->group, acks, nack, err, sizeof err);
out:
	if (rcode)
		pending_phase = 1; /* re-read our own pending entries first */
	free(ok);
	free(acks);
	return rcode;
}

/* ---------------------------------------------------------------- upkeep -- */

static void claim(redisContext *rc, const char *consumer)
{
	char next[48] = "0-0", err[256];
	struct rs_batch b = {0};
	for (int rounds = 0; rounds < 10; rounds++) {
		char start[48];
		snprintf(start, sizeof start, "%s", next);
		rs_batch_clear(&b);
		if (rs_autoclaim(rc, cf->transcript_stream, cf->group, consumer, cf->claim_idle_ms, start,
		                 READ_COUNT, next, &b, err, sizeof err) < 0)
			break;
		if (b.n && process(rc, &b))
			break;
		if (strcmp(next, "0-0") == 0)
			break;
	}
	rs_batch_free(&b);
}

static void trim(redisContext *rc)
{
	char err[256], floor_s[48];
	struct rs_id floor, keep;
	int has;
	long long trimmed;
	if (rs_trim_floor(rc, cf->transcript_stream, &floor, &has, err, sizeof err) || !has)
		return;
	int64_t now = ev_now_ms();
	keep.ms = (uint64_t)(now > cf->stream_retain_ms ? now - cf->stream_retain_ms : 0);
	keep.seq = 0;
	if (rs_id_cmp(keep, floor) < 0)
		floor = keep;
	rs_id_format(floor, floor_s);
	rs_int(rc, &trimmed, err, sizeof err, "XTRIM %s MINID ~ %s", cf->transcript_stream, floor_s);
}

void transcripts_tick(redisContext *rc, const char *consumer)
{
	char err[256];
	struct rs_batch b = {0};
	int64_t start = ev_mono_ms();
	if (!rc || rc->err || start < next_try)
		return;
	if (!group_ok) {
		if (rs_group_ensure(rc, cf->transcript_stream, cf->group, "0", err, sizeof err)) {
			log_kv(LOG_WARN, "transcripts: cannot create consumer group", "error", err, NULL);
			next_try = start + 1000;
			return;
		}
		group_ok = 1;
		pending_phase = 1;
	}
	if (!pending_phase && start >= next_claim) {
		claim(rc, consumer);
		next_claim = start + cf->claim_interval_ms;
	}
	if (start >= next_trim) {
		trim(rc);
		next_trim = start + cf->trim_interval_ms;
	}
	for (int round = 0; round < ROUNDS_PER_TICK && !rc->err; round++) {
		rs_batch_clear(&b);
		int got = rs_readgroup(rc, cf->transcript_stream, cf->group, consumer,
		                       pending_phase ? "0" : ">", READ_COUNT, -1, &b, err, sizeof err);
		if (got < 0) {
			if (strstr(err, "NOGROUP"))
				group_ok = 0; /* stream deleted: recreate next tick */
			break;
		}
		if (got == 0) {
			if (!pending_phase)
				break;
			pending_phase = 0;
			continue;
		}
		if (process(rc, &b))
			break;
		if (!pending_phase && got < READ_COUNT)
			break;
		if (ev_mono_ms() - start > TICK_BUDGET_MS)
			break;
	}
	rs_batch_free(&b);
}
