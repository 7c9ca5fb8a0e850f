/* redact.h -- secret redaction before anything leaves the machine (or is
 * stored): provider API keys and tokens (Anthropic, OpenAI, GitHub, GitLab,
 * Slack, Stripe, Google, npm, Hugging Face), AWS access keys, JWTs, bearer
 * and basic credentials, passwords in URLs, PEM private key blocks, and
 * KEY=value / "key": "value" lines whose key names a secret (.env files,
 * shell exports, JSON, YAML). Each secret becomes "[REDACTED:<kind>]".
 * Deterministic, allocation-free when nothing matches; thread-safe. Used by
 * agent-hook and the collector. */
#ifndef REDACT_H
#define REDACT_H

#include <stddef.h>

#include <cjson/cJSON.h>

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

#endif
