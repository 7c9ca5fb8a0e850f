/* redact.h -- secret redaction before anything leaves the machine (or is
 * stored): provider API keys and tokens (Anthropic, OpenAI, GitHub, GitLab,
 * Slack, Stripe, Google, npm, Hugging Face), AWS access keys, JWTs, bearer
 * and basic credentials, passwords in URLs, PEM private key blocks, and
 * KEY=value / "key": "value" lines whose key names a secret (.env files,
 * shell exports, JSON, YAML); optionally e-mail addresses and named regular
 * expressions (struct redact_conf, loaded from config/redaction.yaml by
 * redact_conf.c). Each secret becomes "[REDACTED:<kind>]".
 * Deterministic, allocation-free when nothing matches (and no pattern is
 * configured); thread-safe once a configuration is installed. Used by
 * agent-hook and the collector. */
#ifndef REDACT_H
#define REDACT_H

#include <stddef.h>

#include <regex.h>

#include <cjson/cJSON.h>

struct met_family;
struct met_series;

/* Built-in kinds: the <kind> of "[REDACTED:<kind>]". */
enum redact_kind {
	RK_ANTHROPIC_KEY, RK_OPENAI_KEY, RK_STRIPE_KEY, RK_GITHUB_TOKEN, RK_GITLAB_TOKEN,
	RK_SLACK_TOKEN, RK_AWS_ACCESS_KEY, RK_AWS_SECRET_KEY, RK_GOOGLE_API_KEY, RK_JWT,
	RK_NPM_TOKEN, RK_HUGGINGFACE_TOKEN, RK_PRIVATE_KEY, RK_URL_PASSWORD, RK_BEARER_TOKEN,
	RK_AUTHORIZATION, RK_SECRET, RK_EMAIL,
	RK_BUILTIN /* count; custom patterns follow */
};
#define REDACT_MAX_PATTERNS 32
#define REDACT_MAX_KINDS (RK_BUILTIN + REDACT_MAX_PATTERNS)
#define REDACT_MAX_NAME 32

/* What to redact. Fill with redact_conf_init() (every built-in kind on but
 * e-mail, no patterns), change, then install with redact_use(). Read-only
 * while installed. */
struct redact_conf {
	unsigned char on[REDACT_MAX_KINDS]; /* by kind index */
	size_t npat;
	struct redact_pattern {
		char name[REDACT_MAX_NAME + 1]; /* the <kind> of its marker */
		regex_t re;                      /* POSIX extended */
	} pat[REDACT_MAX_PATTERNS];
	struct met_series *counter[REDACT_MAX_KINDS]; /* NULL: not counted */
};

void redact_conf_init(struct redact_conf *rc);
void redact_conf_clear(struct redact_conf *rc); /* frees the compiled patterns */

/* Kind index by name ("jwt", "email", or a pattern's name); -1 if none. */
int redact_kind_of(const struct redact_conf *rc, const char *name);
const char *redact_kind_name(const struct redact_conf *rc, int kind);

/* Turn a built-in kind on or off by name. 0 / -1 (unknown kind; err says so). */
int redact_conf_set(struct redact_conf *rc, const char *kind, int on, char *err, size_t errlen);

/* Add a named pattern (name: 1-32 of [a-z0-9_], not a built-in kind, not
 * taken; regex: POSIX extended, compiled now). 0 / -1 with err naming the
 * pattern and the problem. */
int redact_conf_add_pattern(struct redact_conf *rc, const char *name, const char *regex,
                            int icase, char *err, size_t errlen);

/* Load a YAML file (see config/redaction.yaml) on top of redact_conf_init().
 * Returns 0, 1 when the file does not exist (*rc holds the defaults), or -1
 * with err ("path: pattern \"x\": ..."); *rc is then cleared. */
int redact_conf_load(const char *path, struct redact_conf *rc, char *err, size_t errlen);

/* Count redactions in `fam` (a counter with the one label "kind"): creates
 * the series of every enabled kind now, so they are exported at 0. */
void redact_conf_metrics(struct redact_conf *rc, struct met_family *fam);

/* Install the configuration redact_buf/redact_json use, process-wide; call
 * before threads that redact start. NULL: the built-in defaults. */
void redact_use(const struct redact_conf *rc);

/* Redact [s, s+n). Returns NULL when nothing was found (the common case),
 * else a malloc'd NUL-terminated copy with every secret replaced; *outlen
 * gets its length. *count (may be NULL) is increased by the number of
 * secrets replaced. */
char *redact_buf(const char *s, size_t n, size_t *outlen, int *count);

/* 1 when an object key names a secret (password, api_key, client_secret,
 * access_token, authorization, ...): its string value is replaced whole. */
int redact_key_is_secret(const char *key);

/* Redact every string value of a cJSON tree in place (strings are replaced
 * through cJSON's allocator). String values of members whose key names a
 * secret are replaced whole with "[REDACTED:secret]". Returns the number of
 * redactions. */
int redact_json(cJSON *node);

/* Redact a canonical event: every string but the envelope fields whose
 * format is validated and that routing depends on (id, event_type,
 * timestamp, received_at, status at the top level). Returns the count. */
int redact_event(cJSON *ev);

#endif
