/* api.h -- the collector's history API (issue 6): the read endpoints over
 * PostgreSQL (GET /events, /events/recent, /observability/events, /sessions,
 * /sessions/{id}, /transcripts, /transcripts/search) and transcript ingest
 * (POST /transcripts -> stream agent_transcripts).
 *   api.c         hooks for server.c, query threads, PostgreSQL, JSON replies
 *   api_query.c   pure: endpoint table, parameter parsing, cursors, SQL text
 *   transcript.c  pure: validation and normalisation of POST /transcripts
 * The pure parts are unit-tested in tests/unit/test_api.c. */
#ifndef API_H
#define API_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

struct collector_conf;
struct met_registry;

/* ---- api.c: life cycle and the hooks server.c calls ---- */

/* Start the query threads and the read-only connection pool (connections
 * open lazily: PostgreSQL may be down). 0 / -1 with err. */
int api_start(const struct collector_conf *cf, struct met_registry *reg, char *err,
              size_t errlen);
/* Answer what is queued, refuse new queries (503), join the threads. Call
 * after server_quiesce() and before server_stop(); harmless twice. */
void api_stop(void);
/* 1 when (method, url) belongs to this API (GET /events, POST /transcripts...). */
int api_route(const char *method, const char *url);
/* The libmicrohttpd access handler for an api_route() request, from its
 * second call on. *state is the request's (freed by api_free); *code gets
 * the HTTP status once answered. */
enum MHD_Result api_handle(struct MHD_Connection *c, const char *method, const char *url,
                           const char *upload, size_t *upload_size, void **state, int *code);
void api_free(void *state); /* NULL is a no-op */

/* ---- api_query.c ---- */

enum api_endpoint {
	API_NONE = 0,
	API_EVENTS,          /* GET /events, GET /observability/events */
	API_EVENTS_RECENT,   /* GET /events/recent?session= */
	API_SESSIONS,        /* GET /sessions */
	API_SESSION,         /* GET /sessions/{id} */
	API_TRANSCRIPTS,     /* GET /transcripts?session_id= */
	API_SEARCH,          /* GET /transcripts/search?q= */
	API_POST_TRANSCRIPT, /* POST /transcripts */
};

/* Endpoint of a path, whatever the method; *path_arg gets the {id} of
 * /sessions/{id} (pointer into url). */
enum api_endpoint api_endpoint_of(const char *url, const char **path_arg);
const char *api_endpoint_name(enum api_endpoint ep); /* metric label */

#define API_MAX_ID 256  /* session_id, agent_id, ... in bytes */
#define API_MAX_Q 1024  /* full-text query in bytes */

/* Keyset position: the last row of a page. kind: 'e' events (key = UUID),
 * 's' sessions (key = session_id), 'm' transcript messages (key = message id). */
struct api_cursor {
	char kind;
	int desc;
	int64_t ts_us; /* microseconds since the epoch */
	char key[API_MAX_ID + 1];
};
/* Opaque text (base64url, no padding). 0 / -1 when out is too small. */
int api_cursor_encode(const struct api_cursor *c, char *out, size_t outlen);
/* 0 / -1 for anything api_cursor_encode did not produce. */
int api_cursor_decode(const char *s, struct api_cursor *c);

struct api_limits {
	long max_limit;       /* page size cap (default page: 100) */
	int64_t max_range_ms; /* longest from..to of /events */
};

/* Validated query parameters; strings are owned copies (api_params_free). */
struct api_params {
	enum api_endpoint ep;
	char *session_id, *agent_id, *type, *tool, *status, *q, *source_app, *role;
	int has_from, has_to;
	int64_t from_ms, to_ms; /* [from, to) */
	long limit;
	int desc;       /* newest first */
	int has_errors; /* -1: any; 0: sessions without errors; 1: with */
	int has_cursor;
	struct api_cursor cursor;
};

struct api_error {
	int status; /* 400, 404, 405, 413, 415, 503, 504 */
	char field[96];
	char message[256];
};

struct api_kv {
	const char *key, *value; /* value may be NULL ("?flag") */
};

/* Check and convert the query parameters of `ep` (path_arg: the {id} of
 * /sessions/{id}). Unknown, repeated, empty or malformed parameters are
 * refused with status 400 and the parameter named in err->field. */
int api_params_parse(enum api_endpoint ep, const struct api_kv *kv, size_t n,
                     const char *path_arg, int64_t now_ms, const struct api_limits *lim,
                     struct api_params *out, struct api_error *err);
void api_params_free(struct api_params *p);

/* "1700000000", "1700000000.5", "1700000000000" (ms) or ISO-8601. 0 / -1. */
int api_parse_time(const char *s, int64_t *ms);
/* "2026-01-02T03:04:05.678901Z" */
void api_format_us(int64_t us, char out[40]);

/* A parameterised statement: SQL text with $n placeholders and the values
 * ($1 is values[0]). Values point into the params or into `own`; nothing
 * from the client is ever part of `text`. */
#define API_MAX_PARAMS 24
struct api_sql {
	char text[6144];
	size_t len;
	int n;
	const char *values[API_MAX_PARAMS];
	char own[API_MAX_PARAMS][48];
	int overflow; /* text or values did not fit: a bug, refuse to run */
};

/* Builders; every query returns rows of (json text, ts_us, key) except
 * search (see api_sql_search). They fetch limit + 1 rows: the extra row
 * only says whether there is a next page. */
void api_sql_events(const struct api_params *p, struct api_sql *q);
void api_sql_recent(const struct api_params *p, struct api_sql *q);
void api_sql_sessions(const struct api_params *p, struct api_sql *q);
void api_sql_messages(const struct api_params *p, struct api_sql *q);
/* Rows: session_id, agent_id, message_id, timestamp, role, model, rank,
 * snippet (highlights between \x02 and \x03). */
void api_sql_search(const struct api_params *p, struct api_sql *q);

/* Fixed statements with $1 = session_id. */
extern const char *const api_sql_session_summary;   /* one row: json text */
extern const char *const api_sql_session_agents;    /* rows: json text, agent_id, parent */
extern const char *const api_sql_session_transcripts; /* rows: json text */

/* ---- transcript.c ---- */

struct transcript_limits {
	size_t max_messages; /* per request */
	size_t max_text;     /* bytes of one message's text; longer text is cut and flagged */
};
extern const struct transcript_limits transcript_default_limits;

/* Validate a POST /transcripts body (one JSON object, see README "History
 * API") and write its normalised form (the stream entry) into *out
 * (malloc'd). Messages without a uuid get one derived from (agent_id, role,
 * timestamp as sent, text), so a re-sent message keeps its identity.
 * 0 / -1 with err (400 or 413; err->field is a dotted path). */
int transcript_normalise(const char *body, size_t len, int64_t now_ms,
                         const struct transcript_limits *lim, char **out, size_t *outlen,
                         size_t *n_messages, struct api_error *err);

#endif
