/* ev.h -- the canonical event: validation and normalisation of client JSON
 * (cJSON trees), time parsing, UUIDs, and extraction of typed columns for
 * storage. Pure functions over caller-owned data; thread-safe. */
#ifndef EV_H
#define EV_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct ev_limits {
	int max_depth;          /* nesting of objects/arrays in one event */
	size_t max_string;      /* bytes in any one string */
	size_t max_members;     /* members of any one object */
	size_t max_array;       /* elements of any one array */
	size_t max_event_bytes; /* serialised normalised event */
};
extern const struct ev_limits ev_default_limits;

/* What is wrong with an event: HTTP status (400 malformed, 413 over a size
 * or count limit), the field (dotted path such as "payload.files[3]", ""
 * for the whole event) and the problem, naming the limit. */
struct ev_error {
	int status;
	char field[96];
	char problem[192];
};

/* Validate `obj` and normalise it in place into the canonical form (see
 * README "Event contract"): id (generated UUIDv7 when absent), event_type,
 * timestamp and received_at (ISO-8601 UTC, milliseconds), optional string
 * fields, status (derived when absent), latency_ms, tokens, cost_usd,
 * payload (always an object; unknown top-level fields move into it).
 * now_ms is the receive time. 0 on success, -1 with *err filled. */
int ev_normalise(cJSON *obj, int64_t now_ms, const struct ev_limits *lim,
                 struct ev_error *err);

/* Serialise (unformatted) into *out (cJSON allocator), enforcing
 * lim->max_event_bytes (413). */
int ev_print(const cJSON *obj, const struct ev_limits *lim, char **out, size_t *len,
             struct ev_error *err);

/* Byte limit of an optional top-level string field ("session_id": 256), 0
 * for a name that has none. */
size_t ev_str_field_max(const char *name);

/* Validate and normalise, then ev_print. */
int ev_normalise_print(cJSON *obj, int64_t now_ms, const struct ev_limits *lim,
                       char **out, size_t *len, struct ev_error *err);

/* 1 if [s, s+n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF);
 * else 0 with the offset of the first bad byte in *bad_at. */
int ev_utf8_valid(const char *s, size_t n, size_t *bad_at);

/* Epoch seconds (< 1e11, may be fractional) or ms as a number, or an
 * ISO-8601 string (date, 'T' or ' ', time, optional fraction, 'Z' or
 * +hh:mm offset; no zone means UTC). 0 / -1. */
int ev_parse_time(const cJSON *item, int64_t *ms_out);
int ev_parse_iso8601(const char *s, int64_t *ms_out);
void ev_format_iso8601(int64_t ms, char out[32]);
int64_t ev_now_ms(void);  /* wall clock, ms since the epoch */
int64_t ev_mono_ms(void); /* monotonic clock, ms: for intervals and deadlines */

/* RFC 9562 version 7: the first 48 bits are the Unix time in ms, the rest
 * random, so ids made one after another sort by time (and land near each
 * other in a B-tree index). */
void ev_uuid_v7(char out[37]);
int ev_uuid_valid(const char *s); /* 1 for 8-4-4-4-12 hex */

/* Typed view of a normalised event, as stored in PostgreSQL. Pointers point
 * into `json` (the tree) or into the strings owned by the row; release with
 * ev_row_free(). Absent optional values are NULL; has_* flags for numbers. */
struct ev_row {
	cJSON *json; /* owned */
	const char *id, *event_type, *session_id, *agent_id, *agent_role,
		*parent_agent_id, *source_app, *tool, *status, *trace_id, *span_id,
		*timestamp, *received_at;
	int64_t ts_ms, received_ms;
	char *payload; /* owned (cJSON_free), compact JSON text */
	int has_latency, has_cost, has_tokens[4];
	double latency_ms, cost_usd;
	long long tokens[4]; /* input, output, cache_read, cache_creation */
};

/* Parse a normalised event (from the stream) into *row. Re-validates the
 * fields it needs; -1 with *err for an entry that can never be stored. */
int ev_row_parse(const char *json, size_t len, struct ev_row *row,
                 struct ev_error *err);
void ev_row_free(struct ev_row *row);

#endif
