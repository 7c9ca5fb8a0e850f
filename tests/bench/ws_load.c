/* ws_load.c -- load client for the streamer benchmark (tests/bench/stream_bench.py).
 * One process: a producer thread XADDs events into the stream at a fixed
 * rate, each stamped with its CLOCK_REALTIME send time in microseconds
 * ("bt"); worker threads hold many WebSocket clients on epoll, read in big
 * chunks, and take lag = receive time - bt for every event every client
 * gets. Written in C so that the client, not the streamer, is never the
 * limit a Python client would be (1,000 clients x 1,000 events/s).
 * Memory: each connection owns its receive buffer; each worker its own
 * histograms, merged after the run. Prints one JSON object on stdout.
 *
 *   ws_load --port P --redis-port R [--filtered N] [--unfiltered M]
 *           [--rate 1000] [--seconds 10] [--sessions 100] [--threads 2]
 *           [--stream agent_events] [--tag T]
 * Filtered client i watches session "<tag>-s<i % sessions>"; event k
 * belongs to session k % sessions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define FINE_US 10            /* histogram resolution below FINE_MAX_US */
#define FINE_MAX_US 200000    /* 200 ms */
#define COARSE_US 1000        /* 1 ms buckets above that ... */
#define COARSE_MAX_US 60000000 /* ... up to 60 s */
#define NFINE (FINE_MAX_US / FINE_US)
#define NCOARSE ((COARSE_MAX_US - FINE_MAX_US) / COARSE_US + 1)
#define RBUF (256 * 1024)

struct hist {
	uint64_t fine[NFINE];
	uint64_t coarse[NCOARSE];
	uint64_t n, max_us;
};

struct conn {
	int fd;
	int filtered;
	int session;
	int closed;      /* close frame or EOF seen */
	int close_code;
	uint64_t got;    /* events received */
	uint64_t msgs;   /* text messages (frames) received */
	size_t have;
	unsigned char *buf;
};

struct worker {
	pthread_t th;
	int ep;
	struct conn **c;
	size_t n;
	struct hist h[2]; /* [0] filtered clients, [1] unfiltered */
	uint64_t recv_calls, bytes;
};

static struct {
	int port, redis_port, nfilt, nall, rate, seconds, sessions, nthreads;
	const char *stream, *tag;
	atomic_int stop;
	atomic_llong sent;
	long long *per_session; /* events sent per session (producer writes, read after join) */
} G = {.rate = 1000, .seconds = 10, .sessions = 100, .nthreads = 2, .stream = "agent_events",
       .tag = "bench"};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void hist_add(struct hist *h, int64_t us)
{
	if (us < 0)
		us = 0;
	if (us < FINE_MAX_US)
		h->fine[us / FINE_US]++;
	else
		h->coarse[us >= COARSE_MAX_US ? NCOARSE - 1 : (us - FINE_MAX_US) / COARSE_US]++;
	h->n++;
	if ((uint64_t)us > h->max_us)
		h->max_us = (uint64_t)us;
}

static void hist_merge(struct hist *a, const struct hist *b)
{
	for (int i = 0; i < NFINE; i++)
		a->fine[i] += b->fine[i];
	for (int i = 0; i < NCOARSE; i++)
		a->coarse[i] += b->coarse[i];
	a->n += b->n;
	if (b->max_us > a->max_us)
		a->max_us = b->max_us;
}

/* Upper edge of the bucket holding quantile q, in ms. */
static double hist_q(const struct hist *h, double q)
{
	if (!h->n)
		return -1;
	uint64_t want = (uint64_t)(q * (double)h->n), acc = 0;
	if (want >= h->n)
		want = h->n - 1;
	for (int i = 0; i < NFINE; i++)
		if ((acc += h->fine[i]) > want)
			return (double)((i + 1) * FINE_US) / 1000.0;
	for (int i = 0; i < NCOARSE; i++)
		if ((acc += h->coarse[i]) > want)
			return (double)(FINE_MAX_US + (i + 1) * COARSE_US) / 1000.0;
	return (double)h->max_us / 1000.0;
}

/* ------------------------------------------------------------------------ */
/* WebSocket client */

static int ws_connect(struct conn *c, int idx)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.port)};
	char req[512], resp[4096];
	size_t got = 0;
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a)) {
		fprintf(stderr, "ws_load: connect %d: %s\n", idx, strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	char path[128];
	if (c->filtered)
		snprintf(path, sizeof path, "/stream?filter=session:%s-s%d", G.tag, c->session);
	else
		snprintf(path, sizeof path, "/stream");
	int n = snprintf(req, sizeof req,
	                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
	                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	                 "Sec-WebSocket-Version: 13\r\n\r\n",
	                 path, G.port);
	if (write(c->fd, req, (size_t)n) != n)
		return -1;
	char *end = NULL;
	while (!end) {
		ssize_t r = read(c->fd, resp + got, sizeof resp - 1 - got);
		if (r <= 0) {
			fprintf(stderr, "ws_load: handshake %d: %s\n", idx, r ? strerror(errno) : "EOF");
			return -1;
		}
		got += (size_t)r;
		resp[got] = '\0';
		end = strstr(resp, "\r\n\r\n");
		if (!end && got >= sizeof resp - 1)
			return -1;
	}
	if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
		fprintf(stderr, "ws_load: upgrade %d refused: %.80s\n", idx, resp);
		return -1;
	}
	c->buf = malloc(RBUF);
	if (!c->buf)
		return -1;
	end += 4;
	c->have = got - (size_t)(end - resp);
	memcpy(c->buf, end, c->have);
	return 0;
}

static void send_pong(struct conn *c, const unsigned char *p, size_t n)
{
	unsigned char f[2 + 4 + 125];
	if (n > 125)
		n = 125;
	f[0] = 0x8A;
	f[1] = (unsigned char)(0x80 | n);
	memset(f + 2, 0, 4); /* zero mask: payload unchanged */
	memcpy(f + 6, p, n);
	if (write(c->fd, f, 6 + n) < 0)
		return;
}

/* One text message: count and time every event in it. */
static void on_text(struct conn *c, struct hist *h, const unsigned char *p, size_t n, int64_t t)
{
	static const char mark[] = "\"bt\":";
	const unsigned char *end = p + n;
	c->msgs++;
	while ((p = memmem(p, (size_t)(end - p), mark, sizeof mark - 1))) {
		p += sizeof mark - 1;
		int64_t v = 0;
		while (p < end && *p >= '0' && *p <= '9')
			v = v * 10 + (*p++ - '0');
		hist_add(h, t - v);
		c->got++;
	}
}

/* Header length and payload length of the frame at p; 0 when the header
 * is incomplete. */
static size_t frame_head(const unsigned char *p, size_t avail, uint64_t *len)
{
	size_t hl = 2;
	if (avail < 2)
		return 0;
	*len = p[1] & 0x7f;
	if (*len == 126) {
		if (avail < 4)
			return 0;
		*len = (uint64_t)p[2] << 8 | p[3];
		hl = 4;
	} else if (*len == 127) {
		if (avail < 10)
			return 0;
		*len = 0;
		for (int i = 0; i < 8; i++)
			*len = *len << 8 | p[2 + i];
		hl = 10;
	}
	return p[1] & 0x80 ? hl + 4 : hl; /* a server never masks; skip a key anyway */
}

/* Bytes of the complete frame at p, 0 when incomplete. */
static size_t frame_size(const unsigned char *p, size_t avail)
{
	uint64_t len;
	size_t hl = frame_head(p, avail, &len);
	return hl && avail >= hl + len ? hl + (size_t)len : 0;
}

/* Parse every complete frame in c->buf. */
static void on_bytes(struct conn *c, struct hist *h, int64_t t)
{
	size_t off = 0;
	for (;;) {
		const unsigned char *f = c->buf + off;
		uint64_t len;
		size_t hl = frame_head(f, c->have - off, &len);
		if (!hl)
			break;
		if (hl + len > RBUF) {
			fprintf(stderr, "ws_load: frame of %llu bytes is over the buffer\n", (unsigned long long)len);
			c->closed = 1;
			return;
		}
		if (c->have - off < hl + len)
			break;
		int op = f[0] & 0x0f;
		if (op == 1 || op == 0)
			on_text(c, h, f + hl, (size_t)len, t);
		else if (op == 9)
			send_pong(c, f + hl, (size_t)len);
		else if (op == 8) {
			c->closed = 1;
			c->close_code = len >= 2 ? f[hl] << 8 | f[hl + 1] : 1005;
		}
		off += hl + (size_t)len;
	}
	if (off) {
		memmove(c->buf, c->buf + off, c->have - off);
		c->have -= off;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	while (!atomic_load(&G.stop)) {
		int n = epoll_wait(w->ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			ssize_t r = recv(c->fd, c->buf + c->have, RBUF - c->have, 0);
			int64_t t = now_us();
			w->recv_calls++;
			if (r <= 0) {
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				c->closed = 1;
				epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
				continue;
			}
			w->bytes += (uint64_t)r;
			c->have += (size_t)r;
			on_bytes(c, &w->h[!c->filtered], t);
			if (c->closed)
				epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Producer */

static void *producer_main(void *arg)
{
	(void)arg;
	redisContext *r = redisConnect("127.0.0.1", G.redis_port);
	if (!r || r->err) {
		fprintf(stderr, "ws_load: redis connect: %s\n", r ? r->errstr : "out of memory");
		atomic_store(&G.stop, 2);
		return NULL;
	}
	long long total = (long long)G.rate * G.seconds;
	int64_t t0 = now_us();
	char ev[512];
	for (long long k = 0; k < total && !atomic_load(&G.stop);) {
		/* send what is due; sleep until the next one */
		long long due = (now_us() - t0) * G.rate / 1000000 + 1;
		if (due > total)
			due = total;
		for (; k < due; k++) {
			int s = (int)(k % G.sessions);
			int n = snprintf(ev, sizeof ev,
			                 "{\"id\":\"%s-%lld\",\"event_type\":\"PostToolUse\",\"session_id\":\"%s-s%d\","
			                 "\"agent_id\":\"%s-a%d\",\"tool\":\"Bash\",\"status\":\"success\","
			                 "\"latency_ms\":12,\"timestamp\":\"2026-01-01T00:00:00.000Z\","
			                 "\"payload\":{\"command\":\"make test\",\"bt\":%lld}}",
			                 G.tag, k, G.tag, s, G.tag, s, (long long)now_us());
			redisReply *rep = redisCommand(r, "XADD %s * e %b", G.stream, ev, (size_t)n);
			if (!rep || rep->type == REDIS_REPLY_ERROR) {
				fprintf(stderr, "ws_load: XADD: %s\n", rep ? rep->str : r->errstr);
				atomic_store(&G.stop, 2);
				break;
			}
			freeReplyObject(rep);
			G.per_session[s]++;
			atomic_fetch_add(&G.sent, 1);
		}
		int64_t next = t0 + (k * 1000000) / G.rate;
		int64_t wait = next - now_us();
		if (wait > 0) {
			struct timespec ts = {wait / 1000000, (wait % 1000000) * 1000};
			nanosleep(&ts, NULL);
		}
	}
	redisFree(r);
	return NULL;
}

/* ------------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr, "usage: ws_load --port P --redis-port R [--filtered N] [--unfiltered M] [--rate 1000] "
	                "[--seconds 10] [--sessions 100] [--threads 2] [--stream agent_events] [--tag T]\n");
	exit(2);
}

static void print_hist(const char *name, const struct hist *h, int comma)
{
	printf("\"%s\":{\"n\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}%s", name,
	       (unsigned long long)h->n, hist_q(h, 0.5), hist_q(h, 0.9), hist_q(h, 0.99), hist_q(h, 0.999),
	       (double)h->max_us / 1000.0, comma ? "," : "");
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (!strcmp(a, "--port"))
			G.port = atoi(v);
		else if (!strcmp(a, "--redis-port"))
			G.redis_port = atoi(v);
		else if (!strcmp(a, "--filtered"))
			G.nfilt = atoi(v);
		else if (!strcmp(a, "--unfiltered"))
			G.nall = atoi(v);
		else if (!strcmp(a, "--rate"))
			G.rate = atoi(v);
		else if (!strcmp(a, "--seconds"))
			G.seconds = atoi(v);
		else if (!strcmp(a, "--sessions"))
			G.sessions = atoi(v);
		else if (!strcmp(a, "--threads"))
			G.nthreads = atoi(v);
		else if (!strcmp(a, "--stream"))
			G.stream = v;
		else if (!strcmp(a, "--tag"))
			G.tag = v;
		else
			usage();
		i++;
	}
	int nc = G.nfilt + G.nall;
	if (!G.port || !G.redis_port || nc <= 0 || G.rate <= 0 || G.seconds <= 0 || G.sessions <= 0 ||
	    G.nthreads <= 0)
		usage();
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nc + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)nc + 64 ? rl.rlim_max : (rlim_t)nc + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	G.per_session = calloc((size_t)G.sessions, sizeof *G.per_session);
	struct conn *conns = calloc((size_t)nc, sizeof *conns);
	struct worker *ws = calloc((size_t)G.nthreads, sizeof *ws);
	if (!G.per_session || !conns || !ws)
		return 1;
	for (int t = 0; t < G.nthreads; t++) {
		ws[t].ep = epoll_create1(0);
		ws[t].c = calloc((size_t)nc / (size_t)G.nthreads + 1, sizeof *ws[t].c);
	}
	/* Unfiltered clients spread evenly between the filtered ones. */
	for (int i = 0; i < nc; i++) {
		struct conn *c = &conns[i];
		c->filtered = !(G.nall && (long long)i * G.nall % nc < G.nall);
		c->session = i % G.sessions;
		if (ws_connect(c, i))
			return 1;
		/* the hello arrives first: wait for it so every client is live before the first event */
		size_t fs;
		while (!(fs = frame_size(c->buf, c->have))) {
			ssize_t r = read(c->fd, c->buf + c->have, RBUF - c->have);
			if (r <= 0) {
				fprintf(stderr, "ws_load: no hello on client %d\n", i);
				return 1;
			}
			c->have += (size_t)r;
		}
		memmove(c->buf, c->buf + fs, c->have - fs); /* the hello carries no event */
		c->have -= fs;
		if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
			return 1;
		struct worker *w = &ws[i % G.nthreads];
		w->c[w->n++] = c;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
	for (int t = 0; t < G.nthreads; t++)
		pthread_create(&ws[t].th, NULL, worker_main, &ws[t]);

	pthread_t prod;
	int64_t t0 = now_us();
	pthread_create(&prod, NULL, producer_main, NULL);
	pthread_join(prod, NULL);
	int64_t t_sent = now_us();
	/* wait until every client has what it should have, at most 30 s more */
	int complete = 0;
	while (!complete && atomic_load(&G.stop) == 0 && now_us() - t_sent < 30000000) {
		complete = 1;
		for (int i = 0; i < nc && complete; i++) {
			struct conn *c = &conns[i];
			long long want = c->filtered ? G.per_session[c->session] : atomic_load(&G.sent);
			if (!c->closed && (long long)c->got < want)
				complete = 0;
		}
		if (!complete)
			usleep(10000);
	}
	int64_t t_end = now_us();
	int failed = atomic_load(&G.stop) == 2;
	atomic_store(&G.stop, 1);
	struct hist *h = calloc(2, sizeof *h);
	uint64_t recv_calls = 0, bytes = 0;
	for (int t = 0; t < G.nthreads; t++) {
		pthread_join(ws[t].th, NULL);
		hist_merge(&h[0], &ws[t].h[0]);
		hist_merge(&h[1], &ws[t].h[1]);
		recv_calls += ws[t].recv_calls;
		bytes += ws[t].bytes;
	}
	long long missing = 0, extra = 0, closed = 0, short_clients = 0;
	uint64_t msgs = 0;
	int close_code = 0;
	for (int i = 0; i < nc; i++) {
		struct conn *c = &conns[i];
		long long want = c->filtered ? G.per_session[c->session] : atomic_load(&G.sent);
		if ((long long)c->got < want) {
			missing += want - (long long)c->got;
			short_clients++;
		} else {
			extra += (long long)c->got - want;
		}
		if (c->closed) {
			closed++;
			close_code = c->close_code;
		}
		msgs += c->msgs;
		close(c->fd);
		free(c->buf);
	}
	struct hist all = h[0];
	hist_merge(&all, &h[1]);
	printf("{\"clients\":%d,\"filtered\":%d,\"unfiltered\":%d,\"sent\":%lld,\"send_s\":%.3f,\"drain_s\":%.3f,"
	       "\"delivered\":%llu,\"frames\":%llu,\"recv_calls\":%llu,\"bytes\":%llu,\"missing\":%lld,"
	       "\"extra\":%lld,\"short_clients\":%lld,\"closed\":%lld,\"close_code\":%d,",
	       nc, G.nfilt, G.nall, (long long)atomic_load(&G.sent), (double)(t_sent - t0) / 1e6,
	       (double)(t_end - t_sent) / 1e6, (unsigned long long)all.n, (unsigned long long)msgs,
	       (unsigned long long)recv_calls, (unsigned long long)bytes, missing, extra, short_clients, closed,
	       close_code);
	print_hist("lag_ms", &all, 1);
	print_hist("lag_ms_filtered", &h[0], 1);
	print_hist("lag_ms_unfiltered", &h[1], 0);
	printf("}\n");
	return failed ? 1 : 0;
}
