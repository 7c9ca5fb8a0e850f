/* fanout_floor.c -- the floor of loopback-TCP fan-out on this machine, with no
 * streamer code: the peer of stream_bench.py's 1,000-client figures (make bench,
 * peer_bench.py). A forked client process reads every socket in epoll; server
 * threads send each socket what is pending for it as one WebSocket frame.
 * Everything is allocated once at start and freed by exit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/* The parent makes N loopback TCP connections (TCP_NODELAY on both ends) and
 * forks: the child holds the connect ends in epoll (like tests/bench/ws_load.c),
 * the parent the accepted ends (like the streamer). Event k is due at
 * t0 + k/rate and stamped with that CLOCK_MONOTONIC time, a producer that is
 * never late. Each pass sends every socket everything pending for it as ONE
 * text frame (several events: "[e1,e2,...]", coalesced as the streamer does),
 * then sleeps until the next event is due. The client takes receive time -
 * stamp for every event at every socket.
 *
 *   fanout_floor [--clients 1000] [--rate 1000] [--seconds 10]
 *     [--sthreads 1] [--cthreads 1] [--mode send|dontwait|writev|sendmsg]
 *     [--size 200] [--batch-us U] (start a pass only every U us)
 *     [--pin] (server threads on cpu 0.., the client on the last cpu)
 */

enum { M_SEND, M_DONTWAIT, M_WRITEV, M_SENDMSG };
static const char *mode_names[] = {"send", "dontwait", "writev", "sendmsg"};

static int opt_clients = 1000, opt_rate = 1000, opt_seconds = 10, opt_sthreads = 1, opt_cthreads = 1;
static int opt_mode = M_SEND, opt_size = 200, opt_pin = 0;
static int64_t run_t0, run_period, run_batch; /* run_batch: ns between passes (0: as events come) */
static long long run_nev;
static char **run_msg;   /* event payloads */
static int *run_mlen;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double ru_s(const struct rusage *a, const struct rusage *b, int sys)
{
	const struct timeval *x = sys ? &a->ru_stime : &a->ru_utime, *y = sys ? &b->ru_stime : &b->ru_utime;
	return (double)(y->tv_sec - x->tv_sec) + (double)(y->tv_usec - x->tv_usec) / 1e6;
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof s, &s);
}

/* ---------------- histogram (10 us to 1 s, then 1 ms to 60 s) ---------------- */
#define FINE_US 10
#define FINE_MAX_US 1000000
#define NFINE (FINE_MAX_US / FINE_US)
#define NCOARSE 60000
struct hist {
	uint64_t fine[NFINE], coarse[NCOARSE], n, max_us;
};
static void hist_add(struct hist *h, int64_t us)
{
	if (us < 0)
		us = 0;
	if (us < FINE_MAX_US)
		h->fine[us / FINE_US]++;
	else {
		int64_t i = (us - FINE_MAX_US) / 1000;
		h->coarse[i >= NCOARSE ? NCOARSE - 1 : i]++;
	}
	h->n++;
	if ((uint64_t)us > h->max_us)
		h->max_us = (uint64_t)us;
}
static double hist_q(const struct hist *h, double q)
{
	uint64_t want = (uint64_t)(q * (double)h->n), acc = 0;
	if (!h->n)
		return -1;
	if (want >= h->n)
		want = h->n - 1;
	for (int i = 0; i < NFINE; i++)
		if ((acc += h->fine[i]) > want)
			return (i + 1) * FINE_US / 1000.0;
	for (int i = 0; i < NCOARSE; i++)
		if ((acc += h->coarse[i]) > want)
			return (FINE_MAX_US + (i + 1) * 1000) / 1000.0;
	return h->max_us / 1000.0;
}

/* ---------------- client ---------------- */
#define RBUF (256 * 1024)
struct cconn {
	int fd;
	long long got;
	size_t have;
	unsigned char *buf;
};
struct cworker {
	pthread_t th;
	int ep, idx;
	struct cconn *c;
	int n;
	struct hist *h;
	uint64_t recvs, frames, bytes;
	int64_t last_rx;
	uint32_t *wmax, *wover; /* per 100 ms of stamp: max lat us, deliveries > 10 ms */
};
static int run_nwin;
static atomic_int cdone;
static atomic_int cstop;

static void parse(struct cworker *w, struct cconn *c, int64_t t)
{
	static const char mark[] = "\"bt\":";
	size_t off = 0;
	for (;;) {
		unsigned char *f = c->buf + off;
		size_t avail = c->have - off, hl = 2;
		uint64_t len;
		if (avail < 2)
			break;
		len = f[1] & 0x7f;
		if (len == 126) {
			if (avail < 4)
				break;
			len = (uint64_t)f[2] << 8 | f[3];
			hl = 4;
		} else if (len == 127) {
			if (avail < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | f[2 + i];
			hl = 10;
		}
		if (avail < hl + len)
			break;
		w->frames++;
		const unsigned char *p = f + hl, *end = p + len;
		while ((p = memmem(p, (size_t)(end - p), mark, sizeof mark - 1))) {
			p += sizeof mark - 1;
			int64_t v = 0;
			while (p < end && *p >= '0' && *p <= '9')
				v = v * 10 + (*p++ - '0');
			int64_t lus = (t - v) / 1000;
			hist_add(w->h, lus);
			int wi = (int)((v - run_t0) / 100000000);
			if (wi >= 0 && wi < run_nwin) {
				if (lus > w->wmax[wi])
					w->wmax[wi] = (uint32_t)lus;
				if (lus > 10000)
					w->wover[wi]++;
			}
			if (++c->got == run_nev)
				atomic_fetch_add(&cdone, 1);
		}
		off += hl + len;
	}
	if (off) {
		memmove(c->buf, c->buf + off, c->have - off);
		c->have -= off;
	}
}

static void *cworker_main(void *arg)
{
	struct cworker *w = arg;
	struct epoll_event evs[256];
	prctl(PR_SET_NAME, "floor-client");
	if (opt_pin)
		pin((int)sysconf(_SC_NPROCESSORS_ONLN) - 1 - w->idx);
	while (!atomic_load(&cstop)) {
		int n = epoll_wait(w->ep, evs, 256, 50);
		for (int i = 0; i < n; i++) {
			struct cconn *c = evs[i].data.ptr;
			ssize_t r = recv(c->fd, c->buf + c->have, RBUF - c->have, 0);
			int64_t t = now_ns();
			w->recvs++;
			if (r <= 0) {
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
				continue;
			}
			w->bytes += (uint64_t)r;
			w->last_rx = t;
			c->have += (size_t)r;
			parse(w, c, t);
		}
	}
	return NULL;
}

static int client_main(int *fds, int rfd)
{
	struct cworker *ws = calloc((size_t)opt_cthreads, sizeof *ws);
	struct cconn *cs = calloc((size_t)opt_clients, sizeof *cs);
	for (int t = 0; t < opt_cthreads; t++) {
		ws[t].ep = epoll_create1(0);
		ws[t].idx = t;
		ws[t].h = calloc(1, sizeof(struct hist));
		ws[t].wmax = calloc((size_t)run_nwin, 4);
		ws[t].wover = calloc((size_t)run_nwin, 4);
	}
	for (int i = 0; i < opt_clients; i++) {
		cs[i].fd = fds[i];
		cs[i].buf = malloc(RBUF);
		fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
		epoll_ctl(ws[i % opt_cthreads].ep, EPOLL_CTL_ADD, fds[i], &ev);
	}
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	for (int t = 0; t < opt_cthreads; t++)
		pthread_create(&ws[t].th, NULL, cworker_main, &ws[t]);
	int64_t deadline = run_t0 + (int64_t)opt_seconds * 1000000000 + 30000000000LL;
	while (atomic_load(&cdone) < opt_clients && now_ns() < deadline)
		usleep(2000);
	atomic_store(&cstop, 1);
	struct hist *h = calloc(1, sizeof *h);
	uint64_t recvs = 0, frames = 0, bytes = 0;
	int64_t last = 0;
	for (int t = 0; t < opt_cthreads; t++) {
		pthread_join(ws[t].th, NULL);
		for (int i = 0; i < NFINE; i++)
			h->fine[i] += ws[t].h->fine[i];
		for (int i = 0; i < NCOARSE; i++)
			h->coarse[i] += ws[t].h->coarse[i];
		h->n += ws[t].h->n;
		if (ws[t].h->max_us > h->max_us)
			h->max_us = ws[t].h->max_us;
		recvs += ws[t].recvs;
		frames += ws[t].frames;
		bytes += ws[t].bytes;
		if (ws[t].last_rx > last)
			last = ws[t].last_rx;
	}
	getrusage(RUSAGE_SELF, &r1);
	long long missing = 0;
	for (int i = 0; i < opt_clients; i++)
		missing += run_nev - cs[i].got;
	double u = ru_s(&r0, &r1, 0), s = ru_s(&r0, &r1, 1), wall = (double)(last - run_t0) / 1e9;
	char out[16384];
	int n = snprintf(out, sizeof out,
	                 "  lat ms p50 %.2f p95 %.2f p99 %.2f p99.9 %.2f max %.2f  (n %llu, missing %lld)\n"
	                 "  client: recv %llu (%.0f/s), frames %llu, %.2f ev/frame, CPU user %.2fs sys %.2fs = %.0f%% "
	                 "of a core; %.2f us CPU/recv, %.3f us CPU/delivery\n",
	                 hist_q(h, .5), hist_q(h, .95), hist_q(h, .99), hist_q(h, .999), h->max_us / 1000.0,
	                 (unsigned long long)h->n, missing, (unsigned long long)recvs, recvs / wall,
	                 (unsigned long long)frames, frames ? (double)h->n / frames : 0, u, s, 100 * (u + s) / wall,
	                 1e6 * (u + s) / recvs, 1e6 * (u + s) / h->n);
	if (getenv("FLOOR_SERIES")) { /* per 100 ms of stamp: max lat ms / % deliveries > 10 ms */
		n += snprintf(out + n, sizeof out - (size_t)n, "  series (max ms/%%>10ms per 100 ms):");
		for (int i = 0; i < run_nwin && n < (int)sizeof out - 40; i++) {
			uint32_t m = 0, o = 0;
			for (int t = 0; t < opt_cthreads; t++) {
				if (ws[t].wmax[i] > m)
					m = ws[t].wmax[i];
				o += ws[t].wover[i];
			}
			n += snprintf(out + n, sizeof out - (size_t)n, " %.0f/%.0f", m / 1000.0,
			              100.0 * o / (opt_clients * (opt_rate / 10.0)));
		}
		n += snprintf(out + n, sizeof out - (size_t)n, "\n");
	}
	if (write(rfd, out, (size_t)n) < 0)
		return 1;
	return 0;
}

/* ---------------- server ---------------- */
struct sconn {
	int fd;
	long long nx;   /* next event to send */
	char *pend;     /* unsent tail of a partial write */
	size_t plen, poff;
};
struct sworker {
	pthread_t th;
	int idx;
	struct sconn *c;
	int n;
	char *buf;
	size_t cap;
	uint64_t sends, events, partial, eagain, passes;
	int64_t pass_max, pass_sum;
	struct rusage r0, r1; /* RUSAGE_THREAD */
};

static size_t hdr(unsigned char *h, size_t len)
{
	h[0] = 0x81;
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}

/* Send one frame; returns bytes written or -1 (EAGAIN => 0). */
static ssize_t send_frame(struct sworker *w, int fd, unsigned char *h, size_t hl, const char *p, size_t len,
                          int contiguous)
{
	ssize_t r;
	switch (opt_mode) {
	case M_SEND:
	case M_DONTWAIT:
		r = send(fd, h, hl + len, MSG_NOSIGNAL | (opt_mode == M_DONTWAIT ? MSG_DONTWAIT : 0));
		break;
	case M_WRITEV: {
		struct iovec iv[2] = {{h, hl}, {(void *)p, len}};
		r = contiguous ? send(fd, h, hl + len, MSG_NOSIGNAL | MSG_DONTWAIT) : writev(fd, iv, 2);
		break;
	}
	default: {
		struct iovec iv[2] = {{h, hl}, {(void *)p, len}};
		struct msghdr m = {.msg_iov = iv, .msg_iovlen = 2};
		r = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		break;
	}
	}
	w->sends++;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		w->eagain++;
		return 0;
	}
	return r;
}

static void *sworker_main(void *arg)
{
	struct sworker *w = arg;
	prctl(PR_SET_NAME, "floor-server");
	if (opt_pin)
		pin(w->idx);
	getrusage(RUSAGE_THREAD, &w->r0);
	w->cap = 1 << 20;
	w->buf = malloc(w->cap);
	/* writev/sendmsg modes use nonblocking sockets (like lws); send mode blocking */
	for (;;) {
		int64_t now = now_ns();
		long long due = now < run_t0 ? 0 : (now - run_t0) / run_period + 1;
		if (due > run_nev)
			due = run_nev;
		int pending = 0;
		int64_t ps = now;
		int didsome = 0;
		for (int i = 0; i < w->n; i++) {
			struct sconn *c = &w->c[i];
			if (c->plen) { /* flush a partial write first */
				ssize_t r = send(c->fd, c->pend + c->poff, c->plen - c->poff, MSG_NOSIGNAL | MSG_DONTWAIT);
				w->sends++;
				if (r > 0)
					c->poff += (size_t)r;
				if (c->poff < c->plen) {
					pending = 1;
					continue;
				}
				c->plen = c->poff = 0;
			}
			if (c->nx >= due)
				continue;
			long long k = due - c->nx;
			didsome = 1;
			unsigned char *h = (unsigned char *)w->buf;
			const char *p;
			size_t len, hl;
			int contig;
			if (k == 1) {
				len = (size_t)run_mlen[c->nx];
				if (opt_mode == M_SEND || opt_mode == M_DONTWAIT) { /* one buffer, like lws's LWS_PRE */
					hl = hdr(h, len);
					memcpy(h + hl, run_msg[c->nx], len);
					p = (char *)h + hl;
					contig = 1;
				} else {
					hl = hdr(h, len);
					p = run_msg[c->nx];
					contig = 0;
				}
			} else {
				len = 2;
				for (long long e = c->nx; e < due; e++)
					len += (size_t)run_mlen[e] + 1;
				len--;
				hl = hdr(h, len);
				char *q = (char *)h + hl;
				*q++ = '[';
				for (long long e = c->nx; e < due; e++) {
					if (e > c->nx)
						*q++ = ',';
					memcpy(q, run_msg[e], (size_t)run_mlen[e]);
					q += run_mlen[e];
				}
				*q++ = ']';
				p = (char *)h + hl;
				contig = 1;
			}
			ssize_t r = send_frame(w, c->fd, h, hl, p, len, contig);
			if (r < 0) {
				perror("send");
				exit(1);
			}
			w->events += (uint64_t)k;
			c->nx = due;
			if ((size_t)r < hl + len) { /* keep the rest */
				size_t rest = hl + len - (size_t)r;
				w->partial++;
				c->pend = realloc(c->pend, rest);
				if ((size_t)r < hl) {
					memcpy(c->pend, h + r, hl - (size_t)r);
					memcpy(c->pend + hl - (size_t)r, p, len);
				} else
					memcpy(c->pend, p + (r - (ssize_t)hl), rest);
				c->plen = rest;
				c->poff = 0;
				pending = 1;
			}
		}
		if (didsome) {
			int64_t d = now_ns() - ps;
			w->passes++;
			w->pass_sum += d;
			if (d > w->pass_max)
				w->pass_max = d;
		}
		if (due >= run_nev && !pending) {
			int all = 1;
			for (int i = 0; i < w->n; i++)
				all &= w->c[i].nx >= run_nev && !w->c[i].plen;
			if (all)
				break;
		}
		if (pending)
			continue;
		/* sleep until the next event is due (if it is not already) */
		int64_t next = run_t0 + due * run_period;
		if (run_batch) {
			int64_t t = now_ns() - run_t0;
			next = run_t0 + (t < 0 ? 0 : (t / run_batch + 1) * run_batch);
		}
		if (now_ns() < next) {
			struct timespec ts = {next / 1000000000, next % 1000000000};
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		}
	}
	getrusage(RUSAGE_THREAD, &w->r1);
	return NULL;
}

static long long busy_ticks; /* set by steal_ticks(): user+nice+system+irq+softirq+steal */
static long long steal_ticks(void)
{
	long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	if (!f || fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
	                 &v[6], &v[7]) != 8)
		v[7] = 0;
	if (f)
		fclose(f);
	busy_ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	return v[7];
}

static void usage(void)
{
	fprintf(stderr, "usage: fanout_floor [--clients N] [--rate R] [--seconds S] [--sthreads T] [--cthreads T] "
	                "[--mode send|dontwait|writev|sendmsg] [--size B] [--pin]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--pin")) {
			opt_pin = 1;
			continue;
		}
		const char *v = i + 1 < argc ? argv[++i] : NULL;
		if (!v)
			usage();
		if (!strcmp(a, "--clients"))
			opt_clients = atoi(v);
		else if (!strcmp(a, "--rate"))
			opt_rate = atoi(v);
		else if (!strcmp(a, "--seconds"))
			opt_seconds = atoi(v);
		else if (!strcmp(a, "--sthreads"))
			opt_sthreads = atoi(v);
		else if (!strcmp(a, "--cthreads"))
			opt_cthreads = atoi(v);
		else if (!strcmp(a, "--batch-us"))
			run_batch = atoll(v) * 1000;
		else if (!strcmp(a, "--size"))
			opt_size = atoi(v);
		else if (!strcmp(a, "--mode")) {
			opt_mode = -1;
			for (int m = 0; m < 4; m++)
				if (!strcmp(v, mode_names[m]))
					opt_mode = m;
			if (opt_mode < 0)
				usage();
		} else
			usage();
	}
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);

	/* connections */
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof a;
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096) ||
	    getsockname(ls, (struct sockaddr *)&a, &al)) {
		perror("listen");
		return 1;
	}
	int *cfd = malloc(sizeof(int) * (size_t)opt_clients), *sfd = malloc(sizeof(int) * (size_t)opt_clients);
	for (int i = 0; i < opt_clients; i++) {
		cfd[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(cfd[i], (struct sockaddr *)&a, sizeof a)) {
			perror("connect");
			return 1;
		}
		sfd[i] = accept(ls, NULL, NULL);
		if (sfd[i] < 0) {
			perror("accept");
			return 1;
		}
		setsockopt(cfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		setsockopt(sfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (opt_mode != M_SEND)
			fcntl(sfd[i], F_SETFL, fcntl(sfd[i], F_GETFL) | O_NONBLOCK);
	}
	close(ls);

	/* events: stamped with their due time */
	run_nev = (long long)opt_rate * opt_seconds;
	run_nwin = opt_seconds * 10;
	run_period = 1000000000LL / opt_rate;
	run_t0 = now_ns() + 300000000; /* 300 ms to get going */
	run_msg = malloc(sizeof(char *) * (size_t)run_nev);
	run_mlen = malloc(sizeof(int) * (size_t)run_nev);
	for (long long k = 0; k < run_nev; k++) {
		char tmp[4096];
		int n = snprintf(tmp, sizeof tmp,
		                 "{\"id\":\"f-%lld\",\"event_type\":\"PostToolUse\",\"session_id\":\"f-s%lld\","
		                 "\"tool\":\"Bash\",\"status\":\"success\",\"payload\":{\"command\":\"make test\",\"pad\":\"",
		                 k, k % 100);
		int tail = snprintf(NULL, 0, "\"},\"bt\":%lld}", (long long)(run_t0 + k * run_period));
		while (n + tail < opt_size && n < (int)sizeof tmp - 64)
			tmp[n++] = 'x';
		n += snprintf(tmp + n, sizeof tmp - (size_t)n, "\"},\"bt\":%lld}", (long long)(run_t0 + k * run_period));
		run_msg[k] = malloc((size_t)n);
		memcpy(run_msg[k], tmp, (size_t)n);
		run_mlen[k] = n;
	}

	int pp[2];
	if (pipe(pp))
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		close(pp[0]);
		for (int i = 0; i < opt_clients; i++)
			close(sfd[i]);
		return client_main(cfd, pp[1]);
	}
	close(pp[1]);
	for (int i = 0; i < opt_clients; i++)
		close(cfd[i]);

	struct sworker *ws = calloc((size_t)opt_sthreads, sizeof *ws);
	struct sconn *sc = calloc((size_t)opt_clients, sizeof *sc);
	for (int t = 0; t < opt_sthreads; t++) {
		ws[t].idx = t;
		ws[t].c = sc + (size_t)opt_clients * t / opt_sthreads;
		ws[t].n = (int)((size_t)opt_clients * (t + 1) / opt_sthreads - (size_t)opt_clients * t / opt_sthreads);
	}
	for (int i = 0; i < opt_clients; i++)
		sc[i].fd = sfd[i];
	struct rusage r0, r1;
	long long st0 = steal_ticks(), b0 = busy_ticks;
	getrusage(RUSAGE_SELF, &r0);
	for (int t = 0; t < opt_sthreads; t++)
		pthread_create(&ws[t].th, NULL, sworker_main, &ws[t]);
	for (int t = 0; t < opt_sthreads; t++)
		pthread_join(ws[t].th, NULL);
	int64_t tend = now_ns();
	getrusage(RUSAGE_SELF, &r1);
	long long st1 = steal_ticks(), b1 = busy_ticks;
	char cout[16384];
	ssize_t cn = read(pp[0], cout, sizeof cout - 1);
	cout[cn > 0 ? cn : 0] = '\0';
	int st;
	waitpid(pid, &st, 0);

	uint64_t sends = 0, events = 0, partial = 0, eagain = 0, passes = 0;
	int64_t pmax = 0, psum = 0;
	for (int t = 0; t < opt_sthreads; t++) {
		sends += ws[t].sends;
		events += ws[t].events;
		partial += ws[t].partial;
		eagain += ws[t].eagain;
		passes += ws[t].passes;
		psum += ws[t].pass_sum;
		if (ws[t].pass_max > pmax)
			pmax = ws[t].pass_max;
	}
	double wall = (double)(tend - run_t0) / 1e9, u = ru_s(&r0, &r1, 0), s = ru_s(&r0, &r1, 1);
	printf("floor: %d clients, %d ev/s x %d s, %d B events, server threads %d (%s), client threads %d%s%s\n",
	       opt_clients, opt_rate, opt_seconds, run_mlen[0], opt_sthreads, mode_names[opt_mode], opt_cthreads,
	       opt_pin ? ", pinned" : "", run_batch ? ", batched" : "");
	if (run_batch)
		printf("  passes start every %.1f ms\n", run_batch / 1e6);
	printf("  server: %llu sends (%.0f/s), %.2f ev/send, %llu deliveries (%.0f/s), partial %llu, EAGAIN %llu;"
	       " passes %llu, pass avg %.2f ms max %.2f ms\n"
	       "  server: CPU user %.2fs sys %.2fs = %.0f%% of a core; %.2f us CPU/send, %.3f us CPU/delivery\n",
	       (unsigned long long)sends, sends / wall, (double)events / sends, (unsigned long long)events, events / wall,
	       (unsigned long long)partial, (unsigned long long)eagain, (unsigned long long)passes,
	       passes ? psum / 1e6 / passes : 0, pmax / 1e6, u, s, 100 * (u + s) / wall, 1e6 * (u + s) / sends,
	       1e6 * (u + s) / events);
	(void)b0, (void)b1; /* /proc/stat busy ticks under-count on this VM; rusage agrees with pass wall times */
	printf("  machine: steal %.2f cpu-s during the run\n", (double)(st1 - st0) / (double)sysconf(_SC_CLK_TCK));
	fputs(cout, stdout);
	return 0;
}
