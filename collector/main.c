/* main.c -- the collector daemon: HTTP ingest of agent events into the Redis
 * stream (see server.c for the HTTP side, ingest.c for validation, writer.c
 * for Redis). Reads top to bottom: config, signals, listen, wait, drain, exit.
 * The main thread only waits for a signal; work runs on the event-loop
 * threads (server.c) and the Redis monitor thread (writer.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "arena.h"
#include "auth.h"
#include "collector.h"
#include "daemon.h"
#include "http.h"
#include "log.h"
#include "mask.h"
#include "redact.h"
#include "sig.h"

#define T struct collector_conf
static const struct cfg_setting settings[] = {
	{"collector.bind", CFG_STR, "127.0.0.1",
	 "Listen address; a non-loopback address requires API keys (auth.keys_file)",
	 offsetof(T, bind), 0, -1},
	{"collector.port", CFG_INT, "7070", "HTTP port (ingest, health, metrics)", offsetof(T, port), 1, 65535},
	{"collector.tls_cert", CFG_STR, "",
	 "TLS certificate chain (PEM file) for HTTPS; empty (with tls_key): plain HTTP",
	 offsetof(T, tls_cert), 0, -1},
	{"collector.tls_key", CFG_STR, "", "TLS private key (PEM file, unencrypted) matching tls_cert",
	 offsetof(T, tls_key), 0, -1},
	{"collector.threads", CFG_INT, "2", "Event loops: threads, each serving HTTP with its own Redis connection",
	 offsetof(T, threads), 1, 64},
	{"collector.max_connections", CFG_INT, "4096", "Concurrent HTTP connections",
	 offsetof(T, max_connections), 1, 100000},
	{"collector.max_body_bytes", CFG_INT, "1048576", "Largest request body (413 above)",
	 offsetof(T, max_body_bytes), 1024, 1073741824},
	{"collector.max_event_bytes", CFG_INT, "262144", "Largest single normalised event (413 above)",
	 offsetof(T, max_event_bytes), 256, 16777216},
	{"collector.max_depth", CFG_INT, "32", "Deepest JSON nesting inside an event",
	 offsetof(T, max_depth), 2, 512},
	{"collector.max_string_bytes", CFG_INT, "196608",
	 "Longest string (or field name) inside an event (413 above)", offsetof(T, max_string_bytes), 64,
	 16777216},
	{"collector.max_fields", CFG_INT, "1000", "Most fields (members) of any one object in an event (413 above)",
	 offsetof(T, max_fields), 1, 1000000},
	{"collector.max_array", CFG_INT, "10000", "Most elements of any one array in an event (413 above)",
	 offsetof(T, max_array), 1, 10000000},
	{"collector.max_events_per_request", CFG_INT, "10000", "Most events in one bulk request",
	 offsetof(T, max_events_per_request), 1, 1000000},
	{"collector.max_backlog", CFG_INT, "2000000",
	 "Answer 503 while more events than this wait for the processor", offsetof(T, max_backlog), 1, 1e12},
	{"collector.backlog_group", CFG_STR, "processor",
	 "Consumer group whose lag + pending is the backlog", offsetof(T, backlog_group), 0, -1},
	{"collector.retry_after_s", CFG_INT, "1", "Retry-After seconds on 503", offsetof(T, retry_after_s), 0, 3600},
	{"collector.pg_conninfo", CFG_STR, "host=127.0.0.1 port=5440 dbname=agent_obs user=agent_obs_read",
	 "History API: libpq connection string of the read-only role (no password here: see below)",
	 offsetof(T, pg_conninfo), 0, -1},
	{"collector.pg_password", CFG_STR, "", "History API: PostgreSQL password (prefer pg_password_file)",
	 offsetof(T, pg_password), 0, -1},
	{"collector.pg_password_file", CFG_STR, "", "History API: file holding the PostgreSQL password",
	 offsetof(T, pg_password_file), 0, -1},
	{"collector.pg_sslmode", CFG_STR, "",
	 "History API: libpq sslmode (disable..verify-full; empty: the conninfo's, else prefer)",
	 offsetof(T, pg_sslmode), 0, -1},
	{"collector.pg_sslrootcert", CFG_STR, "", "History API: CA file for sslmode verify-ca/verify-full",
	 offsetof(T, pg_sslrootcert), 0, -1},
	{"collector.api_threads", CFG_INT, "2",
	 "History API: query threads, one PostgreSQL connection each", offsetof(T, api_threads), 1, 16},
	{"collector.api_statement_timeout_ms", CFG_INT, "5000",
	 "History API: longest query (504 after)", offsetof(T, api_statement_timeout_ms), 10, 600000},
	{"collector.api_max_range_days", CFG_INT, "31",
	 "History API: longest from..to of GET /events", offsetof(T, api_max_range_days), 1, 3660},
	{"collector.cors_origin", CFG_STR, "",
	 "History API: the one browser origin allowed to read it cross-origin (the dashboard, e.g. "
	 "http://127.0.0.1:7071); empty = no CORS headers",
	 offsetof(T, cors_origin), 0, -1},
	{"collector.transcript_stream", CFG_STR, "agent_transcripts",
	 "Stream that POST /transcripts appends to", offsetof(T, transcript_stream), 0, -1},
	{"collector.redaction_file", CFG_STR, "config/redaction.yaml",
	 "Secret redaction settings (kinds, e-mail, extra patterns); missing file: built-in defaults",
	 offsetof(T, redaction_file), 0, -1},
	CFG_ROWS_COMMON(T),
};
#undef T
#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* Secret redaction, the same for every ingest route: config/redaction.yaml
 * (a missing file means the built-in defaults; a bad one stops the start). */
static struct redact_conf redaction;

static int load_redaction(const struct collector_conf *cf)
{
	char err[512], n[16];
	if (!cf->redaction_file || !cf->redaction_file[0]) {
		redact_conf_init(&redaction);
		log_info("redaction: built-in defaults (collector.redaction_file is empty)");
		return 0;
	}
	int r = redact_conf_load(cf->redaction_file, &redaction, err, sizeof err);
	if (r < 0) {
		log_kv(LOG_ERROR, "start failed: bad redaction settings", "error", err, NULL);
		return -1;
	}
	snprintf(n, sizeof n, "%zu", redaction.npat);
	if (r == 1)
		log_kv(LOG_WARN, "redaction file not found: built-in defaults", "file", cf->redaction_file, NULL);
	else
		log_kv(LOG_INFO, "redaction settings loaded", "file", cf->redaction_file, "patterns", n, "email",
		       redaction.on[RK_EMAIL] ? "on" : "off", NULL);
	return 0;
}

int main(int argc, char **argv)
{
	struct collector_conf cf;
	struct met_registry *reg = NULL;
	struct auth *auth = NULL;
	char err[512];
	int rc = 1;

	memset(&cf, 0, sizeof cf);
	int code;
	if (daemon_setup(argc, argv, "collector",
	                 "collector: HTTP ingest of agent events into Redis Streams", settings,
	                 N_SETTINGS, &cf, "collector.", &cf.log_level, NULL, NULL, &code))
		return code;
	daemon_keep_heap();
	reg = met_registry_new();
	if (!reg)
		goto out;
	if (daemon_load_auth(cf.auth_keys_file, CFG_AUTH_OPTS(&cf), reg, &auth) ||
	    daemon_check_bind("collector.bind", cf.bind, auth != NULL))
		goto out;
	if (http_cors_set(cf.cors_origin, err, sizeof err)) {
		log_kv(LOG_ERROR, "bad setting", "key", "collector.cors_origin", "error", err, NULL);
		goto out;
	}
	arena_install_cjson_hooks();
	if (load_redaction(&cf))
		goto out;
	redact_conf_metrics(&redaction,
	                    met_counter(reg, "agent_obs_redactions_total",
	                                "Secrets replaced by [REDACTED:<kind>] before events reach Redis, by kind",
	                                "kind"));
	redact_use(&redaction);
	if (api_start(&cf, reg, err, sizeof err) || server_start(&cf, reg, auth, err, sizeof err)) {
		log_kv(LOG_ERROR, "start failed", "error", reg ? err : "out of memory", NULL);
		api_stop();
		goto out;
	}
	char port[16];
	snprintf(port, sizeof port, "%lld", cf.port);
	char pg_shown[512];
	mask_conninfo(cf.pg_conninfo, pg_shown, sizeof pg_shown);
	log_kv(LOG_INFO, "collector listening", "bind", cf.bind, "port", port, "scheme",
	       server_tls_enabled() ? "https" : "http", "stream", cf.stream, "history_postgres", pg_shown, NULL);

	while (!sig_stop)
		sig_sleep_ms(1000);

	log_info("shutting down: draining in-flight requests");
	server_quiesce();
	api_stop(); /* answers the queued history reads while the server still runs */
	server_stop();
	log_info("stopped");
	rc = 0;
out:
	redact_use(NULL);
	redact_conf_clear(&redaction);
	auth_free(auth);
	met_registry_free(reg);
	cfg_free(settings, N_SETTINGS, &cf);
	return rc;
}
