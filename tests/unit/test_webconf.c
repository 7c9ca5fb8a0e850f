/* test_webconf.c -- unit tests for the dashboard's cross-origin plumbing:
 * http_url_origin() and http_cors_set() (common/http.c: which origin the
 * collector lets read its API) and webconf_build() (streamer/webconf.c: the
 * SPA's /config.json and the Content-Security-Policy that lets it connect to
 * that API). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"
#include "../../streamer/streamer.h"

static void origin_ok(const char *url, const char *want, const char *want_rest)
{
	char o[128], err[256] = "";
	const char *rest = NULL;
	if (http_url_origin(url, o, sizeof o, &rest, err, sizeof err))
		fail_msg("http_url_origin(\"%s\") failed: %s", url, err);
	assert_string_equal(o, want);
	assert_string_equal(rest, want_rest);
}

static void origin_bad(const char *url, const char *want)
{
	char o[128], err[256] = "";
	assert_int_equal(http_url_origin(url, o, sizeof o, NULL, err, sizeof err), -1);
	if (!strstr(err, want))
		fail_msg("http_url_origin(\"%s\"): error \"%s\" lacks \"%s\"", url, err, want);
}

static void test_url_origin(void **state)
{
	(void)state;
	origin_ok("http://127.0.0.1:7071", "http://127.0.0.1:7071", "");
	origin_ok("HTTPS://Dash.Example.COM/obs/", "https://dash.example.com", "/obs/");
	origin_ok("http://localhost:80/x", "http://localhost", "/x");     /* default port left out */
	origin_ok("https://h:443", "https://h", "");
	origin_ok("https://h:80", "https://h:80", "");
	origin_ok("http://[::1]:7070/api", "http://[::1]:7070", "/api");
	origin_bad("*", "not an http");
	origin_bad("ftp://h", "not an http");
	origin_bad("http://", "No host");
	origin_bad("http://*", "Bad hostname");
	origin_bad("http://h:0", "bad port");
	origin_bad("http://h:65536", "Port number");
	origin_bad("http://h:99999999999999999999", "Port number");
	origin_ok("http://h:", "http://h", ""); /* empty port: the default */
	origin_bad("http://user:pw@h", "user info");
	origin_bad("http://user@h", "user info");
	origin_bad("http://h?x=1", "query or fragment");
	origin_bad("http://h#f", "query or fragment");
	origin_bad("http://h/a b", "character 32");
	origin_bad("http://h/a;b", "character 59");
	origin_bad("http://h/'", "character 39");
	origin_bad("http://[::1/", "Bad IPv6");
	char small[8], err[128];
	assert_int_equal(http_url_origin("http://long-host", small, sizeof small, NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "too long"));
}

static void test_cors_set(void **state)
{
	char err[256] = "";
	(void)state;
	assert_int_equal(http_cors_set("", err, sizeof err), 0);
	assert_int_equal(http_cors_set(NULL, err, sizeof err), 0);
	assert_int_equal(http_cors_set("http://127.0.0.1:7071", err, sizeof err), 0);
	assert_int_equal(http_cors_set("*", err, sizeof err), -1);
	assert_int_equal(http_cors_set("null", err, sizeof err), -1);
	assert_int_equal(http_cors_set("http://127.0.0.1:7071/", err, sizeof err), -1);
	assert_non_null(strstr(err, "not an origin"));
	assert_int_equal(http_cors_set(NULL, err, sizeof err), 0);
}

static void build_ok(const char *url, const char *want_json, const char *want_connect)
{
	struct webconf wc;
	char err[256] = "";
	if (webconf_build(url, &wc, err, sizeof err))
		fail_msg("webconf_build(\"%s\") failed: %s", url, err);
	assert_string_equal(wc.config_json, want_json);
	if (!strstr(wc.csp, want_connect))
		fail_msg("csp \"%s\" lacks \"%s\"", wc.csp, want_connect);
	assert_non_null(strstr(wc.csp, "default-src 'none'"));
	assert_non_null(strstr(wc.csp, "frame-ancestors 'none'"));
	webconf_free(&wc);
	assert_null(wc.csp);
	webconf_free(&wc); /* twice: harmless */
}

static void build_bad(const char *url, const char *want)
{
	struct webconf wc;
	char err[256] = "";
	assert_int_equal(webconf_build(url, &wc, err, sizeof err), -1);
	if (!strstr(err, want) || !strstr(err, "streamer.api_url"))
		fail_msg("webconf_build(\"%s\"): error \"%s\" lacks \"%s\"", url, err, want);
	assert_null(wc.config_json);
	assert_null(wc.csp);
}

static void test_webconf(void **state)
{
	(void)state;
	build_ok("", "{\"api_url\":\"\"}", "connect-src 'self' ws: wss:;");
	build_ok(NULL, "{\"api_url\":\"\"}", "connect-src 'self' ws: wss:;");
	build_ok("http://127.0.0.1:7070", "{\"api_url\":\"http://127.0.0.1:7070\"}",
	         "connect-src 'self' ws: wss: http://127.0.0.1:7070;");
	build_ok("https://Obs.Example.com/api//", "{\"api_url\":\"https://Obs.Example.com/api\"}",
	         "connect-src 'self' ws: wss: https://obs.example.com;");
	build_ok("/api/", "{\"api_url\":\"/api\"}", "connect-src 'self' ws: wss:;");
	build_ok("/", "{\"api_url\":\"/\"}", "connect-src 'self' ws: wss:;");
	build_bad("ftp://x", "not an http");
	build_bad("127.0.0.1:7070", "not an http");
	build_bad("//evil.example", "not a plain path");
	build_bad("/a b", "not a plain path");
	build_bad("/api?x", "not a plain path");
	build_bad("http://h/api?x=1", "query or fragment");
	build_bad("http://h'; script-src *", "character");
	char long_url[2000];
	memset(long_url, 'a', sizeof long_url - 1);
	long_url[sizeof long_url - 1] = '\0';
	memcpy(long_url, "http://", 7);
	build_bad(long_url, "longer than");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_origin),
		cmocka_unit_test(test_cors_set),
		cmocka_unit_test(test_webconf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
