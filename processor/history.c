/* history.c -- the processor's history hooks (see history.h): pricing and
 * token/cost counters for events, and the periodic work beside the event
 * pipeline -- transcripts, transcript partitions ahead of time, retention.
 * Owns a second PostgreSQL connection so that this work never disturbs the
 * event store's session (its temp staging table, its settings). Main thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history.h"
#include "log.h"
#include "met.h"
#include "processor.h"

static const struct processor_conf *cf;
static struct prices prices;
static PGconn *pg;
static int64_t next_parts, next_retention, pg_retry_at;
static struct {
	struct met_family *tokens, *cost, *dropped;
	struct met_series *retention_errors;
} m;

int history_init(const struct processor_conf *conf, struct met_registry *reg, char *err,
                 size_t errlen)
{
	cf = conf;
	if (cf->prices_file && cf->prices_file[0]) {
		int rc = prices_load(cf->prices_file, &prices, err, errlen);
		if (rc < 0)
			return -1;
		char n[16];
		snprintf(n, sizeof n, "%zu", prices.n);
		if (rc == 1)
			log_kv(LOG_WARN, "price file not found: cost is not computed from tokens", "file",
			       cf->prices_file, NULL);
		else
			log_kv(LOG_INFO, "prices loaded", "file", cf->prices_file, "models", n, NULL);
	}
	m.tokens = met_counter(reg, "agent_obs_tokens_total",
	                       "Tokens reported by stored events, by agent, model and kind "
	                       "(input, output, cache_read, cache_creation)", "agent,model,kind");
	m.cost = met_counter(reg, "agent_obs_cost_usd_total",
	                     "Cost in USD of stored events (reported, or computed from config/prices.yaml)",
	                     "agent,model");
	m.dropped = met_counter(reg, "agent_obs_processor_partitions_dropped_total",
	                        "Daily partitions dropped by retention, by table", "table");
	m.retention_errors = met_series(met_counter(reg, "agent_obs_processor_retention_errors_total",
	                                            "Retention rounds that failed (retried later)", NULL));
	struct transcripts_stats ts = {
		.stored = met_series(met_counter(reg, "agent_obs_processor_transcript_messages_stored_total",
		                                 "Transcript messages committed to PostgreSQL", NULL)),
		.duplicates = met_series(met_counter(reg, "agent_obs_processor_transcript_messages_duplicate_total",
		                                     "Transcript messages already stored (re-sent or redelivered)", NULL)),
		.entries = met_series(met_counter(reg, "agent_obs_processor_transcript_entries_total",
		                                  "Transcript stream entries stored", NULL)),
		.dead = met_series(met_counter(reg, "agent_obs_processor_transcripts_dead_lettered_total",
		                               "Transcript entries moved to the transcript dead-letter stream", NULL)),
		.errors = met_series(met_counter(reg, "agent_obs_processor_transcript_db_errors_total",
		                                 "PostgreSQL failures while storing transcripts (retried)", NULL)),
	};
	transcripts_setup(cf, &ts);
	return 0;
}

void history_free(void)
{
	prices_free(&prices);
	if (pg)
		PQfinish(pg);
	pg = NULL;
}

/* ------------------------------------------------------------ PostgreSQL -- */

PGconn *history_pg(char *err, size_t errlen)
{
	if (pg && PQstatus(pg) == CONNECTION_OK)
		return pg;
	if (pg)
		PQfinish(pg);
	struct pg_auth auth = {cf->pg_password, cf->pg_sslmode, cf->pg_sslrootcert};
	pg = pg_connect(cf->pg_conninfo, &auth, "agent-obs-processor-history", "5", err, errlen);
	if (!pg)
		return NULL;
	PGresult *r = PQexec(pg, "SET TIME ZONE 'UTC'");
	PQclear(r);
	transcripts_forget_days(); /* a new session knows nothing */
	return pg;
}

void history_pg_check(void)
{
	if (pg && PQstatus(pg) != CONNECTION_OK) {
		PQfinish(pg);
		pg = NULL;
	}
}

/* ----------------------------------------------------------- event hooks -- */

static const char *model_of(const struct ev_row *row)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(row->json, "payload");
	const cJSON *mo = cJSON_GetObjectItemCaseSensitive(p, "model");
	return cJSON_IsString(mo) && mo->valuestring[0] ? mo->valuestring : NULL;
}

void history_price(struct ev_row *row)
{
	if (row->has_cost || !prices.n)
		return;
	if (!(row->has_tokens[0] || row->has_tokens[1] || row->has_tokens[2] || row->has_tokens[3]))
		return;
	const struct price *pr = prices_find(&prices, model_of(row));
	if (!pr)
		return;
	row->cost_usd = prices_cost(pr, row->tokens, row->has_tokens);
	row->has_cost = 1;
}

void history_count(const struct ev_row *row)
{
	int any = row->has_cost;
	for (int i = 0; i < PRICE_KINDS; i++)
		any |= row->has_tokens[i] && row->tokens[i] > 0;
	if (!any)
		return;
	/* agent: the role when known (bounded), else the agent id, else the main agent */
	const char *agent = row->agent_role ? row->agent_role : row->agent_id ? row->agent_id : "main";
	const char *model = model_of(row);
	if (!model)
		model = "unknown";
	for (int i = 0; i < PRICE_KINDS; i++)
		if (row->has_tokens[i] && row->tokens[i] > 0)
			met_inc(met_series(m.tokens, agent, model, price_kinds[i]), (double)row->tokens[i]);
	if (row->has_cost && row->cost_usd > 0)
		met_inc(met_series(m.cost, agent, model), row->cost_usd);
}

/* ---------------------------------------------------------------- timers -- */

static void dropped(const char *name)
{
	const char *table = strncmp(name, "transcript_messages_", 20) == 0 ? "transcript_messages"
	                                                                    : "agent_events";
	met_inc(met_series(m.dropped, table), 1);
	log_kv(LOG_INFO, "retention: partition dropped", "table", table, "partition", name, NULL);
}

void history_tick(redisContext *rc, const char *consumer)
{
	char err[512];
	int64_t now = ev_mono_ms();
	if (now >= pg_retry_at && (now >= next_parts || now >= next_retention)) {
		PGconn *c = history_pg(err, sizeof err);
		if (!c) {
			log_kv(LOG_WARN, "history: postgres unavailable; will retry", "error", err, NULL);
			pg_retry_at = now + 5000;
		}
		if (c && now >= next_parts) {
			if (transcripts_ensure_partitions(c, (int)cf->partition_days_ahead, err, sizeof err)) {
				log_kv(LOG_WARN, "transcript partition upkeep failed; will retry", "error", err, NULL);
				history_pg_check();
				next_parts = now + 5000;
			} else {
				next_parts = now + 3600 * 1000;
			}
		}
		if (c && now >= next_retention && PQstatus(c) == CONNECTION_OK) {
			if (retention_run(c, (int)cf->retention_days, dropped, err, sizeof err)) {
				met_inc(m.retention_errors, 1);
				log_kv(LOG_WARN, "retention failed; will retry", "error", err, NULL);
				history_pg_check();
				next_retention = now + (cf->retention_interval_ms < 60000 ? cf->retention_interval_ms : 60000);
			} else {
				transcripts_forget_days();
				next_retention = now + cf->retention_interval_ms;
			}
		}
	}
	transcripts_tick(rc, consumer);
}
