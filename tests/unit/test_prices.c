/* test_prices.c -- unit tests for processor/prices.c: the shipped
 * config/prices.yaml loads, model lookup (exact, longest prefix, unknown),
 * cost arithmetic, and clear errors for malformed files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../processor/history.h"

static char *write_tmp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/test_prices_XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_shipped_file(void **state)
{
	(void)state;
	struct prices p;
	char err[256] = "";
	int rc = prices_load("config/prices.yaml", &p, err, sizeof err);
	if (rc)
		fail_msg("config/prices.yaml: %d %s (run from the repository root)", rc, err);
	assert_true(p.n >= 5);
	const struct price *s = prices_find(&p, "claude-sonnet-4-5-20250929");
	assert_non_null(s);
	assert_string_equal(s->model, "claude-sonnet-4-5");
	assert_true(s->usd_per_mtok[PRICE_INPUT] == 3);
	assert_true(s->usd_per_mtok[PRICE_OUTPUT] == 15);
	/* longest prefix wins: opus-4-5 is not priced as opus-4 */
	const struct price *o = prices_find(&p, "claude-opus-4-5-20251101");
	assert_string_equal(o->model, "claude-opus-4-5");
	assert_string_equal(prices_find(&p, "claude-opus-4-20250514")->model, "claude-opus-4");
	assert_string_equal(prices_find(&p, "CLAUDE-HAIKU-4-5")->model, "claude-haiku-4-5");
	assert_null(prices_find(&p, "gpt-4o"));
	assert_null(prices_find(&p, ""));
	assert_null(prices_find(&p, NULL));
	prices_free(&p);
}

static void test_cost(void **state)
{
	(void)state;
	struct price pr = {.model = "m", .usd_per_mtok = {3, 15, 0.3, 3.75}};
	long long tok[PRICE_KINDS] = {1000000, 2000000, 10000000, 400000};
	int all[PRICE_KINDS] = {1, 1, 1, 1}, some[PRICE_KINDS] = {1, 0, 0, 0};
	assert_float_equal(prices_cost(&pr, tok, all), 3 + 30 + 3 + 1.5, 1e-9);
	assert_float_equal(prices_cost(&pr, tok, some), 3, 1e-9);
}

static void test_missing_and_empty(void **state)
{
	(void)state;
	struct prices p;
	char err[256];
	assert_int_equal(prices_load("/nonexistent/prices.yaml", &p, err, sizeof err), 1);
	assert_int_equal(p.n, 0);
	char *path = write_tmp("# nothing\n");
	assert_int_equal(prices_load(path, &p, err, sizeof err), 0);
	assert_int_equal(p.n, 0);
	unlink(path);
	path = write_tmp("models:\n");
	assert_int_equal(prices_load(path, &p, err, sizeof err), 0);
	assert_int_equal(p.n, 0);
	unlink(path);
}

static void expect_error(const char *text, const char *needle)
{
	struct prices p;
	char err[256] = "";
	char *path = write_tmp(text);
	assert_int_equal(prices_load(path, &p, err, sizeof err), -1);
	if (!strstr(err, needle))
		fail_msg("error \"%s\" lacks \"%s\"", err, needle);
	assert_non_null(strstr(err, path)); /* names the file */
	unlink(path);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("models: [1, 2]\n", "mapping");
	expect_error("prices:\n  m: {input: 1}\n", "unknown top-level key");
	expect_error("models:\n  m: {input: 1, outptu: 2}\n", "outptu: unknown key");
	expect_error("models:\n  m: {input: cheap}\n", "m.input: must be a non-negative number");
	expect_error("models:\n  m: {input: -1}\n", "non-negative");
	expect_error("models:\n  m: 3\n", "must be a mapping");
	expect_error("models:\n  m: {input: 1\n", ":"); /* YAML syntax error with a line */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_file),
		cmocka_unit_test(test_cost),
		cmocka_unit_test(test_missing_and_empty),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
