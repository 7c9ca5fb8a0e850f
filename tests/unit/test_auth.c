/* test_auth.c -- unit tests for common/auth.c: the token bucket (refill,
 * burst, Retry-After), bearer parsing, hex, the replay cache (replays,
 * expiry, bounded room), the keys file (good and bad files), key lookup and
 * roles, rate limiting through auth_check, and signed bodies checked against
 * an HMAC-SHA256 value computed independently with the openssl command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "auth.h"

static const struct auth_opts opts = {300, 0, 1, 1000};

/* sha256("k-ingest"), sha256("k-read"), sha256("k-admin") */
static const char *const keys_yaml =
	"keys:\n"
	"  - id: ing\n"
	"    role: ingest\n"
	"    sha256: 3f4ba7d5a7e8ad1c9a4f77b4d1d0a6b0e4c3b7f18b83a59b5f6b6c2d9c7f3b21\n"
	"  - id: rd\n"
	"    role: read\n"
	"    sha256: %s\n"
	"  - id: adm\n"
	"    role: admin\n"
	"    sha256: %s\n"
	"  - id: signer\n"
	"    role: ingest,read\n"
	"    sha256: %s\n"
	"    signing_secret: \"0123456789abcdef-secret\"\n"
	"    require_signature: true\n"
	"    rate_per_s: 1\n"
	"    burst: 2\n";

static struct auth *load_keys(void)
{
	char h_rd[65], h_adm[65], h_sig[65], text[2048], err[512];
	struct auth *a = NULL;
	auth_sha256_hex("k-read", 6, h_rd);
	auth_sha256_hex("k-admin", 7, h_adm);
	auth_sha256_hex("k-signer", 8, h_sig);
	snprintf(text, sizeof text, keys_yaml, h_rd, h_adm, h_sig);
	int rc = auth_load_text(text, strlen(text), "keys.yaml", &opts, NULL, &a, err, sizeof err);
	if (rc)
		fail_msg("load: %s", err);
	return a;
}

static void test_bucket(void **st)
{
	(void)st;
	struct auth_bucket b = {0};
	long ra = 0;
	/* burst 3 at 2/s: three at once, the fourth waits */
	for (int i = 0; i < 3; i++)
		assert_int_equal(auth_bucket_take(&b, 2, 3, 1000, &ra), 0);
	assert_int_equal(auth_bucket_take(&b, 2, 3, 1000, &ra), -1);
	assert_int_equal(ra, 1);
	/* 499 ms later: 0.998 tokens, still no */
	assert_int_equal(auth_bucket_take(&b, 2, 3, 1499, &ra), -1);
	/* 500 ms after the start: one token */
	assert_int_equal(auth_bucket_take(&b, 2, 3, 1500, &ra), 0);
	assert_int_equal(auth_bucket_take(&b, 2, 3, 1500, &ra), -1);
	/* a long pause refills to the burst only */
	for (int i = 0; i < 3; i++)
		assert_int_equal(auth_bucket_take(&b, 2, 3, 100000, &ra), 0);
	assert_int_equal(auth_bucket_take(&b, 2, 3, 100000, &ra), -1);
	/* slow rate: Retry-After is the whole seconds to the next token */
	struct auth_bucket s = {0};
	assert_int_equal(auth_bucket_take(&s, 0.1, 1, 5000, &ra), 0);
	assert_int_equal(auth_bucket_take(&s, 0.1, 1, 5000, &ra), -1);
	assert_int_equal(ra, 10);
	/* rate 0: no limit */
	struct auth_bucket u = {0};
	for (int i = 0; i < 1000; i++)
		assert_int_equal(auth_bucket_take(&u, 0, 1, 1, &ra), 0);
	/* the clock going back never adds tokens */
	struct auth_bucket c = {0};
	assert_int_equal(auth_bucket_take(&c, 1, 1, 10000, &ra), 0);
	assert_int_equal(auth_bucket_take(&c, 1, 1, 5000, &ra), -1);
}

static void test_bearer(void **st)
{
	(void)st;
	const char *k;
	size_t n;
	assert_int_equal(auth_parse_bearer("Bearer abc", &k, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(k, "abc", 3);
	assert_int_equal(auth_parse_bearer("  bearer \t xyz  ", &k, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(k, "xyz", 3);
	assert_int_equal(auth_parse_bearer("Basic abc", &k, &n), -1);
	assert_int_equal(auth_parse_bearer("Bearer", &k, &n), -1);
	assert_int_equal(auth_parse_bearer("Bearer   ", &k, &n), -1);
	assert_int_equal(auth_parse_bearer("Bearerabc", &k, &n), -1);
	assert_int_equal(auth_parse_bearer(NULL, &k, &n), -1);
}

static void test_hex(void **st)
{
	(void)st;
	unsigned char b[32];
	char h[65];
	auth_sha256_hex("abc", 3, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(auth_hex32(h, b), 0);
	assert_int_equal(b[0], 0xba);
	assert_int_equal(b[31], 0xad);
	char pre[80];
	snprintf(pre, sizeof pre, "sha256=%s", h);
	assert_int_equal(auth_hex32(pre, b), 0);
	h[63] = 'g';
	assert_int_equal(auth_hex32(h, b), -1);
	assert_int_equal(auth_hex32("abcd", b), -1);
}

static void test_sign_known(void **st)
{
	(void)st;
	/* printf '1700000000.{}' | openssl dgst -sha256 -hmac Jefe */
	char out[65];
	auth_sign_hex((const unsigned char *)"Jefe", 4, "1700000000", "{}", 2, out);
	assert_string_equal(out, "d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207");
}

static void test_replay(void **st)
{
	(void)st;
	struct auth_replay *r = auth_replay_new(64);
	unsigned char s1[32], s2[32];
	memset(s1, 1, 32);
	memset(s2, 2, 32);
	assert_int_equal(auth_replay_check(r, s1, 2000, 1000), 0);
	assert_int_equal(auth_replay_check(r, s1, 2000, 1500), 1); /* replay */
	assert_int_equal(auth_replay_check(r, s2, 2000, 1500), 0);
	assert_int_equal(auth_replay_check(r, s1, 3000, 2000), 0); /* expired: new again */
	/* bounded: fill every slot with live entries, then there is no room */
	int full = 0;
	for (int i = 0; i < 200 && !full; i++) {
		unsigned char s[32];
		memset(s, 0, 32);
		memcpy(s, &i, sizeof i);
		s[20] = 7;
		int rc = auth_replay_check(r, s, 1000000, 2000);
		assert_true(rc == 0 || rc == -1);
		full = rc == -1;
	}
	assert_true(full);
	/* once they expire, room again */
	unsigned char s3[32];
	memset(s3, 3, 32);
	assert_int_equal(auth_replay_check(r, s3, 3000000, 2000000), 0);
	auth_replay_free(r);
	auth_replay_free(NULL);
}

static void test_keys_file(void **st)
{
	(void)st;
	struct auth *a = load_keys();
	assert_int_equal(auth_key_count(a), 4);
	struct auth_key *k = auth_lookup(a, "k-read", 6);
	assert_non_null(k);
	assert_string_equal(k->id, "rd");
	assert_int_equal(k->roles, AUTH_READ);
	assert_null(auth_lookup(a, "k-rea", 5));
	assert_null(auth_lookup(a, "k-readx", 7));
	k = auth_lookup(a, "k-signer", 8);
	assert_non_null(k);
	assert_int_equal(k->roles, AUTH_INGEST | AUTH_READ);
	assert_true(k->require_signature);
	assert_int_equal(k->secret_len, strlen("0123456789abcdef-secret"));
	assert_true(k->rate == 1 && k->burst == 2);
	auth_free(a);
	auth_free(NULL);

	static const struct {
		const char *yaml, *want;
	} bad[] = {
		{"keys: []\n", "at least one key"},
		{"other: 1\n", "unknown top-level key"},
		{"keys:\n  - id: a\n    role: ingest\n", "id, role and sha256 are required"},
		{"keys:\n  - id: a\n    role: root\n    sha256: x\n", "role: \"root\""},
		{"keys:\n  - id: a\n    role: read\n    sha256: abc\n", "64 hex digits"},
		{"keys:\n  - id: a\n    role: read\n    sha256: "
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n    colour: red\n",
		 "unknown key \"colour\""},
		{"keys:\n  - id: a\n    role: read\n    sha256: "
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n    require_signature: true\n",
		 "require_signature needs signing_secret"},
		{"keys:\n  - id: a\n    role: read\n    sha256: "
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n    signing_secret: short\n",
		 "at least 16 characters"},
		{"keys:\n  - id: a\n    role: read\n    sha256: "
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n    signing_secret_env: "
		 "OBS_TEST_SURELY_UNSET\n",
		 "is unset"},
		{"keys:\n  - id: a\n    role: read\n    sha256: "
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n    rate_per_s: fast\n",
		 "rate_per_s"},
		{"keys:\n  - id: a\n    role: read\n    sha256: "
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
		 "  - id: b\n    role: read\n    sha256: "
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
		 "repeats key \"a\""},
		{"keys: [\n", "line"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char err[512] = "";
		struct auth *b = (struct auth *)1;
		int rc = auth_load_text(bad[i].yaml, strlen(bad[i].yaml), "k.yaml", &opts, NULL, &b, err,
		                        sizeof err);
		if (rc != -1 || b != NULL || !strstr(err, bad[i].want) || strncmp(err, "k.yaml: ", 8))
			fail_msg("case %zu: rc %d err \"%s\", want \"%s\"", i, rc, err, bad[i].want);
	}
	/* no file configured: auth off */
	char err[64];
	struct auth *none = (struct auth *)1;
	assert_int_equal(auth_load("", &opts, NULL, &none, err, sizeof err), 0);
	assert_null(none);
	assert_int_equal(auth_load("/nonexistent/keys.yaml", &opts, NULL, &none, err, sizeof err), -1);
}

static void test_check_roles(void **st)
{
	(void)st;
	struct auth *a = load_keys();
	struct auth_verdict v;
	/* no keys configured: everything passes */
	assert_int_equal(auth_check(NULL, NULL, AUTH_ADMIN, &v), 0);
	/* open routes pass without a key */
	assert_int_equal(auth_check(a, NULL, AUTH_OPEN, &v), 0);
	assert_int_equal(auth_check(a, NULL, AUTH_READ, &v), -1);
	assert_int_equal(v.status, 401);
	assert_string_equal(v.field, "Authorization");
	assert_int_equal(auth_check(a, "Basic eDp5", AUTH_READ, &v), -1);
	assert_int_equal(v.status, 401);
	assert_int_equal(auth_check(a, "Bearer wrong", AUTH_READ, &v), -1);
	assert_int_equal(v.status, 401);
	assert_int_equal(auth_check(a, "Bearer k-read", AUTH_READ, &v), 0);
	assert_string_equal(v.key->id, "rd");
	assert_int_equal(auth_check(a, "Bearer k-read", AUTH_INGEST, &v), -1);
	assert_int_equal(v.status, 403);
	assert_non_null(strstr(v.message, "lacks the ingest role"));
	assert_int_equal(auth_check(a, "Bearer k-read", AUTH_ADMIN, &v), -1);
	assert_int_equal(v.status, 403);
	assert_int_equal(auth_check(a, "Bearer k-admin", AUTH_ADMIN, &v), 0);
	assert_int_equal(auth_check(a, "Bearer k-admin", AUTH_INGEST, &v), 0);
	assert_int_equal(auth_check(a, "Bearer k-admin", AUTH_READ, &v), 0);
	/* signer: burst 2 at 1/s, then 429 with Retry-After */
	assert_int_equal(auth_check(a, "Bearer k-signer", AUTH_READ, &v), 0);
	assert_int_equal(auth_check(a, "Bearer k-signer", AUTH_INGEST, &v), 0);
	assert_int_equal(auth_check(a, "Bearer k-signer", AUTH_INGEST, &v), -1);
	assert_int_equal(v.status, 429);
	assert_int_equal(v.retry_after_s, 1);
	/* another key's bucket is its own */
	assert_int_equal(auth_check(a, "Bearer k-read", AUTH_READ, &v), 0);
	assert_int_equal(auth_admin_url_role("/healthz"), AUTH_OPEN);
	assert_int_equal(auth_admin_url_role("/readyz"), AUTH_OPEN);
	assert_int_equal(auth_admin_url_role("/metrics"), AUTH_READ);
	auth_free(a);
}

static int sig_run(struct auth *a, struct auth_key *k, const char *ts, const char *sig,
                   const char *body, struct auth_verdict *v)
{
	struct auth_sig *s = NULL;
	if (auth_sig_begin(a, k, ts, sig, &s, v))
		return -1;
	if (!s)
		return 1; /* unsigned, allowed */
	size_t n = strlen(body), h = n / 2;
	auth_sig_update(s, body, h); /* in two pieces, as a body arrives */
	auth_sig_update(s, body + h, n - h);
	return auth_sig_finish(a, s, v);
}

static void test_signatures(void **st)
{
	(void)st;
	struct auth *a = load_keys();
	struct auth_key *signer = auth_lookup(a, "k-signer", 8), *rd = auth_lookup(a, "k-read", 6);
	struct auth_verdict v;
	char ts[24], sig[80], hex[65];
	const char *body = "{\"type\":\"Stop\",\"session_id\":\"s1\"}";
	snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
	auth_sign_hex(signer->secret, signer->secret_len, ts, body, strlen(body), hex);
	snprintf(sig, sizeof sig, "sha256=%s", hex);

	assert_int_equal(sig_run(a, signer, ts, sig, body, &v), 0);
	/* the same signature again: replay */
	assert_int_equal(sig_run(a, signer, ts, sig, body, &v), -1);
	assert_int_equal(v.status, 401);
	assert_non_null(strstr(v.message, "already used"));
	/* another body under a fresh signature header: mismatch */
	char ts2[24];
	snprintf(ts2, sizeof ts2, "%lld", (long long)time(NULL) - 1);
	assert_int_equal(sig_run(a, signer, ts2, sig, body, &v), -1);
	assert_non_null(strstr(v.message, "does not match"));
	/* a bare hex signature is fine too */
	auth_sign_hex(signer->secret, signer->secret_len, ts2, "x", 1, hex);
	assert_int_equal(sig_run(a, signer, ts2, hex, "x", &v), 0);
	/* stale: outside the window, checked before the body */
	char old[24];
	snprintf(old, sizeof old, "%lld", (long long)time(NULL) - 301);
	auth_sign_hex(signer->secret, signer->secret_len, old, body, strlen(body), hex);
	assert_int_equal(sig_run(a, signer, old, hex, body, &v), -1);
	assert_string_equal(v.field, "X-Obs-Timestamp");
	/* required but missing */
	assert_int_equal(sig_run(a, signer, NULL, NULL, body, &v), -1);
	assert_non_null(strstr(v.message, "requires signed requests"));
	/* malformed */
	assert_int_equal(sig_run(a, signer, "12x", hex, body, &v), -1);
	assert_int_equal(sig_run(a, signer, ts, "sha256=zz", body, &v), -1);
	/* a key without a secret: unsigned is fine, a signature cannot be checked */
	assert_int_equal(sig_run(a, rd, NULL, NULL, body, &v), 1);
	assert_int_equal(sig_run(a, rd, ts, sig, body, &v), -1);
	auth_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket),        cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_hex),           cmocka_unit_test(test_sign_known),
		cmocka_unit_test(test_replay),        cmocka_unit_test(test_keys_file),
		cmocka_unit_test(test_check_roles),   cmocka_unit_test(test_signatures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
