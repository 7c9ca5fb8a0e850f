/* transcript.c -- token usage from a transcript JSONL, incrementally.
 *
 * Per transcript file, <state>/transcripts/<hash of path>.state keeps the
 * byte offset read so far, the file's device and inode (a replaced or
 * truncated file is read again from the start) and the hashes of the last
 * API responses counted (message.id + requestId; one response spans several
 * lines, possibly written on both sides of a Stop). Only complete lines are
 * consumed. The state file is locked while in use.
 *
 * The same file is also forwarded to POST /transcripts (the history API)
 * with its own state, <hash>.sent, advanced only when the collector took
 * the messages: a Stop while the collector is down sends them next time
 * (messages keep their uuid, so a re-send is stored once). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hook.h"

#define MAX_READ (16 << 20) /* per call; the rest next time */

struct tstate {
	long long offset;
	unsigned long long dev, ino;
	struct hook_seen seen;
};

static void parse_state(const char *s, struct tstate *t)
{
	memset(t, 0, sizeof *t);
	if (sscanf(s, "v1 %lld %llu %llu", &t->offset, &t->dev, &t->ino) != 3) {
		memset(t, 0, sizeof *t);
		return;
	}
	const char *p = strchr(s, '\n');
	while (p && p[1]) {
		uint64_t h;
		if (sscanf(p + 1, "%" SCNx64, &h) == 1)
			hook_seen_add(&t->seen, h);
		p = strchr(p + 1, '\n');
	}
}

static int lock_within(int fd, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK)
			return -1;
		struct timespec ts = {0, 1000000L};
		nanosleep(&ts, NULL);
	}
	return -1;
}

/* An open transcript with its state file (locked). */
struct tfile {
	int sfd, tfd;
	struct stat st;
	struct tstate *t;
};

static void tfile_close(struct tfile *f)
{
	if (f->sfd >= 0)
		close(f->sfd);
	if (f->tfd >= 0)
		close(f->tfd);
	free(f->t);
}

/* Open `path` and its state "<hash><suffix>"; a replaced or shrunk file
 * starts again from offset 0. 0 / -1. */
static int tfile_open(const struct hook_conf *c, const char *path, const char *suffix, struct tfile *f)
{
	char dir[HOOK_DIR_MAX + 16], sp[PATH_MAX];
	char *sbuf = NULL;
	struct stat ss;
	f->sfd = f->tfd = -1;
	f->t = NULL;
	snprintf(dir, sizeof dir, "%s/transcripts", c->state_dir);
	if (mkdir(dir, 0700) && errno != EEXIST) {
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s", dir);
		for (char *s = p + 1; *s; s++)
			if (*s == '/') {
				*s = 0;
				mkdir(p, 0700);
				*s = '/';
			}
		mkdir(p, 0700);
	}
	snprintf(sp, sizeof sp, "%s/%016llx%s", dir, (unsigned long long)hook_hash(path, strlen(path), 0), suffix);
	f->tfd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->tfd < 0)
		return -1;
	f->sfd = open(sp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f->sfd < 0 || lock_within(f->sfd, 200)) {
		hook_warn(c, "transcript state %s: %s", sp, f->sfd < 0 ? strerror(errno) : "locked");
		goto fail;
	}
	f->t = calloc(1, sizeof *f->t);
	if (!f->t || fstat(f->tfd, &f->st) || fstat(f->sfd, &ss))
		goto fail;
	sbuf = calloc(1, (size_t)ss.st_size + 1);
	if (sbuf && ss.st_size > 0 && pread(f->sfd, sbuf, (size_t)ss.st_size, 0) == ss.st_size)
		parse_state(sbuf, f->t);
	free(sbuf);
	if (f->t->dev != (unsigned long long)f->st.st_dev || f->t->ino != (unsigned long long)f->st.st_ino ||
	    f->t->offset > f->st.st_size) {
		memset(f->t, 0, sizeof *f->t); /* a new or rewritten transcript */
		f->t->dev = f->st.st_dev;
		f->t->ino = f->st.st_ino;
	}
	return 0;
fail:
	tfile_close(f);
	return -1;
}

static int tfile_save(struct tfile *f)
{
	const struct tstate *t = f->t;
	size_t cap = 64 + t->seen.n * 18;
	char *out = malloc(cap);
	int rc = -1;
	if (!out)
		return -1;
	size_t o = (size_t)snprintf(out, cap, "v1 %lld %llu %llu\n", t->offset, t->dev, t->ino);
	/* oldest first, so the ring refills in the same order */
	for (size_t i = 0; i < t->seen.n; i++) {
		size_t k = t->seen.n < HOOK_SEEN_MAX ? i : (t->seen.next + i) % HOOK_SEEN_MAX;
		o += (size_t)snprintf(out + o, cap - o, "%016" PRIx64 "\n", t->seen.h[k]);
	}
	if (ftruncate(f->sfd, 0) == 0 && pwrite(f->sfd, out, o, 0) == (ssize_t)o)
		rc = 0;
	free(out);
	return rc;
}

static char *read_from(struct tfile *f, size_t *n)
{
	long long avail = f->st.st_size - f->t->offset;
	*n = 0;
	if (avail <= 0)
		return NULL;
	if (avail > MAX_READ)
		avail = MAX_READ;
	char *buf = malloc((size_t)avail);
	ssize_t r = buf ? pread(f->tfd, buf, (size_t)avail, f->t->offset) : -1;
	if (r <= 0) {
		free(buf);
		return NULL;
	}
	*n = (size_t)r;
	return buf;
}

int transcript_usage(const struct hook_conf *c, const char *path, struct hook_usage *u)
{
	struct tfile f;
	if (tfile_open(c, path, ".state", &f))
		return -1;
	size_t n;
	char *buf = read_from(&f, &n);
	if (buf)
		f.t->offset += (long long)hook_transcript_scan(buf, n, &f.t->seen, u);
	free(buf);
	int rc = tfile_save(&f);
	tfile_close(&f);
	return rc;
}

#define MSG_BATCH 2000              /* the collector's limit per request */
#define MSG_BYTES (3 << 20)         /* below its 4 MiB body limit */
#define MSG_TEXT (64 * 1024)

int transcript_forward(const struct hook_conf *c, const char *path, const char *session_id,
                       const char *agent_id, long *sent)
{
	struct tfile f;
	char err[256];
	int rc = 0, status;
	*sent = 0;
	if (!session_id || tfile_open(c, path, ".sent", &f))
		return -1;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		size_t n;
		char *buf = read_from(&f, &n);
		if (!buf)
			break;
		struct hook_seen seen = f.t->seen; /* kept only if the collector takes the batch */
		cJSON *body = cJSON_CreateObject();
		cJSON_AddStringToObject(body, "session_id", session_id);
		if (agent_id)
			cJSON_AddStringToObject(body, "agent_id", agent_id);
		else
			cJSON_AddNullToObject(body, "agent_id");
		cJSON_AddStringToObject(body, "transcript_path", path);
		cJSON *msgs = cJSON_AddArrayToObject(body, "messages");
		size_t used = hook_transcript_messages(buf, n, &seen, MSG_BATCH, MSG_BYTES, MSG_TEXT, msgs);
		free(buf);
		int count = cJSON_GetArraySize(msgs);
		enum send_result r = SEND_OK;
		if (count > 0) {
			char *text = cJSON_PrintUnformatted(body);
			r = text ? send_post(c, "/transcripts", "application/json", text, strlen(text), c->timeout_ms,
			                     &status, err, sizeof err)
			         : SEND_RETRY;
			cJSON_free(text);
		}
		cJSON_Delete(body);
		if (r == SEND_RETRY) {
			rc = -1; /* read again from the same offset next time */
			break;
		}
		if (r == SEND_REJECTED)
			hook_warn(c, "collector refused %d transcript messages (%s): skipped", count, err);
		else
			*sent += count;
		f.t->offset += (long long)used;
		f.t->seen = seen;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (used == 0 || (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > c->flush_ms)
			break;
	}
	if (tfile_save(&f))
		rc = -1;
	tfile_close(&f);
	return rc;
}
