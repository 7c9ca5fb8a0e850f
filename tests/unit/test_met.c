/* test_met.c -- unit tests for common/met.c: exact exposition text, escaping,
 * histogram buckets, number formatting, the "_other_" overflow series,
 * registration errors and concurrent updates from four threads. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "met.h"

static char *render(struct met_registry *reg)
{
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(met_render(reg, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	return text;
}

static size_t count_prefix_lines(const char *text, const char *prefix)
{
	size_t n = 0, plen = strlen(prefix);
	for (const char *p = text; *p;) {
		if (strncmp(p, prefix, plen) == 0)
			n++;
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		p = nl + 1;
	}
	return n;
}

static void test_exposition_exact(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	assert_non_null(reg);

	struct met_family *c = met_counter(reg, "t_requests_total", "Requests by route\nand \\ code.",
	                                   "route,code");
	struct met_family *g = met_gauge(reg, "t_queue_depth", "Queue depth.", NULL);
	const double bounds[] = {0.25, 1, 2.5};
	struct met_family *h = met_histogram(reg, "t_latency_seconds", "Latency.", "route", bounds, 3);
	struct met_family *u = met_counter(reg, "t_started_total", "Starts.", "");
	assert_non_null(c);
	assert_non_null(g);
	assert_non_null(h);
	assert_non_null(u);

	met_inc(met_series(c, "/v1/events", "200"), 3);
	met_inc(met_series(c, "a\"b\\c\nd", "500"), 1);
	met_inc(met_series(c, "/v1/events", "200"), 2);
	met_set(met_series(g), 42.5);

	struct met_series *s = met_series(h, "x");
	met_observe(s, 0.125); /* le 0.25 */
	met_observe(s, 0.25);  /* exactly on a bound: le 0.25 */
	met_observe(s, 0.5);   /* le 1 */
	met_observe(s, 2.5);   /* le 2.5 */
	met_observe(s, 100);   /* +Inf only */
	assert_int_equal(met_count(s), 5);
	assert_true(met_value(s) == 103.375);

	char *text = render(reg);
	const char *want =
		"# HELP t_requests_total Requests by route\\nand \\\\ code.\n"
		"# TYPE t_requests_total counter\n"
		"t_requests_total{route=\"/v1/events\",code=\"200\"} 5\n"
		"t_requests_total{route=\"a\\\"b\\\\c\\nd\",code=\"500\"} 1\n"
		"# HELP t_queue_depth Queue depth.\n"
		"# TYPE t_queue_depth gauge\n"
		"t_queue_depth 42.5\n"
		"# HELP t_latency_seconds Latency.\n"
		"# TYPE t_latency_seconds histogram\n"
		"t_latency_seconds_bucket{route=\"x\",le=\"0.25\"} 2\n"
		"t_latency_seconds_bucket{route=\"x\",le=\"1\"} 3\n"
		"t_latency_seconds_bucket{route=\"x\",le=\"2.5\"} 4\n"
		"t_latency_seconds_bucket{route=\"x\",le=\"+Inf\"} 5\n"
		"t_latency_seconds_sum{route=\"x\"} 103.375\n"
		"t_latency_seconds_count{route=\"x\"} 5\n"
		"# HELP t_started_total Starts.\n"
		"# TYPE t_started_total counter\n"
		"t_started_total 0\n";
	assert_string_equal(text, want);
	free(text);
	met_registry_free(reg);
}

static void test_unlabeled_zero_and_histogram(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	struct met_family *h = met_histogram(reg, "t_batch", "Batch sizes.", NULL,
	                                     (const double[]){1, 10}, 2);
	struct met_family *c = met_counter(reg, "t_errors_total", "Errors.", NULL);
	assert_non_null(h);
	assert_non_null(c);
	/* the single series of an unlabeled family is always the same one */
	assert_ptr_equal(met_series(c), met_series(c));

	char *text = render(reg);
	assert_string_equal(text, "# HELP t_batch Batch sizes.\n"
	                          "# TYPE t_batch histogram\n"
	                          "t_batch_bucket{le=\"1\"} 0\n"
	                          "t_batch_bucket{le=\"10\"} 0\n"
	                          "t_batch_bucket{le=\"+Inf\"} 0\n"
	                          "t_batch_sum 0\n"
	                          "t_batch_count 0\n"
	                          "# HELP t_errors_total Errors.\n"
	                          "# TYPE t_errors_total counter\n"
	                          "t_errors_total 0\n");
	free(text);

	met_observe(met_series(h), 7);
	met_inc(met_series(c), 1);
	met_inc(met_series(c), -5); /* counters never go down */
	assert_true(met_value(met_series(c)) == 1);
	text = render(reg);
	assert_non_null(strstr(text, "t_batch_bucket{le=\"1\"} 0\nt_batch_bucket{le=\"10\"} 1\n"
	                             "t_batch_bucket{le=\"+Inf\"} 1\nt_batch_sum 7\nt_batch_count 1\n"));
	assert_non_null(strstr(text, "\nt_errors_total 1\n"));
	free(text);
	met_registry_free(reg);
}

/* Observations gathered by met_local reach the series only when flushed, and
 * then exactly as met_observe would have put them. */
static void test_local_histogram(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	const double bounds[] = {0.25, 1, 2.5};
	struct met_series *a = met_series(met_histogram(reg, "t_a", "A.", NULL, bounds, 3));
	struct met_series *b = met_series(met_histogram(reg, "t_b", "B.", NULL, bounds, 3));
	struct met_series *c = met_series(met_counter(reg, "t_c_total", "C.", NULL));
	struct met_local l, bad;
	const double v[] = {0.125, 0.25, 0.5, 2.5, 100, 0.125};

	assert_int_equal(met_local_init(&bad, c), -1); /* not a histogram */
	met_local_observe(&bad, 1);                     /* a no-op */
	met_local_free(&bad);
	assert_int_equal(met_local_init(&l, a), 0);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		met_local_observe(&l, v[i]);
		met_observe(b, v[i]);
	}
	assert_int_equal(met_count(a), 0); /* not yet flushed */
	met_local_flush(&l);
	met_local_flush(&l); /* nothing new: adds nothing */
	assert_int_equal(met_count(a), 6);
	assert_true(met_value(a) == met_value(b));
	met_local_observe(&l, 1);
	met_local_free(&l); /* flushes */
	met_observe(b, 1);
	/* the same bucket, sum and count lines: t_b's text, renamed, is t_a's */
	char *text = render(reg);
	char *ta = strstr(text, "t_a_bucket"), *tb = strstr(text, "t_b_bucket");
	assert_non_null(ta);
	assert_non_null(tb);
	char *ta_end = strstr(ta, "# HELP"), *tb_end = strstr(tb, "# HELP");
	assert_non_null(ta_end);
	assert_non_null(tb_end);
	*ta_end = *tb_end = '\0';
	for (char *p = tb; (p = strstr(p, "t_b")); p += 3)
		p[2] = 'a';
	assert_string_equal(ta, tb);
	assert_int_equal(met_count(a), 7);
	free(text);
	met_registry_free(reg);
}

static void test_number_format(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	struct met_family *g = met_gauge(reg, "t_g", "G.", "k");
	struct {
		const char *k;
		double v;
		const char *want;
	} cases[] = {
		{"int", 1234567, "t_g{k=\"int\"} 1234567\n"},
		{"neg", -3, "t_g{k=\"neg\"} -3\n"},
		{"negzero", -0.0, "t_g{k=\"negzero\"} 0\n"},
		{"frac", 0.1, "t_g{k=\"frac\"} 0.1\n"},
		{"big", 1e20, "t_g{k=\"big\"} 1e+20\n"},
		{"tiny", 0.0005, "t_g{k=\"tiny\"} 0.0005\n"},
		{"third", 1.0 / 3, "t_g{k=\"third\"} 0.33333333333333331\n"},
		{"inf", INFINITY, "t_g{k=\"inf\"} +Inf\n"},
		{"ninf", -INFINITY, "t_g{k=\"ninf\"} -Inf\n"},
		{"nan", NAN, "t_g{k=\"nan\"} NaN\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		met_set(met_series(g, cases[i].k), cases[i].v);
	char *text = render(reg);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (!strstr(text, cases[i].want))
			fail_msg("missing %s in:\n%s", cases[i].want, text);
	}
	free(text);

	/* the default latency buckets render as promtool-friendly le values */
	assert_int_equal(met_latency_nbuckets, 14);
	assert_true(met_latency_buckets[0] == 0.0005);
	assert_true(met_latency_buckets[13] == 10);
	struct met_family *h = met_histogram(reg, "t_lat_seconds", "L.", NULL, met_latency_buckets,
	                                     met_latency_nbuckets);
	assert_non_null(h);
	met_observe(met_series(h), 0.003);
	text = render(reg);
	assert_non_null(strstr(text, "t_lat_seconds_bucket{le=\"0.0005\"} 0\n"
	                             "t_lat_seconds_bucket{le=\"0.001\"} 0\n"
	                             "t_lat_seconds_bucket{le=\"0.0025\"} 0\n"
	                             "t_lat_seconds_bucket{le=\"0.005\"} 1\n"));
	assert_non_null(strstr(text, "t_lat_seconds_bucket{le=\"10\"} 1\n"
	                             "t_lat_seconds_bucket{le=\"+Inf\"} 1\n"));
	free(text);
	met_registry_free(reg);
}

static void test_overflow_series(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	struct met_family *c = met_counter(reg, "t_users_total", "Per user.", "user,kind");
	char name[32];
	struct met_series *first = NULL;

	for (int i = 0; i < MET_MAX_SERIES; i++) {
		snprintf(name, sizeof name, "u%d", i);
		struct met_series *s = met_series(c, name, "k");
		assert_non_null(s);
		if (i == 0)
			first = s;
		met_inc(s, 1);
	}
	struct met_series *o1 = met_series(c, "late1", "k");
	struct met_series *o2 = met_series(c, "late2", "other");
	assert_non_null(o1);
	assert_ptr_equal(o1, o2);
	/* existing label sets still resolve to their own series */
	assert_ptr_equal(met_series(c, "u0", "k"), first);
	assert_ptr_not_equal(first, o1);
	/* asking for the overflow label set explicitly gives the same series */
	assert_ptr_equal(met_series(c, "_other_", "_other_"), o1);
	met_inc(o1, 1);
	met_inc(o2, 1);

	char *text = render(reg);
	assert_int_equal(count_prefix_lines(text, "t_users_total{"), MET_MAX_SERIES + 1);
	assert_non_null(strstr(text, "\nt_users_total{user=\"_other_\",kind=\"_other_\"} 2\n"));
	assert_non_null(strstr(text, "\nt_users_total{user=\"u1999\",kind=\"k\"} 1\n"));
	assert_null(strstr(text, "late1"));
	/* the overflow series comes last and the text ends with a newline */
	assert_string_equal(text + strlen(text) - 1, "\n");
	free(text);
	met_registry_free(reg);
}

static void test_no_overflow_before_needed(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	struct met_family *c = met_counter(reg, "t_x_total", "X.", "a");
	met_inc(met_series(c, "b"), 1);
	char *text = render(reg);
	assert_string_equal(text, "# HELP t_x_total X.\n# TYPE t_x_total counter\n"
	                          "t_x_total{a=\"b\"} 1\n");
	free(text);
	met_registry_free(reg);
}

static void test_registration_errors(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	const double asc[] = {1, 2}, flat[] = {1, 1}, desc[] = {2, 1};

	assert_null(met_counter(reg, "t_requests", "no _total suffix", NULL));
	assert_null(met_counter(reg, "1bad_total", "leading digit", NULL));
	assert_null(met_gauge(reg, "t-dash", "dash", NULL));
	assert_null(met_gauge(reg, "", "empty", NULL));
	assert_null(met_gauge(reg, "t_g", "bad label", "a-b"));
	assert_null(met_gauge(reg, "t_g", "reserved label", "__name"));
	assert_null(met_gauge(reg, "t_g", "empty label", "a,,b"));
	assert_null(met_gauge(reg, "t_g", "duplicate label", "a,a"));
	assert_null(met_histogram(reg, "t_h", "le label", "le", asc, 2));
	assert_null(met_histogram(reg, "t_h", "flat bounds", NULL, flat, 2));
	assert_null(met_histogram(reg, "t_h", "descending", NULL, desc, 2));
	assert_null(met_histogram(reg, "t_h", "inf bound", NULL, (const double[]){INFINITY}, 1));

	assert_non_null(met_gauge(reg, "t_g", "ok", "a,b"));
	assert_null(met_gauge(reg, "t_g", "duplicate name", NULL));
	assert_null(met_counter(NULL, "t_total", "no registry", NULL));
	assert_null(met_series(NULL));

	/* failed registrations leave nothing behind */
	char *text = render(reg);
	assert_string_equal(text, "# HELP t_g ok\n# TYPE t_g gauge\n");
	free(text);
	met_registry_free(reg);
	met_registry_free(NULL);

	/* wrong-kind updates and NULL series are harmless no-ops */
	met_inc(NULL, 1);
	met_set(NULL, 1);
	met_observe(NULL, 1);
	assert_true(met_value(NULL) == 0);
	assert_int_equal(met_count(NULL), 0);
}

static void test_empty_registry(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	char *text = render(reg);
	assert_string_equal(text, "");
	free(text);
	met_registry_free(reg);
}

/* ------------------------------------------------------------------------ */

#define THREADS 4
#define ITERS 100000

struct shared {
	struct met_registry *reg;
	struct met_family *counter, *labeled, *gauge, *hist;
	int id;
};

static void *worker(void *arg)
{
	struct shared *sh = arg;
	char label[16];
	struct met_series *c = met_series(sh->counter);
	struct met_series *g = met_series(sh->gauge);
	struct met_series *h = met_series(sh->hist);
	for (int i = 0; i < ITERS; i++) {
		met_inc(c, 1);
		met_inc(g, 0.5);
		met_observe(h, (i % 2) ? 0.5 : 5);
		snprintf(label, sizeof label, "l%d", i % 64);
		met_inc(met_series(sh->labeled, label), 1);
		if (sh->id == 0 && i % 10000 == 0) {
			char *text = NULL;
			size_t len;
			if (met_render(sh->reg, &text, &len) == 0)
				free(text);
		}
	}
	return NULL;
}

static void test_concurrent_updates(void **state)
{
	(void)state;
	struct met_registry *reg = met_registry_new();
	struct shared sh[THREADS];
	pthread_t tid[THREADS];
	struct shared base = {
		.reg = reg,
		.counter = met_counter(reg, "t_ops_total", "Ops.", NULL),
		.labeled = met_counter(reg, "t_labeled_total", "Labeled ops.", "l"),
		.gauge = met_gauge(reg, "t_level", "Level.", NULL),
		.hist = met_histogram(reg, "t_h", "H.", NULL, (const double[]){1}, 1),
	};

	for (int i = 0; i < THREADS; i++) {
		sh[i] = base;
		sh[i].id = i;
		assert_int_equal(pthread_create(&tid[i], NULL, worker, &sh[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);

	assert_true(met_value(met_series(base.counter)) == (double)THREADS * ITERS);
	assert_true(met_value(met_series(base.gauge)) == (double)THREADS * ITERS / 2);
	assert_int_equal(met_count(met_series(base.hist)), THREADS * ITERS);
	/* 0.5 and 5 are exact, so the sum is exact too */
	assert_true(met_value(met_series(base.hist)) == (double)THREADS * ITERS / 2 * 5.5);
	double labeled = 0;
	for (int i = 0; i < 64; i++) {
		char label[16];
		snprintf(label, sizeof label, "l%d", i);
		labeled += met_value(met_series(base.labeled, label));
	}
	assert_true(labeled == (double)THREADS * ITERS);

	char *text = render(reg);
	assert_non_null(strstr(text, "\nt_ops_total 400000\n"));
	assert_non_null(strstr(text, "\nt_level 200000\n"));
	assert_non_null(strstr(text, "\nt_h_bucket{le=\"1\"} 200000\n"
	                             "t_h_bucket{le=\"+Inf\"} 400000\n"
	                             "t_h_sum 1100000\n"
	                             "t_h_count 400000\n"));
	assert_int_equal(count_prefix_lines(text, "t_labeled_total{"), 64);
	free(text);
	met_registry_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exposition_exact),
		cmocka_unit_test(test_unlabeled_zero_and_histogram),
		cmocka_unit_test(test_local_histogram),
		cmocka_unit_test(test_number_format),
		cmocka_unit_test(test_overflow_series),
		cmocka_unit_test(test_no_overflow_before_needed),
		cmocka_unit_test(test_registration_errors),
		cmocka_unit_test(test_empty_registry),
		cmocka_unit_test(test_concurrent_updates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
