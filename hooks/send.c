/* send.c -- HTTP POST to the collector within a deadline.
 *
 * http:// URLs use a small built-in HTTP/1.1 client (non-blocking connect,
 * poll with one deadline, Connection: close). https:// URLs, or any URL with
 * OBS_HOOK_TRANSPORT=curl, use libcurl, loaded with dlopen only then: linking
 * libcurl costs ~9 ms of dynamic loading (its TLS, LDAP, Kerberos and SSH
 * libraries) on every start, several times the whole budget of a hook.
 * With OBS_COLLECTOR_KEY every request carries Authorization: Bearer; with
 * OBS_COLLECTOR_SIGNING_SECRET it is signed (X-Obs-Timestamp, X-Obs-Signature
 * = HMAC-SHA256 of "<ts>.<body>"), libcrypto loaded on demand for that. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "mask.h"

#include "hook.h"
#include "ev.h"

static enum send_result classify(int status)
{
	if (status >= 200 && status < 300)
		return SEND_OK;
	/* 401/403: a key to fix, not bytes to drop; the request is signed anew */
	if (status >= 400 && status < 500 && status != 401 && status != 403 && status != 408 &&
	    status != 429)
		return SEND_REJECTED;
	return SEND_RETRY;
}

/* ---------- credentials ---------- */

/* HMAC-SHA256 from libcrypto, loaded only when a signing secret is set. */
static struct {
	int tried, ok;
	const void *(*sha256)(void);
	unsigned char *(*hmac)(const void *, const void *, int, const unsigned char *, size_t,
	                       unsigned char *, unsigned int *);
} cr;

static int crypto_load(void)
{
	if (!cr.tried) {
		cr.tried = 1;
		void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
		if (h) {
			*(void **)&cr.sha256 = dlsym(h, "EVP_sha256");
			*(void **)&cr.hmac = dlsym(h, "HMAC");
			cr.ok = cr.sha256 && cr.hmac;
		}
	}
	return cr.ok ? 0 : -1;
}

/* The auth header lines ("" without a key) into out. -1 when signing failed. */
static int auth_headers(const struct hook_conf *c, const char *body, size_t len, char *out,
                        size_t outlen, char *err, size_t errlen)
{
	size_t off = 0;
	out[0] = 0;
	if (c->key && strpbrk(c->key, "\r\n")) {
		snprintf(err, errlen, "OBS_COLLECTOR_KEY contains a line break");
		return -1;
	}
	if (c->key)
		off += (size_t)snprintf(out, outlen, "Authorization: Bearer %s\r\n", c->key);
	if (off >= outlen) {
		snprintf(err, errlen, "OBS_COLLECTOR_KEY is too long");
		return -1;
	}
	if (!c->signing_secret)
		return 0;
	if (crypto_load()) {
		snprintf(err, errlen, "OBS_COLLECTOR_SIGNING_SECRET needs libcrypto.so.3");
		return -1;
	}
	char ts[24];
	int tl = snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
	unsigned char *msg = malloc((size_t)tl + 1 + len), md[32];
	unsigned int mdlen = 0;
	if (!msg) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(msg, ts, (size_t)tl);
	msg[tl] = '.';
	memcpy(msg + tl + 1, body, len);
	int ok = cr.hmac(cr.sha256(), c->signing_secret, (int)strlen(c->signing_secret), msg,
	                 (size_t)tl + 1 + len, md, &mdlen) && mdlen == 32;
	free(msg);
	if (!ok) {
		snprintf(err, errlen, "HMAC failed");
		return -1;
	}
	off += (size_t)snprintf(out + off, outlen - off, "X-Obs-Timestamp: %s\r\nX-Obs-Signature: sha256=", ts);
	for (int i = 0; i < 32 && off + 3 < outlen; i++)
		off += (size_t)snprintf(out + off, outlen - off, "%02x", md[i]);
	if (off + 3 >= outlen)
		return -1;
	memcpy(out + off, "\r\n", 3);
	return 0;
}

/* ---------- URL ---------- */

struct url {
	int tls;
	char host[256];
	int port;
	char base[512]; /* path prefix without a trailing '/' */
};

static int parse_url(const char *s, struct url *u)
{
	memset(u, 0, sizeof *u);
	if (!strncasecmp(s, "http://", 7)) {
		s += 7;
		u->port = 80;
	} else if (!strncasecmp(s, "https://", 8)) {
		s += 8;
		u->tls = 1;
		u->port = 443;
	} else {
		return -1;
	}
	const char *hend;
	if (*s == '[') {
		hend = strchr(s, ']');
		if (!hend || (size_t)(hend - s - 1) >= sizeof u->host)
			return -1;
		memcpy(u->host, s + 1, (size_t)(hend - s - 1));
		hend++;
	} else {
		hend = s + strcspn(s, ":/");
		if ((size_t)(hend - s) >= sizeof u->host || hend == s)
			return -1;
		memcpy(u->host, s, (size_t)(hend - s));
	}
	if (*hend == ':') {
		char *e;
		long p = strtol(hend + 1, &e, 10);
		if (p <= 0 || p > 65535 || (*e && *e != '/'))
			return -1;
		u->port = (int)p;
		hend = e;
	}
	snprintf(u->base, sizeof u->base, "%s", hend);
	size_t bl = strlen(u->base);
	while (bl > 0 && u->base[bl - 1] == '/')
		u->base[--bl] = 0;
	return 0;
}

/* ---------- built-in HTTP/1.1 client ---------- */

static int wait_fd(int fd, short ev, long long deadline)
{
	for (;;) {
		long long left = deadline - ev_mono_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = {fd, ev, 0};
		int r = poll(&p, 1, (int)left);
		if (r > 0)
			return 1;
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

static int connect_to(const struct url *u, long long deadline, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	const char *host = !strcasecmp(u->host, "localhost") ? "127.0.0.1" : u->host;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)u->port);
		sl = sizeof *s4;
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)u->port);
		sl = sizeof *s6;
	} else {
		struct addrinfo hints = {0}, *ai = NULL;
		hints.ai_socktype = SOCK_STREAM;
		int rc = getaddrinfo(host, NULL, &hints, &ai);
		if (rc || !ai) {
			snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
			return -1;
		}
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		sl = ai->ai_addrlen;
		freeaddrinfo(ai);
		if (ss.ss_family == AF_INET)
			s4->sin_port = htons((uint16_t)u->port);
		else
			s6->sin6_port = htons((uint16_t)u->port);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&ss, sl) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		snprintf(err, errlen, "connect %s:%d: %s", u->host, u->port, strerror(errno));
		close(fd);
		return -1;
	}
	int w = wait_fd(fd, POLLOUT, deadline);
	int soerr = 0;
	socklen_t el = sizeof soerr;
	if (w <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) || soerr) {
		snprintf(err, errlen, "connect %s:%d: %s", u->host, u->port,
		         w == 0 ? "timed out" : strerror(soerr ? soerr : errno));
		close(fd);
		return -1;
	}
	return fd;
}

static enum send_result post_plain(const struct url *u, const char *path, const char *ctype,
                                   const char *auth, const char *body, size_t len, long timeout_ms,
                                   int *status, char *err, size_t errlen)
{
	long long deadline = ev_mono_ms() + timeout_ms;
	char hdr[2048], resp[2048];
	int fd = connect_to(u, deadline, err, errlen);
	if (fd < 0)
		return SEND_RETRY;
	int v6 = strchr(u->host, ':') != NULL;
	int hl = snprintf(hdr, sizeof hdr,
	                  "POST %s%s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUser-Agent: agent-hook/1\r\n"
	                  "Content-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
	                  u->base, path, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, ctype, len, auth);
	if (hl < 0 || hl >= (int)sizeof hdr) {
		close(fd);
		snprintf(err, errlen, "request headers too long");
		return SEND_REJECTED;
	}
	struct iovec iov[2] = {{hdr, (size_t)hl}, {(void *)body, len}};
	int iovn = 2;
	enum send_result rc = SEND_RETRY;
	struct iovec *v = iov;
	while (iovn > 0) {
		struct msghdr m = {0};
		m.msg_iov = v;
		m.msg_iovlen = (size_t)iovn;
		ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) > 0)
				continue;
			snprintf(err, errlen, "send: %s", errno == EAGAIN ? "timed out" : strerror(errno));
			goto out;
		}
		while (iovn > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			iovn--;
		}
		if (iovn > 0) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	/* the status line is all we need; read until the headers end and the
	 * (small) body is in, or the server closes */
	size_t got = 0;
	long long clen = -1;
	size_t hdr_end = 0;
	for (;;) {
		if (got == sizeof resp - 1) {
			if (hdr_end)
				break;
			snprintf(err, errlen, "response headers too long");
			goto out;
		}
		ssize_t n = recv(fd, resp + got, sizeof resp - 1 - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				int w = wait_fd(fd, POLLIN, deadline);
				if (w > 0)
					continue;
				snprintf(err, errlen, "no answer within %ld ms", timeout_ms);
				goto out;
			}
			snprintf(err, errlen, "recv: %s", strerror(errno));
			goto out;
		}
		got += (size_t)n;
		resp[got] = 0;
		if (!hdr_end) {
			char *e = strstr(resp, "\r\n\r\n");
			if (e) {
				hdr_end = (size_t)(e - resp) + 4;
				char *cl = strcasestr(resp, "\r\nContent-Length:");
				if (cl && cl < e)
					clen = strtoll(cl + 17, NULL, 10);
			}
		}
		if (n == 0 || (hdr_end && clen >= 0 && got >= hdr_end + (size_t)clen))
			break;
	}
	if (strncmp(resp, "HTTP/1.", 7) || got < 12) {
		snprintf(err, errlen, "not an HTTP response");
		goto out;
	}
	*status = (int)strtol(resp + 9, NULL, 10);
	rc = classify(*status);
	if (rc != SEND_OK) {
		/* keep the collector's one-line reason */
		const char *msg = hdr_end ? resp + hdr_end : "";
		snprintf(err, errlen, "HTTP %d %.200s", *status, msg);
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
	}
out:
	close(fd);
	return rc;
}

/* ---------- libcurl, loaded on demand ---------- */

static struct {
	int tried, ok;
	CURL *(*init)(void);
	CURLcode (*setopt)(CURL *, CURLoption, ...);
	CURLcode (*perform)(CURL *);
	CURLcode (*getinfo)(CURL *, CURLINFO, ...);
	void (*cleanup)(CURL *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	const char *(*strerror)(CURLcode);
} cu;

static int curl_load(char *err, size_t errlen)
{
	if (cu.tried)
		goto done;
	cu.tried = 1;
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "https needs libcurl: %s", dlerror());
		return -1;
	}
	*(void **)&cu.init = dlsym(h, "curl_easy_init");
	*(void **)&cu.setopt = dlsym(h, "curl_easy_setopt");
	*(void **)&cu.perform = dlsym(h, "curl_easy_perform");
	*(void **)&cu.getinfo = dlsym(h, "curl_easy_getinfo");
	*(void **)&cu.cleanup = dlsym(h, "curl_easy_cleanup");
	*(void **)&cu.slist_append = dlsym(h, "curl_slist_append");
	*(void **)&cu.slist_free_all = dlsym(h, "curl_slist_free_all");
	*(void **)&cu.strerror = dlsym(h, "curl_easy_strerror");
	cu.ok = cu.init && cu.setopt && cu.perform && cu.getinfo && cu.cleanup && cu.slist_append &&
	        cu.slist_free_all && cu.strerror;
done:
	if (!cu.ok)
		snprintf(err, errlen, "libcurl.so.4 could not be loaded");
	return cu.ok ? 0 : -1;
}

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

static enum send_result post_curl(const struct hook_conf *c, const char *path, const char *ctype,
                                  const char *auth, const char *body, size_t len, long timeout_ms,
                                  int *status, char *err, size_t errlen)
{
	char url[2048], ct[128];
	if (curl_load(err, errlen))
		return SEND_RETRY;
	size_t ul = strlen(c->url);
	while (ul > 0 && c->url[ul - 1] == '/')
		ul--;
	snprintf(url, sizeof url, "%.*s%s", (int)ul, c->url, path);
	snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
	CURL *h = cu.init();
	if (!h) {
		snprintf(err, errlen, "curl_easy_init failed");
		return SEND_RETRY;
	}
	struct curl_slist *hdrs = cu.slist_append(NULL, ct);
	hdrs = cu.slist_append(hdrs, "Expect:");
	for (const char *a = auth; *a;) { /* "Name: value\r\n" lines */
		char line[1024];
		size_t n = strcspn(a, "\r");
		snprintf(line, sizeof line, "%.*s", (int)n, a);
		hdrs = cu.slist_append(hdrs, line);
		a += n;
		a += strspn(a, "\r\n");
	}
	cu.setopt(h, CURLOPT_URL, url);
	cu.setopt(h, CURLOPT_HTTPHEADER, hdrs);
	cu.setopt(h, CURLOPT_POSTFIELDS, body);
	cu.setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	cu.setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	cu.setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	cu.setopt(h, CURLOPT_NOSIGNAL, 1L);
	cu.setopt(h, CURLOPT_USERAGENT, "agent-hook/1");
	cu.setopt(h, CURLOPT_WRITEFUNCTION, discard);
	/* peer and host name verification stay on; a private CA may be given */
	cu.setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	cu.setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file)
		cu.setopt(h, CURLOPT_CAINFO, c->ca_file);
	CURLcode rc = cu.perform(h);
	long code = 0;
	enum send_result r = SEND_RETRY;
	if (rc == CURLE_OK) {
		cu.getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		*status = (int)code;
		r = classify((int)code);
		if (r != SEND_OK)
			snprintf(err, errlen, "HTTP %ld", code);
	} else if (rc == CURLE_SSL_CACERT_BADFILE && c->ca_file) {
		snprintf(err, errlen, "%s (OBS_HOOK_CA_FILE=%s)", cu.strerror(rc), c->ca_file);
	} else {
		snprintf(err, errlen, "%s", cu.strerror(rc));
	}
	cu.slist_free_all(hdrs);
	cu.cleanup(h);
	return r;
}

enum send_result send_post(const struct hook_conf *c, const char *path, const char *ctype,
                           const char *body, size_t len, long timeout_ms, int *status, char *err,
                           size_t errlen)
{
	struct url u;
	*status = 0;
	err[0] = 0;
	if (parse_url(c->url, &u)) {
		char shown[512];
		mask_url(c->url, shown, sizeof shown);
		snprintf(err, errlen, "OBS_COLLECTOR_URL: not an http:// or https:// URL: %s", shown);
		return SEND_RETRY;
	}
	char auth[1024];
	if (auth_headers(c, body, len, auth, sizeof auth, err, errlen))
		return SEND_RETRY;
	enum send_result r = u.tls || c->use_curl
		? post_curl(c, path, ctype, auth, body, len, timeout_ms, status, err, errlen)
		: post_plain(&u, path, ctype, auth, body, len, timeout_ms, status, err, errlen);
	explicit_bzero(auth, sizeof auth);
	return r;
}
