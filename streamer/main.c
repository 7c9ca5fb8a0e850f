/* main.c -- the streamer daemon: live fan-out of the event stream to
 * WebSocket clients (WS /stream, with per-client filters and replay), plus
 * the dashboard's files, /healthz, /readyz and /metrics on the same port.
 * Reads top to bottom: config, refuse a non-loopback bind, metrics, listen
 * (ws.c: one lws context per shard), start the Redis reader and replay
 * worker (source.c), serve until SIGINT/SIGTERM (the shards' threads, shard 0
 * on this one), say goodbye to clients, stop the threads, exit.
 * Start reading at streamer.h for how the parts share work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "met.h"
#include "sig.h"
#include "streamer.h"

#define T struct streamer_conf
static const struct cfg_setting settings[] = {
	{"streamer.bind", CFG_STR, "127.0.0.1",
	 "Listen address; a non-loopback address requires API keys (auth.keys_file)",
	 offsetof(T, bind), 0, -1},
	{"streamer.port", CFG_INT, "7071", "HTTP + WebSocket port (/stream, /, /healthz, /readyz, /metrics)",
	 offsetof(T, port), 1, 65535},
	{"streamer.tls_cert", CFG_STR, "",
	 "TLS certificate chain (PEM file): https:// and wss://; empty (with tls_key): plain HTTP/WS",
	 offsetof(T, tls_cert), 0, -1},
	{"streamer.tls_key", CFG_STR, "", "TLS private key (PEM file, unencrypted) matching tls_cert",
	 offsetof(T, tls_key), 0, -1},
	{"streamer.web_root", CFG_STR, "streamer/web/dist",
	 "Directory of the built dashboard served at / (relative to the working directory)",
	 offsetof(T, web_root), 0, -1},
	{"streamer.api_url", CFG_STR, "",
	 "History API base URL the dashboard's history view reads (GET /config.json), e.g. "
	 "http://127.0.0.1:7070; that collector needs collector.cors_origin = this dashboard's origin. "
	 "Empty: no history view",
	 offsetof(T, api_url), 0, -1},
	{"streamer.max_clients", CFG_INT, "4096", "Most WebSocket clients at once (503 above)",
	 offsetof(T, max_clients), 1, 100000},
	{"streamer.read_count", CFG_INT, "1000", "Most entries per XREAD", offsetof(T, read_count), 1, 100000},
	{"streamer.client_queue_max", CFG_INT, "10000",
	 "Events queued for one client before it is dropped (close 4008)", offsetof(T, client_queue_max), 1,
	 10000000},
	{"streamer.client_queue_bytes", CFG_INT, "16777216",
	 "Bytes queued for one client before it is dropped (close 4008)", offsetof(T, client_queue_bytes),
	 1024, 1073741824},
	{"streamer.client_max_lag_ms", CFG_INT, "10000",
	 "Drop a client (close 4008) whose oldest queued event waited this long", offsetof(T, client_max_lag_ms),
	 100, 3600000},
	{"streamer.client_sndbuf", CFG_INT, "262144",
	 "Kernel send buffer per client (SO_SNDBUF), so a batched frame leaves in one send(); 0: the "
	 "kernel's default (16 KiB, grown slowly)", offsetof(T, client_sndbuf), 0, 16777216},
	{"streamer.frame_max_events", CFG_INT, "500", "Most events batched into one frame (a JSON array)",
	 offsetof(T, frame_max_events), 1, 100000},
	{"streamer.frame_max_bytes", CFG_INT, "65536", "Batch events into one frame up to this many bytes",
	 offsetof(T, frame_max_bytes), 1024, 67108864},
	{"streamer.replay_max", CFG_INT, "10000", "Most events one since= / backlog= replay sends",
	 offsetof(T, replay_max), 1, 1000000},
	{"streamer.replay_scan_max", CFG_INT, "200000", "Most stream entries one replay reads",
	 offsetof(T, replay_scan_max), 1, 100000000},
	{"streamer.ping_interval_s", CFG_INT, "20", "Send a WebSocket ping after this many idle seconds",
	 offsetof(T, ping_interval_s), 1, 3600},
	{"streamer.ping_timeout_s", CFG_INT, "60", "Hang up a client silent (no pong) this many seconds",
	 offsetof(T, ping_timeout_s), 2, 7200},
	{"streamer.threads", CFG_INT, "0",
	 "Service threads, each serving its share of the clients (sending to them is most of the work "
	 "when many watch everything); 0: one per CPU core but one, at least 1 (the kernel's network "
	 "work and the Redis reader need a core too)",
	 offsetof(T, threads), 0, 64},
	CFG_ROWS_COMMON(T),
};
#undef T
#define N_SETTINGS (sizeof settings / sizeof settings[0])

static struct streamer S;

static int setup_metrics(struct streamer *s)
{
	struct met_registry *g = s->m.reg = met_registry_new();
	if (!g)
		return -1;
	s->m.clients = met_series(met_gauge(g, "agent_obs_streamer_clients", "WebSocket clients connected", NULL));
	s->m.connections = met_series(met_counter(g, "agent_obs_streamer_connections_total",
	                                          "WebSocket clients accepted", NULL));
	s->m.frames = met_series(met_counter(g, "agent_obs_streamer_frames_sent_total",
	                                     "WebSocket frames sent (one event, a batch, or a control message)",
	                                     NULL));
	s->m.events_sent = met_series(met_counter(g, "agent_obs_streamer_events_sent_total",
	                                          "Events sent to clients (live and replayed), per client", NULL));
	s->m.dropped = met_counter(g, "agent_obs_streamer_clients_dropped_total",
	                           "Clients closed with 4008 for falling behind, by reason", "reason");
	s->m.lag = met_series(met_histogram(g, "agent_obs_streamer_send_lag_seconds",
	                                    "Stream entry creation to its frame written to a client (live events)",
	                                    NULL, met_latency_buckets, met_latency_nbuckets));
	s->m.read = met_series(met_counter(g, "agent_obs_streamer_events_read_total",
	                                   "Entries read from the Redis stream", NULL));
	s->m.invalid = met_series(met_counter(g, "agent_obs_streamer_entries_invalid_total",
	                                      "Stream entries skipped: no JSON event object in field e", NULL));
	s->m.redis_errors = met_series(met_counter(g, "agent_obs_streamer_redis_errors_total",
	                                           "Redis failures (reader and replay worker)", NULL));
	s->m.replays = met_series(met_counter(g, "agent_obs_streamer_replays_total",
	                                      "since= / backlog= replays answered", NULL));
	s->m.replayed = met_series(met_counter(g, "agent_obs_streamer_replayed_events_total",
	                                       "Events found for replays", NULL));
	s->m.bad_requests = met_series(met_counter(g, "agent_obs_streamer_bad_requests_total",
	                                           "Rejected stream requests and filter changes", NULL));
	s->m.queued = met_series(met_gauge(g, "agent_obs_streamer_queued_events",
	                                   "Events waiting in client send queues, all clients", NULL));
	s->m.inbox = met_series(met_gauge(g, "agent_obs_streamer_inbox_events",
	                                  "Events read from Redis that the busiest service thread has not yet "
	                                  "fanned out", NULL));
	return 0;
}

/* Each client is a file descriptor: set the soft limit to what the clients
 * need (up to the hard limit). Lowered too when it is higher: lws sizes its
 * fd table from this limit, and a table smaller than the limit makes lws
 * find every ready socket by a linear search (wsi_from_fd), which cost ~8%
 * of the service thread at 1,000 clients. */
static void set_fd_limit(long long want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == (rlim_t)want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)want ? (rlim_t)want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)want) {
		char have[24];
		snprintf(have, sizeof have, "%llu", (unsigned long long)rl.rlim_cur);
		log_kv(LOG_WARN, "file descriptor limit is below streamer.max_clients", "limit", have, NULL);
	}
}

int main(int argc, char **argv)
{
	char err[512];
	int code;
	if (daemon_setup(argc, argv, "streamer",
	                 "streamer: live WebSocket fan-out of agent events, and the dashboard", settings,
	                 N_SETTINGS, &S.cf, "streamer.", &S.cf.log_level, NULL, NULL, &code))
		return code;
	code = 1;
	pthread_mutex_init(&S.mu, NULL);
	pthread_cond_init(&S.work, NULL);
	S.rconf = CFG_RS_CONF(S.cf);
	S.nshards = (int)S.cf.threads;
	if (S.nshards == 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		S.nshards = ncpu > 2 ? (ncpu > 65 ? 64 : (int)ncpu - 1) : 1;
	}
	if (setup_metrics(&S) || source_init(&S)) {
		log_error("start: out of memory");
		goto out;
	}
	if (daemon_load_auth(S.cf.auth_keys_file, CFG_AUTH_OPTS(&S.cf), S.m.reg, &S.auth) ||
	    daemon_check_bind("streamer.bind", S.cf.bind, S.auth != NULL))
		goto out;
	set_fd_limit(S.cf.max_clients + 64 + 4LL * S.nshards); /* + each shard's wake-up pipe */

	if (ws_start(&S, err, sizeof err)) {
		log_kv(LOG_ERROR, "start failed", "error", err, NULL);
		goto stop;
	}
	if (source_start(&S, err, sizeof err)) {
		log_kv(LOG_ERROR, "start failed", "error", err, NULL);
		goto stop;
	}
	char port[16], threads[16];
	snprintf(port, sizeof port, "%lld", S.cf.port);
	snprintf(threads, sizeof threads, "%d", S.nshards);
	log_kv(LOG_INFO, "streamer listening", "bind", S.cf.bind, "port", port, "scheme", S.tls ? "https" : "http",
	       "stream", S.cf.stream, "ws", "/stream", "threads", threads, NULL);

	ws_run(&S); /* until SIGINT/SIGTERM; returns once every client was told goodbye */

	code = 0;
stop:
	source_stop(&S); /* before the contexts go: the threads call lws_cancel_service */
	ws_stop(&S);
	if (code == 0)
		log_info("stopped");
out:
	source_free(&S);
	auth_free(S.auth);
	met_registry_free(S.m.reg);
	pthread_cond_destroy(&S.work);
	pthread_mutex_destroy(&S.mu);
	cfg_free(settings, N_SETTINGS, &S.cf);
	return code;
}
