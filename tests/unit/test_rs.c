/* test_rs.c -- unit tests for the pure parts of common/rs.c: stream ids and
 * the parsing of XREADGROUP / XAUTOCLAIM replies (built by hand here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rs.h"

static redisReply *str(const char *s)
{
	redisReply *r = calloc(1, sizeof *r);
	r->type = REDIS_REPLY_STRING;
	r->str = strdup(s);
	r->len = strlen(s);
	return r;
}

static redisReply *arr(size_t n, ...)
{
	redisReply *r = calloc(1, sizeof *r);
	va_list ap;
	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	r->element = calloc(n ? n : 1, sizeof *r->element);
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

static redisReply *nil(void)
{
	redisReply *r = calloc(1, sizeof *r);
	r->type = REDIS_REPLY_NIL;
	return r;
}

static void test_ids(void **state)
{
	(void)state;
	struct rs_id a, b;
	char buf[48];
	assert_int_equal(rs_id_parse("1700000000000-5", &a), 0);
	assert_true(a.ms == 1700000000000ULL && a.seq == 5);
	assert_int_equal(rs_id_parse("42", &b), 0);
	assert_true(b.ms == 42 && b.seq == 0);
	assert_int_equal(rs_id_cmp(a, b), 1);
	assert_int_equal(rs_id_cmp(b, a), -1);
	assert_int_equal(rs_id_cmp(a, a), 0);
	rs_id_format(a, buf);
	assert_string_equal(buf, "1700000000000-5");
	assert_int_equal(rs_id_parse("12-x", &a), -1);
	assert_int_equal(rs_id_parse("", &a), -1);
	assert_int_equal(rs_id_parse("1-2-3", &a), -1);
}

static void test_read_reply_with_probe_and_deleted_entry(void **state)
{
	(void)state;
	/* [[stream, [[id1, [e, {...}, p, 1]], [id2, nil]]]] */
	redisReply *r = arr(1, arr(2, str("agent_events"),
	                          arr(2, arr(2, str("1-1"), arr(4, str("e"), str("{\"a\":1}"), str("p"), str("1"))),
	                              arr(2, str("1-2"), nil()))));
	struct rs_batch b = {0};
	assert_int_equal(rs_parse_read_reply(r, &b), 2);
	assert_int_equal(b.n, 2);
	assert_string_equal(b.v[0].id, "1-1");
	assert_string_equal(b.v[0].data, "{\"a\":1}");
	assert_int_equal(b.v[0].len, 7);
	assert_int_equal(b.v[0].probe, 1);
	assert_string_equal(b.v[1].id, "1-2");
	assert_null(b.v[1].data); /* trimmed while pending */
	assert_int_equal(b.v[1].probe, 0);
	rs_batch_clear(&b);
	assert_int_equal(b.n, 0);
	/* a BLOCK timeout is a nil reply: no entries, no error */
	redisReply *n = nil();
	assert_int_equal(rs_parse_read_reply(n, &b), 0);
	rs_batch_free(&b);
	rs_batch_free(&b); /* twice is harmless */
	freeReplyObject(n);
	freeReplyObject(r);
}

static void test_malformed_replies_are_errors(void **state)
{
	(void)state;
	struct rs_batch b = {0};
	redisReply *r = arr(1, str("not a stream"));
	assert_int_equal(rs_parse_read_reply(r, &b), -1);
	freeReplyObject(r);
	r = arr(1, arr(1, arr(1, str("no id"))));
	assert_int_equal(rs_parse_entries(r, &b), -1);
	freeReplyObject(r);
	r = str("not an array");
	assert_int_equal(rs_parse_entries(r, &b), -1);
	freeReplyObject(r);
	rs_batch_free(&b);
}

static void test_many_entries_grow_the_batch(void **state)
{
	(void)state;
	struct rs_batch b = {0};
	for (int i = 0; i < 1000; i++) {
		char id[32];
		snprintf(id, sizeof id, "%d-0", i);
		assert_int_equal(rs_batch_push(&b, id, "x", 1), 0);
	}
	assert_int_equal(b.n, 1000);
	assert_string_equal(b.v[999].id, "999-0");
	rs_batch_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_read_reply_with_probe_and_deleted_entry),
		cmocka_unit_test(test_malformed_replies_are_errors),
		cmocka_unit_test(test_many_entries_grow_the_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
