/* http.c -- JSON replies, CORS for one origin, admin endpoints and the
 * stand-alone admin server (see http.h). The admin server runs in
 * libmicrohttpd's own polling thread; the ready callback and met_render run
 * there, so both must be thread-safe. The CORS origin is process-wide,
 * written once by http_cors_set() before any server thread reads it. */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "auth.h"
#include "met.h"

/* ------------------------------------------------------------------ CORS -- */

static char cors_origin[256]; /* "" = off */

int http_url_origin(const char *url, char *origin, size_t len, const char **rest, char *err,
                    size_t errlen)
{
	int rc = -1;
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *query = NULL, *frag = NULL;
	size_t slen = strncasecmp(url, "http://", 7) == 0 ? 4 : strncasecmp(url, "https://", 8) == 0 ? 5 : 0;
	if (!slen) {
		snprintf(err, errlen, "\"%s\" is not an http:// or https:// URL", url);
		return -1;
	}
	/* Our policy on top of URL syntax: the origin ends up in a header and
	 * in a Content-Security-Policy directive. */
	for (const unsigned char *q = (const unsigned char *)url; *q; q++) {
		if (*q <= 0x20 || *q >= 0x7f || *q == '"' || *q == '\'' || *q == ';' || *q == ',' ||
		    *q == '\\') {
			snprintf(err, errlen, "\"%s\": character %d not allowed in the URL", url, (int)*q);
			return -1;
		}
	}
	u = curl_url();
	if (!u) {
		snprintf(err, errlen, "\"%s\": out of memory", url);
		return -1;
	}
	CURLUcode cu = curl_url_set(u, CURLUPART_URL, url, 0);
	if (cu) {
		snprintf(err, errlen, "\"%s\": %s", url, curl_url_strerror(cu));
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		snprintf(err, errlen, "\"%s\": user info is not allowed in the URL", url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
		snprintf(err, errlen, "\"%s\": a query or fragment is not allowed in the URL", url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) || curl_url_get(u, CURLUPART_HOST, &host, 0) ||
	    !*host) {
		snprintf(err, errlen, "\"%s\": no host", url);
		goto out;
	}
	/* the default port is left out, as browsers do in Origin */
	cu = curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT);
	if (cu == CURLUE_OK && strtol(port, NULL, 10) < 1) {
		snprintf(err, errlen, "\"%s\": bad port", url);
		goto out;
	}
	int n = snprintf(origin, len, "%s://%s%s%s", scheme, host, port ? ":" : "", port ? port : "");
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "\"%s\": URL too long", url);
		goto out;
	}
	for (char *q = origin; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	if (rest) { /* no user info, query or fragment: the path starts at the first '/' */
		const char *p = strchr(url + slen + 3, '/');
		*rest = p ? p : "";
	}
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(user);
	curl_free(query);
	curl_free(frag);
	curl_url_cleanup(u);
	return rc;
}

int http_cors_set(const char *origin, char *err, size_t errlen)
{
	char o[sizeof cors_origin];
	const char *rest = "";
	cors_origin[0] = '\0';
	if (!origin || !*origin)
		return 0;
	if (http_url_origin(origin, o, sizeof o, &rest, err, errlen))
		return -1;
	if (*rest) {
		snprintf(err, errlen, "\"%s\" is a URL, not an origin: leave out the path (%s)", origin, rest);
		return -1;
	}
	memcpy(cors_origin, o, sizeof o);
	return 0;
}

/* 1 when the request comes from the configured origin. */
static int cors_allowed(struct MHD_Connection *c)
{
	if (!cors_origin[0])
		return 0;
	const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	return o && strcasecmp(o, cors_origin) == 0;
}

enum MHD_Result http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r)
{
	if (cors_origin[0]) {
		MHD_add_response_header(r, "Vary", "Origin");
		if (cors_allowed(c))
			MHD_add_response_header(r, "Access-Control-Allow-Origin", cors_origin);
	}
	return MHD_queue_response(c, status, r);
}

enum MHD_Result http_reply_options(struct MHD_Connection *c)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST, OPTIONS");
	if (cors_allowed(c)) {
		MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, HEAD");
		MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
		MHD_add_response_header(r, "Access-Control-Max-Age", "600");
	}
	enum MHD_Result ret = http_queue(c, 204, r);
	MHD_destroy_response(r);
	return ret;
}

/* --------------------------------------------------------------- replies -- */

enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                           const char *body, size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	enum MHD_Result ret = http_queue(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result http_reply_json(struct MHD_Connection *c, unsigned status, const char *json)
{
	return http_reply(c, status, "application/json", json, strlen(json));
}

char *http_error_body(unsigned status, const char *field, const char *message, cJSON *events)
{
	cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
	cJSON_AddNumberToObject(e, "status", status);
	if (field)
		cJSON_AddStringToObject(e, "field", field);
	cJSON_AddStringToObject(e, "message", message);
	if (events)
		cJSON_AddItemToObject(e, "events", events);
	char *s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return s;
}

enum MHD_Result http_reply_error(struct MHD_Connection *c, unsigned status, const char *field,
                                 const char *message)
{
	char *s = http_error_body(status, field, message, NULL);
	enum MHD_Result ret = s ? http_reply_json(c, status, s) : MHD_NO;
	cJSON_free(s);
	return ret;
}

int http_admin_route(struct MHD_Connection *c, const char *method, const char *url,
                     struct met_registry *reg, http_ready_fn ready, void *ud,
                     enum MHD_Result *ret)
{
	int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	if (strcmp(url, "/healthz") == 0) {
		*ret = is_get ? http_reply_json(c, 200, "{\"status\":\"ok\"}")
		              : http_reply_error(c, 405, NULL, "use GET");
		return 1;
	}
	if (strcmp(url, "/readyz") == 0) {
		char why[256] = "";
		if (!is_get) {
			*ret = http_reply_error(c, 405, NULL, "use GET");
		} else if (!ready || ready(ud, why, sizeof why)) {
			*ret = http_reply_json(c, 200, "{\"status\":\"ready\"}");
		} else {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "status", "not ready");
			cJSON_AddStringToObject(o, "reason", why);
			char *s = cJSON_PrintUnformatted(o);
			cJSON_Delete(o);
			*ret = s ? http_reply_json(c, 503, s) : MHD_NO;
			cJSON_free(s);
		}
		return 1;
	}
	if (strcmp(url, "/metrics") == 0) {
		char *text = NULL;
		size_t len = 0;
		if (!is_get) {
			*ret = http_reply_error(c, 405, NULL, "use GET");
		} else if (met_render(reg, &text, &len) == 0) {
			*ret = http_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
		} else {
			*ret = http_reply_error(c, 500, NULL, "rendering metrics failed");
		}
		free(text);
		return 1;
	}
	return 0;
}

struct http_admin {
	struct MHD_Daemon *d;
	struct met_registry *reg;
	http_ready_fn ready;
	void *ud;
	struct auth *auth;
	const struct http_admin_extra *extra;
};

static enum MHD_Result admin_handler(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version,
                                     const char *upload, size_t *upload_size, void **con_cls)
{
	struct http_admin *a = cls;
	enum MHD_Result ret;
	(void)version;
	(void)upload;
	if (*upload_size) {
		*upload_size = 0; /* admin endpoints take no body: discard */
		return MHD_YES;
	}
	(void)con_cls;
	const struct http_admin_extra *x = a->extra;
	struct auth_verdict v;
	if (auth_mhd_check(a->auth, c, x && x->role ? x->role(url) : auth_admin_url_role(url), &v))
		return auth_mhd_reply(c, &v);
	if (http_admin_route(c, method, url, a->reg, a->ready, a->ud, &ret))
		return ret;
	if (x && x->route && x->route(x->ud, c, method, url, &ret))
		return ret;
	return http_reply_error(c, 404, NULL,
	                        x && x->not_found ? x->not_found : "not found: try /healthz, /readyz or /metrics");
}

int http_addr_is_loopback(const char *addr)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (!addr)
		return 0;
	if (strcmp(addr, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

int http_make_addr(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (strcmp(addr, "localhost") == 0)
		addr = "127.0.0.1";
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof *s4;
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof *s6;
		return 0;
	}
	return -1;
}

struct http_admin *http_admin_start(const char *addr, int port, struct met_registry *reg,
                                    http_ready_fn ready, void *ud, struct auth *auth,
                                    const struct http_admin_extra *extra, char *err,
                                    size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (http_make_addr(addr, port, &ss, &sl)) {
		snprintf(err, errlen, "admin server: bad bind address \"%s\"", addr);
		return NULL;
	}
	struct http_admin *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(err, errlen, "admin server: out of memory");
		return NULL;
	}
	a->reg = reg;
	a->ready = ready;
	a->ud = ud;
	a->auth = auth;
	a->extra = extra;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	a->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, admin_handler, a,
	                        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
	if (!a->d) {
		snprintf(err, errlen, "admin server: cannot listen on %s:%d (port in use?)", addr, port);
		free(a);
		return NULL;
	}
	return a;
}

void http_admin_stop(struct http_admin *a)
{
	if (!a)
		return;
	MHD_stop_daemon(a->d);
	free(a);
}
