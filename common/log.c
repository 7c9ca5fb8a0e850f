/* log.c -- JSON-lines logger on stderr (see log.h).
 * The service name is copied at log_init(); lines are built on the stack
 * (8 KiB, longer messages are truncated) and written with one write(2), so
 * lines from different threads never interleave. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192

static char log_service[64] = "agent-obs";
static enum log_level log_min = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *service, enum log_level min_level)
{
	snprintf(log_service, sizeof log_service, "%s", service ? service : "agent-obs");
	log_min = min_level;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (s && strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int log_enabled(enum log_level lvl)
{
	return lvl >= log_min;
}

struct line {
	char buf[LOG_LINE_MAX];
	size_t len;
};

static void put_raw(struct line *l, const char *s, size_t n)
{
	size_t room = sizeof l->buf - 3 - l->len; /* keep space for "}\n" */
	if (n > room)
		n = room;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void put_str(struct line *l, const char *s)
{
	put_raw(l, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		switch (*p) {
		case '"': put_raw(l, "\\\"", 2); break;
		case '\\': put_raw(l, "\\\\", 2); break;
		case '\n': put_raw(l, "\\n", 2); break;
		case '\r': put_raw(l, "\\r", 2); break;
		case '\t': put_raw(l, "\\t", 2); break;
		default:
			if (*p < 0x20) {
				int n = snprintf(esc, sizeof esc, "\\u%04x", *p);
				put_raw(l, esc, (size_t)n);
			} else {
				put_raw(l, (const char *)p, 1);
			}
		}
	}
	put_raw(l, "\"", 1);
}

static void begin(struct line *l, enum log_level lvl, const char *msg)
{
	struct timespec ts;
	struct tm tm;
	char tbuf[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(tbuf, sizeof tbuf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	l->len = 0;
	put_raw(l, "{\"ts\":\"", 7);
	put_raw(l, tbuf, (size_t)n);
	put_raw(l, "\",\"level\":\"", 11);
	put_raw(l, level_names[lvl], strlen(level_names[lvl]));
	put_raw(l, "\",\"service\":", 12);
	put_str(l, log_service);
	put_raw(l, ",\"msg\":", 7);
	put_str(l, msg);
}

static void finish(struct line *l)
{
	int saved = errno;
	l->buf[l->len++] = '}';
	l->buf[l->len++] = '\n';
	size_t off = 0;
	while (off < l->len) {
		ssize_t w = write(STDERR_FILENO, l->buf + off, l->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	errno = saved;
}

void log_kv(enum log_level lvl, const char *msg, ...)
{
	if (lvl < log_min)
		return;
	struct line l;
	begin(&l, lvl, msg);
	va_list ap;
	va_start(ap, msg);
	for (;;) {
		const char *k = va_arg(ap, const char *);
		if (!k)
			break;
		const char *v = va_arg(ap, const char *);
		put_raw(&l, ",", 1);
		put_str(&l, k);
		put_raw(&l, ":", 1);
		if (v)
			put_str(&l, v);
		else
			put_raw(&l, "null", 4);
	}
	va_end(ap);
	finish(&l);
}

void log_fmt(enum log_level lvl, const char *fmt, ...)
{
	if (lvl < log_min)
		return;
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct line l;
	begin(&l, lvl, msg);
	finish(&l);
}
