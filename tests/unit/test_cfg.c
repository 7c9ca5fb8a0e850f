/* test_cfg.c -- unit tests for common/cfg.c: defaults, YAML (nested and
 * dotted keys), OBS_* overrides, strict value parsing with line:col errors,
 * own-prefix typo protection, ranges, cfg_help and cfg_args. YAML files are
 * written to a private temporary directory removed at the end. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"

struct conf {
	char *host;
	long long port;
	int debug;
	double ratio;
	char *name;
	long long items;
};

#define T struct conf
static const struct cfg_setting table[] = {
	{"redis.host", CFG_STR, "127.0.0.1", "Redis host", offsetof(T, host), 0, -1},
	{"redis.port", CFG_INT, "6390", "Redis port", offsetof(T, port), 1, 65535},
	{"tst.debug", CFG_BOOL, "false", "Verbose output", offsetof(T, debug), 0, -1},
	{"tst.ratio", CFG_DOUBLE, "0.5", "Sampling ratio", offsetof(T, ratio), 0, 1},
	{"tst.name", CFG_STR, NULL, "Instance name", offsetof(T, name), 0, -1},
	{"tst.max-items", CFG_INT, "10", "Items (unbounded)", offsetof(T, items), 1, 0},
};
#undef T
#define N (sizeof table / sizeof table[0])

static char tmpdir[] = "/tmp/test_cfg.XXXXXX";
static char path[512];
static char err[512];

static const char *yaml(const char *text)
{
	static int seq;
	snprintf(path, sizeof path, "%s/c%d.yaml", tmpdir, seq++);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void clear_env(void)
{
	const char *names[] = {"OBS_REDIS_HOST", "OBS_REDIS_PORT", "OBS_TST_DEBUG", "OBS_TST_RATIO",
	                       "OBS_TST_NAME", "OBS_TST_MAX_ITEMS", "OBS_CONFIG"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		unsetenv(names[i]);
}

static int setup(void **state)
{
	(void)state;
	clear_env();
	err[0] = '\0';
	return 0;
}

/* Expect cfg_load to fail with exactly "<path>:<rest>". */
static void expect_yaml_error(const char *text, const char *own, const char *rest)
{
	struct conf c;
	char want[1024];
	const char *p = yaml(text);
	memset(&c, 0xA5, sizeof c); /* cfg_load must not trust old contents */
	assert_int_equal(cfg_load(table, N, &c, p, own, err, sizeof err), -1);
	snprintf(want, sizeof want, "%s:%s", p, rest);
	assert_string_equal(err, want);
	/* a failed load leaves no strings behind */
	assert_null(c.host);
	assert_null(c.name);
	cfg_free(table, N, &c);
}

static void expect_env_error(const char *name, const char *value, const char *want)
{
	struct conf c = {0};
	setenv(name, value, 1);
	assert_int_equal(cfg_load(table, N, &c, NULL, "tst.", err, sizeof err), -1);
	assert_string_equal(err, want);
	assert_null(c.host);
	unsetenv(name);
}

/* ------------------------------------------------------------------------ */

static void test_defaults(void **state)
{
	(void)state;
	struct conf c;
	memset(&c, 0xA5, sizeof c);
	assert_int_equal(cfg_load(table, N, &c, NULL, "tst.", err, sizeof err), 0);
	assert_string_equal(c.host, "127.0.0.1");
	assert_int_equal(c.port, 6390);
	assert_int_equal(c.debug, 0);
	assert_true(c.ratio == 0.5);
	assert_null(c.name); /* NULL default stays NULL */
	assert_int_equal(c.items, 10);
	cfg_free(table, N, &c);
	assert_null(c.host);
	cfg_free(table, N, &c); /* second call is harmless */
	assert_null(c.host);
}

static void test_yaml_nested_and_dotted(void **state)
{
	(void)state;
	struct conf c = {0};
	const char *p = yaml("# shared config for every daemon\n"
	                     "redis:\n"
	                     "  host: redis.internal\n"
	                     "tst.debug: yes\n"
	                     "tst:\n"
	                     "  ratio: 0.25\n"
	                     "  name: \"hello world\"\n"
	                     "  max-items: 123456789012\n"
	                     "collector:\n"
	                     "  port: 7070\n"
	                     "  whatever: [1, 2, {a: b}]\n"
	                     "alerter.rules: 3\n");
	assert_int_equal(cfg_load(table, N, &c, p, "tst.", err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_string_equal(c.host, "redis.internal");
	assert_int_equal(c.port, 6390); /* not in the file: default */
	assert_int_equal(c.debug, 1);
	assert_true(c.ratio == 0.25);
	assert_string_equal(c.name, "hello world");
	assert_int_equal(c.items, 123456789012LL);
	cfg_free(table, N, &c);

	/* an empty file and a file holding only "~" keep every default */
	assert_int_equal(cfg_load(table, N, &c, yaml(""), "tst.", err, sizeof err), 0);
	assert_int_equal(c.port, 6390);
	cfg_free(table, N, &c);
	assert_int_equal(cfg_load(table, N, &c, yaml("# nothing\n~\n"), "tst.", err, sizeof err), 0);
	assert_string_equal(c.host, "127.0.0.1");
	cfg_free(table, N, &c);

	/* an empty value is an empty string for CFG_STR */
	assert_int_equal(cfg_load(table, N, &c, yaml("redis:\n  host:\n"), "tst.", err, sizeof err), 0);
	assert_string_equal(c.host, "");
	cfg_free(table, N, &c);
}

static void test_env_beats_yaml(void **state)
{
	(void)state;
	struct conf c = {0};
	const char *p = yaml("redis:\n  port: 7000\n  host: from-yaml\ntst:\n  debug: on\n");
	setenv("OBS_REDIS_PORT", "7100", 1);
	setenv("OBS_TST_NAME", "from-env", 1);
	setenv("OBS_TST_DEBUG", "OFF", 1);
	setenv("OBS_TST_MAX_ITEMS", "-5", 1); /* '-' becomes '_'; no range */
	assert_int_equal(cfg_load(table, N, &c, p, "tst.", err, sizeof err), 0);
	assert_int_equal(c.port, 7100);
	assert_string_equal(c.host, "from-yaml");
	assert_string_equal(c.name, "from-env");
	assert_int_equal(c.debug, 0);
	assert_int_equal(c.items, -5);
	cfg_free(table, N, &c);
	clear_env();
}

static void test_yaml_strict_values(void **state)
{
	(void)state;
	expect_yaml_error("redis:\n  port: 12x\n", "tst.",
	                  "2:9: redis.port: not an integer: \"12x\"");
	expect_yaml_error("redis:\n  port: \"\"\n", "tst.", "2:9: redis.port: not an integer: \"\"");
	expect_yaml_error("redis:\n  port: 1.0\n", "tst.", "2:9: redis.port: not an integer: \"1.0\"");
	expect_yaml_error("tst.max-items: 99999999999999999999\n", "tst.",
	                  "1:16: tst.max-items: integer out of range: \"99999999999999999999\"");
	expect_yaml_error("tst:\n  debug: maybe\n", "tst.",
	                  "2:10: tst.debug: not a boolean (true/false/yes/no/on/off/1/0): \"maybe\"");
	expect_yaml_error("tst.ratio: 0.5x\n", "tst.", "1:12: tst.ratio: not a number: \"0.5x\"");
	expect_yaml_error("tst.ratio: .nan\n", "tst.", "1:12: tst.ratio: not a number: \".nan\"");
	expect_yaml_error("tst.ratio: nan\n", "tst.", "1:12: tst.ratio: not a number: \"nan\"");
	expect_yaml_error("redis:\n  port:\n", "tst.", "2:8: redis.port: missing value");
}

static void test_env_strict_values(void **state)
{
	(void)state;
	expect_env_error("OBS_REDIS_PORT", "12x", "OBS_REDIS_PORT: not an integer: \"12x\"");
	expect_env_error("OBS_REDIS_PORT", " 12", "OBS_REDIS_PORT: not an integer: \" 12\"");
	expect_env_error("OBS_REDIS_PORT", "", "OBS_REDIS_PORT: not an integer: \"\"");
	expect_env_error("OBS_TST_DEBUG", "2",
	                 "OBS_TST_DEBUG: not a boolean (true/false/yes/no/on/off/1/0): \"2\"");
	expect_env_error("OBS_TST_RATIO", "inf", "OBS_TST_RATIO: not a number: \"inf\"");
	expect_env_error("OBS_TST_RATIO", "1.5", "OBS_TST_RATIO: 1.5 is out of range [0, 1]");
}

static void test_own_prefix(void **state)
{
	(void)state;
	struct conf c = {0};
	/* a typo under our own prefix is an error, reported at the key */
	expect_yaml_error("tst:\n  debug: true\n  ratoi: 0.3\n", "tst.", "3:3: tst.ratoi: unknown setting");
	expect_yaml_error("tst.nmae: x\n", "tst.", "1:1: tst.nmae: unknown setting");
	expect_yaml_error("tst: 5\n", "tst.", "1:1: tst: unknown setting");

	/* unknown keys of other components (and other keys under redis.) pass */
	const char *p = yaml("collector:\n  anything: 1\nredis:\n  unknown_thing: 2\ntstx: 1\n");
	assert_int_equal(cfg_load(table, N, &c, p, "tst.", err, sizeof err), 0);
	cfg_free(table, N, &c);
	/* without an own prefix nothing unknown is an error */
	assert_int_equal(cfg_load(table, N, &c, yaml("tst:\n  typo: 1\n"), NULL, err, sizeof err), 0);
	cfg_free(table, N, &c);
}

static void test_ranges(void **state)
{
	(void)state;
	struct conf c = {0};
	expect_yaml_error("redis.port: 70000\n", "tst.", "1:13: redis.port: 70000 is out of range [1, 65535]");
	expect_yaml_error("redis:\n  port: 0\n", "tst.", "2:9: redis.port: 0 is out of range [1, 65535]");
	expect_yaml_error("tst:\n  ratio: -0.1\n", "tst.", "2:10: tst.ratio: -0.1 is out of range [0, 1]");
	expect_env_error("OBS_REDIS_PORT", "65536", "OBS_REDIS_PORT: 65536 is out of range [1, 65535]");

	/* the bounds themselves are allowed */
	assert_int_equal(cfg_load(table, N, &c, yaml("redis.port: 65535\ntst.ratio: 1\n"), "tst.", err,
	                          sizeof err), 0);
	assert_int_equal(c.port, 65535);
	assert_true(c.ratio == 1.0);
	cfg_free(table, N, &c);
	setenv("OBS_REDIS_PORT", "1", 1);
	assert_int_equal(cfg_load(table, N, &c, NULL, "tst.", err, sizeof err), 0);
	assert_int_equal(c.port, 1);
	cfg_free(table, N, &c);
	unsetenv("OBS_REDIS_PORT");
}

static void test_yaml_structure_errors(void **state)
{
	(void)state;
	struct conf c = {0};
	expect_yaml_error("tst:\n  name: [a, b]\n", "tst.", "2:9: tst.name: sequences are not supported");
	expect_yaml_error("tst:\n  extra:\n    - 1\n", "tst.",
	                  "3:5: tst.extra: sequences are not supported");
	expect_yaml_error("redis:\n  port: {a: 1}\n", "tst.",
	                  "2:9: redis.port: expected a value, not a mapping");
	expect_yaml_error("redis.port: 1\nredis:\n  port: 2\n", "tst.", "3:3: redis.port: set twice in this file");
	expect_yaml_error("a: &x 1\nredis:\n  port: *x\n", "tst.",
	                  "3:9: redis.port: aliases are not supported");
	expect_yaml_error("- a\n- b\n", "tst.", "1:1: (top): expected a mapping of settings");

	/* a libyaml syntax error carries the file and a 1-based position */
	const char *p = yaml("redis:\n  host: \"unclosed\n");
	assert_int_equal(cfg_load(table, N, &c, p, "tst.", err, sizeof err), -1);
	char want[600];
	snprintf(want, sizeof want,
	         "%s:3:1: found unexpected end of stream while scanning a quoted scalar", p);
	assert_string_equal(err, want);

	/* a missing file says so */
	snprintf(path, sizeof path, "%s/missing.yaml", tmpdir);
	assert_int_equal(cfg_load(table, N, &c, path, "tst.", err, sizeof err), -1);
	assert_non_null(strstr(err, "missing.yaml: cannot open: No such file"));
	assert_null(c.host);
}

static void test_bad_default(void **state)
{
	(void)state;
	struct {
		long long n;
		char *s;
	} d;
	const struct cfg_setting bad[] = {
		{"a.s", CFG_STR, "x", "", offsetof(__typeof__(d), s), 0, -1},
		{"a.n", CFG_INT, "ten", "", offsetof(__typeof__(d), n), 0, -1},
	};
	assert_int_equal(cfg_load(bad, 2, &d, NULL, NULL, err, sizeof err), -1);
	assert_string_equal(err, "a.n: bad default: not an integer: \"ten\"");
	assert_null(d.s);
}

/* min == max == 0 (the fields left out) means unbounded, like min > max */
static void test_zero_range_is_unbounded(void **state)
{
	(void)state;
	struct {
		long long n;
		double d;
	} z;
	const struct cfg_setting rows[] = {
		{"z.n", CFG_INT, "-7", "", offsetof(__typeof__(z), n), 0, 0},
		{"z.d", CFG_DOUBLE, "2.5", "", offsetof(__typeof__(z), d), 0, 0},
	};
	assert_int_equal(cfg_load(rows, 2, &z, NULL, NULL, err, sizeof err), 0);
	assert_int_equal(z.n, -7);
	assert_true(z.d == 2.5);
}

static void test_env_name(void **state)
{
	(void)state;
	char buf[64];
	cfg_env_name("redis.port", buf, sizeof buf);
	assert_string_equal(buf, "OBS_REDIS_PORT");
	cfg_env_name("collector.max-body.bytes", buf, sizeof buf);
	assert_string_equal(buf, "OBS_COLLECTOR_MAX_BODY_BYTES");
	cfg_env_name("redis.port", buf, 8);
	assert_string_equal(buf, "OBS_RED");
	cfg_env_name("redis.port", buf, 3);
	assert_string_equal(buf, "OB");
	cfg_env_name("x", buf, 0); /* nothing written, no crash */
}

/* ------------------------------------------------------------------------ */
/* cfg_help / cfg_args */

static char *slurp_fd(int fd)
{
	static char text[16384];
	ssize_t n = pread(fd, text, sizeof text - 1, 0);
	assert_true(n >= 0);
	text[n] = '\0';
	return text;
}

/* Run cfg_args with stdout and stderr captured into files. */
struct captured {
	int rc;
	char out[16384];
	char err[4096];
};

static void run_args(struct captured *cap, int argc, char **argv, const char **config_path,
                     const char *const *extra)
{
	char o[600], e[600];
	snprintf(o, sizeof o, "%s/stdout", tmpdir);
	snprintf(e, sizeof e, "%s/stderr", tmpdir);
	int fo = open(o, O_RDWR | O_CREAT | O_TRUNC, 0600);
	int fe = open(e, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fo >= 0 && fe >= 0);
	fflush(stdout);
	fflush(stderr);
	int so = dup(1), se = dup(2);
	dup2(fo, 1);
	dup2(fe, 2);
	cap->rc = cfg_args(argc, argv, "tst: a test daemon", table, N, config_path, extra);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	snprintf(cap->out, sizeof cap->out, "%s", slurp_fd(fo));
	snprintf(cap->err, sizeof cap->err, "%.4000s", slurp_fd(fe));
	close(fo);
	close(fe);
}

static void test_help(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	cfg_help(f, "/usr/local/bin/tstd", "tst: a test daemon", table, N);
	fclose(f);
	assert_non_null(strstr(text, "Usage: tstd [--config FILE] [--help]\ntst: a test daemon\n"));
	assert_non_null(strstr(text, "--config FILE"));
	assert_non_null(strstr(text, "--help"));
	assert_non_null(strstr(text, "OBS_CONFIG"));
	const char *want[] = {"OBS_REDIS_HOST", "OBS_REDIS_PORT", "OBS_TST_DEBUG", "OBS_TST_RATIO",
	                      "OBS_TST_NAME", "OBS_TST_MAX_ITEMS"};
	for (size_t i = 0; i < N; i++) {
		/* each setting has one line naming key, env, type, default and doc */
		const char *line = strstr(text, want[i]);
		assert_non_null(line);
		while (line > text && line[-1] != '\n')
			line--;
		const char *end = strchr(line, '\n');
		assert_non_null(end);
		char row[512];
		snprintf(row, sizeof row, "%.*s", (int)(end - line), line);
		assert_non_null(strstr(row, table[i].key));
		assert_non_null(strstr(row, table[i].doc));
		if (table[i].def)
			assert_non_null(strstr(row, table[i].def));
	}
	assert_non_null(strstr(text, "  redis.port     OBS_REDIS_PORT     int     6390"));
	assert_non_null(strstr(text, "Redis port [1..65535]\n"));
	assert_non_null(strstr(text, "tst.name       OBS_TST_NAME       string  (none)"));
	free(text);
}

static void test_args(void **state)
{
	(void)state;
	struct captured cap;
	const char *cp = "untouched";

	{
		char *argv[] = {"./tstd", "--help", NULL};
		run_args(&cap, 2, argv, &cp, NULL);
		assert_int_equal(cap.rc, 1);
		assert_non_null(strstr(cap.out, "Usage: tstd"));
		assert_non_null(strstr(cap.out, "OBS_REDIS_PORT"));
		assert_string_equal(cap.err, "");
	}
	{
		char *argv[] = {"tstd", "-h", NULL};
		run_args(&cap, 2, argv, &cp, NULL);
		assert_int_equal(cap.rc, 1);
	}
	{
		char *argv[] = {"tstd", NULL};
		run_args(&cap, 1, argv, &cp, NULL);
		assert_int_equal(cap.rc, 0);
		assert_null(cp);
	}
	{
		setenv("OBS_CONFIG", "/etc/obs.yaml", 1);
		char *argv[] = {"tstd", NULL};
		run_args(&cap, 1, argv, &cp, NULL);
		assert_int_equal(cap.rc, 0);
		assert_string_equal(cp, "/etc/obs.yaml");
		char *argv2[] = {"tstd", "--config", "/a.yaml", NULL};
		run_args(&cap, 3, argv2, &cp, NULL); /* the flag beats the env */
		assert_int_equal(cap.rc, 0);
		assert_string_equal(cp, "/a.yaml");
		unsetenv("OBS_CONFIG");
	}
	{
		char *argv[] = {"tstd", "-c", "/b.yaml", NULL};
		run_args(&cap, 3, argv, &cp, NULL);
		assert_int_equal(cap.rc, 0);
		assert_string_equal(cp, "/b.yaml");
		char *argv2[] = {"tstd", "--config=/c.yaml", NULL};
		run_args(&cap, 2, argv2, &cp, NULL);
		assert_int_equal(cap.rc, 0);
		assert_string_equal(cp, "/c.yaml");
	}
	{
		char *argv[] = {"tstd", "--config", NULL};
		run_args(&cap, 2, argv, &cp, NULL);
		assert_int_equal(cap.rc, -1);
		assert_string_equal(cap.err, "tstd: --config needs a FILE argument (try --help)\n");
		assert_string_equal(cap.out, "");
	}
	{
		char *argv[] = {"tstd", "--bogus", NULL};
		run_args(&cap, 2, argv, &cp, NULL);
		assert_int_equal(cap.rc, -1);
		assert_string_equal(cap.err, "tstd: unknown argument \"--bogus\" (try --help)\n");
		char *argv2[] = {"tstd", "stray", NULL};
		run_args(&cap, 2, argv2, &cp, NULL);
		assert_int_equal(cap.rc, -1);
	}
	{
		/* the caller's own arguments are skipped, with one value */
		const char *const extra[] = {"--check", "--replay", NULL};
		char *argv[] = {"tstd", "--replay", "/tmp/x", "--check", "--config", "/d.yaml", NULL};
		run_args(&cap, 6, argv, &cp, extra);
		assert_int_equal(cap.rc, 0);
		assert_string_equal(cp, "/d.yaml");
		char *argv2[] = {"tstd", "--replay=/tmp/x", "--check", NULL};
		run_args(&cap, 3, argv2, &cp, extra);
		assert_int_equal(cap.rc, 0);
		char *argv3[] = {"tstd", "--check", "--nope", NULL};
		run_args(&cap, 3, argv3, &cp, extra);
		assert_int_equal(cap.rc, -1);
	}
}

/* "x_file" settings fill "x" from a one-line file (secrets off argv and
 * out of config files); both set is an error; the secret never shows. */
struct sconf {
	char *password, *password_file;
};
#define S struct sconf
static const struct cfg_setting stable[] = {
	{"db.password", CFG_STR, "", "Password", offsetof(S, password), 0, -1},
	{"db.password_file", CFG_STR, "", "Password file", offsetof(S, password_file), 0, -1},
};
#undef S

static const char *secret_file(const char *text)
{
	static char p[600];
	snprintf(p, sizeof p, "%s/secret", tmpdir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	return p;
}

static void test_secret_file(void **state)
{
	(void)state;
	struct sconf c = {0};
	char want[1024];
	setenv("OBS_DB_PASSWORD_FILE", secret_file("s3cr3t pass\r\n"), 1);
	assert_int_equal(cfg_load(stable, 2, &c, NULL, "db.", err, sizeof err), 0);
	assert_string_equal(c.password, "s3cr3t pass");
	cfg_free(stable, 2, &c);

	/* both set */
	setenv("OBS_DB_PASSWORD", "other", 1);
	assert_int_equal(cfg_load(stable, 2, &c, NULL, "db.", err, sizeof err), -1);
	assert_string_equal(err, "db.password_file: set either db.password or db.password_file, not both");
	unsetenv("OBS_DB_PASSWORD");

	/* two lines, empty, missing: named by path, the content never shown */
	const char *p = secret_file("line1-secret\nline2\n");
	assert_int_equal(cfg_load(stable, 2, &c, NULL, "db.", err, sizeof err), -1);
	snprintf(want, sizeof want, "db.password_file: \"%s\" must hold the secret on one non-empty line", p);
	assert_string_equal(err, want);
	assert_null(strstr(err, "line1-secret"));
	secret_file("\n");
	assert_int_equal(cfg_load(stable, 2, &c, NULL, "db.", err, sizeof err), -1);
	assert_string_equal(err, want);
	unlink(p);
	assert_int_equal(cfg_load(stable, 2, &c, NULL, "db.", err, sizeof err), -1);
	snprintf(want, sizeof want, "db.password_file: cannot read \"%s\": No such file or directory", p);
	assert_string_equal(err, want);
	assert_null(c.password);
	unsetenv("OBS_DB_PASSWORD_FILE");

	/* empty file setting: the password setting stands */
	setenv("OBS_DB_PASSWORD", "direct", 1);
	assert_int_equal(cfg_load(stable, 2, &c, NULL, "db.", err, sizeof err), 0);
	assert_string_equal(c.password, "direct");
	cfg_free(stable, 2, &c);
	unsetenv("OBS_DB_PASSWORD");
}

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults, setup),
		cmocka_unit_test_setup(test_yaml_nested_and_dotted, setup),
		cmocka_unit_test_setup(test_env_beats_yaml, setup),
		cmocka_unit_test_setup(test_yaml_strict_values, setup),
		cmocka_unit_test_setup(test_env_strict_values, setup),
		cmocka_unit_test_setup(test_own_prefix, setup),
		cmocka_unit_test_setup(test_ranges, setup),
		cmocka_unit_test_setup(test_yaml_structure_errors, setup),
		cmocka_unit_test_setup(test_bad_default, setup),
		cmocka_unit_test_setup(test_zero_range_is_unbounded, setup),
		cmocka_unit_test_setup(test_env_name, setup),
		cmocka_unit_test_setup(test_help, setup),
		cmocka_unit_test_setup(test_args, setup),
		cmocka_unit_test_setup(test_secret_file, setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
