/* rs.h -- Redis Streams helpers over hiredis 0.14: connect with backoff,
 * pipelined XADD, consumer groups, XREADGROUP/XAUTOCLAIM reply parsing,
 * batched XACK and the safe trim floor. A redisContext is per thread; these
 * functions never share one. Batches own copies of entry data. */
#ifndef RS_H
#define RS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

struct rs_conf {
	const char *host;
	int port;
	const char *username; /* ACL user; NULL or "" for AUTH <password> alone */
	const char *password; /* NULL or "" for none */
	int timeout_ms;       /* connect and command timeout */
};

/* Connect, AUTH ([username] password) and PING once. NULL with err filled on failure. */
redisContext *rs_connect(const struct rs_conf *cf, char *err, size_t errlen);
/* Retry with exponential backoff (100 ms .. 5 s) until connected or *stop. */
redisContext *rs_connect_retry(const struct rs_conf *cf, volatile sig_atomic_t *stop);

/* Stream ids: "ms-seq". */
struct rs_id {
	uint64_t ms, seq;
};
int rs_id_parse(const char *s, struct rs_id *out);
int rs_id_cmp(struct rs_id a, struct rs_id b);
void rs_id_format(struct rs_id id, char out[48]);

/* One stream entry; `data` is the value of field "e" (NULL when the entry
 * was deleted/trimmed or has no such field). */
struct rs_entry {
	char id[48];
	char *data;
	size_t len;
	long long deliveries; /* from XPENDING when known, else 0 */
	int probe;            /* field "p" present: store must probe for the id (see rs_xadd_append) */
};
struct rs_batch {
	struct rs_entry *v;
	size_t n, cap;
};
void rs_batch_clear(struct rs_batch *b); /* frees data, keeps capacity */
void rs_batch_free(struct rs_batch *b);
int rs_batch_push(struct rs_batch *b, const char *id, const char *data, size_t len);

/* Append (not send) XADD stream * e <json> [p 1] to c's output buffer, for
 * pipelining: the caller writes the buffer and reads one reply per append.
 * Field "p" marks an event whose client gave an id but no timestamp, so the
 * store must look for an earlier copy under another timestamp. 0 / -1 (out of
 * memory; c's buffer may hold part of the command, so c must be dropped). */
int rs_xadd_append(redisContext *c, const char *stream, const char *data, size_t len, int probe);

/* Append entry e to the dead-letter stream with fields e (its data, "" when
 * gone), reason, detail and source_id (its id). 0 / -1. */
int rs_dead_letter(redisContext *c, const char *dead_stream, const struct rs_entry *e,
                   const char *reason, const char *detail);

/* XGROUP CREATE stream group start MKSTREAM; an existing group is fine. */
int rs_group_ensure(redisContext *c, const char *stream, const char *group,
                    const char *start, char *err, size_t errlen);

/* XREADGROUP GROUP g consumer COUNT n BLOCK ms STREAMS s id. Appends the
 * entries to *out. block_ms < 0: no BLOCK. Returns the number appended, or -1. */
int rs_readgroup(redisContext *c, const char *stream, const char *group,
                 const char *consumer, const char *id, long count, long block_ms,
                 struct rs_batch *out, char *err, size_t errlen);

/* XAUTOCLAIM stream group consumer min_idle start COUNT n; appends claimed
 * entries, writes the next cursor ("0-0" when the scan finished). */
int rs_autoclaim(redisContext *c, const char *stream, const char *group,
                 const char *consumer, long long min_idle_ms, const char *start,
                 long count, char next[48], struct rs_batch *out, char *err,
                 size_t errlen);

/* Parse an XREADGROUP/XREAD reply / an entry array (exposed for tests). */
int rs_parse_read_reply(const redisReply *r, struct rs_batch *out);
int rs_parse_entries(const redisReply *arr, struct rs_batch *out);

/* XACK the given ids (chunks of 500, pipelined). */
int rs_ack(redisContext *c, const char *stream, const char *group,
           const char *const *ids, size_t n, char *err, size_t errlen);

/* The id below which every existing group has acknowledged everything:
 * min over groups of (oldest pending id, else last-delivered-id). *has is 0
 * when the stream has no groups (nothing may be trimmed). */
int rs_trim_floor(redisContext *c, const char *stream, struct rs_id *floor, int *has,
                  char *err, size_t errlen);

/* Run a command and expect an integer reply. */
int rs_int(redisContext *c, long long *out, char *err, size_t errlen, const char *fmt, ...);

#endif
