/* admin.c -- the alerter's admin HTTP server (libmicrohttpd, own polling
 * thread): /healthz /readyz /metrics through common/http.h, plus /rules, the
 * loaded rules as JSON (`?name=X` for one rule; alerts' generatorURL points
 * here), and POST /rules/reload (admin role: same as SIGHUP). With API keys
 * configured /metrics and /rules need the read role. The server is
 * common/http.c's admin server with these routes added (http_admin_extra);
 * the rules text is a snapshot published by the main thread under a mutex,
 * so the server never touches the live rule set. */
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alerter.h"
#include "auth.h"
#include "met.h"

struct alerter_admin {
	struct http_admin *h; /* /healthz /readyz /metrics, auth, and our routes */
	struct http_admin_extra extra;
	pthread_mutex_t mu;
	cJSON *rules; /* snapshot: array of rule objects */
};

static void add_match(cJSON *o, const char *key, const struct match *m)
{
	if (!m->n)
		return;
	cJSON *mo = cJSON_AddObjectToObject(o, key);
	for (size_t i = 0; i < m->n; i++) {
		const struct matcher *x = &m->v[i];
		cJSON *v;
		switch (x->op) {
		case MATCH_REGEX:
			v = cJSON_CreateObject();
			cJSON_AddStringToObject(v, "regex", "(compiled)");
			break;
		case MATCH_EXISTS:
			v = cJSON_CreateObject();
			cJSON_AddBoolToObject(v, "exists", x->exists);
			break;
		default: {
			cJSON *arr = cJSON_CreateStringArray((const char *const *)x->values, (int)x->nvalues);
			if (x->op == MATCH_NOT) {
				v = cJSON_CreateObject();
				cJSON_AddItemToObject(v, "not", arr);
			} else {
				v = arr;
			}
		}
		}
		cJSON_AddItemToObject(mo, x->f.name, v);
	}
}

static cJSON *rule_obj(const struct rule *r, const char *path)
{
	char buf[64];
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", r->name);
	cJSON_AddStringToObject(o, "severity", r->severity);
	cJSON_AddStringToObject(o, "kind", cond_kind_name(r->kind));
	add_match(o, "match", &r->match);
	if (r->kind != COND_EVERY && r->kind != COND_ABSENCE) {
		cJSON_AddNumberToObject(o, "threshold", r->threshold);
		cJSON_AddStringToObject(o, "op", r->strict ? ">" : ">=");
	}
	if (r->window_ms) {
		format_duration(r->window_ms, buf, sizeof buf);
		cJSON_AddStringToObject(o, "window", buf);
	}
	if (r->kind == COND_EVERY) {
		format_duration(r->hold_ms, buf, sizeof buf);
		cJSON_AddStringToObject(o, "hold", buf);
	}
	if (r->kind == COND_ABSENCE) {
		format_duration(r->after_ms, buf, sizeof buf);
		cJSON_AddStringToObject(o, "after", buf);
		add_match(o, "until", &r->until);
	}
	if (r->kind == COND_RATIO)
		add_match(o, "numerator", &r->numerator);
	if (r->kind == COND_RATIO || r->kind == COND_QUANTILE)
		cJSON_AddNumberToObject(o, "min_count", (double)r->min_count);
	if (r->kind == COND_QUANTILE)
		cJSON_AddNumberToObject(o, "quantile", r->quantile);
	if (r->field.name)
		cJSON_AddStringToObject(o, "field", r->field.name);
	cJSON *gb = cJSON_AddArrayToObject(o, "group_by");
	for (size_t i = 0; i < r->ngroup_by; i++)
		cJSON_AddItemToArray(gb, cJSON_CreateString(r->group_by[i].name));
	snprintf(buf, sizeof buf, "%d", r->line);
	char where[1100];
	snprintf(where, sizeof where, "%s:%s", path ? path : "", buf);
	cJSON_AddStringToObject(o, "source", where);
	return o;
}

static int route_role(const char *url)
{
	return strcmp(url, "/rules/reload") == 0 ? AUTH_ADMIN : auth_admin_url_role(url);
}

/* /rules and POST /rules/reload (http_admin_extra.route). */
static int route(void *ud, struct MHD_Connection *c, const char *method, const char *url,
                 enum MHD_Result *ret)
{
	struct alerter_admin *a = ud;
	if (strcmp(url, "/rules/reload") == 0) {
		if (strcmp(method, "POST") != 0)
			*ret = http_reply_error(c, 405, NULL, "use POST");
		/* the main loop reloads as on SIGHUP (and logs and counts the result) */
		else if (kill(getpid(), SIGHUP))
			*ret = http_reply_error(c, 500, NULL, "cannot signal the main loop");
		else
			*ret = http_reply_json(c, 202, "{\"status\":\"reload requested\"}");
		return 1;
	}
	if (strcmp(url, "/rules") != 0)
		return 0;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		*ret = http_reply_error(c, 405, NULL, "use GET");
		return 1;
	}
	const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name");
	char *text = NULL;
	pthread_mutex_lock(&a->mu);
	if (!name) {
		text = cJSON_PrintUnformatted(a->rules);
	} else {
		const cJSON *r;
		cJSON_ArrayForEach(r, a->rules)
		{
			const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, "name");
			if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) {
				text = cJSON_PrintUnformatted(r);
				break;
			}
		}
	}
	pthread_mutex_unlock(&a->mu);
	if (!text) {
		*ret = name ? http_reply_error(c, 404, "name", "no such rule")
		            : http_reply_error(c, 500, NULL, "out of memory");
		return 1;
	}
	*ret = http_reply_json(c, 200, text);
	free(text);
	return 1;
}

struct alerter_admin *admin_start(const char *addr, int port, struct met_registry *reg,
                                  http_ready_fn ready, void *ud, struct auth *auth, char *err,
                                  size_t errlen)
{
	struct alerter_admin *a = calloc(1, sizeof *a);
	if (!a || !(a->rules = cJSON_CreateArray())) {
		free(a);
		snprintf(err, errlen, "admin server: out of memory");
		return NULL;
	}
	pthread_mutex_init(&a->mu, NULL);
	a->extra = (struct http_admin_extra){
		.role = route_role,
		.route = route,
		.ud = a,
		.not_found = "not found: try /healthz, /readyz, /metrics, /rules or POST /rules/reload",
	};
	a->h = http_admin_start(addr, port, reg, ready, ud, auth, &a->extra, err, errlen);
	if (!a->h) {
		cJSON_Delete(a->rules);
		pthread_mutex_destroy(&a->mu);
		free(a);
		return NULL;
	}
	return a;
}

void admin_set_rules(struct alerter_admin *a, const struct ruleset *rs)
{
	cJSON *arr = cJSON_CreateArray();
	if (!arr)
		return;
	for (size_t i = 0; rs && i < rs->n; i++)
		cJSON_AddItemToArray(arr, rule_obj(&rs->v[i], rs->path));
	pthread_mutex_lock(&a->mu);
	cJSON *old = a->rules;
	a->rules = arr;
	pthread_mutex_unlock(&a->mu);
	cJSON_Delete(old);
}

void admin_stop(struct alerter_admin *a)
{
	if (!a)
		return;
	http_admin_stop(a->h);
	cJSON_Delete(a->rules);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
