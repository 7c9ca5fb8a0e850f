/* settings.h -- settings rows shared by every daemon's table (Redis, stream
 * name, log level), and CFG_RS_CONF to turn them into a struct rs_conf. Expand inside a `struct cfg_setting table[]` for a struct
 * type T that has the fields named below. */
#ifndef SETTINGS_H
#define SETTINGS_H

#include <stddef.h>

#include "cfg.h"

#define CFG_ROWS_COMMON(T)                                                                 \
	{"redis.host", CFG_STR, "127.0.0.1", "Redis host", offsetof(T, redis_host), 0, -1},   \
	{"redis.port", CFG_INT, "6390", "Redis port", offsetof(T, redis_port), 1, 65535},     \
	{"redis.username", CFG_STR, "", "Redis ACL user for AUTH (empty: the default user)",   \
	 offsetof(T, redis_username), 0, -1},                                                  \
	{"redis.password", CFG_STR, "", "Redis AUTH password (prefer redis.password_file or the env var)", \
	 offsetof(T, redis_password), 0, -1},                                                  \
	{"redis.password_file", CFG_STR, "", "File holding the Redis password (one line)",    \
	 offsetof(T, redis_password_file), 0, -1},                                             \
	{"redis.timeout_ms", CFG_INT, "2000", "Redis connect/command timeout (ms)",            \
	 offsetof(T, redis_timeout_ms), 10, 600000},                                           \
	{"stream.name", CFG_STR, "agent_events", "Redis stream of canonical events",          \
	 offsetof(T, stream), 0, -1},                                                          \
	{"log.level", CFG_STR, "info", "debug | info | warn | error", offsetof(T, log_level), 0, -1}, \
	{"auth.keys_file", CFG_STR, "",                                                        \
	 "API keys file (YAML, see config/keys.example.yaml); empty: no keys, loopback only",  \
	 offsetof(T, auth_keys_file), 0, -1},                                                  \
	{"auth.signature_window_s", CFG_INT, "300",                                            \
	 "Signed requests: largest clock difference, and how long a signature is remembered", \
	 offsetof(T, auth_window_s), 1, 86400},                                                \
	{"auth.rate_per_s", CFG_DOUBLE, "200",                                                 \
	 "Default per-key rate limit, requests per second (0: none)", offsetof(T, auth_rate), 0, 1e9}, \
	{"auth.burst", CFG_DOUBLE, "400", "Default per-key burst (token bucket size)",        \
	 offsetof(T, auth_burst), 1, 1e9},                                                     \
	{"auth.replay_cache_size", CFG_INT, "200000",                                          \
	 "Signatures remembered within the window (more signed requests: 429)",              \
	 offsetof(T, auth_replay_cache), 64, 100000000}

/* The auth_opts of the auth.* rows of a conf struct `cf` (a pointer). */
#define CFG_AUTH_OPTS(cf)                                                                  \
	((struct auth_opts){(cf)->auth_window_s, (cf)->auth_rate, (cf)->auth_burst,           \
	                    (cf)->auth_replay_cache})

#define CFG_FIELDS_COMMON                                                                  \
	char *redis_host;                                                                      \
	long long redis_port;                                                                  \
	char *redis_username;                                                                  \
	char *redis_password;                                                                  \
	char *redis_password_file;                                                             \
	long long redis_timeout_ms;                                                            \
	char *stream;                                                                          \
	char *log_level;                                                                       \
	char *auth_keys_file;                                                                  \
	long long auth_window_s;                                                               \
	double auth_rate;                                                                      \
	double auth_burst;                                                                     \
	long long auth_replay_cache

/* The struct rs_conf (rs.h) of a conf with CFG_FIELDS_COMMON. */
#define CFG_RS_CONF(cf)                                                                    \
	((struct rs_conf){.host = (cf).redis_host, .port = (int)(cf).redis_port,              \
	                  .username = (cf).redis_username, .password = (cf).redis_password,    \
	                  .timeout_ms = (int)(cf).redis_timeout_ms})

#endif
