/* auth.c -- API keys, roles, signed requests, per-key token buckets and the
 * replay cache (see auth.h). struct auth owns its keys and secrets; it is
 * built on the main thread at start-up and only read afterwards, except the
 * buckets (per-key mutex) and the replay cache (its own mutex), so any
 * thread may call the checks. Crypto: OpenSSL libcrypto (SHA-256, HMAC via
 * EVP_MAC, CRYPTO_memcmp, OPENSSL_cleanse). */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <cjson/cJSON.h>
#include <yaml.h>

#include "ev.h"
#include "http.h"
#include "log.h"
#include "met.h"

struct auth {
	struct auth_key *keys;
	size_t n;
	long long window_s;
	struct auth_replay *replay;
	EVP_MAC *mac;
	struct met_family *m_denied;
};

struct auth_sig {
	EVP_MAC_CTX *ctx;
	unsigned char want[32];
	int64_t ts_s;
	struct auth_key *key;
};

/* ------------------------------------------------------------------ pure -- */

int auth_bucket_take(struct auth_bucket *b, double rate, double burst, int64_t now_ms,
                     long *retry_after_s)
{
	if (rate <= 0)
		return 0;
	if (burst < 1)
		burst = 1;
	if (b->last_ms == 0) {
		b->tokens = burst;
	} else if (now_ms > b->last_ms) {
		b->tokens += (double)(now_ms - b->last_ms) / 1000.0 * rate;
		if (b->tokens > burst)
			b->tokens = burst;
	}
	if (now_ms > b->last_ms || b->last_ms == 0)
		b->last_ms = now_ms;
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	double wait = (1.0 - b->tokens) / rate;
	long s = (long)ceil(wait);
	*retry_after_s = s < 1 ? 1 : s;
	return -1;
}

int auth_parse_bearer(const char *h, const char **key, size_t *len)
{
	if (!h)
		return -1;
	while (*h == ' ' || *h == '\t')
		h++;
	if (strncasecmp(h, "bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
		return -1;
	h += 6;
	while (*h == ' ' || *h == '\t')
		h++;
	size_t n = strlen(h);
	while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
		n--;
	if (n == 0)
		return -1;
	*key = h;
	*len = n;
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int auth_hex32(const char *s, unsigned char out[32])
{
	if (!s)
		return -1;
	if (strncasecmp(s, "sha256=", 7) == 0 || strncasecmp(s, "sha256:", 7) == 0)
		s += 7;
	if (strlen(s) != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = 0;
}

void auth_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	SHA256(data, len, md);
	to_hex(md, 32, out);
}

void auth_sign_hex(const unsigned char *secret, size_t slen, const char *ts, const void *body,
                   size_t blen, char out[65])
{
	size_t tl = strlen(ts);
	unsigned char *msg = malloc(tl + 1 + blen + 1), md[32];
	unsigned int mdlen = 0;
	out[0] = 0;
	if (!msg)
		return;
	memcpy(msg, ts, tl);
	msg[tl] = '.';
	if (blen)
		memcpy(msg + tl + 1, body, blen);
	if (HMAC(EVP_sha256(), secret, (int)slen, msg, tl + 1 + blen, md, &mdlen))
		to_hex(md, 32, out);
	free(msg);
}

struct replay_slot {
	unsigned char sig[32];
	int64_t expires_ms; /* 0: empty */
};

struct auth_replay {
	pthread_mutex_t mu;
	size_t cap;
	struct replay_slot *v;
};

struct auth_replay *auth_replay_new(size_t capacity)
{
	struct auth_replay *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->cap = capacity < AUTH_REPLAY_PROBES ? AUTH_REPLAY_PROBES : capacity;
	r->v = calloc(r->cap, sizeof *r->v);
	if (!r->v) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	return r;
}

void auth_replay_free(struct auth_replay *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->v);
	free(r);
}

int auth_replay_check(struct auth_replay *r, const unsigned char sig[32], int64_t expires_ms,
                      int64_t now_ms)
{
	uint64_t h;
	memcpy(&h, sig, sizeof h); /* an HMAC output is uniformly distributed */
	size_t home = (size_t)(h % r->cap);
	struct replay_slot *free_slot = NULL;
	int rc = -1;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < AUTH_REPLAY_PROBES; i++) {
		struct replay_slot *s = &r->v[(home + i) % r->cap];
		int live = s->expires_ms > now_ms;
		if (live && memcmp(s->sig, sig, 32) == 0) {
			rc = 1;
			goto out;
		}
		if (!live && !free_slot)
			free_slot = s;
	}
	if (free_slot) {
		memcpy(free_slot->sig, sig, 32);
		free_slot->expires_ms = expires_ms;
		rc = 0;
	}
out:
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* ------------------------------------------------------------ keys file -- */

static const char *scalar(yaml_document_t *d, yaml_node_t *n)
{
	(void)d;
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int parse_roles(const char *s, int *roles)
{
	*roles = 0;
	while (s && *s) {
		size_t n = strcspn(s, ", ");
		if (n == 6 && !strncmp(s, "ingest", 6))
			*roles |= AUTH_INGEST;
		else if (n == 4 && !strncmp(s, "read", 4))
			*roles |= AUTH_READ;
		else if (n == 5 && !strncmp(s, "admin", 5))
			*roles |= AUTH_ADMIN;
		else if (n)
			return -1;
		s += n;
		s += strspn(s, ", ");
	}
	return *roles ? 0 : -1;
}

static int parse_num(const char *s, double *out)
{
	char *end;
	if (!s || !*s)
		return -1;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !(v >= 0) || v > 1e9)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	if (!s)
		return -1;
	if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on") || !strcmp(s, "1"))
		*out = 1;
	else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off") || !strcmp(s, "0"))
		*out = 0;
	else
		return -1;
	return 0;
}

static int set_secret(struct auth_key *k, const char *s)
{
	size_t n = strlen(s);
	k->secret = malloc(n ? n : 1);
	if (!k->secret)
		return -1;
	memcpy(k->secret, s, n);
	k->secret_len = n;
	return 0;
}

/* One entry of `keys:`. */
static int parse_key(yaml_document_t *d, yaml_node_t *n, size_t idx, const struct auth_opts *o,
                     struct auth_key *k, char *err, size_t errlen)
{
	int have_hash = 0, have_role = 0;
	char where[96];
	snprintf(where, sizeof where, "keys[%zu]", idx);
	k->rate = o->rate;
	k->burst = o->burst;
	pthread_mutex_init(&k->mu, NULL);
	if (!n || n->type != YAML_MAPPING_NODE) {
		snprintf(err, errlen, "%s: expected a mapping (id, role, sha256, ...)", where);
		return -1;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		const char *key = scalar(d, yaml_document_get_node(d, p->key));
		const char *v = scalar(d, yaml_document_get_node(d, p->value));
		if (!key) {
			snprintf(err, errlen, "%s: keys must be strings", where);
			return -1;
		}
		if (!v) {
			snprintf(err, errlen, "%s.%s: expected a value", where, key);
			return -1;
		}
		if (!strcmp(key, "id")) {
			if (!*v || strlen(v) >= AUTH_ID_MAX) {
				snprintf(err, errlen, "%s.id: 1 to %d characters", where, AUTH_ID_MAX - 1);
				return -1;
			}
			snprintf(k->id, sizeof k->id, "%s", v);
			snprintf(where, sizeof where, "key \"%s\"", k->id);
		} else if (!strcmp(key, "role") || !strcmp(key, "roles")) {
			if (parse_roles(v, &k->roles)) {
				snprintf(err, errlen, "%s.%s: \"%s\" (use ingest, read, admin)", where, key, v);
				return -1;
			}
			have_role = 1;
		} else if (!strcmp(key, "sha256")) {
			if (auth_hex32(v, k->hash)) {
				snprintf(err, errlen, "%s.sha256: expected 64 hex digits (deploy/local/mkkey.sh)", where);
				return -1;
			}
			have_hash = 1;
		} else if (!strcmp(key, "signing_secret")) {
			if (strlen(v) < 16 || set_secret(k, v)) {
				snprintf(err, errlen, "%s.signing_secret: at least 16 characters", where);
				return -1;
			}
		} else if (!strcmp(key, "signing_secret_env")) {
			const char *e = getenv(v);
			if (!e || strlen(e) < 16 || set_secret(k, e)) {
				snprintf(err, errlen, "%s.signing_secret_env: $%s is unset or shorter than 16 characters",
				         where, v);
				return -1;
			}
		} else if (!strcmp(key, "require_signature")) {
			if (parse_bool(v, &k->require_signature)) {
				snprintf(err, errlen, "%s.require_signature: expected true or false", where);
				return -1;
			}
		} else if (!strcmp(key, "rate_per_s")) {
			if (parse_num(v, &k->rate)) {
				snprintf(err, errlen, "%s.rate_per_s: expected a number >= 0 (0: no limit)", where);
				return -1;
			}
		} else if (!strcmp(key, "burst")) {
			if (parse_num(v, &k->burst) || k->burst < 1) {
				snprintf(err, errlen, "%s.burst: expected a number >= 1", where);
				return -1;
			}
		} else {
			snprintf(err, errlen,
			         "%s: unknown key \"%s\" (id, role, sha256, signing_secret, signing_secret_env, "
			         "require_signature, rate_per_s, burst)",
			         where, key);
			return -1;
		}
	}
	if (!k->id[0] || !have_hash || !have_role) {
		snprintf(err, errlen, "%s: id, role and sha256 are required", where);
		return -1;
	}
	if (k->require_signature && !k->secret) {
		snprintf(err, errlen, "%s: require_signature needs signing_secret or signing_secret_env", where);
		return -1;
	}
	return 0;
}

static int parse_file(struct auth *a, const char *yaml, size_t len, const struct auth_opts *o,
                      char *err, size_t errlen)
{
	yaml_parser_t ps;
	yaml_document_t doc;
	int rc = -1, have_doc = 0;
	if (!yaml_parser_initialize(&ps)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&ps, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&ps, &doc)) {
		snprintf(err, errlen, "line %lu: %s", (unsigned long)ps.problem_mark.line + 1,
		         ps.problem ? ps.problem : "YAML syntax error");
		goto out;
	}
	have_doc = 1;
	yaml_node_t *root = yaml_document_get_root_node(&doc), *list = NULL;
	if (root && root->type == YAML_MAPPING_NODE) {
		for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
			const char *k = scalar(&doc, yaml_document_get_node(&doc, p->key));
			if (k && !strcmp(k, "keys")) {
				list = yaml_document_get_node(&doc, p->value);
			} else {
				snprintf(err, errlen, "unknown top-level key \"%s\" (keys)", k ? k : "?");
				goto out;
			}
		}
	}
	if (!list || list->type != YAML_SEQUENCE_NODE ||
	    list->data.sequence.items.top == list->data.sequence.items.start) {
		snprintf(err, errlen, "expected \"keys:\" with a list of at least one key");
		goto out;
	}
	size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
	a->keys = calloc(n, sizeof *a->keys);
	if (!a->keys) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		a->n = i + 1;
		yaml_node_t *kn = yaml_document_get_node(&doc, list->data.sequence.items.start[i]);
		if (parse_key(&doc, kn, i, o, &a->keys[i], err, errlen))
			goto out;
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(a->keys[j].id, a->keys[i].id) ||
			    !memcmp(a->keys[j].hash, a->keys[i].hash, 32)) {
				snprintf(err, errlen, "key \"%s\": id or sha256 repeats key \"%s\"", a->keys[i].id,
				         a->keys[j].id);
				goto out;
			}
		}
	}
	rc = 0;
out:
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&ps);
	return rc;
}

int auth_load_text(const char *yaml, size_t len, const char *path, const struct auth_opts *o,
                   struct met_registry *reg, struct auth **out, char *err, size_t errlen)
{
	char why[400];
	*out = NULL;
	struct auth *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	a->window_s = o->window_s;
	if (parse_file(a, yaml, len, o, why, sizeof why)) {
		snprintf(err, errlen, "%s: %s", path, why);
		auth_free(a);
		return -1;
	}
	a->replay = auth_replay_new(o->replay_cache > 0 ? (size_t)o->replay_cache : 100000);
	a->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!a->replay || !a->mac) {
		snprintf(err, errlen, "%s: out of memory, or OpenSSL has no HMAC", path);
		auth_free(a);
		return -1;
	}
	if (reg) {
		a->m_denied = met_counter(reg, "agent_obs_auth_denied_total",
		                          "Requests refused by authentication or authorisation, by reason",
		                          "reason");
		struct met_family *lim = met_counter(reg, "agent_obs_rate_limited_total",
		                                     "Requests answered 429 by the per-key rate limit", "key");
		for (size_t i = 0; i < a->n; i++)
			a->keys[i].m_limited = lim ? met_series(lim, a->keys[i].id) : NULL;
	}
	*out = a;
	return 0;
}

int auth_load(const char *path, const struct auth_opts *o, struct met_registry *reg,
              struct auth **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!path || !*path)
		return 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "auth.keys_file: %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
		log_kv(LOG_WARN, "keys file is readable by other users: chmod 600 it", "file", path, NULL);
	char *buf = malloc(1 << 20);
	size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
	int big = buf && n == 1 << 20;
	fclose(f);
	if (!buf || big) {
		free(buf);
		snprintf(err, errlen, "auth.keys_file: %s: %s", path, buf ? "larger than 1 MiB" : "out of memory");
		return -1;
	}
	int rc = auth_load_text(buf, n, path, o, reg, out, err, errlen);
	OPENSSL_cleanse(buf, n);
	free(buf);
	if (rc == 0)
		log_kv(LOG_INFO, "API keys loaded", "file", path, NULL);
	return rc;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++) {
		if (a->keys[i].secret) {
			OPENSSL_cleanse(a->keys[i].secret, a->keys[i].secret_len);
			free(a->keys[i].secret);
		}
		pthread_mutex_destroy(&a->keys[i].mu);
	}
	free(a->keys);
	auth_replay_free(a->replay);
	EVP_MAC_free(a->mac);
	free(a);
}

size_t auth_key_count(const struct auth *a)
{
	return a ? a->n : 0;
}

/* --------------------------------------------------------------- checks -- */

struct auth_key *auth_lookup(const struct auth *a, const char *key, size_t len)
{
	unsigned char md[32];
	struct auth_key *found = NULL;
	if (!a)
		return NULL;
	SHA256((const unsigned char *)key, len, md);
	/* every key is compared, whatever matched before */
	for (size_t i = 0; i < a->n; i++) {
		int eq = CRYPTO_memcmp(md, a->keys[i].hash, 32) == 0;
		if (eq)
			found = &a->keys[i];
	}
	OPENSSL_cleanse(md, sizeof md);
	return found;
}

static void deny(struct auth *a, struct auth_verdict *v, unsigned status, const char *reason,
                 const char *field, const char *msg)
{
	v->status = status;
	v->field = field;
	v->retry_after_s = 0;
	snprintf(v->message, sizeof v->message, "%s", msg);
	if (a && a->m_denied)
		met_inc(met_series(a->m_denied, reason), 1);
}

static const char *role_name(int need)
{
	return need & AUTH_ADMIN ? "admin" : need & AUTH_READ ? "read" : "ingest";
}

int auth_check(struct auth *a, const char *authorization, int need, struct auth_verdict *v)
{
	const char *key;
	size_t len;
	char msg[160];
	memset(v, 0, sizeof *v);
	if (!a || need == AUTH_OPEN)
		return 0;
	if (!authorization) {
		deny(a, v, 401, "missing", "Authorization", "missing API key: send Authorization: Bearer <key>");
		return -1;
	}
	if (auth_parse_bearer(authorization, &key, &len)) {
		deny(a, v, 401, "malformed", "Authorization", "expected Authorization: Bearer <key>");
		return -1;
	}
	struct auth_key *k = auth_lookup(a, key, len);
	if (!k) {
		deny(a, v, 401, "invalid", "Authorization", "invalid API key");
		return -1;
	}
	v->key = k;
	if (!(k->roles & (need | AUTH_ADMIN))) {
		snprintf(msg, sizeof msg, "key \"%s\" lacks the %s role", k->id, role_name(need));
		deny(a, v, 403, "forbidden", "Authorization", msg);
		return -1;
	}
	long ra = 0;
	pthread_mutex_lock(&k->mu);
	int lim = auth_bucket_take(&k->bucket, k->rate, k->burst, ev_mono_ms(), &ra);
	pthread_mutex_unlock(&k->mu);
	if (lim) {
		snprintf(msg, sizeof msg, "rate limit of key \"%s\" exceeded (%g requests/s, burst %g): retry later",
		         k->id, k->rate, k->burst);
		deny(a, v, 429, "rate_limited", NULL, msg);
		v->retry_after_s = ra;
		if (k->m_limited)
			met_inc(k->m_limited, 1);
		return -1;
	}
	return 0;
}

int auth_sig_begin(struct auth *a, struct auth_key *k, const char *ts, const char *sig,
                   struct auth_sig **out, struct auth_verdict *v)
{
	*out = NULL;
	memset(v, 0, sizeof *v);
	v->key = k;
	if (!a || !k)
		return 0;
	if (!sig) {
		if (!k->require_signature)
			return 0;
		deny(a, v, 401, "signature_missing", AUTH_SIG_HEADER,
		     "this key requires signed requests: send X-Obs-Timestamp and X-Obs-Signature");
		return -1;
	}
	if (!k->secret) {
		deny(a, v, 401, "signature_bad", AUTH_SIG_HEADER, "this key has no signing secret");
		return -1;
	}
	struct auth_sig *s = calloc(1, sizeof *s);
	if (!s) {
		deny(a, v, 401, "signature_bad", AUTH_SIG_HEADER, "out of memory");
		return -1;
	}
	if (auth_hex32(sig, s->want)) {
		free(s);
		deny(a, v, 401, "signature_bad", AUTH_SIG_HEADER, "expected sha256=<64 hex digits>");
		return -1;
	}
	char *end = NULL;
	errno = 0;
	long long t = ts ? strtoll(ts, &end, 10) : 0;
	if (!ts || !*ts || *end || errno || t <= 0) {
		free(s);
		deny(a, v, 401, "signature_bad", AUTH_TS_HEADER, "expected Unix seconds in X-Obs-Timestamp");
		return -1;
	}
	long long now = (long long)time(NULL);
	if (llabs(now - t) > a->window_s) {
		char msg[160];
		snprintf(msg, sizeof msg, "timestamp is %lld s from the server's clock (window %lld s)",
		         now - t, a->window_s);
		free(s);
		deny(a, v, 401, "signature_stale", AUTH_TS_HEADER, msg);
		return -1;
	}
	s->ts_s = t;
	s->key = k;
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
	                       OSSL_PARAM_construct_end()};
	s->ctx = EVP_MAC_CTX_new(a->mac);
	if (!s->ctx || !EVP_MAC_init(s->ctx, k->secret, k->secret_len, params) ||
	    !EVP_MAC_update(s->ctx, (const unsigned char *)ts, strlen(ts)) ||
	    !EVP_MAC_update(s->ctx, (const unsigned char *)".", 1)) {
		auth_sig_free(s);
		deny(a, v, 401, "signature_bad", AUTH_SIG_HEADER, "HMAC setup failed");
		return -1;
	}
	*out = s;
	return 0;
}

void auth_sig_update(struct auth_sig *s, const void *data, size_t len)
{
	if (s && len)
		EVP_MAC_update(s->ctx, data, len);
}

void auth_sig_free(struct auth_sig *s)
{
	if (!s)
		return;
	EVP_MAC_CTX_free(s->ctx);
	free(s);
}

int auth_sig_finish(struct auth *a, struct auth_sig *s, struct auth_verdict *v)
{
	unsigned char md[32];
	size_t mdlen = 0;
	memset(v, 0, sizeof *v);
	v->key = s->key;
	int ok = EVP_MAC_final(s->ctx, md, &mdlen, sizeof md) && mdlen == 32 &&
	         CRYPTO_memcmp(md, s->want, 32) == 0;
	int64_t expires = (s->ts_s + a->window_s + 1) * 1000;
	auth_sig_free(s);
	if (!ok) {
		deny(a, v, 401, "signature_bad", AUTH_SIG_HEADER,
		     "signature does not match HMAC-SHA256(secret, timestamp + \".\" + body)");
		return -1;
	}
	int seen = auth_replay_check(a->replay, md, expires, (int64_t)time(NULL) * 1000);
	if (seen == 1) {
		deny(a, v, 401, "signature_replayed", AUTH_SIG_HEADER,
		     "this signature was already used: sign each request anew");
		return -1;
	}
	if (seen < 0) {
		deny(a, v, 429, "replay_cache_full", NULL,
		     "too many signed requests within the replay window (auth.replay_cache_size)");
		v->retry_after_s = 1;
		return -1;
	}
	return 0;
}

int auth_admin_url_role(const char *url)
{
	if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz"))
		return AUTH_OPEN;
	return AUTH_READ;
}

/* ---------------------------------------------------------- MHD glue -- */

int auth_mhd_check(struct auth *a, struct MHD_Connection *c, int need, struct auth_verdict *v)
{
	const char *h = a ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION)
	                  : NULL;
	return auth_check(a, h, need, v);
}

enum MHD_Result auth_mhd_reply(struct MHD_Connection *c, const struct auth_verdict *v)
{
	char *s = http_error_body(v->status, v->field, v->message, NULL);
	char ra[24];
	if (!s)
		return MHD_NO;
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_COPY);
	cJSON_free(s);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (v->status == 401)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"agent-obs\"");
	if (v->retry_after_s > 0) {
		snprintf(ra, sizeof ra, "%ld", v->retry_after_s);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	enum MHD_Result ret = http_queue(c, v->status, r);
	MHD_destroy_response(r);
	return ret;
}
