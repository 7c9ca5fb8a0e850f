/* test_arena.c -- unit tests for common/arena.c: bump allocation, big
 * blocks, cJSON routed through the arena only while it is current. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "arena.h"

static void test_alloc_aligned_and_distinct(void **state)
{
	(void)state;
	struct arena *a = arena_new();
	char *p = arena_alloc(a, 3), *q = arena_alloc(a, 5);
	assert_non_null(p);
	assert_true(q >= p + 3);
	assert_int_equal((uintptr_t)q % _Alignof(max_align_t), 0);
	char *big = arena_alloc(a, 1 << 20); /* own chunk */
	memset(big, 7, 1 << 20);
	char *after = arena_alloc(a, 16); /* still served from the first (8 KiB) chunk */
	assert_true(after > q && after < q + 8192);
	size_t first = arena_bytes(a);
	assert_true(first >= (1u << 20) + 8192 && first < (1u << 20) + 65536);
	for (int i = 0; i < 64; i++) /* past the first chunk: the next ones are 64 KiB */
		assert_non_null(arena_alloc(a, 256));
	assert_int_equal(arena_bytes(a), first + 65536);
	arena_free(a);
	arena_free(NULL);
}

static void test_cjson_inside_and_outside(void **state)
{
	(void)state;
	arena_install_cjson_hooks();
	struct arena *a = arena_new();
	struct arena *prev = arena_enter(a);
	assert_null(prev);
	cJSON *o = cJSON_Parse("{\"a\":[1,2,3],\"b\":\"text\"}");
	char *s = cJSON_PrintUnformatted(o);
	assert_string_equal(s, "{\"a\":[1,2,3],\"b\":\"text\"}");
	cJSON_Delete(o); /* no-op inside the arena */
	cJSON_free(s);
	assert_true(arena_bytes(a) > 0);
	arena_enter(prev);
	/* outside: plain heap, plain free() is fine */
	cJSON *h = cJSON_CreateString("heap");
	char *hs = cJSON_PrintUnformatted(h);
	assert_string_equal(hs, "\"heap\"");
	free(hs);
	cJSON_Delete(h);
	arena_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_aligned_and_distinct),
		cmocka_unit_test(test_cjson_inside_and_outside),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
