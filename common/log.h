/* log.h -- structured logging: one JSON object per line on stderr with
 * ts, level, service, msg and optional string fields. Thread-safe: each line
 * is formatted in a stack buffer and written with a single write(2). */
#ifndef LOG_H
#define LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init(const char *service, enum log_level min_level);
int log_level_parse(const char *s, enum log_level *out);
int log_enabled(enum log_level lvl);

/* log_kv(LOG_INFO, "batch stored", "rows", "100", "trace_id", tid, NULL):
 * after msg, pairs of (key, value) strings ending with NULL. A NULL value
 * is written as JSON null. */
void log_kv(enum log_level lvl, const char *msg, ...);

/* printf-style message, no extra fields. */
void log_fmt(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_fmt(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_fmt(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_fmt(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_fmt(LOG_ERROR, __VA_ARGS__)

#endif
