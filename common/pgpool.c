/* pgpool.c -- a mutex-protected pool of libpq connections (see pgpool.h).
 * Memory: the pool owns its idle connections and strings; a connection handed
 * out belongs to the caller until pgpool_put/pgpool_discard. Threads: every
 * function may be called from any thread; connecting happens outside the
 * lock, so one slow connect does not stall callers that find an idle one. */
#include "pgpool.h"
#include "ev.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PGPOOL_BACKOFF_MS 1000 /* after a failed connect, fail fast this long */

struct pgpool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *conninfo, *setup_sql, *app_name;
	char *password, *sslmode, *sslrootcert; /* from struct pg_auth */
	int size;    /* most connections, idle + in use + connecting */
	int open;    /* idle + in use + connecting */
	PGconn **idle;
	int n_idle;
	long long down_until_ms; /* monotonic: fail fast until then */
	char down_err[256];
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

struct pgpool *pgpool_new(const char *conninfo, const struct pg_auth *auth, int size,
                          const char *setup_sql, const char *app_name)
{
	struct pgpool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->size = size > 0 ? size : 1;
	p->conninfo = strdup(conninfo ? conninfo : "");
	p->setup_sql = dup_or_null(setup_sql);
	p->app_name = strdup(app_name ? app_name : "agent-obs");
	p->idle = calloc((size_t)p->size, sizeof *p->idle);
	p->password = strdup(auth && auth->password ? auth->password : "");
	p->sslmode = strdup(auth && auth->sslmode ? auth->sslmode : "");
	p->sslrootcert = strdup(auth && auth->sslrootcert ? auth->sslrootcert : "");
	if (!p->conninfo || !p->app_name || !p->idle || (setup_sql && !p->setup_sql) || !p->password ||
	    !p->sslmode || !p->sslrootcert) {
		pgpool_free(p);
		return NULL;
	}
	return p;
}

void pgpool_free(struct pgpool *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_idle; i++)
		PQfinish(p->idle[i]);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->idle);
	free(p->conninfo);
	free(p->setup_sql);
	free(p->app_name);
	if (p->password)
		explicit_bzero(p->password, strlen(p->password));
	free(p->password);
	free(p->sslmode);
	free(p->sslrootcert);
	free(p);
}

static void one_line(char *s)
{
	s[strcspn(s, "\n")] = '\0';
}

/* Connect outside the lock. NULL with err filled. */
static PGconn *connect_one(struct pgpool *p, char *err, size_t errlen)
{
	struct pg_auth auth = {p->password, p->sslmode, p->sslrootcert};
	PGconn *c = pg_connect(p->conninfo, &auth, p->app_name, "3", err, errlen);
	if (!c)
		return NULL;
	if (p->setup_sql) {
		PGresult *r = PQexec(c, p->setup_sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "postgres session setup: %s", PQresultErrorMessage(r));
			one_line(err);
			PQclear(r);
			PQfinish(c);
			return NULL;
		}
		PQclear(r);
	}
	return c;
}

PGconn *pgpool_get(struct pgpool *p, long wait_ms, char *err, size_t errlen)
{
	long long deadline = ev_mono_ms() + (wait_ms > 0 ? wait_ms : 0);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		if (p->n_idle > 0) {
			PGconn *c = p->idle[--p->n_idle];
			pthread_mutex_unlock(&p->mu);
			return c;
		}
		if (ev_mono_ms() < p->down_until_ms) {
			snprintf(err, errlen, "%s", p->down_err);
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		if (p->open < p->size)
			break;
		long long left = deadline - ev_mono_ms();
		if (left <= 0) {
			snprintf(err, errlen, "all %d postgres connections are busy", p->size);
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	p->open++;
	pthread_mutex_unlock(&p->mu);

	PGconn *c = connect_one(p, err, errlen);

	pthread_mutex_lock(&p->mu);
	if (!c) {
		p->open--;
		p->down_until_ms = ev_mono_ms() + PGPOOL_BACKOFF_MS;
		snprintf(p->down_err, sizeof p->down_err, "%s", err);
		pthread_cond_signal(&p->cv);
	} else {
		p->down_until_ms = 0;
	}
	pthread_mutex_unlock(&p->mu);
	return c;
}

void pgpool_discard(struct pgpool *p, PGconn *c)
{
	if (!c)
		return;
	PQfinish(c);
	pthread_mutex_lock(&p->mu);
	p->open--;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void pgpool_put(struct pgpool *p, PGconn *c)
{
	if (!c)
		return;
	if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) {
		pgpool_discard(p, c);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->idle[p->n_idle++] = c;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}
