/* http.h -- small HTTP helpers over libmicrohttpd: JSON replies and errors,
 * the admin endpoints every daemon serves (/healthz, /readyz, /metrics), a
 * stand-alone admin server for daemons without their own HTTP port, and CORS
 * for one configured origin. Responses are built per call and freed after
 * queueing; thread-safe (http_cors_set only before the server starts). */
#ifndef HTTP_H
#define HTTP_H

#include <microhttpd.h>

struct met_registry;

/* Returns 1 when the daemon can do useful work (dependencies reachable). */
typedef int (*http_ready_fn)(void *ud, char *why, size_t whylen);

/* Queue a response (every reply of a server that may use CORS goes through
 * here): adds Access-Control-Allow-Origin when the request's Origin is the
 * one given to http_cors_set(), and Vary: Origin whenever CORS is on. */
enum MHD_Result http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r);

/* CORS for exactly one origin (scheme://host[:port], never "*"); NULL or ""
 * turns it off (the default: no CORS headers at all). Call before serving.
 * -1 with err when origin is not a plain origin. */
int http_cors_set(const char *origin, char *err, size_t errlen);
/* Answer OPTIONS (a CORS preflight or a plain OPTIONS): 204 with Allow; for
 * the configured origin also Access-Control-Allow-Origin/-Methods (GET,
 * HEAD)/-Headers (Authorization, Content-Type)/-Max-Age. */
enum MHD_Result http_reply_options(struct MHD_Connection *c);

/* The origin of an http:// or https:// URL, as a browser sends it in Origin:
 * lower-case scheme and host, the default port (80, 443) left out. *rest
 * (may be NULL) is what follows the origin: "" or "/...". Parsed by
 * libcurl's URL API; rejects user info, a query or fragment, a missing host,
 * a bad port and characters outside printable ASCII, spaces, quotes, ';' and
 * ','. 0, or -1 with err. */
int http_url_origin(const char *url, char *origin, size_t len, const char **rest, char *err,
                    size_t errlen);

enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                           const char *body, size_t len);
enum MHD_Result http_reply_json(struct MHD_Connection *c, unsigned status, const char *json);
/* The error body every endpoint uses:
 * {"error":{"status":S,"field":"...","message":"...","events":[...]}}.
 * field may be NULL (omitted); events (may be NULL) is taken over. Returns a
 * string from cJSON's allocator (release with cJSON_free), NULL when out of
 * memory. */
struct cJSON;
char *http_error_body(unsigned status, const char *field, const char *message,
                      struct cJSON *events);
/* Queue http_error_body() as the response; field may be NULL. */
enum MHD_Result http_reply_error(struct MHD_Connection *c, unsigned status,
                                 const char *field, const char *message);

/* Answer /healthz, /readyz and /metrics (GET/HEAD). Returns 1 and sets *ret
 * when the URL was one of them, else 0. */
int http_admin_route(struct MHD_Connection *c, const char *method, const char *url,
                     struct met_registry *reg, http_ready_fn ready, void *ud,
                     enum MHD_Result *ret);

/* Routes a daemon adds to its admin server (e.g. the alerter's /rules).
 * role(url): the role a URL needs (auth.h; NULL: auth_admin_url_role).
 * route: 1 when `url` is one of its own (answered through *ret), else 0.
 * not_found: the 404 message. Runs on the server's polling thread. */
struct http_admin_extra {
	int (*role)(const char *url);
	int (*route)(void *ud, struct MHD_Connection *c, const char *method, const char *url,
	             enum MHD_Result *ret);
	void *ud;
	const char *not_found;
};

struct http_admin;
/* Start an admin-only server (internal polling thread) on addr:port. */
/* auth (may be NULL: open) guards /metrics; /healthz and /readyz stay open.
 * extra (may be NULL) adds routes; it must outlive the server. */
struct auth;
struct http_admin *http_admin_start(const char *addr, int port, struct met_registry *reg,
                                    http_ready_fn ready, void *ud, struct auth *auth,
                                    const struct http_admin_extra *extra, char *err,
                                    size_t errlen);
void http_admin_stop(struct http_admin *a); /* NULL is a no-op */

/* 1 if addr is a loopback address (127.0.0.0/8, ::1, "localhost"). */
int http_addr_is_loopback(const char *addr);
/* Fill a sockaddr for addr:port (IPv4 or IPv6 literal, or localhost). */
int http_make_addr(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len);

#endif
