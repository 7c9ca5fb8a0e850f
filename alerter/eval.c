/* eval.c -- window state and alert life cycle (see alerter.h). Pure logic:
 * time comes in as arguments, notes go out through engine_hooks, so the unit
 * tests drive it with made-up clocks. Main thread only.
 *
 * Per rule a hash table of label groups (the values of the rule's group_by
 * fields). A group keeps, by kind:
 *   every     the time until which the alert holds (hold after the last event)
 *   count     samples (event time) in the window
 *   ratio     samples with a numerator flag; hits / n once n >= min_count
 *   quantile  samples with the field's value; the q-quantile once n >= min_count
 *   sum       samples with the field's value in the window, or a running total
 *             when the rule has no window (resolved and forgotten after
 *             `forget` of silence)
 *   absence   the last event time; fires when silent for `after`, ends for good
 *             on an `until` event (Stop, SessionEnd by default)
 * Sample time is the event's timestamp clamped to now; an event already older
 * than the window when it arrives is not counted. Samples are kept sorted by
 * time in a ring buffer (late events are inserted in place) with running
 * count / hits / sum, so count, ratio and sum are O(1) per event; quantiles
 * sort a copy and are re-evaluated at most every QUANTILE_EVERY_MS per group
 * between ticks.
 *
 * Alerts follow Prometheus: firing notes carry endsAt = now + 4 x resend and
 * are re-sent every `resend`; when the condition clears a note with endsAt =
 * now resolves it. An alert whose firing note has not reached Alertmanager yet
 * stays firing until it has, and then for at least min_firing_ms (longer than
 * Alertmanager's group_wait), so neither a short spike nor an Alertmanager
 * outage makes an alert that on-call never hears about: Alertmanager does not
 * notify about an alert group that is already resolved at its first flush. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerter.h"
#include "log.h"

#define QUANTILE_EVERY_MS 250
#define MAX_LABELS 64
#define MAX_ANN 70

struct sample {
	int64_t t;
	double v;
	int hit;
};

struct group {
	struct group *next; /* hash chain */
	char *key;          /* label values joined by \x1f */
	char **values;      /* one per group_by field */
	int64_t first_ms, last_ms; /* event times seen (clamped) */
	int64_t touched_ms;        /* wall time of the last event (eviction order) */
	struct sample *s;
	size_t head, n, cap;
	double sum;
	long long hits;
	double total;       /* sum without window */
	long long total_n;
	int ended;          /* absence: until-event seen */
	int64_t hold_until; /* every */
	long long occurrences; /* every: events since it fired */
	/* alert */
	int firing;
	int64_t starts_ms, last_sent_ms, last_eval_ms, trigger_ms;
	uint64_t fire_seq;
	int64_t delivered_ms; /* when the firing note was first seen delivered */
	double value;
	long long count;
	char **ann;   /* rendered annotation values (NULL: not yet) */
	size_t nann;
};

struct rstate {
	struct rule *rule;
	char **label_names; /* group_by names with '.' -> '_' */
	struct group **buckets;
	size_t nbuckets, ngroups, nfiring;
};

struct engine {
	struct engine_opts o;
	struct engine_hooks h;
	struct ruleset *rs;
	struct rstate *st;
	struct engine_stats stats;
	double *scratch;
	size_t scratch_cap;
};

/* ------------------------------------------------------------------------ */
/* Small helpers */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d) {
		log_error("alerter: out of memory");
		abort();
	}
	return d;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p) {
		log_error("alerter: out of memory");
		abort();
	}
	return p;
}

static void fmt_num(double v, char *buf, size_t len)
{
	if (v == floor(v) && fabs(v) < 1e15)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.4g", v);
}

static int is_window_kind(const struct rule *r)
{
	return r->kind == COND_COUNT || r->kind == COND_RATIO || r->kind == COND_QUANTILE ||
	       (r->kind == COND_SUM && r->window_ms > 0);
}

/* ------------------------------------------------------------------------ */
/* Samples: a ring buffer sorted by time */

static struct sample *at(struct group *g, size_t k)
{
	return &g->s[(g->head + k) % g->cap];
}

static void pop_front(struct group *g)
{
	struct sample *s = at(g, 0);
	g->sum -= s->v;
	g->hits -= s->hit;
	g->head = (g->head + 1) % g->cap;
	if (--g->n == 0) {
		g->sum = 0;
		g->hits = 0;
	}
}

static void push(struct engine *e, struct group *g, int64_t t, double v, int hit)
{
	if (g->n == e->o.max_samples) {
		pop_front(g);
		e->stats.samples_dropped++;
	}
	if (g->n == g->cap) {
		size_t ncap = g->cap ? g->cap * 2 : 8;
		if (ncap > e->o.max_samples)
			ncap = e->o.max_samples;
		struct sample *ns = xcalloc(ncap, sizeof *ns);
		for (size_t k = 0; k < g->n; k++)
			ns[k] = *at(g, k);
		free(g->s);
		g->s = ns;
		g->cap = ncap;
		g->head = 0;
	}
	size_t k = g->n++;
	/* insert in time order: usually at the end */
	while (k > 0 && at(g, k - 1)->t > t) {
		*at(g, k) = *at(g, k - 1);
		k--;
	}
	*at(g, k) = (struct sample){t, v, hit};
	g->sum += v;
	g->hits += hit;
}

static void prune(struct group *g, int64_t now, int64_t window)
{
	while (g->n && at(g, 0)->t <= now - window)
		pop_front(g);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* q-quantile with linear interpolation between closest ranks. */
static double quantile_of(struct engine *e, struct group *g, double q)
{
	if (g->n > e->scratch_cap) {
		free(e->scratch);
		e->scratch_cap = g->n * 2;
		e->scratch = xcalloc(e->scratch_cap, sizeof *e->scratch);
	}
	for (size_t k = 0; k < g->n; k++)
		e->scratch[k] = at(g, k)->v;
	qsort(e->scratch, g->n, sizeof *e->scratch, cmp_double);
	double pos = q * (double)(g->n - 1);
	size_t lo = (size_t)floor(pos), hi = (size_t)ceil(pos);
	return e->scratch[lo] + (e->scratch[hi] - e->scratch[lo]) * (pos - (double)lo);
}

/* ------------------------------------------------------------------------ */
/* Groups */

static void group_free(struct group *g, size_t nvalues)
{
	for (size_t i = 0; i < nvalues; i++)
		free(g->values[i]);
	free(g->values);
	for (size_t i = 0; i < g->nann; i++)
		free(g->ann[i]);
	free(g->ann);
	free(g->key);
	free(g->s);
	free(g);
}

static void drop_ann(struct group *g)
{
	for (size_t i = 0; i < g->nann; i++)
		free(g->ann[i]);
	free(g->ann);
	g->ann = NULL;
	g->nann = 0;
}

static void unlink_group(struct rstate *st, struct group *g)
{
	size_t b = hash_str(g->key) % st->nbuckets;
	for (struct group **pp = &st->buckets[b]; *pp; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			st->ngroups--;
			if (g->firing)
				st->nfiring--;
			return;
		}
	}
}

static void rehash(struct rstate *st)
{
	size_t nb = st->nbuckets ? st->nbuckets * 2 : 64;
	struct group **nbk = xcalloc(nb, sizeof *nbk);
	for (size_t i = 0; i < st->nbuckets; i++) {
		struct group *g = st->buckets[i], *next;
		for (; g; g = next) {
			next = g->next;
			size_t b = hash_str(g->key) % nb;
			g->next = nbk[b];
			nbk[b] = g;
		}
	}
	free(st->buckets);
	st->buckets = nbk;
	st->nbuckets = nb;
}

/* Evict the group silent longest that is not firing; 0 when none can go. */
static int evict_one(struct engine *e, struct rstate *st)
{
	struct group *victim = NULL;
	for (size_t i = 0; i < st->nbuckets; i++)
		for (struct group *g = st->buckets[i]; g; g = g->next)
			if (!g->firing && (!victim || g->touched_ms < victim->touched_ms))
				victim = g;
	if (!victim)
		return 0;
	unlink_group(st, victim);
	group_free(victim, st->rule->ngroup_by);
	e->stats.groups_evicted++;
	return 1;
}

static struct group *group_get(struct engine *e, struct rstate *st, const struct ev_row *row,
                               int create)
{
	const struct rule *r = st->rule;
	char buf[64], *key;
	size_t klen = 1;
	const char *vals[MAX_LABELS];
	for (size_t i = 0; i < r->ngroup_by && i < MAX_LABELS; i++) {
		field_text(row, &r->group_by[i], &vals[i], buf, sizeof buf); /* "" when absent */
		vals[i] = xstrdup(vals[i]);
		klen += strlen(vals[i]) + 1;
	}
	key = xcalloc(klen, 1);
	for (size_t i = 0, o = 0; i < r->ngroup_by; i++) {
		size_t l = strlen(vals[i]);
		memcpy(key + o, vals[i], l);
		o += l;
		key[o++] = '\x1f';
	}
	struct group *g = NULL;
	if (st->nbuckets) {
		for (g = st->buckets[hash_str(key) % st->nbuckets]; g; g = g->next)
			if (strcmp(g->key, key) == 0)
				break;
	}
	if (g || !create) {
		for (size_t i = 0; i < r->ngroup_by; i++)
			free((char *)vals[i]);
		free(key);
		return g;
	}
	if (st->ngroups >= e->o.max_groups && !evict_one(e, st)) {
		for (size_t i = 0; i < r->ngroup_by; i++)
			free((char *)vals[i]);
		free(key);
		return NULL;
	}
	if (st->ngroups + 1 > st->nbuckets)
		rehash(st);
	g = xcalloc(1, sizeof *g);
	g->key = key;
	g->values = xcalloc(r->ngroup_by, sizeof *g->values);
	for (size_t i = 0; i < r->ngroup_by; i++)
		g->values[i] = (char *)vals[i];
	size_t b = hash_str(key) % st->nbuckets;
	g->next = st->buckets[b];
	st->buckets[b] = g;
	st->ngroups++;
	return g;
}

/* ------------------------------------------------------------------------ */
/* Notes */

/* Append s to out[*o..cap), URL-encoding when enc. */
static void put(char *out, size_t cap, size_t *o, const char *s, int enc)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s && *o + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (!enc || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			out[(*o)++] = (char)c;
		} else {
			out[(*o)++] = '%';
			out[(*o)++] = hex[c >> 4];
			out[(*o)++] = hex[c & 15];
		}
	}
	if (*s && !enc) /* cut short: do not end inside a UTF-8 sequence */
		while (*o > 0 && ((unsigned char)out[*o - 1] & 0xC0) == 0x80)
			(*o)--;
	if (*s && !enc && *o > 0 && ((unsigned char)out[*o - 1] & 0xC0) == 0xC0)
		(*o)--;
	out[*o] = '\0';
}

static const char *group_label(const struct rstate *st, const struct group *g, const char *name)
{
	for (size_t i = 0; i < st->rule->ngroup_by; i++)
		if (strcmp(st->rule->group_by[i].name, name) == 0 || strcmp(st->label_names[i], name) == 0)
			return g->values[i];
	return NULL;
}

static void window_text(const struct rule *r, char *buf, size_t len)
{
	int64_t w = r->kind == COND_EVERY ? r->hold_ms : r->kind == COND_ABSENCE ? r->after_ms : r->window_ms;
	if (r->kind == COND_SUM && !w)
		snprintf(buf, len, "the session");
	else
		format_duration(w, buf, len);
}

/* Expand one placeholder name into out. */
static void placeholder(const struct rstate *st, const struct group *g, const struct ev_row *row,
                        const char *name, char *out, size_t len)
{
	const struct rule *r = st->rule;
	out[0] = '\0';
	if (strcmp(name, "value") == 0) {
		fmt_num(g->value, out, len);
	} else if (strcmp(name, "threshold") == 0) {
		fmt_num(r->threshold, out, len);
	} else if (strcmp(name, "window") == 0) {
		window_text(r, out, len);
	} else if (strcmp(name, "count") == 0) {
		snprintf(out, len, "%lld", g->count);
	} else if (strcmp(name, "rule") == 0) {
		snprintf(out, len, "%s", r->name);
	} else if (strcmp(name, "severity") == 0) {
		snprintf(out, len, "%s", r->severity);
	} else if (strcmp(name, "kind") == 0) {
		snprintf(out, len, "%s", cond_kind_name(r->kind));
	} else if (strcmp(name, "quantile") == 0) {
		fmt_num(r->quantile, out, len);
	} else if (strcmp(name, "min_count") == 0) {
		snprintf(out, len, "%lld", r->min_count);
	} else if (strcmp(name, "field") == 0) {
		snprintf(out, len, "%s", r->field.name ? r->field.name : "");
	} else {
		const char *v = group_label(st, g, name);
		if (v) {
			snprintf(out, len, "%s", v);
		} else if (row) {
			/* any event field of the event at hand */
			struct field_ref f;
			char nb[64];
			const char *t;
			if (field_parse(name, &f) == 0) {
				if (field_text(row, &f, &t, nb, sizeof nb) == 0)
					snprintf(out, len, "%s", t);
				field_free(&f);
			}
		}
	}
}

#define ANN_MAX 2048

static char *render(const struct rstate *st, const struct group *g, const struct ev_row *row,
                    const char *tpl)
{
	char out[ANN_MAX], val[1024], name[200];
	size_t o = 0;
	out[0] = '\0';
	for (const char *p = tpl; *p && o + 1 < sizeof out; p++) {
		if ((*p == '{' && p[1] == '{') || (*p == '}' && p[1] == '}')) {
			out[o++] = *p++;
			continue;
		}
		const char *end = *p == '{' ? strchr(p, '}') : NULL;
		if (!end || (size_t)(end - p - 1) >= sizeof name) {
			out[o++] = *p;
			continue;
		}
		memcpy(name, p + 1, (size_t)(end - p - 1));
		name[end - p - 1] = '\0';
		placeholder(st, g, row, name, val, sizeof val);
		put(out, sizeof out, &o, val, 0);
		p = end;
	}
	out[o] = '\0';
	return xstrdup(out);
}

static const char *default_description(const struct rule *r)
{
	switch (r->kind) {
	case COND_EVERY: return "{event_type} with status {status} (tool {tool}) in session {session_id}";
	case COND_COUNT: return "{value} matching events in the last {window} (threshold {threshold})";
	case COND_RATIO:
		return "ratio {value} over {count} events in the last {window} (threshold {threshold}, "
		       "at least {min_count} events)";
	case COND_QUANTILE:
		return "quantile {quantile} of {field} is {value} over {count} events in the last {window} "
		       "(threshold {threshold})";
	case COND_SUM: return "{field} adds up to {value} over {window} (budget {threshold})";
	case COND_ABSENCE: return "no event for {window} and no end of session";
	}
	return "";
}

/* (Re-)render annotations: the rule's own, then summary/description
 * defaults, then value and threshold. */
static void render_ann(const struct rstate *st, struct group *g, const struct ev_row *row)
{
	const struct rule *r = st->rule;
	int has_summary = 0, has_desc = 0;
	drop_ann(g);
	g->ann = xcalloc(r->nannotations + 2, sizeof *g->ann);
	for (size_t i = 0; i < r->nannotations; i++) {
		g->ann[g->nann++] = render(st, g, row, r->annotations[i].value);
		has_summary |= strcmp(r->annotations[i].key, "summary") == 0;
		has_desc |= strcmp(r->annotations[i].key, "description") == 0;
	}
	if (!has_summary) {
		char tpl[512];
		size_t o = 0;
		tpl[0] = '\0';
		put(tpl, sizeof tpl, &o, r->name, 0);
		for (size_t i = 0; i < r->ngroup_by; i++) {
			put(tpl, sizeof tpl, &o, i ? ", " : " (", 0);
			put(tpl, sizeof tpl, &o, st->label_names[i], 0);
			put(tpl, sizeof tpl, &o, " {", 0);
			put(tpl, sizeof tpl, &o, r->group_by[i].name, 0);
			put(tpl, sizeof tpl, &o, "}", 0);
		}
		if (r->ngroup_by)
			put(tpl, sizeof tpl, &o, ")", 0);
		g->ann[g->nann++] = render(st, g, row, tpl);
	}
	if (!has_desc)
		g->ann[g->nann++] = render(st, g, row, default_description(r));
}

static uint64_t send_note(struct engine *e, struct rstate *st, struct group *g, int firing,
                          int64_t now, int64_t trigger_ms)
{
	const struct rule *r = st->rule;
	const char *ln[MAX_LABELS + 2 + MAX_LABELS], *lv[MAX_LABELS + 2 + MAX_LABELS];
	const char *an[MAX_ANN + 6], *av[MAX_ANN + 6];
	char value[64], threshold[64], dash[2048], graf[2048], gen[1024];
	size_t nl = 0, na = 0, o;

	ln[nl] = "alertname";
	lv[nl++] = r->name;
	ln[nl] = "severity";
	lv[nl++] = r->severity;
	for (size_t i = 0; i < r->ngroup_by && i < MAX_LABELS; i++) {
		if (!g->values[i][0])
			continue; /* an empty label is no label */
		ln[nl] = st->label_names[i];
		lv[nl++] = g->values[i];
	}
	for (size_t i = 0; i < r->nlabels && i < MAX_LABELS; i++) {
		ln[nl] = r->labels[i].key;
		lv[nl++] = r->labels[i].value;
	}
	if (!g->ann)
		render_ann(st, g, NULL);
	int has_summary = 0;
	for (size_t i = 0; i < r->nannotations && i < MAX_ANN; i++) {
		an[na] = r->annotations[i].key;
		has_summary |= strcmp(an[na], "summary") == 0;
		av[na++] = g->ann[i];
	}
	size_t k = r->nannotations;
	if (!has_summary && k < g->nann) {
		an[na] = "summary";
		av[na++] = g->ann[k++];
	}
	int has_desc = 0;
	for (size_t i = 0; i < r->nannotations; i++)
		has_desc |= strcmp(r->annotations[i].key, "description") == 0;
	if (!has_desc && k < g->nann) {
		an[na] = "description";
		av[na++] = g->ann[k++];
	}
	fmt_num(g->value, value, sizeof value);
	fmt_num(r->threshold, threshold, sizeof threshold);
	an[na] = "value";
	av[na++] = value;
	if (r->kind != COND_EVERY && r->kind != COND_ABSENCE) {
		an[na] = "threshold";
		av[na++] = threshold;
	}
	const char *sess = group_label(st, g, "session_id");
	o = 0;
	dash[0] = '\0';
	if (e->o.dashboard_url && e->o.dashboard_url[0]) {
		put(dash, sizeof dash, &o, e->o.dashboard_url, 0);
		if (sess && sess[0]) {
			put(dash, sizeof dash, &o, strchr(e->o.dashboard_url, '?') ? "&session=" : "?session=", 0);
			put(dash, sizeof dash, &o, sess, 1);
		}
		an[na] = "dashboard";
		av[na++] = dash;
	}
	o = 0;
	if (e->o.grafana_url && e->o.grafana_url[0]) {
		put(graf, sizeof graf, &o, e->o.grafana_url, 0);
		if (sess && sess[0]) {
			put(graf, sizeof graf, &o, "/d/session-timeline/session-timeline?var-session_id=", 0);
			put(graf, sizeof graf, &o, sess, 1);
		} else {
			put(graf, sizeof graf, &o, "/d/agent-obs-overview/agent-obs-overview", 0);
		}
		an[na] = "grafana";
		av[na++] = graf;
	}
	o = 0;
	gen[0] = '\0';
	put(gen, sizeof gen, &o, e->o.external_url ? e->o.external_url : "", 0);
	put(gen, sizeof gen, &o, "/rules?name=", 0);
	put(gen, sizeof gen, &o, r->name, 1);

	struct alert_note n = {
		.rule = r, .label_names = ln, .label_values = lv, .nlabels = nl,
		.ann_names = an, .ann_values = av, .nann = na,
		.starts_ms = g->starts_ms,
		.ends_ms = firing ? now + 4 * e->o.resend_ms : now,
		.firing = firing, .trigger_ms = trigger_ms, .generator_url = gen,
	};
	g->last_sent_ms = now;
	return e->h.send ? e->h.send(e->h.ud, &n) : 1;
}

/* ------------------------------------------------------------------------ */
/* Conditions */

static int over(const struct rule *r, double v)
{
	return r->strict ? v > r->threshold : v >= r->threshold;
}

/* Compute g->value/count and whether the condition holds now. */
static int condition(struct engine *e, const struct rule *r, struct group *g, int64_t now)
{
	if (is_window_kind(r))
		prune(g, now, r->window_ms);
	e->stats.evaluations++;
	switch (r->kind) {
	case COND_EVERY:
		g->count = g->occurrences;
		g->value = (double)g->occurrences;
		return now < g->hold_until;
	case COND_COUNT:
		g->count = (long long)g->n;
		g->value = (double)g->n;
		return over(r, g->value);
	case COND_RATIO:
		g->count = (long long)g->n;
		if ((long long)g->n < r->min_count)
			return 0;
		g->value = (double)g->hits / (double)g->n;
		return over(r, g->value);
	case COND_QUANTILE:
		g->count = (long long)g->n;
		if (!g->n || (long long)g->n < r->min_count)
			return 0;
		g->value = quantile_of(e, g, r->quantile);
		return over(r, g->value);
	case COND_SUM:
		if (r->window_ms > 0) {
			g->count = (long long)g->n;
			g->value = g->sum;
		} else {
			g->count = g->total_n;
			g->value = g->total;
			if (g->ended)
				return 0; /* forgotten: silent for `forget` */
		}
		return over(r, g->value);
	case COND_ABSENCE:
		g->value = (double)(now - g->last_ms) / 1000.0;
		g->count = 0;
		return !g->ended && g->last_ms && now - g->last_ms >= r->after_ms;
	}
	return 0;
}

/* Evaluate one group and drive its alert. row: the event that triggered the
 * evaluation (NULL on ticks). */
static void evaluate(struct engine *e, struct rstate *st, struct group *g, const struct ev_row *row,
                     int64_t now)
{
	const struct rule *r = st->rule;
	int active = condition(e, r, g, now);
	g->last_eval_ms = now;
	if (g->firing && !g->delivered_ms &&
	    (!g->fire_seq || !e->h.delivered || e->h.delivered(e->h.ud, g->fire_seq)))
		g->delivered_ms = now; /* first seen delivered */
	if (active && !g->firing) {
		g->firing = 1;
		st->nfiring++;
		e->stats.fired++;
		g->starts_ms = now;
		g->delivered_ms = 0;
		if (r->kind == COND_EVERY && row && row->ts_ms < now)
			g->starts_ms = row->ts_ms;
		render_ann(st, g, row);
		int64_t trig = row ? row->received_ms : r->kind == COND_ABSENCE ? 0 : g->trigger_ms;
		g->fire_seq = send_note(e, st, g, 1, now, trig);
		if (!g->fire_seq || !e->h.delivered)
			g->delivered_ms = now; /* not sent: nothing to wait for */
		return;
	}
	if (active) {
		if (row)
			render_ann(st, g, row);
		if (now - g->last_sent_ms >= e->o.resend_ms)
			send_note(e, st, g, 1, now, 0);
		return;
	}
	if (!g->firing)
		return;
	if (!g->delivered_ms || now - g->delivered_ms < e->o.min_firing_ms) {
		/* Alertmanager has not had it (long enough) to notify anyone: keep
		 * firing, so a short spike or an outage never swallows it */
		if (now - g->last_sent_ms >= e->o.resend_ms)
			send_note(e, st, g, 1, now, 0);
		return;
	}
	send_note(e, st, g, 0, now, 0);
	g->firing = 0;
	g->occurrences = 0;
	st->nfiring--;
	e->stats.resolved++;
}

/* ------------------------------------------------------------------------ */
/* Engine */

struct engine *engine_new(const struct engine_opts *o, const struct engine_hooks *h)
{
	struct engine *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->o = *o;
	if (e->o.max_samples < 2)
		e->o.max_samples = 2;
	if (e->o.max_groups < 1)
		e->o.max_groups = 1;
	if (e->o.resend_ms < 1)
		e->o.resend_ms = 60000;
	if (h)
		e->h = *h;
	return e;
}

static void rstate_clear(struct rstate *st)
{
	for (size_t i = 0; i < st->nbuckets; i++) {
		struct group *g = st->buckets[i], *next;
		for (; g; g = next) {
			next = g->next;
			group_free(g, st->rule->ngroup_by);
		}
	}
	free(st->buckets);
	if (st->label_names)
		for (size_t i = 0; i < st->rule->ngroup_by; i++)
			free(st->label_names[i]);
	free(st->label_names);
	memset(st, 0, sizeof *st);
}

static void free_states(struct engine *e)
{
	if (!e->rs)
		return;
	for (size_t i = 0; i < e->rs->n; i++)
		rstate_clear(&e->st[i]);
	free(e->st);
	e->st = NULL;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	free_states(e);
	rules_free(e->rs);
	free(e->scratch);
	free(e);
}

const struct ruleset *engine_rules(const struct engine *e)
{
	return e->rs;
}

static int same_field(const struct field_ref *a, const struct field_ref *b)
{
	if (!a->name || !b->name)
		return !a->name && !b->name;
	return strcmp(a->name, b->name) == 0;
}

/* Window state of `old` can serve `new`. */
static int compatible(const struct rule *o, const struct rule *n)
{
	if (o->kind != n->kind || o->ngroup_by != n->ngroup_by || !same_field(&o->field, &n->field))
		return 0;
	if (o->kind == COND_SUM && (o->window_ms > 0) != (n->window_ms > 0))
		return 0;
	for (size_t i = 0; i < o->ngroup_by; i++)
		if (!same_field(&o->group_by[i], &n->group_by[i]))
			return 0;
	return 1;
}

static void resolve_all(struct engine *e, struct rstate *st, int64_t now)
{
	for (size_t i = 0; i < st->nbuckets; i++) {
		for (struct group *g = st->buckets[i]; g; g = g->next) {
			if (!g->firing)
				continue;
			send_note(e, st, g, 0, now, 0);
			g->firing = 0;
			st->nfiring--;
			e->stats.resolved++;
		}
	}
}

void engine_set_rules(struct engine *e, struct ruleset *rs, int64_t now)
{
	struct rstate *nst = xcalloc(rs->n, sizeof *nst);
	size_t oldn = e->rs ? e->rs->n : 0;
	for (size_t i = 0; i < rs->n; i++) {
		struct rule *r = &rs->v[i];
		nst[i].rule = r;
		nst[i].label_names = xcalloc(r->ngroup_by, sizeof *nst[i].label_names);
		for (size_t j = 0; j < r->ngroup_by; j++) {
			char *ln = xstrdup(r->group_by[j].name);
			for (char *c = ln; *c; c++)
				if (*c == '.')
					*c = '_';
			nst[i].label_names[j] = ln;
		}
		for (size_t j = 0; j < oldn; j++) {
			struct rstate *ost = &e->st[j];
			if (!ost->rule || strcmp(ost->rule->name, r->name) != 0)
				continue;
			if (!compatible(ost->rule, r)) {
				log_kv(LOG_INFO, "rule changed shape: its window state starts afresh", "rule",
				       r->name, NULL);
				break;
			}
			/* take the groups over; annotations are re-rendered */
			nst[i].buckets = ost->buckets;
			nst[i].nbuckets = ost->nbuckets;
			nst[i].ngroups = ost->ngroups;
			nst[i].nfiring = ost->nfiring;
			ost->buckets = NULL;
			ost->nbuckets = ost->ngroups = ost->nfiring = 0;
			for (size_t b = 0; b < nst[i].nbuckets; b++)
				for (struct group *g = nst[i].buckets[b]; g; g = g->next)
					drop_ann(g);
			break;
		}
	}
	/* what is left in the old states: resolve and free */
	for (size_t j = 0; j < oldn; j++) {
		resolve_all(e, &e->st[j], now);
		rstate_clear(&e->st[j]);
	}
	free(e->st);
	rules_free(e->rs);
	e->rs = rs;
	e->st = nst;
}

void engine_event(struct engine *e, const struct ev_row *row, int64_t now)
{
	if (!e->rs)
		return;
	int64_t t = row->ts_ms < now ? row->ts_ms : now;
	for (size_t i = 0; i < e->rs->n; i++) {
		struct rstate *st = &e->st[i];
		const struct rule *r = st->rule;
		if (r->kind == COND_ABSENCE && match_event(&r->until, row)) {
			struct group *g = group_get(e, st, row, 0);
			if (g) {
				g->ended = 1;
				evaluate(e, st, g, row, now);
				if (!g->firing) {
					unlink_group(st, g);
					group_free(g, r->ngroup_by);
				}
			}
			continue;
		}
		if (!match_event(&r->match, row))
			continue;
		if (is_window_kind(r) && t <= now - r->window_ms)
			continue; /* already outside the window */
		if (r->kind == COND_ABSENCE && t <= now - r->after_ms)
			continue; /* too old to say the session is active */
		double v = 0;
		if ((r->kind == COND_QUANTILE || r->kind == COND_SUM) && field_number(row, &r->field, &v))
			continue; /* the event does not carry the field */
		struct group *g = group_get(e, st, row, 1);
		if (!g)
			continue; /* full of firing groups */
		g->touched_ms = now;
		if (!g->first_ms || t < g->first_ms)
			g->first_ms = t;
		if (t > g->last_ms)
			g->last_ms = t;
		g->trigger_ms = row->received_ms;
		switch (r->kind) {
		case COND_EVERY:
			g->hold_until = now + r->hold_ms;
			g->occurrences++;
			break;
		case COND_COUNT: push(e, g, t, 1, 1); break;
		case COND_RATIO: push(e, g, t, 0, match_event(&r->numerator, row)); break;
		case COND_QUANTILE: push(e, g, t, v, 0); break;
		case COND_SUM:
			if (r->window_ms > 0) {
				push(e, g, t, v, 0);
			} else {
				g->total += v;
				g->total_n++;
			}
			break;
		case COND_ABSENCE: break;
		}
		if (r->kind == COND_QUANTILE && g->firing == 0 && g->n > 1000 &&
		    now - g->last_eval_ms < QUANTILE_EVERY_MS)
			continue; /* big window: the tick or a later event evaluates it */
		if (r->kind == COND_QUANTILE && g->firing && now - g->last_eval_ms < QUANTILE_EVERY_MS)
			continue;
		evaluate(e, st, g, row, now);
	}
}

/* Should a quiet group be forgotten? */
static int done_with(const struct rule *r, const struct group *g, int64_t now)
{
	if (g->firing)
		return 0;
	switch (r->kind) {
	case COND_EVERY: return now >= g->hold_until;
	case COND_COUNT:
	case COND_RATIO:
	case COND_QUANTILE: return g->n == 0;
	case COND_SUM: return r->window_ms > 0 ? g->n == 0 : g->ended;
	case COND_ABSENCE: return g->ended;
	}
	return 0;
}

void engine_tick(struct engine *e, int64_t now)
{
	if (!e->rs)
		return;
	for (size_t i = 0; i < e->rs->n; i++) {
		struct rstate *st = &e->st[i];
		const struct rule *r = st->rule;
		for (size_t b = 0; b < st->nbuckets; b++) {
			struct group *g = st->buckets[b], *next;
			for (; g; g = next) {
				next = g->next;
				if ((r->kind == COND_ABSENCE || (r->kind == COND_SUM && !r->window_ms)) &&
				    now - g->touched_ms >= r->forget_ms)
					g->ended = 1; /* silent for too long: give up on it */
				evaluate(e, st, g, NULL, now);
				if (done_with(r, g, now)) {
					unlink_group(st, g);
					group_free(g, r->ngroup_by);
				}
			}
		}
	}
}

void engine_get_stats(const struct engine *e, struct engine_stats *st)
{
	*st = e->stats;
	st->groups = 0;
	st->firing = 0;
	for (size_t i = 0; e->rs && i < e->rs->n; i++) {
		st->groups += e->st[i].ngroups;
		st->firing += e->st[i].nfiring;
	}
}

size_t engine_firing(const struct engine *e, const char *rule)
{
	for (size_t i = 0; e->rs && i < e->rs->n; i++)
		if (strcmp(e->st[i].rule->name, rule) == 0)
			return e->st[i].nfiring;
	return 0;
}
