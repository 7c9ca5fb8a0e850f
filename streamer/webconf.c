/* webconf.c -- what the dashboard learns from the streamer besides events:
 * /config.json (the history API's base URL, streamer.api_url) and the
 * security headers of every HTTP answer, whose Content-Security-Policy lets
 * the page connect to that API's origin and nowhere else. Pure (unit-tested
 * in tests/unit/test_webconf.c); built once at start by the service thread,
 * the caller owns struct webconf and releases it with webconf_free(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http.h"
#include "streamer.h"

/* The strict policy libwebsockets' "security best practices" option sends,
 * with the API's origin added to connect-src. */
#define CSP_HEAD "default-src 'none'; img-src 'self' data:; script-src 'self'; font-src 'self'; " \
                 "style-src 'self'; connect-src 'self' ws: wss:"
#define CSP_TAIL "; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

int webconf_build(const char *api_url, struct webconf *wc, char *err, size_t errlen)
{
	char origin[256] = "", url[1024];
	const char *rest = NULL;
	size_t n = api_url ? strlen(api_url) : 0;

	memset(wc, 0, sizeof *wc);
	if (n >= sizeof url) {
		snprintf(err, errlen, "streamer.api_url: longer than %zu bytes", sizeof url - 1);
		return -1;
	}
	memcpy(url, n ? api_url : "", n + 1);
	while (n > 1 && url[n - 1] == '/') /* base URL: the SPA appends "/sessions" */
		url[--n] = '\0';
	if (n && url[0] == '/') {
		/* a path on the dashboard's own origin (a reverse proxy in front) */
		for (const unsigned char *q = (const unsigned char *)url; *q; q++)
			if (*q <= 0x20 || *q >= 0x7f || *q == '"' || *q == '\'' || *q == ';' || *q == ',' ||
			    *q == '\\' || *q == '?' || *q == '#' || (q == (const unsigned char *)url + 1 && *q == '/')) {
				snprintf(err, errlen, "streamer.api_url: \"%s\" is not a plain path (character %d)", url,
				         (int)*q);
				return -1;
			}
	} else if (n && http_url_origin(url, origin, sizeof origin, &rest, err, errlen)) {
		char why[512];
		snprintf(why, sizeof why, "streamer.api_url: %s", err);
		snprintf(err, errlen, "%s", why);
		return -1;
	} else if (rest && strpbrk(rest, "?#")) {
		snprintf(err, errlen, "streamer.api_url: \"%s\" has a query or fragment", url);
		return -1;
	}

	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddStringToObject(o, "api_url", url) ||
	    !(wc->config_json = cJSON_PrintUnformatted(o))) {
		cJSON_Delete(o);
		snprintf(err, errlen, "streamer.api_url: out of memory");
		return -1;
	}
	cJSON_Delete(o);
	size_t cap = sizeof CSP_HEAD + sizeof CSP_TAIL + strlen(origin) + 2;
	if (!(wc->csp = malloc(cap))) {
		webconf_free(wc);
		snprintf(err, errlen, "streamer.api_url: out of memory");
		return -1;
	}
	snprintf(wc->csp, cap, "%s%s%s%s", CSP_HEAD, origin[0] ? " " : "", origin, CSP_TAIL);
	return 0;
}

void webconf_free(struct webconf *wc)
{
	if (!wc)
		return;
	cJSON_free(wc->config_json);
	free(wc->csp);
	wc->config_json = NULL;
	wc->csp = NULL;
}
