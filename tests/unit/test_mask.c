/* test_mask.c -- unit tests for common/mask.c: URL userinfo and secret
 * query parameters, libpq key=value and URI connection strings (quoted
 * values, spaces around '='), truncation into small buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "mask.h"

static void check_url(const char *in, const char *want)
{
	char out[512];
	mask_url(in, out, sizeof out);
	assert_string_equal(out, want);
}

static void check_ci(const char *in, const char *want)
{
	char out[512];
	mask_conninfo(in, out, sizeof out);
	assert_string_equal(out, want);
}

static void test_url(void **state)
{
	(void)state;
	check_url("http://127.0.0.1:9093", "http://127.0.0.1:9093");
	check_url("https://am:s3cret@alerts.example:9093/api/v2/alerts",
	          "https://am:***@alerts.example:9093/api/v2/alerts");
	check_url("https://user@host/x", "https://user@host/x"); /* no password */
	check_url("https://u:p@ss@host/x", "https://u:***@host/x"); /* last '@' ends userinfo */
	check_url("http://h/p?a=1&token=abc&password=xyz#frag", "http://h/p?a=1&token=***&password=***#frag");
	check_url("http://h/p@q:r", "http://h/p@q:r"); /* '@' in the path is not userinfo */
	check_url("not a url", "not a url");
	check_url("", "");
}

static void test_conninfo(void **state)
{
	(void)state;
	check_ci("host=127.0.0.1 port=5440 dbname=agent_obs user=agent_obs",
	         "host=127.0.0.1 port=5440 dbname=agent_obs user=agent_obs");
	check_ci("host=db password=hunter2 user=x", "host=db password=*** user=x");
	check_ci("password = 'it\\'s a secret' sslmode=require", "password = *** sslmode=require");
	check_ci("host=db sslpassword=k3y", "host=db sslpassword=***");
	check_ci("passwordx=1 mypassword=2", "passwordx=1 mypassword=2");
	check_ci("postgresql://app:s3cr3t@db:5432/shop?sslmode=require&password=p2",
	         "postgresql://app:***@db:5432/shop?sslmode=require&password=***");
	check_ci("postgres://app@db/shop", "postgres://app@db/shop");
	check_ci("password=", "password=***");
}

static void test_truncation(void **state)
{
	(void)state;
	char out[12];
	mask_conninfo("host=db password=hunter2", out, sizeof out);
	assert_string_equal(out, "host=db pas");
	mask_url("https://u:verylongpassword@h", out, sizeof out);
	assert_string_equal(out, "https://u:*");
	mask_url("x", out, 0); /* no room: nothing written */
	assert_null(strstr(out, "verylong"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_conninfo),
		cmocka_unit_test(test_truncation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
