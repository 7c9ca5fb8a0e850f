/* filter.h -- the streamer's event filters: parse the text a client gives
 * (`/stream?filter=...` or a {"type":"filter"} message) and match events
 * against it. Pure functions over caller-owned data; no I/O, no globals.
 *
 * Grammar (documented for users in README "Live dashboard"):
 *
 *   filter  = "" | clause *( "," clause )        ; comma = AND
 *   clause  = [ "!" ] key ":" value *( "|" value ) ; "|" = OR, "!" negates
 *   key     = "session" | "agent" | "parent" | "type" | "tool" | "status"
 *           | "role" | "app"
 *   value   = 1*( char | "\" escaped )  [ "*" ]  ; trailing "*" = prefix match
 *
 * A backslash escapes the next character (`\,` `\|` `\*` `\\` `\:`), so any
 * id can be written. Values compare byte for byte (case-sensitive). An
 * event without the field never matches a positive clause and always
 * matches a negated one. The empty filter matches every event.
 * Limits: FLT_MAX_TEXT bytes, FLT_MAX_CLAUSES clauses, FLT_MAX_VALUES
 * values per clause.
 */
#ifndef FILTER_H
#define FILTER_H

#include <stddef.h>

#define FLT_MAX_TEXT 2048
#define FLT_MAX_CLAUSES 16
#define FLT_MAX_VALUES 64

/* The event fields a filter can test, in key order. */
enum flt_key {
	FK_SESSION, /* session_id */
	FK_AGENT,   /* agent_id */
	FK_PARENT,  /* parent_agent_id */
	FK_TYPE,    /* event_type */
	FK_TOOL,    /* tool */
	FK_STATUS,  /* status */
	FK_ROLE,    /* agent_role */
	FK_APP,     /* source_app */
	FK_COUNT
};

/* Filter key name ("session") and the event field it reads ("session_id"). */
const char *flt_key_name(enum flt_key k);
const char *flt_key_field(enum flt_key k);

struct flt_value {
	char *s;    /* unescaped, NUL-terminated (owned) */
	size_t len;
	int prefix; /* trailing unescaped '*': match values starting with s */
};

struct flt_clause {
	enum flt_key key;
	int neg;
	size_t n;
	struct flt_value *v; /* owned */
};

struct filter {
	size_t n;
	struct flt_clause *c; /* owned */
	char *text;           /* the text as given (owned; "" for match-all) */
};

/* One event's field values (NULL: absent) and their lengths. */
struct flt_fields {
	const char *v[FK_COUNT];
	size_t len[FK_COUNT];
};

/* Parse `len` bytes of `s` into *out (zeroed first). 0 on success; -1 with
 * a message naming the problem and its byte offset in err ("offset 8:
 * unknown key \"sesion\" (expected session, agent, ...)"). *out owns
 * nothing on failure. */
int flt_parse(const char *s, size_t len, struct filter *out, char *err, size_t errlen);

/* 1 when the event's fields satisfy every clause. */
int flt_match(const struct filter *f, const struct flt_fields *ev);

/* 1 for the empty (match-all) filter. */
int flt_is_all(const struct filter *f);

void flt_free(struct filter *f); /* NULL and zeroed filters are fine */

#endif
