/* test_redact.c -- unit tests for common/redact.c: each kind of secret
 * (provider keys, tokens, URL passwords, PEM blocks, AWS keys, .env lines,
 * JSON/YAML fields, Authorization values) becomes [REDACTED:<kind>] with the
 * surrounding text intact; ordinary text, code and identifiers that only
 * look alike are left alone; cJSON trees are redacted in place; the
 * configuration (kinds on/off, e-mail, named regex patterns, the YAML file,
 * per-kind metrics) changes what is redacted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "met.h"
#include "redact.h"

struct row {
	const char *in, *want; /* want NULL: unchanged */
};

static const struct row table[] = {
	{"key sk-ant-api03-abcDEF1234567890abcdEF12_-xyz ok", "key [REDACTED:anthropic_key] ok"},
	{"OPENAI sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12", "OPENAI [REDACTED:openai_key]"},
	{"sk-abcdefghij0123456789ABCD", "[REDACTED:openai_key]"},
	{"token ghp_0123456789abcdefABCDEF0123456789abcd", "token [REDACTED:github_token]"},
	{"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "[REDACTED:github_token]"},
	{"glpat-AbCdEf0123456789xYz_", "[REDACTED:gitlab_token]"},
	{"xoxb-1234567890-abcdefghij", "[REDACTED:slack_token]"},
	{"sk_live_51HabcdefGHIJKLmnop", "[REDACTED:stripe_key]"},
	{"AIzaSyA1234567890abcdefghijklmnopqrstuv", "[REDACTED:google_api_key]"},
	{"npm_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED:npm_token]"},
	{"hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "[REDACTED:huggingface_token]"},
	{"id AKIAIOSFODNN7EXAMPLE.", "id [REDACTED:aws_access_key]."},
	{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	 "aws_secret_access_key = [REDACTED:aws_secret_key]"},
	{"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
	 "jwt [REDACTED:jwt] end"},
	{"curl -H 'Authorization: Bearer abc123def456ghi789' x", "curl -H 'Authorization: Bearer [REDACTED:authorization]' x"},
	{"Bearer eyJ0eXAi.abc.def1234567", "Bearer [REDACTED:bearer_token]"},
	{"authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization: Basic [REDACTED:authorization]"},
	{"postgres://app:s3cr3t@db:5432/shop", "postgres://app:[REDACTED:url_password]@db:5432/shop"},
	{"git clone https://bob:hunter2@example.com/r.git", "git clone https://bob:[REDACTED:url_password]@example.com/r.git"},
	{"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----\nnext",
	 "[REDACTED:private_key]\nnext"},
	{"x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "x\n[REDACTED:private_key]"},
	{"DB_PASSWORD=hunter2\nDEBUG=1\n", "DB_PASSWORD=[REDACTED:secret]\nDEBUG=1\n"},
	{"export GITHUB_TOKEN=gho_0123456789abcdefABCDEF0123456789abcd && make",
	 "export GITHUB_TOKEN=[REDACTED:github_token] && make"},
	{"STRIPE_KEY=\"rk_test_abcdefghijklmnop1234\"", "STRIPE_KEY=\"[REDACTED:stripe_key]\""},
	{"SECRET_KEY_BASE='abc def'", "SECRET_KEY_BASE='[REDACTED:secret]'"},
	{"{\"password\": \"pa55word!\", \"user\": \"bob\"}", "{\"password\": \"[REDACTED:secret]\", \"user\": \"bob\"}"},
	{"client_secret: s3cr3tvalue\n", "client_secret: [REDACTED:secret]\n"},
	{"https://api.x.io/v1?api_key=abc123xyz&q=1", "https://api.x.io/v1?api_key=[REDACTED:secret]&q=1"},
	{"mysql -u root --password=Tr0ub4dor", "mysql -u root --password=[REDACTED:secret]"},
	{"X-Api-Key: 0a1b2c3d4e5f", "X-Api-Key: [REDACTED:secret]"},
	{"{\\\"token\\\":\\\"abc123def\\\"}", "{\\\"token\\\":\\\"[REDACTED:secret]\\\"}"},

	/* left alone */
	{"rm -rf ./build && npm test", NULL},
	{"the task-abcdefghijklmnopqrstuv1234 is done", NULL},
	{"max_tokens=4096 input_tokens: 1200", NULL},
	{"password_min_length=12", NULL},
	{"TOKEN=$GITHUB_TOKEN ./deploy.sh", NULL},
	{"password = get_password(user)", NULL},
	{"token: string;", NULL},
	{"token=token", NULL},
	{"if password == expected:", NULL},
	{"https://example.com/path?q=1", NULL},
	{"user@example.com and http://user@host/x", NULL},
	{"Bearer authentication is explained here", NULL},
	{"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", NULL},
	{"api_key=<your key here>", NULL},
	{"SECRET=", NULL},
	{"sk-learn is a library", NULL},
	{"[REDACTED:secret] stays", NULL},
	{"", NULL},
};

static void test_table(void **state)
{
	(void)state;
	int wrong = 0;
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		size_t len = 0;
		int n = 0;
		char *out = redact_buf(table[i].in, strlen(table[i].in), &len, &n);
		const char *got = out ? out : NULL;
		int ok = table[i].want ? got && !strcmp(got, table[i].want) && len == strlen(got) && n > 0
		                       : got == NULL && n == 0;
		if (!ok) {
			print_error("in:   %s\ngot:  %s\nwant: %s\n", table[i].in, got ? got : "(unchanged)",
			            table[i].want ? table[i].want : "(unchanged)");
			wrong++;
		}
		free(out);
	}
	assert_int_equal(wrong, 0);
}

static void test_counts_and_lengths(void **state)
{
	(void)state;
	const char *s = "a=1 OPENAI_API_KEY=sk-abcdefghij0123456789ABCD b AKIAIOSFODNN7EXAMPLE c";
	int n = 0;
	size_t len;
	char *out = redact_buf(s, strlen(s), &len, &n);
	assert_non_null(out);
	assert_int_equal(n, 2);
	assert_string_equal(out, "a=1 OPENAI_API_KEY=[REDACTED:openai_key] b [REDACTED:aws_access_key] c");
	free(out);
	/* not NUL-terminated input: only n bytes are read */
	char buf[8] = {'s', 'k', '-', 'x', 'x', 'x', 'x', 'x'};
	assert_null(redact_buf(buf, sizeof buf, &len, &n));
}

static void test_key_names(void **state)
{
	(void)state;
	static const char *secret[] = {"password", "Password", "db_password", "DB_PASS", "pwd", "api_key",
		"apiKey", "X-API-KEY", "x-api-key", "access_token", "accessToken", "refresh_token", "client_secret",
		"AWS_SECRET_ACCESS_KEY", "private_key", "authorization", "Cookie", "secret", "STRIPE_KEY",
		"auth_token", "credentials", NULL};
	static const char *plain[] = {"tokens", "max_tokens", "input_tokens", "password_length", "token_type",
		"key", "keys", "monkey", "author", "secret_name", "description", "command", "tool_input", "id",
		"cache_key", "sort_key", "passthrough", "tokenizer", NULL};
	for (const char *const *k = secret; *k; k++) {
		if (!redact_key_is_secret(*k))
			print_error("%s should name a secret\n", *k);
		assert_true(redact_key_is_secret(*k));
	}
	for (const char *const *k = plain; *k; k++) {
		if (redact_key_is_secret(*k))
			print_error("%s should not name a secret\n", *k);
		assert_false(redact_key_is_secret(*k));
	}
	assert_false(redact_key_is_secret(NULL));
}

static void test_json(void **state)
{
	(void)state;
	cJSON *j = cJSON_Parse(
		"{\"tool_input\":{\"command\":\"export ANTHROPIC_API_KEY=sk-ant-api03-abcdefghij0123456789XY\","
		"\"env\":{\"password\":\"hunter2\",\"PATH\":\"/usr/bin\",\"api_key\":\"\"}},"
		"\"tool_response\":[\"ok\",\"postgres://u:pw12345@h/db\",42,null],"
		"\"tokens\":{\"input\":5},\"headers\":{\"Authorization\":\"Bearer abcdef123456\"}}");
	assert_non_null(j);
	int n = redact_json(j);
	char *s = cJSON_PrintUnformatted(j);
	assert_string_equal(s,
		"{\"tool_input\":{\"command\":\"export ANTHROPIC_API_KEY=[REDACTED:anthropic_key]\","
		"\"env\":{\"password\":\"[REDACTED:secret]\",\"PATH\":\"/usr/bin\",\"api_key\":\"\"}},"
		"\"tool_response\":[\"ok\",\"postgres://u:[REDACTED:url_password]@h/db\",42,null],"
		"\"tokens\":{\"input\":5},\"headers\":{\"Authorization\":\"[REDACTED:secret]\"}}");
	assert_int_equal(n, 4);
	/* a second pass finds nothing new */
	assert_int_equal(redact_json(j), 0);
	cJSON_free(s);
	cJSON_Delete(j);
	cJSON *str = cJSON_CreateString("ghp_0123456789abcdefABCDEF0123456789abcd");
	assert_int_equal(redact_json(str), 1);
	assert_string_equal(str->valuestring, "[REDACTED:github_token]");
	cJSON_Delete(str);
	assert_int_equal(redact_json(NULL), 0);
}

static void test_large_text(void **state)
{
	(void)state;
	size_t n = 1 << 20;
	char *big = malloc(n + 64);
	for (size_t i = 0; i < n; i++)
		big[i] = "abc def_ghi=12\n"[i % 15];
	memcpy(big + n / 2, " sk-ant-api03-abcdefghij0123456789XY ", 37);
	int cnt = 0;
	size_t len;
	char *out = redact_buf(big, n, &len, &cnt);
	assert_non_null(out);
	assert_int_equal(cnt, 1);
	assert_non_null(strstr(out, "[REDACTED:anthropic_key]"));
	assert_int_equal(len, n - 37 + 2 + strlen("[REDACTED:anthropic_key]"));
	free(out);
	free(big);
}

/* redact_buf under the installed configuration: the result or NULL. */
static void expect(const char *in, const char *want)
{
	size_t len = 0;
	int n = 0;
	char *out = redact_buf(in, strlen(in), &len, &n);
	if (want == NULL ? out != NULL : (!out || strcmp(out, want) != 0 || len != strlen(out) || n == 0))
		fail_msg("in:   %s\ngot:  %s\nwant: %s", in, out ? out : "(unchanged)", want ? want : "(unchanged)");
	free(out);
}

static void test_email_off_by_default_on_when_asked(void **state)
{
	(void)state;
	static struct redact_conf rc;
	expect("mail bob.smith+ci@mail.example.co.uk now", NULL);
	redact_conf_init(&rc);
	rc.on[RK_EMAIL] = 1;
	redact_use(&rc);
	expect("mail bob.smith+ci@mail.example.co.uk now", "mail [REDACTED:email] now");
	expect("<alice@example.org>, carol_99@corp.example.com.",
	       "<[REDACTED:email]>, [REDACTED:email].");
	/* not addresses */
	expect("npm i @types/node && ssh deploy@localhost", NULL);
	expect("python @app.route('/x') v1.2@3 a@b.c x@host.123", NULL);
	/* a URL password is found first, the rest is not an address */
	expect("redis://:hunter2pass@cache.example.com:6379/0",
	       "redis://:[REDACTED:url_password]@cache.example.com:6379/0");
	redact_use(NULL);
	redact_conf_clear(&rc);
}

static void test_disabled_kinds(void **state)
{
	(void)state;
	static struct redact_conf rc;
	char err[512];
	redact_conf_init(&rc);
	assert_int_equal(redact_conf_set(&rc, "jwt", 0, err, sizeof err), 0);
	assert_int_equal(redact_conf_set(&rc, "github_token", 0, err, sizeof err), 0);
	assert_int_equal(redact_conf_set(&rc, "nope", 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "unknown kind \"nope\""));
	redact_use(&rc);
	const char *jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
	expect(jwt, NULL);
	expect("ghp_0123456789abcdefABCDEF0123456789abcd", NULL);
	/* named by its key: still a secret */
	expect("GITHUB_TOKEN=ghp_0123456789abcdefABCDEF0123456789abcd", "GITHUB_TOKEN=[REDACTED:secret]");
	expect("AKIAIOSFODNN7EXAMPLE", "[REDACTED:aws_access_key]");
	assert_int_equal(redact_conf_set(&rc, "secret", 0, err, sizeof err), 0);
	expect("DB_PASSWORD=hunter2", NULL);
	cJSON *j = cJSON_Parse("{\"password\":\"hunter2\"}");
	assert_int_equal(redact_json(j), 0);
	cJSON_Delete(j);
	redact_use(NULL);
	redact_conf_clear(&rc);
}

static void test_patterns(void **state)
{
	(void)state;
	static struct redact_conf rc;
	char err[512];
	redact_conf_init(&rc);
	assert_int_equal(redact_conf_add_pattern(&rc, "employee_id", "EMP-[0-9]{6}", 0, err, sizeof err), 0);
	assert_int_equal(redact_conf_add_pattern(&rc, "shouting", "[A-Z]{8,}", 0, err, sizeof err), 0);
	assert_int_equal(redact_conf_add_pattern(&rc, "ticket", "^tkt_[a-z]+", 1, err, sizeof err), 0);
	redact_use(&rc);
	expect("owner EMP-123456 and EMP-654321.", "owner [REDACTED:employee_id] and [REDACTED:employee_id].");
	/* never inside an earlier marker; built-in and pattern together */
	expect("k sk-ant-api03-abcDEF1234567890abcdEF12_-xyz LOUDNOISES",
	       "k [REDACTED:anthropic_key] [REDACTED:shouting]");
	/* ^ anchors at the start of the string only; ignore_case */
	expect("TKT_abc tkt_def", "[REDACTED:ticket] tkt_def");
	expect("emp-123456 EMP-12345 quiet", NULL);
	/* not NUL-terminated input: only n bytes are read */
	char buf[10] = {'E', 'M', 'P', '-', '1', '2', '3', '4', '5', '6'};
	size_t len;
	int n = 0;
	char *out = redact_buf(buf, 9, &len, &n);
	assert_null(out);
	out = redact_buf(buf, 10, &len, &n);
	assert_string_equal(out, "[REDACTED:employee_id]");
	free(out);
	assert_int_equal(redact_kind_of(&rc, "shouting"), RK_BUILTIN + 1);
	assert_string_equal(redact_kind_name(&rc, RK_BUILTIN), "employee_id");
	redact_use(NULL);

	/* bad patterns: refused with the pattern named */
	assert_int_equal(redact_conf_add_pattern(&rc, "broken", "abc([", 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "pattern \"broken\": invalid regular expression"));
	assert_int_equal(redact_conf_add_pattern(&rc, "jwt", "x+", 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "built-in kind"));
	assert_int_equal(redact_conf_add_pattern(&rc, "employee_id", "x+", 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "another pattern"));
	assert_int_equal(redact_conf_add_pattern(&rc, "Bad Name", "x+", 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "name must be"));
	assert_int_equal(redact_conf_add_pattern(&rc, "empty", "x*", 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "empty string"));
	assert_int_equal(rc.npat, 3);
	redact_conf_clear(&rc);
}

static const char *write_tmp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/test_redact_%d.yaml", (int)getpid());
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_yaml_file(void **state)
{
	(void)state;
	static struct redact_conf rc;
	char err[512];
	const char *p = write_tmp("email: true\ndisable: [jwt, npm_token]\npatterns:\n"
	                          "  - name: employee_id\n    regex: 'EMP-[0-9]{6}'\n"
	                          "  - {name: host, regex: '[a-z]+\\.corp\\.example', ignore_case: yes}\n");
	assert_int_equal(redact_conf_load(p, &rc, err, sizeof err), 0);
	assert_true(rc.on[RK_EMAIL]);
	assert_false(rc.on[RK_JWT]);
	assert_false(rc.on[RK_NPM_TOKEN]);
	assert_true(rc.on[RK_OPENAI_KEY]);
	assert_int_equal(rc.npat, 2);
	redact_use(&rc);
	expect("ping DB.CORP.EXAMPLE", "ping [REDACTED:host]");
	redact_use(NULL);
	redact_conf_clear(&rc);

	static const struct {
		const char *yaml, *frag;
	} bad[] = {
		{"patterns:\n  - name: ok\n    regex: 'a+'\n  - name: broken\n    regex: 'abc(['\n",
		 ":4: pattern \"broken\": invalid regular expression"},
		{"disable: [jwt, bogus]\n", ":1: unknown kind \"bogus\""},
		{"email: maybe\n", ":1: email: expected true or false"},
		{"emails: true\n", ":1: unknown key \"emails\""},
		{"patterns:\n  - name: nore\n", "patterns[0] \"nore\": needs a name and a non-empty regex"},
		{"patterns:\n  - {name: x, regex: y, flags: i}\n", "unknown key \"flags\""},
		{"patterns: [a\n", "YAML"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		p = write_tmp(bad[i].yaml);
		assert_int_equal(redact_conf_load(p, &rc, err, sizeof err), -1);
		if (!strstr(err, bad[i].frag) && !(strstr(bad[i].frag, "YAML") && strstr(err, p)))
			fail_msg("error \"%s\" lacks \"%s\"", err, bad[i].frag);
		assert_int_equal(rc.npat, 0);
	}
	unlink(p);
	assert_int_equal(redact_conf_load("/nonexistent/redaction.yaml", &rc, err, sizeof err), 1);
	assert_true(rc.on[RK_SECRET]);
	assert_false(rc.on[RK_EMAIL]);
}

static void test_metrics_by_kind(void **state)
{
	(void)state;
	static struct redact_conf rc;
	char err[256], *text;
	size_t len;
	struct met_registry *reg = met_registry_new();
	redact_conf_init(&rc);
	rc.on[RK_EMAIL] = 1;
	assert_int_equal(redact_conf_add_pattern(&rc, "employee_id", "EMP-[0-9]{6}", 0, err, sizeof err), 0);
	redact_conf_set(&rc, "jwt", 0, err, sizeof err);
	redact_conf_metrics(&rc, met_counter(reg, "agent_obs_redactions_total", "t", "kind"));
	redact_use(&rc);
	cJSON *j = cJSON_Parse("{\"a\":\"AKIAIOSFODNN7EXAMPLE and AKIAIOSFODNN7EXAMPLF\",\"password\":\"x1\","
	                       "\"b\":[\"EMP-000001 bob@example.com\"]}");
	assert_int_equal(redact_json(j), 5);
	cJSON_Delete(j);
	redact_use(NULL);
	assert_int_equal(met_render(reg, &text, &len), 0);
	assert_non_null(strstr(text, "agent_obs_redactions_total{kind=\"aws_access_key\"} 2\n"));
	assert_non_null(strstr(text, "agent_obs_redactions_total{kind=\"secret\"} 1\n"));
	assert_non_null(strstr(text, "agent_obs_redactions_total{kind=\"email\"} 1\n"));
	assert_non_null(strstr(text, "agent_obs_redactions_total{kind=\"employee_id\"} 1\n"));
	assert_non_null(strstr(text, "agent_obs_redactions_total{kind=\"openai_key\"} 0\n")); /* exported at 0 */
	assert_null(strstr(text, "kind=\"jwt\"")); /* off: not counted */
	free(text);
	met_registry_free(reg);
	redact_conf_clear(&rc);
}

static void test_event_envelope_is_kept(void **state)
{
	(void)state;
	static struct redact_conf rc;
	char err[256];
	redact_conf_init(&rc);
	assert_int_equal(redact_conf_add_pattern(&rc, "digits", "[0-9]{4}", 0, err, sizeof err), 0);
	redact_use(&rc);
	cJSON *ev = cJSON_Parse("{\"id\":\"0b9a3c52-1111-4222-8333-444455556666\",\"event_type\":\"AKIAIOSFODNN7EXAMPLE\","
	                        "\"timestamp\":\"2026-11-23T10:00:00.000Z\",\"status\":\"success\","
	                        "\"session_id\":\"sk-ant-api03-abcDEF1234567890abcdEF12\",\"agent_id\":\"main\","
	                        "\"payload\":{\"id\":\"AKIAIOSFODNN7EXAMPLE\",\"year\":\"2026\"}}");
	assert_int_equal(redact_event(ev), 3);
	char *s = cJSON_PrintUnformatted(ev);
	assert_string_equal(s, "{\"id\":\"0b9a3c52-1111-4222-8333-444455556666\",\"event_type\":\"AKIAIOSFODNN7EXAMPLE\","
	                       "\"timestamp\":\"2026-11-23T10:00:00.000Z\",\"status\":\"success\","
	                       "\"session_id\":\"[REDACTED:anthropic_key]\",\"agent_id\":\"main\","
	                       "\"payload\":{\"id\":\"[REDACTED:aws_access_key]\",\"year\":\"[REDACTED:digits]\"}}");
	cJSON_free(s);
	cJSON_Delete(ev);
	redact_use(NULL);
	redact_conf_clear(&rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_counts_and_lengths),
		cmocka_unit_test(test_key_names),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_large_text),
		cmocka_unit_test(test_email_off_by_default_on_when_asked),
		cmocka_unit_test(test_disabled_kinds),
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_yaml_file),
		cmocka_unit_test(test_metrics_by_kind),
		cmocka_unit_test(test_event_envelope_is_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
