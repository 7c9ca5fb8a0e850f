/* transcript.c -- token usage from a transcript JSONL, incrementally.
 *
 * Per transcript file, <state>/transcripts/<hash of path>.state keeps the
 * byte offset read so far, the file's device and inode (a replaced or
 * truncated file is read again from the start) and the hashes of the last
 * API responses counted (message.id + requestId; one response spans several
 * lines, possibly written on both sides of a Stop). Only complete lines are
 * consumed. The state file is locked while in use. */
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

int transcript_usage(const struct hook_conf *c, const char *path, struct hook_usage *u)
{
	char dir[HOOK_DIR_MAX + 16], sp[PATH_MAX];
	int rc = -1, sfd = -1, tfd = -1;
	char *buf = NULL, *sbuf = NULL;
	snprintf(dir, sizeof dir, "%s/transcripts", c->state_dir);
	if (mkdir(c->state_dir, 0700) && errno != EEXIST) {
		/* parents may be missing too */
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s", c->state_dir);
		for (char *s = p + 1; *s; s++)
			if (*s == '/') {
				*s = 0;
				mkdir(p, 0700);
				*s = '/';
			}
		mkdir(p, 0700);
	}
	mkdir(dir, 0700);
	snprintf(sp, sizeof sp, "%s/%016llx.state", dir,
	         (unsigned long long)hook_hash(path, strlen(path), 0));
	tfd = open(path, O_RDONLY | O_CLOEXEC);
	if (tfd < 0)
		return -1;
	sfd = open(sp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (sfd < 0 || lock_within(sfd, 200)) {
		hook_warn(c, "transcript state %s: %s", sp, sfd < 0 ? strerror(errno) : "locked");
		goto out;
	}
	struct stat st, ss;
	if (fstat(tfd, &st) || fstat(sfd, &ss))
		goto out;
	struct tstate *t = calloc(1, sizeof *t);
	if (!t)
		goto out;
	sbuf = calloc(1, (size_t)ss.st_size + 1);
	if (sbuf && ss.st_size > 0 && pread(sfd, sbuf, (size_t)ss.st_size, 0) == ss.st_size)
		parse_state(sbuf, t);
	if (t->dev != (unsigned long long)st.st_dev || t->ino != (unsigned long long)st.st_ino ||
	    t->offset > st.st_size) {
		memset(t, 0, sizeof *t); /* a new or rewritten transcript */
		t->dev = st.st_dev;
		t->ino = st.st_ino;
	}
	long long avail = st.st_size - t->offset;
	if (avail > MAX_READ)
		avail = MAX_READ;
	if (avail > 0) {
		buf = malloc((size_t)avail);
		ssize_t n = buf ? pread(tfd, buf, (size_t)avail, t->offset) : -1;
		if (n > 0)
			t->offset += (long long)hook_transcript_scan(buf, (size_t)n, &t->seen, u);
	}
	/* write the state back */
	size_t cap = 64 + t->seen.n * 18;
	char *out = malloc(cap);
	if (out) {
		size_t o = (size_t)snprintf(out, cap, "v1 %lld %llu %llu\n", t->offset, t->dev, t->ino);
		/* oldest first, so the ring refills in the same order */
		for (size_t i = 0; i < t->seen.n; i++) {
			size_t k = t->seen.n < HOOK_SEEN_MAX ? i : (t->seen.next + i) % HOOK_SEEN_MAX;
			o += (size_t)snprintf(out + o, cap - o, "%016" PRIx64 "\n", t->seen.h[k]);
		}
		if (ftruncate(sfd, 0) == 0 && pwrite(sfd, out, o, 0) == (ssize_t)o)
			rc = 0;
		free(out);
	}
	free(t);
out:
	free(buf);
	free(sbuf);
	if (sfd >= 0)
		close(sfd);
	if (tfd >= 0)
		close(tfd);
	return rc;
}
