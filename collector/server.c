/* server.c -- the collector's HTTP front: collector.threads event loops, each
 * one thread running its own libmicrohttpd daemon (external epoll mode) on the
 * shared listening socket, plus that thread's Redis writer (writer.c), so a
 * request is read, parsed, XADDed (pipelined with the others of the same pass)
 * and answered without a thread hand-off. Routes, Content-Type and size
 * checks, body accumulation (bounded). Per-request state (struct req) is owned
 * by the connection and freed in the completion callback.
 * TLS (collector.tls_cert/tls_key): GnuTLS inside libmicrohttpd; the PEM
 * texts are read and checked once at start (common/tls.c) and kept until stop. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "arena.h"
#include "auth.h"
#include "collector.h"
#include "hooks_http.h"
#include "http.h"
#include "log.h"
#include "tls.h"

enum route { R_EVENTS, R_OBS_EVENT, R_API, R_HOOKS, R_ADMIN, R_OTHER, R_COUNT };
static const char *const route_names[R_COUNT] = {"/events", "/observability/event", "api", "hooks",
                                                 "admin", "other"};

struct req {
	enum route route;
	enum ingest_format fmt;
	char *body;
	size_t len, cap;
	int too_large;
	int code;
	struct timespec start;
	struct ingest_result events;
	struct arena *arena; /* cJSON memory of this request's events */
	struct job job;
	int submitted;
	void *api; /* R_API: api.c's request state */
	void *hooks; /* R_HOOKS: hooks_http.c's request state */
	int denied;  /* refused by auth: the body is read and dropped, then *verdict answered */
	struct auth_verdict verdict;
	struct auth_sig *sig; /* signed request: HMAC over the body as it arrives */
};

static const struct collector_conf *conf;
static struct met_registry *reg;
/* One event loop: its thread, daemon, epoll set and Redis writer. */
struct loop {
	pthread_t thread;
	int started;
	struct MHD_Daemon *d;
	int ep;
	struct writer *w;
};
#define MAX_LOOPS 64
#define TAG_MHD 1
#define TAG_REDIS 2
static struct loop loops[MAX_LOOPS];
static int n_loops;
static int listen_fd = -1;
static atomic_int quiesce_req, stop_req;
static struct auth *auth; /* NULL: no keys configured (loopback only) */
static struct ev_limits limits;
static struct writer_stats wstats;
static struct met_family *m_requests, *m_duration, *m_accepted, *m_rejected;
static struct met_series *m_dur[R_COUNT], *m_acc;
static atomic_int in_flight; /* requests begun and not yet completed */
static char *tls_cert_pem, *tls_key_pem; /* NULL: plain HTTP */

static double elapsed_s(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void reject(const char *reason, double n)
{
	met_inc(met_series(m_rejected, reason), n);
}

static enum MHD_Result error(struct req *rq, struct MHD_Connection *c, unsigned status,
                             const char *reason, const char *field, const char *msg)
{
	rq->code = (int)status;
	reject(reason, 1);
	return http_reply_error(c, status, field, msg);
}

static enum MHD_Result unavailable(struct req *rq, struct MHD_Connection *c, const char *reason,
                                   const char *msg)
{
	char ra[24];
	rq->code = 503;
	reject(reason, rq->events.n ? (double)rq->events.n : 1);
	char *s = http_error_body(503, NULL, msg, NULL);
	if (!s)
		return MHD_NO;
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_COPY);
	cJSON_free(s);
	snprintf(ra, sizeof ra, "%lld", conf->retry_after_s);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	enum MHD_Result ret = http_queue(c, 503, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_queued(struct req *rq, struct MHD_Connection *c)
{
	rq->code = 202;
	met_inc(m_acc, (double)rq->events.n);
	if (rq->route == R_OBS_EVENT)
		return http_reply_json(c, 202, "{\"status\":\"queued\"}");
	/* {"status":"queued","ids":[...]} built by hand: this is the hot path. */
	size_t cap = 32 + rq->events.n * 40;
	char *s = malloc(cap);
	if (!s)
		return MHD_NO;
	size_t off = (size_t)snprintf(s, cap, "{\"status\":\"queued\",\"ids\":[");
	for (size_t i = 0; i < rq->events.n; i++)
		off += (size_t)snprintf(s + off, cap - off, "%s\"%s\"", i ? "," : "", rq->events.ids[i]);
	off += (size_t)snprintf(s + off, cap - off, "]}");
	struct MHD_Response *r = MHD_create_response_from_buffer(off, s, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result ret = http_queue(c, 202, r);
	MHD_destroy_response(r);
	return ret;
}

/* Content-Type -> format; -1 when unsupported. A missing type means JSON. */
static int content_format(struct MHD_Connection *c, enum ingest_format *fmt)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ct || !*ct) {
		*fmt = FMT_JSON;
		return 0;
	}
	size_t n = strcspn(ct, "; \t");
	if ((n == 16 && strncasecmp(ct, "application/json", n) == 0) ||
	    (n == 10 && strncasecmp(ct, "text/plain", n) == 0)) {
		*fmt = FMT_JSON;
		return 0;
	}
	if ((n == 20 && strncasecmp(ct, "application/x-ndjson", n) == 0) ||
	    (n == 20 && strncasecmp(ct, "application/jsonlines", n) == 0) ||
	    (n == 19 && strncasecmp(ct, "application/x-jsonl", n) == 0)) {
		*fmt = FMT_NDJSON;
		return 0;
	}
	return -1;
}

static enum MHD_Result handle_post_done(struct req *rq, struct MHD_Connection *c)
{
	char why[192];
	if (rq->submitted) {
		if (rq->job.status == 0)
			return MHD_YES; /* Redis has not answered yet: called again next pass */
		if (rq->job.status == 202)
			return reply_queued(rq, c);
		return unavailable(rq, c, "redis_unavailable", rq->job.err);
	}
	if (rq->too_large) {
		char msg[128];
		snprintf(msg, sizeof msg, "body exceeds the %lld-byte limit", conf->max_body_bytes);
		return error(rq, c, 413, "too_large", "", msg);
	}
	if (writer_admit(why, sizeof why))
		return unavailable(rq, c, strstr(why, "backlog") ? "backlog" : "redis_unavailable", why);
	if (rq->len == 0)
		return error(rq, c, 400, "invalid", "", "empty body: send a JSON event, array or NDJSON");
	rq->arena = arena_new();
	struct arena *prev = arena_enter(rq->arena);
	rq->events.in_arena = rq->arena != NULL;
	int bad = ingest_parse(rq->body, rq->len, rq->fmt, ev_now_ms(), &limits,
	                       (size_t)conf->max_events_per_request, &rq->events);
	arena_enter(prev);
	if (bad) {
		rq->code = rq->events.status;
		reject(rq->events.status == 413 ? "too_large" : "invalid", 1);
		return http_reply_json(c, (unsigned)rq->events.status,
		                       rq->events.error_json ? rq->events.error_json : "{}");
	}
	free(rq->body);
	rq->body = NULL;
	rq->job.events = &rq->events;
	rq->submitted = 1;
	writer_submit(&rq->job);
	return MHD_YES;
}

/* The role a request needs (auth.h); AUTH_OPEN for unknown routes (404). */
static int route_role(const struct req *rq, const char *method, const char *url)
{
	switch (rq->route) {
	case R_ADMIN:
		return auth_admin_url_role(url);
	case R_EVENTS:
	case R_OBS_EVENT:
	case R_HOOKS:
		return AUTH_INGEST;
	case R_API:
		return strcmp(method, "POST") == 0 ? AUTH_INGEST : AUTH_READ;
	default:
		return AUTH_OPEN;
	}
}

/* First call: key, role, rate limit, and for a POST the signature headers.
 * A refusal is answered once the body has been read (see handler). */
static void check_access(struct req *rq, struct MHD_Connection *c, const char *method,
                         const char *url)
{
	if (!auth)
		return;
	if (auth_mhd_check(auth, c, route_role(rq, method, url), &rq->verdict)) {
		rq->denied = 1;
		return;
	}
	if (strcmp(method, "POST") != 0 || !rq->verdict.key)
		return;
	const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, AUTH_TS_HEADER);
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, AUTH_SIG_HEADER);
	if (auth_sig_begin(auth, rq->verdict.key, ts, sig, &rq->sig, &rq->verdict))
		rq->denied = 1;
}

static enum MHD_Result answer_denied(struct req *rq, struct MHD_Connection *c)
{
	rq->code = (int)rq->verdict.status;
	reject(rq->verdict.status == 429 ? "rate_limited" : "unauthorised", 1);
	return auth_mhd_reply(c, &rq->verdict);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
	struct req *rq = *con_cls;
	(void)cls;
	(void)version;

	if (!rq) {
		rq = calloc(1, sizeof *rq);
		if (!rq)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &rq->start);
		*con_cls = rq;
		atomic_fetch_add(&in_flight, 1);
		if (strcmp(method, "OPTIONS") == 0) { /* CORS preflight (collector.cors_origin) */
			rq->route = R_OTHER;
			rq->code = 204;
			return http_reply_options(c);
		}
		if (api_route(method, url)) /* history reads, POST /transcripts: api.c */
			rq->route = R_API;
		else if (hooks_http_route(method, url)) /* /hooks/claude-code, /v1/logs */
			rq->route = R_HOOKS;
		else if (strcmp(url, "/events") == 0)
			rq->route = R_EVENTS;
		else if (strcmp(url, "/observability/event") == 0 || strcmp(url, "/observability/events") == 0)
			rq->route = R_OBS_EVENT;
		else if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
		         strcmp(url, "/metrics") == 0)
			rq->route = R_ADMIN;
		else
			rq->route = R_OTHER;
		check_access(rq, c, method, url);
		if (rq->denied) {
			/* a client waiting for 100-continue has sent no body: answer now */
			const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
			if (expect && strcasecmp(expect, "100-continue") == 0)
				return answer_denied(rq, c);
			return MHD_YES;
		}
		if (rq->route == R_EVENTS || rq->route == R_OBS_EVENT) {
			if (strcmp(method, "POST") != 0) {
				rq->route = R_OTHER;
				return error(rq, c, 405, "method", NULL, "use POST to send events");
			}
			if (content_format(c, &rq->fmt))
				return error(rq, c, 415, "unsupported_type", "Content-Type",
				             "use application/json or application/x-ndjson");
			const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
			                                             MHD_HTTP_HEADER_CONTENT_LENGTH);
			/* Too big: refuse before the body when the client waits for
			 * 100-continue or the body is huge; otherwise read and discard it
			 * so the client gets a clean 413 instead of a reset. */
			long long clen = cl ? strtoll(cl, NULL, 10) : 0;
			const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
			if (clen > conf->max_body_bytes)
				rq->too_large = 1;
			if (clen > conf->max_body_bytes &&
			    ((expect && strcasecmp(expect, "100-continue") == 0) || clen > 16 * conf->max_body_bytes)) {
				char msg[128];
				snprintf(msg, sizeof msg, "body exceeds the %lld-byte limit", conf->max_body_bytes);
				return error(rq, c, 413, "too_large", "", msg);
			}
		}
		return MHD_YES;
	}

	if (rq->denied) {
		if (*upload_size) {
			/* read and drop the body so the client sees the answer, but no
			 * more of it than an accepted request could send */
			rq->len += *upload_size;
			*upload_size = 0;
			return rq->len > (size_t)conf->max_body_bytes ? MHD_NO : MHD_YES;
		}
		return answer_denied(rq, c);
	}
	if (rq->sig) {
		if (*upload_size) {
			auth_sig_update(rq->sig, upload, *upload_size);
		} else {
			struct auth_sig *s = rq->sig;
			rq->sig = NULL;
			if (auth_sig_finish(auth, s, &rq->verdict)) {
				rq->denied = 1;
				return answer_denied(rq, c);
			}
		}
	}
	if (rq->route == R_API)
		return api_handle(c, method, url, upload, upload_size, &rq->api, &rq->code);
	if (rq->route == R_HOOKS)
		return hooks_http_handle(c, conf, method, url, upload, upload_size, &rq->hooks, &rq->code);
	if (rq->route == R_ADMIN || rq->route == R_OTHER) {
		enum MHD_Result ret;
		if (*upload_size) {
			*upload_size = 0;
			return MHD_YES;
		}
		if (http_admin_route(c, method, url, reg, writer_ready, NULL, &ret)) {
			rq->code = 200;
			return ret;
		}
		rq->code = 404;
		return http_reply_error(c, 404, NULL,
		                        "not found: POST /events, /transcripts; GET /events, /events/recent, "
		                        "/sessions, /sessions/{id}, /transcripts, /transcripts/search, "
		                        "/healthz, /readyz, /metrics");
	}

	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (rq->too_large)
			return MHD_YES;
		if (rq->len + n > (size_t)conf->max_body_bytes) {
			rq->too_large = 1;
			free(rq->body);
			rq->body = NULL;
			rq->len = rq->cap = 0;
			return MHD_YES;
		}
		if (rq->len + n > rq->cap) {
			size_t cap = rq->cap ? rq->cap : 4096;
			while (cap < rq->len + n)
				cap *= 2;
			char *b = realloc(rq->body, cap);
			if (!b)
				return MHD_NO;
			rq->body = b;
			rq->cap = cap;
		}
		memcpy(rq->body + rq->len, upload, n);
		rq->len += n;
		return MHD_YES;
	}
	return handle_post_done(rq, c);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
	struct req *rq = *con_cls;
	char code[8];
	(void)cls;
	(void)c;
	(void)toe;
	if (!rq)
		return;
	snprintf(code, sizeof code, "%d", rq->code ? rq->code : 499);
	met_inc(met_series(m_requests, route_names[rq->route], code), 1);
	met_observe(m_dur[rq->route], elapsed_s(&rq->start));
	writer_cancel(&rq->job);
	ingest_result_free(&rq->events);
	auth_sig_free(rq->sig);
	api_free(rq->api);
	hooks_http_free(rq->hooks);
	arena_free(rq->arena);
	free(rq->body);
	free(rq);
	*con_cls = NULL;
	atomic_fetch_sub(&in_flight, 1);
}

/* libmicrohttpd's own messages (bind failures, TLS handshake errors) as
 * JSON log lines instead of raw stderr text. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\r\n")] = '\0';
	log_kv(LOG_DEBUG, "libmicrohttpd", "detail", msg, NULL);
}

static void tls_free(void)
{
	tls_pem_free(tls_cert_pem);
	tls_pem_free(tls_key_pem);
	tls_cert_pem = tls_key_pem = NULL;
}

/* Read and check the certificate and key (both set: TLS; neither: plain). */
static int tls_setup(const struct collector_conf *cf, char *err, size_t errlen)
{
	char warn[512];
	int on;
	if (tls_load("collector.tls_cert", cf->tls_cert, "collector.tls_key", cf->tls_key, &on, &tls_cert_pem,
	             &tls_key_pem, warn, sizeof warn, err, errlen))
		return -1;
	if (on && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		snprintf(err, errlen, "collector.tls_cert: this libmicrohttpd was built without TLS support");
		tls_free();
		return -1;
	}
	if (warn[0])
		log_kv(LOG_WARN, "TLS certificate", "warning", warn, NULL);
	return 0;
}

int server_tls_enabled(void)
{
	return tls_cert_pem != NULL;
}

struct ev_limits collector_limits(const struct collector_conf *cf)
{
	struct ev_limits l = ev_default_limits;
	l.max_event_bytes = (size_t)cf->max_event_bytes;
	l.max_depth = (int)cf->max_depth;
	l.max_string = (size_t)cf->max_string_bytes;
	l.max_members = (size_t)cf->max_fields;
	l.max_array = (size_t)cf->max_array;
	return l;
}

/* One pass: Redis replies (finishing jobs), libmicrohttpd's connections
 * (handlers append XADDs, or answer jobs just finished), then one write of
 * the appended XADDs. */
static void *loop_main(void *arg)
{
	struct loop *l = arg;
	int quiesced = 0;
	long long drain_until = 0;
	writer_bind(l->w);
	for (;;) {
		if (atomic_load(&quiesce_req) && !quiesced) {
			MHD_quiesce_daemon(l->d); /* the socket is shared: server_stop closes it */
			quiesced = 1;
		}
		if (atomic_load(&stop_req)) {
			struct timespec t;
			clock_gettime(CLOCK_MONOTONIC, &t);
			long long now = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
			if (!drain_until)
				drain_until = now + 5000;
			if ((atomic_load(&in_flight) == 0 && !writer_busy(l->w)) || now > drain_until)
				break;
		}
		MHD_UNSIGNED_LONG_LONG mhd_to;
		int timeout = 100;
		if (MHD_get_timeout(l->d, &mhd_to) == MHD_YES && mhd_to < (MHD_UNSIGNED_LONG_LONG)timeout)
			timeout = (int)mhd_to;
		/* Requests waiting for Redis make libmicrohttpd ask for another pass
		 * at once; while replies are due and none came since the last
		 * pass, sleep until one comes (or a client sends) instead of
		 * spinning. */
		if (writer_progress(l->w))
			timeout = 0;
		else if (timeout == 0 && writer_busy(l->w))
			timeout = 100;
		if (atomic_load(&stop_req) && timeout > 10)
			timeout = 10;
		struct epoll_event evs[4];
		int n = epoll_wait(l->ep, evs, 4, timeout);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 != TAG_REDIS)
				continue;
			if (evs[i].events & EPOLLOUT)
				writer_flush(l->w);
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				writer_read(l->w);
		}
		MHD_run(l->d);
		writer_flush(l->w);
		writer_tick(l->w);
	}
	return NULL;
}

/* The listening socket every loop's daemon accepts from. */
static int open_listener(const struct sockaddr_storage *ss, socklen_t sl, char *err, size_t errlen)
{
	int one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "collector: socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)ss, sl) || listen(fd, 1024)) {
		snprintf(err, errlen, "collector: cannot listen on %s:%lld: %s", conf->bind, conf->port,
		         strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void loops_stop(void)
{
	atomic_store(&quiesce_req, 1);
	atomic_store(&stop_req, 1);
	for (int i = 0; i < n_loops; i++)
		if (loops[i].started) {
			pthread_join(loops[i].thread, NULL);
			loops[i].started = 0;
		}
	/* no loop runs now: the monitor goes first (it hands contexts to
	 * writers), then each writer answers what it still holds */
	writer_stop();
	for (int i = 0; i < n_loops; i++) {
		struct loop *l = &loops[i];
		writer_free(l->w);
		l->w = NULL;
		if (l->d) {
			MHD_quiesce_daemon(l->d);
			MHD_run(l->d); /* send the answers of the requests just resumed */
			MHD_stop_daemon(l->d);
			l->d = NULL;
		}
		if (l->ep >= 0)
			close(l->ep);
		l->ep = -1;
	}
	n_loops = 0;
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
}

static int loop_start(struct loop *l, unsigned flags, struct MHD_OptionItem *tls, char *err, size_t errlen)
{
	unsigned limit = (unsigned)((conf->max_connections + n_loops - 1) / n_loops);
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	if (l->ep < 0) {
		snprintf(err, errlen, "collector: epoll_create1: %s", strerror(errno));
		return -1;
	}
	l->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL,
	                        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, to catch all */
	                        MHD_OPTION_LISTEN_SOCKET, listen_fd,
	                        MHD_OPTION_CONNECTION_LIMIT, limit ? limit : 1,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
	                        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
	                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
	                        MHD_OPTION_ARRAY, tls,
	                        MHD_OPTION_END);
	if (!l->d) {
		snprintf(err, errlen, "collector: cannot start the HTTP server%s",
		         tls_cert_pem ? " (TLS set-up failed?)" : "");
		return -1;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_EPOLL_FD);
	struct epoll_event e = {.events = EPOLLIN, .data.u64 = TAG_MHD};
	if (!di || epoll_ctl(l->ep, EPOLL_CTL_ADD, di->epoll_fd, &e)) {
		snprintf(err, errlen, "collector: epoll_ctl: %s", strerror(errno));
		return -1;
	}
	l->w = writer_new(l->ep, TAG_REDIS);
	if (!l->w) {
		snprintf(err, errlen, "collector: out of memory");
		return -1;
	}
	return 0;
}

int server_start(const struct collector_conf *cf, struct met_registry *r, struct auth *a,
                 char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	conf = cf;
	if (tls_setup(cf, err, errlen))
		return -1;
	reg = r;
	auth = a;
	limits = collector_limits(cf);

	m_requests = met_counter(reg, "agent_obs_http_requests_total",
	                         "HTTP requests by route and status code", "route,code");
	m_duration = met_histogram(reg, "agent_obs_http_request_duration_seconds",
	                           "HTTP request latency, first byte in to response queued", "route",
	                           met_latency_buckets, met_latency_nbuckets);
	m_accepted = met_counter(reg, "agent_obs_events_accepted_total",
	                         "Events appended to the stream", NULL);
	m_rejected = met_counter(reg, "agent_obs_events_rejected_total",
	                         "Requests or events refused, by reason", "reason");
	for (int i = 0; i < R_COUNT; i++)
		m_dur[i] = met_series(m_duration, route_names[i]);
	m_acc = met_series(m_accepted);
	wstats.redis_errors = met_series(met_counter(reg, "agent_obs_redis_errors_total",
	                                             "Redis connection or command failures", NULL));
	wstats.stream_len = met_series(met_gauge(reg, "agent_obs_stream_backlog",
	                                         "Events in the stream not yet stored by the processor (sampled)", NULL));
	static const double batch_b[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
	wstats.batch_events = met_series(met_histogram(reg, "agent_obs_collector_pipeline_events",
	                                               "Events per pipelined XADD round trip", NULL,
	                                               batch_b, sizeof batch_b / sizeof batch_b[0]));
	if (http_make_addr(cf->bind, (int)cf->port, &ss, &sl)) {
		snprintf(err, errlen, "collector.bind: not an IP address: \"%s\"", cf->bind);
		tls_free();
		return -1;
	}
	if (writer_start(cf, &wstats)) {
		snprintf(err, errlen, "collector: cannot start the Redis monitor thread");
		tls_free();
		return -1;
	}
	listen_fd = open_listener(&ss, sl, err, errlen);
	if (listen_fd < 0)
		goto fail;
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* the TLS options ride in an array so that plain HTTP passes none */
	struct MHD_OptionItem tls_opts[] = {
		{MHD_OPTION_HTTPS_MEM_KEY, 0, tls_key_pem},
		{MHD_OPTION_HTTPS_MEM_CERT, 0, tls_cert_pem},
		{MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
		{MHD_OPTION_END, 0, NULL},
	};
	if (tls_cert_pem)
		flags |= MHD_USE_TLS;
	atomic_store(&quiesce_req, 0);
	atomic_store(&stop_req, 0);
	n_loops = cf->threads < MAX_LOOPS ? (int)cf->threads : MAX_LOOPS;
	for (int i = 0; i < n_loops; i++)
		loops[i].ep = -1;
	for (int i = 0; i < n_loops; i++)
		if (loop_start(&loops[i], flags, tls_cert_pem ? tls_opts : &tls_opts[3], err, errlen))
			goto fail;
	for (int i = 0; i < n_loops; i++) {
		if (pthread_create(&loops[i].thread, NULL, loop_main, &loops[i])) {
			snprintf(err, errlen, "collector: cannot start loop threads");
			goto fail;
		}
		loops[i].started = 1;
	}
	return 0;
fail:
	loops_stop();
	tls_free();
	return -1;
}

void server_count_accepted(size_t n)
{
	met_inc(m_acc, (double)n);
}

void server_quiesce(void)
{
	atomic_store(&quiesce_req, 1);
}

void server_stop(void)
{
	/* Each loop answers its requests in flight (5 s at most), then stops;
	 * what is still unanswered after that gets 503. */
	loops_stop();
	tls_free();
}
