/* spool.c -- delivery with a bounded on-disk spool.
 *
 * When the collector cannot be reached, an event goes into the spool
 * directory as one file, <ns since epoch>-<pid>-<n>-<bytes>.json (names sort
 * oldest first; the size in the name spares a stat per file), written to a
 * temporary name, synced and renamed (a crash leaves no half event). The
 * spool is bounded in files and bytes; when full, the oldest events are
 * dropped (with a warning).
 *
 * A hook that finds the spool non-empty takes the flush lock (flock on
 * <spool>/.lock, never waited for: a hook must not stall the agent) and
 * sends the spooled events oldest first (the oldest alone first: a cheap
 * probe while the collector is still down), then as NDJSON batches, the
 * current event last; each file is deleted only after the collector
 * acknowledged it.
 * Events keep their id and timestamp, so a batch re-sent after a lost answer
 * is stored once (the processor de-duplicates on the id). A hook that finds
 * the lock taken appends its event behind the others: the flusher re-reads
 * the directory until it is empty. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

#include "hook.h"
#include "ev.h"

#define BATCH_BYTES (512 * 1024) /* below the collector's 1 MiB body limit */
#define BATCH_EVENTS 500

static int is_event_file(const char *name)
{
	size_t n = strlen(name);
	return name[0] != '.' && n > 5 && !strcmp(name + n - 5, ".json");
}

static int mkdirs(const char *path)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0700) && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return mkdir(p, 0700) && errno != EEXIST ? -1 : 0;
}

/* ---------- listing ---------- */

struct entry {
	char name[64];
	long long size;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* Size from a name "<ns>-<pid>-<n>-<bytes>.json" (0 when absent). */
static long long size_of_name(const char *name)
{
	const char *dot = strrchr(name, '.'), *dash = dot ? memrchr(name, '-', (size_t)(dot - name)) : NULL;
	return dash ? strtoll(dash + 1, NULL, 10) : 0;
}

/* Event files, oldest first; *total_bytes (may be NULL) sums their sizes. */
static struct entry *list_spool(const char *dir, size_t *n, long long *total_bytes)
{
	DIR *d = opendir(dir);
	struct entry *v = NULL;
	size_t cap = 0;
	*n = 0;
	if (total_bytes)
		*total_bytes = 0;
	if (!d)
		return NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!is_event_file(de->d_name) || strlen(de->d_name) >= sizeof v->name)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			struct entry *nv = realloc(v, cap * sizeof *v);
			if (!nv)
				break;
			v = nv;
		}
		snprintf(v[*n].name, sizeof v->name, "%s", de->d_name);
		v[*n].size = size_of_name(de->d_name);
		if (total_bytes)
			*total_bytes += v[*n].size;
		(*n)++;
	}
	closedir(d);
	if (*n > 1)
		qsort(v, *n, sizeof *v, by_name);
	return v;
}

long spool_count(const struct hook_conf *c)
{
	size_t n;
	free(list_spool(c->spool_dir, &n, NULL));
	return (long)n;
}

/* Any event waiting? Stops at the first one (cheap on the hot path). */
static int spool_pending(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *de;
	int found = 0;
	while (!found && (de = readdir(d)))
		found = is_event_file(de->d_name);
	closedir(d);
	return found;
}

/* ---------- append ---------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int spool_append(const struct hook_conf *c, const char *ev, size_t len)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	static unsigned seq;
	if ((long long)len > c->spool_max_bytes) {
		hook_warn(c, "event of %zu bytes is larger than the spool (%lld bytes): dropped", len,
		          c->spool_max_bytes);
		return -1;
	}
	if (mkdirs(c->spool_dir)) {
		hook_warn(c, "cannot create spool directory %s: %s", c->spool_dir, strerror(errno));
		return -1;
	}
	/* bound: drop the oldest events until this one fits */
	size_t n;
	long long bytes;
	struct entry *v = list_spool(c->spool_dir, &n, &bytes);
	size_t dropped = 0;
	for (size_t i = 0; i < n && ((long)(n - i) + 1 > c->spool_max_files ||
	                             bytes + (long long)len > c->spool_max_bytes); i++) {
		snprintf(path, sizeof path, "%s/%s", c->spool_dir, v[i].name);
		if (unlink(path) == 0) {
			bytes -= v[i].size;
			dropped++;
		}
	}
	free(v);
	if (dropped)
		hook_warn(c, "spool full (%ld events / %lld bytes): dropped the %zu oldest", c->spool_max_files,
		          c->spool_max_bytes, dropped);

	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	long long ns = (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
	snprintf(tmp, sizeof tmp, "%s/.tmp-%d-%u", c->spool_dir, (int)getpid(), seq);
	snprintf(path, sizeof path, "%s/%019lld-%07d-%03u-%zu.json", c->spool_dir, ns, (int)getpid(), seq++ % 1000,
	         len);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		hook_warn(c, "cannot write to the spool %s: %s", c->spool_dir, strerror(errno));
		return -1;
	}
	int bad = write_all(fd, ev, len) || fdatasync(fd);
	bad |= close(fd);
	if (bad || rename(tmp, path)) {
		hook_warn(c, "cannot write to the spool %s: %s", c->spool_dir, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* ---------- flush ---------- */

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *buf = NULL;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size < (1 << 24)) {
		buf = malloc((size_t)st.st_size + 1);
		ssize_t n = buf ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
		if (n != st.st_size) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = 0;
			*len = (size_t)n;
		}
	}
	close(fd);
	return buf;
}


static void unlink_entry(const struct hook_conf *c, const struct entry *e)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", c->spool_dir, e->name);
	unlink(path);
}

/* A batch was refused (400/413): send its events one at a time and drop
 * only those the collector refuses. 0 all handled, 1 collector gone. */
static int send_singly(const struct hook_conf *c, const struct entry *v, size_t n, const char *cur,
                       size_t curlen, int *cur_done)
{
	char err[256];
	int status;
	for (size_t i = 0; i <= n; i++) {
		size_t len = 0;
		char *ev;
		if (i == n) {
			if (!cur || *cur_done)
				break;
			ev = (char *)cur;
			len = curlen;
		} else {
			char path[PATH_MAX];
			snprintf(path, sizeof path, "%s/%s", c->spool_dir, v[i].name);
			ev = read_file(path, &len);
			if (!ev) {
				unlink_entry(c, &v[i]);
				continue;
			}
		}
		enum send_result r = send_post(c, "/events", "application/json", ev, len, c->timeout_ms,
		                               &status, err, sizeof err);
		if (i < n)
			free(ev);
		if (r == SEND_RETRY)
			return 1;
		if (r == SEND_REJECTED)
			hook_warn(c, "collector refused a %s event (%s): dropped", i < n ? "spooled" : "", err);
		if (i < n)
			unlink_entry(c, &v[i]);
		else
			*cur_done = 1;
	}
	return 0;
}

/* With the lock held: send the spool, oldest first, and `cur` (may be NULL)
 * last. 0: everything delivered (or refused); 1: stopped early (collector
 * unreachable or out of time) with *cur_done telling whether cur went. */
static int flush_locked(const struct hook_conf *c, const char *cur, size_t curlen, int *cur_done)
{
	long long deadline = ev_mono_ms() + c->flush_ms;
	char err[256];
	int status;
	*cur_done = 0;
	for (int first = 1;; first = 0) {
		size_t n;
		struct entry *v = list_spool(c->spool_dir, &n, NULL);
		if (n == 0) {
			free(v);
			if (!cur || *cur_done)
				return 0;
			enum send_result r = send_post(c, "/events", "application/json", cur, curlen,
			                               c->timeout_ms, &status, err, sizeof err);
			if (r == SEND_RETRY)
				return 1;
			if (r == SEND_REJECTED)
				hook_warn(c, "collector refused the event (%s): dropped", err);
			*cur_done = 1;
			return 0;
		}
		struct buf b = {0};
		size_t taken = 0;
		size_t max_take = first ? 1 : BATCH_EVENTS;
		for (; taken < n && taken < max_take && b.len < BATCH_BYTES; taken++) {
			char path[PATH_MAX];
			size_t len;
			snprintf(path, sizeof path, "%s/%s", c->spool_dir, v[taken].name);
			char *ev = read_file(path, &len);
			while (ev && len > 0 && (ev[len - 1] == '\n' || ev[len - 1] == '\r'))
				len--;
			if (!ev || len == 0 || ev[0] != '{' || memchr(ev, '\n', len)) {
				/* not an event this program wrote: set it aside */
				char bad[PATH_MAX];
				snprintf(bad, sizeof bad, "%s/.bad-%s", c->spool_dir, v[taken].name);
				rename(path, bad);
				free(ev);
				memmove(v + taken, v + taken + 1, (n - taken - 1) * sizeof *v);
				n--;
				taken--;
				continue;
			}
			buf_put_line(&b, ev, len);
			free(ev);
		}
		int with_cur = 0;
		if (taken == n && cur && !*cur_done && b.len + curlen < BATCH_BYTES * 2) {
			buf_put_line(&b, cur, curlen);
			with_cur = 1;
		}
		enum send_result r = b.len ? send_post(c, "/events", "application/x-ndjson", b.p, b.len,
		                                       c->timeout_ms, &status, err, sizeof err)
		                           : SEND_OK;
		free(b.p);
		if (r == SEND_OK) {
			for (size_t i = 0; i < taken; i++)
				unlink_entry(c, &v[i]);
			if (with_cur)
				*cur_done = 1;
		} else if (r == SEND_REJECTED) {
			int gone = send_singly(c, v, taken, with_cur ? cur : NULL, curlen, cur_done);
			if (gone) {
				free(v);
				return 1;
			}
		} else {
			free(v);
			return 1;
		}
		free(v);
		if (ev_mono_ms() > deadline)
			return spool_pending(c->spool_dir) || (cur && !*cur_done) ? 1 : 0;
	}
}

static int lock_spool(const struct hook_conf *c)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/.lock", c->spool_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		close(fd);
		return -1;
	}
	return fd;
}

int spool_deliver(const struct hook_conf *c, const char *ev, size_t len)
{
	char err[256];
	int status;
	if (!spool_pending(c->spool_dir)) {
		enum send_result r = send_post(c, "/events", "application/json", ev, len, c->timeout_ms,
		                               &status, err, sizeof err);
		if (r == SEND_OK)
			return 0;
		if (r == SEND_REJECTED) {
			hook_warn(c, "collector refused the event (%s): dropped", err);
			return -1;
		}
		if (spool_append(c, ev, len))
			return -1;
		hook_warn(c, "collector unreachable (%s): event spooled in %s", err, c->spool_dir);
		return 1;
	}
	int lk = lock_spool(c);
	if (lk < 0) {
		/* another hook is flushing: queue behind the spooled events */
		if (spool_append(c, ev, len))
			return -1;
		lk = lock_spool(c);
		if (lk < 0)
			return 1;
		ev = NULL; /* it is in the spool now */
	}
	int cur_done = 0;
	int stopped = flush_locked(c, ev, len, &cur_done);
	int rc = 0;
	if (ev && !cur_done) {
		rc = spool_append(c, ev, len) ? -1 : 1;
	} else if (!ev) {
		rc = stopped ? 1 : 0;
	}
	close(lk);
	return rc;
}

long spool_flush_only(const struct hook_conf *c)
{
	if (!spool_pending(c->spool_dir))
		return 0;
	int lk = lock_spool(c);
	if (lk < 0)
		return spool_count(c);
	int cur_done;
	flush_locked(c, NULL, 0, &cur_done);
	close(lk);
	return spool_count(c);
}
