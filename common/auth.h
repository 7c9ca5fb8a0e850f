/* auth.h -- API keys, roles, signed requests and per-key rate limits, shared
 * by every daemon (issue 7). A keys file (auth.keys_file, YAML) lists keys by
 * their SHA-256 hash with a role, optional signing secret and rate limit.
 * struct auth is loaded once at start-up and then read-only except for the
 * per-key token buckets and the replay cache, which have their own locks:
 * every function below is thread-safe after auth_load(). The pure pieces
 * (bearer parsing, hex, token bucket, replay cache) are unit-tested in
 * tests/unit/test_auth.c. */
#ifndef AUTH_H
#define AUTH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

struct met_registry;

/* Roles are bits; admin may do everything. */
enum auth_role { AUTH_OPEN = 0, AUTH_INGEST = 1, AUTH_READ = 2, AUTH_ADMIN = 4 };

#define AUTH_ID_MAX 64
#define AUTH_SIG_HEADER "X-Obs-Signature"
#define AUTH_TS_HEADER "X-Obs-Timestamp"
/* The WebSocket key travels as the subprotocol "agent-obs.key.<key>". */
#define AUTH_WS_KEY_PREFIX "agent-obs.key."

/* ---- pure parts ---- */

/* Token bucket: `tokens` refill at `rate` per second up to `burst`. */
struct auth_bucket {
	double tokens;
	int64_t last_ms; /* 0: never used (starts full) */
};
/* Take one token at now_ms. 0 taken; -1 refused with *retry_after_s (>= 1)
 * the whole seconds until a token is there. rate <= 0 means no limit. */
int auth_bucket_take(struct auth_bucket *b, double rate, double burst, int64_t now_ms,
                     long *retry_after_s);

/* "Bearer <key>" (scheme case-insensitive, spaces trimmed) -> key span.
 * 0 / -1 when the header is not a bearer credential. */
int auth_parse_bearer(const char *header, const char **key, size_t *len);

/* 64 hex digits -> 32 bytes; 0 / -1. "sha256=" in front is accepted. */
int auth_hex32(const char *s, unsigned char out[32]);
void auth_sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA256 of "<ts>.<body>" in hex (what a signing client sends). */
void auth_sign_hex(const unsigned char *secret, size_t slen, const char *ts, const void *body,
                   size_t blen, char out[65]);

/* Bounded set of recently seen signatures, each kept until its expiry.
 * Open addressing with at most AUTH_REPLAY_PROBES probes per lookup; a slot
 * whose entry expired is reused. */
#define AUTH_REPLAY_PROBES 32
struct auth_replay;
struct auth_replay *auth_replay_new(size_t capacity);
void auth_replay_free(struct auth_replay *r); /* NULL is a no-op */
/* 0: first sighting, remembered until expires_ms; 1: seen before (replay);
 * -1: no room (every probed slot is live) -- refuse the request. */
int auth_replay_check(struct auth_replay *r, const unsigned char sig[32], int64_t expires_ms,
                      int64_t now_ms);

/* ---- keys ---- */

struct auth_key {
	char id[AUTH_ID_MAX];
	int roles;                 /* enum auth_role bits */
	unsigned char hash[32];    /* SHA-256 of the key */
	unsigned char *secret;     /* HMAC signing secret (NULL: none) */
	size_t secret_len;
	int require_signature;
	double rate, burst;        /* requests per second; 0: unlimited */
	pthread_mutex_t mu;        /* guards bucket */
	struct auth_bucket bucket;
	struct met_series *m_limited;
};

struct auth_opts {
	long long window_s;      /* signature replay window (auth.signature_window_s) */
	double rate, burst;      /* defaults for keys without their own */
	long long replay_cache;  /* signatures remembered (auth.replay_cache_size) */
};

struct auth;

/* Load the keys file. An empty path leaves *out NULL (auth off: the caller
 * must then bind loopback only) and returns 0. Errors name file, key and
 * problem. reg (may be NULL) gets agent_obs_auth_denied_total{reason} and
 * agent_obs_rate_limited_total{key}. */
int auth_load(const char *path, const struct auth_opts *o, struct met_registry *reg,
              struct auth **out, char *err, size_t errlen);
/* Same, from YAML text (unit tests); path only names the source in errors. */
int auth_load_text(const char *yaml, size_t len, const char *path, const struct auth_opts *o,
                   struct met_registry *reg, struct auth **out, char *err, size_t errlen);
void auth_free(struct auth *a); /* NULL is a no-op */
size_t auth_key_count(const struct auth *a);

/* The key whose hash matches, compared in constant time against every key;
 * NULL when none. */
struct auth_key *auth_lookup(const struct auth *a, const char *key, size_t len);

/* Why a request was refused: status 401, 403 or 429, the header named in
 * field, a message, and for 429 the Retry-After seconds. */
struct auth_verdict {
	unsigned status;
	const char *field;
	char message[160];
	long retry_after_s;
	struct auth_key *key; /* the caller's key once known */
};

/* Check an Authorization header value (may be NULL) for `need` (AUTH_OPEN
 * always passes), then take a token from the key's bucket. With a == NULL
 * everything passes. 0 ok (v->key set when a key was used); -1 with *v. */
int auth_check(struct auth *a, const char *authorization, int need, struct auth_verdict *v);

/* Signed requests (POST bodies): call auth_sig_begin with the two headers
 * (either may be NULL) once the key is known. No X-Obs-Signature and a key
 * that does not require one: 0 with *out NULL (unsigned request). Else the
 * key must have a secret and the timestamp must be within the window, or
 * -1 with *v (401). Then feed the body to auth_sig_update and call
 * auth_sig_finish. The MAC is HMAC-SHA256(secret, "<ts>." + body). */
struct auth_sig;
int auth_sig_begin(struct auth *a, struct auth_key *k, const char *ts, const char *sig,
                   struct auth_sig **out, struct auth_verdict *v);
void auth_sig_update(struct auth_sig *s, const void *data, size_t len);
/* 0 good and not seen before; -1 with *v (bad signature, replay). Frees s. */
int auth_sig_finish(struct auth *a, struct auth_sig *s, struct auth_verdict *v);
void auth_sig_free(struct auth_sig *s); /* NULL is a no-op */

/* The role an admin URL needs: /healthz and /readyz are open, everything
 * else (/metrics, /rules ...) needs read; admin-only routes say so. */
int auth_admin_url_role(const char *url);

/* ---- libmicrohttpd glue ---- */

/* auth_check with the connection's Authorization header. */
int auth_mhd_check(struct auth *a, struct MHD_Connection *c, int need, struct auth_verdict *v);
/* Queue the JSON error of *v (WWW-Authenticate on 401, Retry-After on 429). */
enum MHD_Result auth_mhd_reply(struct MHD_Connection *c, const struct auth_verdict *v);

#endif
