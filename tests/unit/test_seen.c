/* test_seen.c -- unit tests for alerter/seen.c: a repeated id is a
 * duplicate, distinct ids are not, at least SEEN_GEN of the latest ids are
 * remembered across a generation switch, and old ones are forgotten so that
 * memory stays fixed. Linked with alerter/seen.o (see the Makefile). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "../../alerter/alerter.h"

static void id_of(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "%08x-1f2e-4d3c-8b4a-%012x", i * 2654435761u, i);
}

static void test_repeat_is_duplicate(void **state)
{
	(void)state;
	struct seen *s = seen_new();
	assert_non_null(s);
	assert_int_equal(seen_check_add(s, "6f1c2d3e-0000-4000-8000-000000000001"), 0);
	assert_int_equal(seen_check_add(s, "6f1c2d3e-0000-4000-8000-000000000002"), 0);
	assert_int_equal(seen_check_add(s, "6f1c2d3e-0000-4000-8000-000000000001"), 1);
	assert_int_equal(seen_check_add(s, "6f1c2d3e-0000-4000-8000-000000000002"), 1);
	/* no id: never a duplicate */
	assert_int_equal(seen_check_add(s, NULL), 0);
	assert_int_equal(seen_check_add(s, ""), 0);
	assert_int_equal(seen_check_add(s, ""), 0);
	seen_free(s);
	seen_free(NULL);
}

static void test_latest_remembered_old_forgotten(void **state)
{
	(void)state;
	char id[64];
	struct seen *s = seen_new();
	assert_non_null(s);
	unsigned n = 3 * SEEN_GEN + 17;
	for (unsigned i = 0; i < n; i++) {
		id_of(id, sizeof id, i);
		assert_int_equal(seen_check_add(s, id), 0); /* all distinct: no false duplicate */
	}
	/* the latest SEEN_GEN ids are all remembered */
	for (unsigned i = n - SEEN_GEN; i < n; i++) {
		id_of(id, sizeof id, i);
		assert_int_equal(seen_check_add(s, id), 1);
	}
	/* the oldest are forgotten: memory does not grow with the stream */
	id_of(id, sizeof id, 0);
	assert_int_equal(seen_check_add(s, id), 0);
	seen_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repeat_is_duplicate),
		cmocka_unit_test(test_latest_remembered_old_forgotten),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
