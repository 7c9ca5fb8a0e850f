/* test_redact.c -- unit tests for common/redact.c: each kind of secret
 * (provider keys, tokens, URL passwords, PEM blocks, AWS keys, .env lines,
 * JSON/YAML fields, Authorization values) becomes [REDACTED:<kind>] with the
 * surrounding text intact; ordinary text, code and identifiers that only
 * look alike are left alone; cJSON trees are redacted in place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_counts_and_lengths),
		cmocka_unit_test(test_key_names),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_large_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
