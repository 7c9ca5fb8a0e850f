/* notify.c -- the Alertmanager client: a sender thread with its own queue, so
 * the consume loop never waits on the network. notifier_send() (main thread)
 * turns a note into Alertmanager JSON and queues it; the sender POSTs queued
 * alerts in batches to <url>/api/v2/alerts with libcurl and retries with
 * backoff (100 ms .. 5 s) while Alertmanager is unreachable or answers 5xx.
 *
 * The queue keeps one item per (alert labels, firing|resolved): a newer note
 * for the same alert replaces the queued one in place, so the queue stays
 * bounded by the number of alerts however long Alertmanager is away, and
 * nothing but superseded states is dropped. Items keep the order of their
 * first queuing and carry increasing sequence numbers; every item before the
 * queue's head has been delivered, which is what notifier_delivered()
 * answers. A 4xx answer (other than 429) means the alerts are malformed:
 * they are logged and dropped rather than retried for ever.
 * Ownership: the sender alone frees items; the main thread only replaces an
 * item's text under the mutex. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "alerter.h"
#include "log.h"
#include "mask.h"
#include "met.h"
#include "ev.h"

struct item {
	struct item *next, *prev; /* queue order */
	struct item *hnext;       /* hash chain */
	char *key;
	char *json;
	uint64_t seq, version;
	int64_t trigger_ms; /* receipt of the event that fired it (latency), 0: none */
	int firing;
};

struct notifier {
	pthread_t th;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item *head, *tail;
	size_t n;
	struct item **buckets;
	size_t nbuckets;
	uint64_t next_seq;
	int stop;
	int64_t drain_deadline;
	char *url;
	long timeout_ms;
	size_t batch_max;
	atomic_int healthy;
	struct met_series *sent, *failed, *alerts_sent, *dropped, *queue, *latency, *up;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* ------------------------------------------------------------------------ */
/* JSON */

char *notify_alert_json(const struct alert_note *n)
{
	char ts[32];
	cJSON *o = cJSON_CreateObject();
	cJSON *labels = cJSON_AddObjectToObject(o, "labels");
	cJSON *ann = cJSON_AddObjectToObject(o, "annotations");
	for (size_t i = 0; i < n->nlabels; i++)
		cJSON_AddStringToObject(labels, n->label_names[i], n->label_values[i]);
	for (size_t i = 0; i < n->nann; i++)
		cJSON_AddStringToObject(ann, n->ann_names[i], n->ann_values[i]);
	ev_format_iso8601(n->starts_ms, ts);
	cJSON_AddStringToObject(o, "startsAt", ts);
	ev_format_iso8601(n->ends_ms, ts);
	cJSON_AddStringToObject(o, "endsAt", ts);
	if (n->generator_url && n->generator_url[0])
		cJSON_AddStringToObject(o, "generatorURL", n->generator_url);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

/* The identity of an alert state: its labels (in the rule's fixed order)
 * and whether it fires. */
static char *note_key(const struct alert_note *n)
{
	size_t len = 3;
	for (size_t i = 0; i < n->nlabels; i++)
		len += strlen(n->label_names[i]) + strlen(n->label_values[i]) + 2;
	char *k = malloc(len);
	if (!k)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n->nlabels; i++)
		o += (size_t)snprintf(k + o, len - o, "%s\x1e%s\x1f", n->label_names[i], n->label_values[i]);
	snprintf(k + o, len - o, "%c", n->firing ? 'F' : 'R');
	return k;
}

/* ------------------------------------------------------------------------ */
/* Queue (mutex held) */

static struct item *find(struct notifier *q, const char *key)
{
	if (!q->nbuckets)
		return NULL;
	for (struct item *it = q->buckets[hash_str(key) % q->nbuckets]; it; it = it->hnext)
		if (strcmp(it->key, key) == 0)
			return it;
	return NULL;
}

static int grow(struct notifier *q)
{
	size_t nb = q->nbuckets ? q->nbuckets * 2 : 256;
	struct item **b = calloc(nb, sizeof *b);
	if (!b)
		return -1;
	for (struct item *it = q->head; it; it = it->next) {
		size_t h = hash_str(it->key) % nb;
		it->hnext = b[h];
		b[h] = it;
	}
	free(q->buckets);
	q->buckets = b;
	q->nbuckets = nb;
	return 0;
}

static void unlink_item(struct notifier *q, struct item *it)
{
	struct item **pp = &q->buckets[hash_str(it->key) % q->nbuckets];
	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == it) {
			*pp = it->hnext;
			break;
		}
	}
	if (it->prev)
		it->prev->next = it->next;
	else
		q->head = it->next;
	if (it->next)
		it->next->prev = it->prev;
	else
		q->tail = it->prev;
	q->n--;
	free(it->key);
	free(it->json);
	free(it);
}

uint64_t notifier_send(void *self, const struct alert_note *note)
{
	struct notifier *q = self;
	if (!q)
		return 0;
	if (!q->url[0]) {
		log_kv(LOG_DEBUG, "alert not sent (no alertmanager_url)", "alertname",
		       note->label_values[0], "state", note->firing ? "firing" : "resolved", NULL);
		return 0;
	}
	char *json = notify_alert_json(note);
	char *key = note_key(note);
	if (!json || !key) {
		log_error("notify: out of memory; alert dropped");
		free(json);
		free(key);
		return 0;
	}
	uint64_t seq = 0;
	pthread_mutex_lock(&q->mu);
	struct item *it = find(q, key);
	if (it) {
		free(it->json);
		it->json = json;
		it->version++;
		if (!it->trigger_ms)
			it->trigger_ms = note->trigger_ms;
		free(key);
		seq = it->seq;
	} else if ((q->n + 1 > q->nbuckets && grow(q)) || !(it = calloc(1, sizeof *it))) {
		log_error("notify: out of memory; alert dropped");
		free(json);
		free(key);
	} else {
		it->key = key;
		it->json = json;
		it->seq = seq = q->next_seq++;
		it->trigger_ms = note->trigger_ms;
		it->firing = note->firing;
		it->prev = q->tail;
		if (q->tail)
			q->tail->next = it;
		else
			q->head = it;
		q->tail = it;
		size_t h = hash_str(key) % q->nbuckets;
		it->hnext = q->buckets[h];
		q->buckets[h] = it;
		q->n++;
	}
	met_set(q->queue, (double)q->n);
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	return seq;
}

int notifier_delivered(void *self, uint64_t seq)
{
	struct notifier *q = self;
	if (!q || seq == 0)
		return 1;
	pthread_mutex_lock(&q->mu);
	int done = !q->head || q->head->seq > seq;
	pthread_mutex_unlock(&q->mu);
	return done;
}

size_t notifier_queued(struct notifier *q)
{
	pthread_mutex_lock(&q->mu);
	size_t n = q->n;
	pthread_mutex_unlock(&q->mu);
	return n;
}

int notifier_healthy(struct notifier *q)
{
	return q ? atomic_load(&q->healthy) : 0;
}

/* ------------------------------------------------------------------------ */
/* The sender thread */

struct answer {
	char text[512];
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct answer *a = ud;
	size_t n = size * nmemb, room = sizeof a->text - 1 - a->len;
	memcpy(a->text + a->len, p, n < room ? n : room);
	a->len += n < room ? n : room;
	a->text[a->len] = '\0';
	return n;
}

/* POST body; returns 0 delivered, 1 retry later, 2 rejected for good. */
static int post(struct notifier *q, CURL *h, const char *endpoint, const char *body, char *why,
                size_t whylen)
{
	struct answer a = {.len = 0};
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	char cerr[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(h, CURLOPT_URL, endpoint);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, q->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, q->timeout_ms < 2000 ? q->timeout_ms : 2000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode rc = curl_easy_perform(h);
	curl_slist_free_all(hdr);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	if (rc != CURLE_OK) {
		snprintf(why, whylen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
		return 1;
	}
	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 200 && code < 300)
		return 0;
	snprintf(why, whylen, "HTTP %ld: %s", code, a.text);
	return code >= 400 && code < 500 && code != 429 ? 2 : 1;
}

struct taken {
	struct item *it;
	uint64_t version;
};

static void *sender(void *arg)
{
	struct notifier *q = arg;
	CURL *h = curl_easy_init();
	char endpoint[1200], shown[1200], why[700];
	long backoff = 0;
	int64_t retry_at = 0;
	struct taken *batch = calloc(q->batch_max, sizeof *batch);
	size_t cap = 1 << 16;
	char *body = malloc(cap);

	snprintf(endpoint, sizeof endpoint, "%s/api/v2/alerts", q->url);
	mask_url(endpoint, shown, sizeof shown); /* for logs: no user:password@ */
	if (!h || !batch || !body) {
		log_error("notify: cannot start the sender (out of memory)");
		goto out;
	}
	pthread_mutex_lock(&q->mu);
	for (;;) {
		/* wait for work (and the end of a backoff), or the end of a drain */
		for (;;) {
			int64_t now = ev_mono_ms();
			if (q->stop && (!q->head || now >= q->drain_deadline))
				goto done;
			if (q->head && now >= retry_at)
				break;
			int64_t wake = q->head ? retry_at : 0;
			if (q->stop && (!wake || q->drain_deadline < wake))
				wake = q->drain_deadline;
			if (!wake) {
				pthread_cond_wait(&q->cv, &q->mu);
				continue;
			}
			struct timespec ts;
			int64_t left = wake - now;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += left / 1000;
			ts.tv_nsec += (left % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&q->cv, &q->mu, &ts);
		}
		/* take up to batch_max items */
		size_t nb = 0, len = 1;
		body[0] = '[';
		for (struct item *it = q->head; it && nb < q->batch_max; it = it->next) {
			size_t l = strlen(it->json);
			if (len + l + 3 > cap) {
				size_t ncap = (len + l + 3) * 2;
				char *nbody = realloc(body, ncap);
				if (!nbody)
					break;
				body = nbody;
				cap = ncap;
			}
			if (nb)
				body[len++] = ',';
			memcpy(body + len, it->json, l);
			len += l;
			batch[nb].it = it;
			batch[nb].version = it->version;
			nb++;
		}
		body[len++] = ']';
		body[len] = '\0';
		pthread_mutex_unlock(&q->mu);

		int res = post(q, h, endpoint, body, why, sizeof why);
		int64_t now_wall = ev_now_ms();

		pthread_mutex_lock(&q->mu);
		if (res == 1) {
			met_inc(q->failed, 1);
			met_set(q->up, 0);
			if (atomic_exchange(&q->healthy, 0) || backoff >= 5000)
				log_kv(LOG_WARN, "alertmanager unreachable; alerts stay queued and are retried",
				       "url", shown, "error", why, NULL);
			backoff = backoff ? (backoff * 2 > 5000 ? 5000 : backoff * 2) : 100;
			retry_at = ev_mono_ms() + backoff;
			continue;
		}
		backoff = 0;
		retry_at = 0;
		met_set(q->up, 1);
		if (!atomic_exchange(&q->healthy, 1))
			log_kv(LOG_INFO, "alertmanager reachable", "url", shown, NULL);
		if (res == 2) {
			met_inc(q->failed, 1);
			met_inc(q->dropped, (double)nb);
			log_kv(LOG_ERROR, "alertmanager rejected alerts; dropped", "error", why, NULL);
		} else {
			met_inc(q->sent, 1);
			met_inc(q->alerts_sent, (double)nb);
		}
		for (size_t i = 0; i < nb; i++) {
			struct item *it = batch[i].it;
			if (res == 0 && it->trigger_ms > 0 && it->firing) {
				double lat = (double)(now_wall - it->trigger_ms) / 1000.0;
				met_observe(q->latency, lat < 0 ? 0 : lat);
				it->trigger_ms = 0;
			}
			if (it->version == batch[i].version)
				unlink_item(q, it);
		}
		met_set(q->queue, (double)q->n);
	}
done:
	if (q->head)
		log_kv(LOG_WARN, "stopping with alerts not delivered to alertmanager", NULL);
	pthread_mutex_unlock(&q->mu);
out:
	free(batch);
	free(body);
	if (h)
		curl_easy_cleanup(h);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Life cycle */

struct notifier *notifier_start(const char *url, long timeout_ms, size_t batch_max,
                                struct met_registry *reg, char *err, size_t errlen)
{
	static const double lat_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
	struct notifier *q = calloc(1, sizeof *q);
	if (!q || !(q->url = strdup(url))) {
		free(q);
		snprintf(err, errlen, "notify: out of memory");
		return NULL;
	}
	size_t ul = strlen(q->url);
	while (ul && q->url[ul - 1] == '/')
		q->url[--ul] = '\0';
	if (ul && strncmp(q->url, "http://", 7) != 0 && strncmp(q->url, "https://", 8) != 0) {
		snprintf(err, errlen, "alerter.alertmanager_url must start with http:// or https://");
		free(q->url);
		free(q);
		return NULL;
	}
	q->timeout_ms = timeout_ms;
	q->batch_max = batch_max ? batch_max : 1;
	q->next_seq = 1;
	atomic_store(&q->healthy, 1);
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->sent = met_series(met_counter(reg, "agent_obs_alerter_notifications_sent_total",
	                                 "POSTs to Alertmanager that succeeded", NULL));
	q->failed = met_series(met_counter(reg, "agent_obs_alerter_notifications_failed_total",
	                                   "POSTs to Alertmanager that failed (retried, or dropped on 4xx)", NULL));
	q->alerts_sent = met_series(met_counter(reg, "agent_obs_alerter_alerts_sent_total",
	                                        "Alert states delivered to Alertmanager", NULL));
	q->dropped = met_series(met_counter(reg, "agent_obs_alerter_alerts_dropped_total",
	                                    "Alert states Alertmanager rejected as invalid", NULL));
	q->queue = met_series(met_gauge(reg, "agent_obs_alerter_queue_length",
	                                "Alert states waiting for Alertmanager", NULL));
	q->up = met_series(met_gauge(reg, "agent_obs_alerter_alertmanager_up",
	                             "1 if the last POST to Alertmanager succeeded", NULL));
	q->latency = met_series(met_histogram(reg, "agent_obs_alerter_event_to_alert_seconds",
	                                      "Collector receipt of the triggering event to Alertmanager "
	                                      "accepting the firing alert", NULL, lat_b,
	                                      sizeof lat_b / sizeof lat_b[0]));
	met_set(q->up, 1);
	if (!ul)
		return q; /* sending disabled: no thread */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "notify: curl_global_init failed");
		goto fail;
	}
	if (pthread_create(&q->th, NULL, sender, q)) {
		snprintf(err, errlen, "notify: cannot start the sender thread");
		curl_global_cleanup();
		goto fail;
	}
	q->started = 1;
	return q;
fail:
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q->url);
	free(q);
	return NULL;
}

void notifier_stop(struct notifier *q, long drain_ms)
{
	if (!q)
		return;
	if (q->started) {
		pthread_mutex_lock(&q->mu);
		q->stop = 1;
		q->drain_deadline = ev_mono_ms() + drain_ms;
		pthread_cond_signal(&q->cv);
		pthread_mutex_unlock(&q->mu);
		pthread_join(q->th, NULL);
		curl_global_cleanup();
	}
	while (q->head) {
		struct item *it = q->head;
		q->head = it->next;
		free(it->key);
		free(it->json);
		free(it);
	}
	free(q->buckets);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q->url);
	free(q);
}
