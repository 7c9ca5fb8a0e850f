/* settings.h -- settings rows shared by every daemon's table (Redis, stream
 * name, log level). Expand inside a `struct cfg_setting table[]` for a struct
 * type T that has the fields named below. */
#ifndef SETTINGS_H
#define SETTINGS_H

#include <stddef.h>

#include "cfg.h"

#define CFG_ROWS_COMMON(T)                                                                 \
	{"redis.host", CFG_STR, "127.0.0.1", "Redis host", offsetof(T, redis_host), 0, -1},   \
	{"redis.port", CFG_INT, "6390", "Redis port", offsetof(T, redis_port), 1, 65535},     \
	{"redis.password", CFG_STR, "", "Redis AUTH password (prefer the env var or a 0600 config file)", \
	 offsetof(T, redis_password), 0, -1},                                                  \
	{"redis.timeout_ms", CFG_INT, "2000", "Redis connect/command timeout (ms)",            \
	 offsetof(T, redis_timeout_ms), 10, 600000},                                           \
	{"stream.name", CFG_STR, "agent_events", "Redis stream of canonical events",          \
	 offsetof(T, stream), 0, -1},                                                          \
	{"log.level", CFG_STR, "info", "debug | info | warn | error", offsetof(T, log_level), 0, -1}

#define CFG_FIELDS_COMMON                                                                  \
	char *redis_host;                                                                      \
	long long redis_port;                                                                  \
	char *redis_password;                                                                  \
	long long redis_timeout_ms;                                                            \
	char *stream;                                                                          \
	char *log_level

#endif
