/* met.c -- Prometheus metrics registry and text exposition (see met.h).
 * Memory: the registry owns its families (name, help, label names, bounds),
 * each family owns its series (label values copied in); all of it is freed by
 * met_registry_free(). Threads: values are C11 atomics (doubles stored as bit
 * patterns, updated with CAS loops); the registry mutex guards the family
 * list, each family mutex guards series creation, lookup and rendering. */
#include "met.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MET_MAX_LABELS 16               /* label names per family */
#define MET_RENDER_MAX (64u << 20)      /* cap on one exposition text */
#define MET_OTHER "_other_"

const double met_latency_buckets[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t met_latency_nbuckets = sizeof met_latency_buckets / sizeof met_latency_buckets[0];

struct met_series {
	struct met_family *fam;
	char **values;                  /* fam->nlabels strings */
	uint64_t hash;
	struct met_series *next;        /* creation order */
	_Atomic uint64_t value;         /* double bits: counter/gauge value, histogram sum */
	_Atomic unsigned long long count;
	_Atomic unsigned long long buckets[]; /* histogram: nbounds + 1 (last is +Inf), not cumulative */
};

struct met_family {
	struct met_registry *reg;
	enum met_kind kind;
	char *name;
	char *help;
	char **labels;
	size_t nlabels;
	double *bounds;
	size_t nbounds;

	pthread_mutex_t mu;
	struct met_series *head, *tail; /* regular series, creation order */
	size_t nseries;
	struct met_series **slots;      /* open-addressing hash of regular series */
	size_t nslots;
	struct met_series *other;       /* overflow series, preallocated if nlabels > 0 */
	int other_live;                 /* handed out at least once: render it */
	struct met_family *next;
};

struct met_registry {
	pthread_mutex_t mu;
	struct met_family *head, *tail;
};

/* ------------------------------------------------------------------------ */
/* Atomic doubles */

static double bits_to_double(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof d);
	return d;
}

static uint64_t double_to_bits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof u);
	return u;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
	uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
	for (;;) {
		uint64_t next = double_to_bits(bits_to_double(old) + v);
		if (atomic_compare_exchange_weak_explicit(a, &old, next, memory_order_relaxed,
		                                          memory_order_relaxed))
			break;
	}
}

/* ------------------------------------------------------------------------ */
/* Names */

static int valid_metric_name(const char *s)
{
	if (!s || !*s)
		return 0;
	for (const char *p = s; *p; p++) {
		char c = *p;
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
		         (p != s && c >= '0' && c <= '9');
		if (!ok)
			return 0;
	}
	return 1;
}

static int valid_label_name(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	if (n >= 2 && s[0] == '_' && s[1] == '_') /* reserved */
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		         (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return 0;
	}
	return 1;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Split "a,b" into a malloc'd array of malloc'd names. 0 / -1 (invalid). */
static int parse_labels(const char *labels, enum met_kind kind, char ***out, size_t *nout)
{
	char **names = NULL;
	size_t n = 0;
	int rc = -1;

	*out = NULL;
	*nout = 0;
	if (!labels || !*labels)
		return 0;
	names = calloc(MET_MAX_LABELS, sizeof *names);
	if (!names)
		goto out;
	const char *p = labels;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (n == MET_MAX_LABELS || !valid_label_name(p, len))
			goto out;
		if (kind == MET_HISTOGRAM && len == 2 && memcmp(p, "le", 2) == 0)
			goto out;
		for (size_t i = 0; i < n; i++)
			if (strlen(names[i]) == len && memcmp(names[i], p, len) == 0)
				goto out; /* duplicate */
		names[n] = strndup(p, len);
		if (!names[n])
			goto out;
		n++;
		if (!comma)
			break;
		p = comma + 1;
	}
	*out = names;
	*nout = n;
	names = NULL;
	rc = 0;
out:
	if (names) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Series */

static uint64_t hash_values(const char *const *vals, size_t n)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)vals[i]; *p; p++) {
			h ^= *p;
			h *= 1099511628211ULL;
		}
		h ^= 0xff; /* separator: ("a","") differs from ("","a") */
		h *= 1099511628211ULL;
	}
	return h;
}

static void series_free(struct met_series *s, size_t nlabels)
{
	if (!s)
		return;
	if (s->values) {
		for (size_t i = 0; i < nlabels; i++)
			free(s->values[i]);
		free(s->values);
	}
	free(s);
}

static struct met_series *series_new(struct met_family *fam, const char *const *vals)
{
	size_t nb = fam->kind == MET_HISTOGRAM ? fam->nbounds + 1 : 0;
	struct met_series *s = calloc(1, sizeof *s + nb * sizeof s->buckets[0]);
	if (!s)
		return NULL;
	s->fam = fam;
	atomic_init(&s->value, double_to_bits(0.0));
	atomic_init(&s->count, 0);
	for (size_t i = 0; i < nb; i++)
		atomic_init(&s->buckets[i], 0);
	if (fam->nlabels > 0) {
		s->values = calloc(fam->nlabels, sizeof *s->values);
		if (!s->values)
			goto fail;
		for (size_t i = 0; i < fam->nlabels; i++) {
			s->values[i] = strdup(vals[i]);
			if (!s->values[i])
				goto fail;
		}
	}
	s->hash = hash_values(vals, fam->nlabels);
	return s;
fail:
	series_free(s, fam->nlabels);
	return NULL;
}

static int series_matches(const struct met_series *s, const char *const *vals, size_t n,
                          uint64_t h)
{
	if (s->hash != h)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(s->values[i], vals[i]) != 0)
			return 0;
	return 1;
}

/* Caller holds fam->mu. Grows the table to keep the load factor <= 1/2. */
static int slots_insert(struct met_family *fam, struct met_series *s)
{
	if ((fam->nseries + 1) * 2 > fam->nslots) {
		size_t ncap = fam->nslots ? fam->nslots * 2 : 16;
		struct met_series **ns = calloc(ncap, sizeof *ns);
		if (!ns)
			return -1;
		for (size_t i = 0; i < fam->nslots; i++) {
			struct met_series *e = fam->slots[i];
			if (!e)
				continue;
			size_t j = (size_t)e->hash & (ncap - 1);
			while (ns[j])
				j = (j + 1) & (ncap - 1);
			ns[j] = e;
		}
		free(fam->slots);
		fam->slots = ns;
		fam->nslots = ncap;
	}
	size_t j = (size_t)s->hash & (fam->nslots - 1);
	while (fam->slots[j])
		j = (j + 1) & (fam->nslots - 1);
	fam->slots[j] = s;
	return 0;
}

static struct met_series *slots_find(struct met_family *fam, const char *const *vals, uint64_t h)
{
	if (fam->nslots == 0)
		return NULL;
	size_t j = (size_t)h & (fam->nslots - 1);
	while (fam->slots[j]) {
		if (series_matches(fam->slots[j], vals, fam->nlabels, h))
			return fam->slots[j];
		j = (j + 1) & (fam->nslots - 1);
	}
	return NULL;
}

static int all_other(const char *const *vals, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(vals[i], MET_OTHER) != 0)
			return 0;
	return 1;
}

/* Caller holds fam->mu; fam->nlabels > 0. */
static struct met_series *series_get_locked(struct met_family *fam, const char *const *vals)
{
	uint64_t h = hash_values(vals, fam->nlabels);
	struct met_series *s = slots_find(fam, vals, h);
	if (s)
		return s;
	if (fam->nseries >= MET_MAX_SERIES || all_other(vals, fam->nlabels))
		goto other;
	s = series_new(fam, vals);
	if (!s)
		goto other;
	if (slots_insert(fam, s) < 0) {
		series_free(s, fam->nlabels);
		goto other;
	}
	if (fam->tail)
		fam->tail->next = s;
	else
		fam->head = s;
	fam->tail = s;
	fam->nseries++;
	return s;
other:
	fam->other_live = 1;
	return fam->other;
}

struct met_series *met_series(struct met_family *fam, ...)
{
	const char *vals[MET_MAX_LABELS];
	va_list ap;

	if (!fam)
		return NULL;
	if (fam->nlabels == 0)
		return fam->head; /* created at registration, never changes */
	va_start(ap, fam);
	for (size_t i = 0; i < fam->nlabels; i++) {
		const char *v = va_arg(ap, const char *);
		vals[i] = v ? v : "";
	}
	va_end(ap);

	pthread_mutex_lock(&fam->mu);
	struct met_series *s = series_get_locked(fam, vals);
	pthread_mutex_unlock(&fam->mu);
	return s;
}

/* ------------------------------------------------------------------------ */
/* Updates */

void met_inc(struct met_series *s, double v)
{
	if (!s || s->fam->kind == MET_HISTOGRAM)
		return;
	if (s->fam->kind == MET_COUNTER && !(v >= 0)) /* counters never go down; NaN too */
		return;
	atomic_add_double(&s->value, v);
}

void met_set(struct met_series *s, double v)
{
	if (!s || s->fam->kind != MET_GAUGE)
		return;
	atomic_store_explicit(&s->value, double_to_bits(v), memory_order_relaxed);
}

void met_observe(struct met_series *s, double v)
{
	if (!s || s->fam->kind != MET_HISTOGRAM)
		return;
	const struct met_family *fam = s->fam;
	size_t i = 0;
	while (i < fam->nbounds && !(v <= fam->bounds[i])) /* NaN lands in +Inf */
		i++;
	atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
	atomic_add_double(&s->value, v);
	atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

int met_local_init(struct met_local *l, struct met_series *s)
{
	memset(l, 0, sizeof *l);
	if (!s || s->fam->kind != MET_HISTOGRAM)
		return -1;
	l->counts = calloc(s->fam->nbounds + 1, sizeof *l->counts);
	if (!l->counts)
		return -1;
	l->s = s;
	l->bounds = s->fam->bounds;
	l->nbounds = s->fam->nbounds;
	return 0;
}

void met_local_observe(struct met_local *l, double v)
{
	if (!l->counts)
		return;
	size_t i = 0;
	while (i < l->nbounds && !(v <= l->bounds[i])) /* as met_observe: NaN lands in +Inf */
		i++;
	l->counts[i]++;
	l->n++;
	l->sum += v;
}

void met_local_flush(struct met_local *l)
{
	if (!l->n)
		return;
	for (size_t i = 0; i <= l->nbounds; i++) {
		if (l->counts[i])
			atomic_fetch_add_explicit(&l->s->buckets[i], l->counts[i], memory_order_relaxed);
		l->counts[i] = 0;
	}
	atomic_add_double(&l->s->value, l->sum);
	atomic_fetch_add_explicit(&l->s->count, l->n, memory_order_relaxed);
	l->n = 0;
	l->sum = 0;
}

void met_local_free(struct met_local *l)
{
	if (!l->counts)
		return;
	met_local_flush(l);
	free(l->counts);
	memset(l, 0, sizeof *l);
}

double met_value(const struct met_series *s)
{
	if (!s)
		return 0.0;
	return bits_to_double(atomic_load_explicit(&s->value, memory_order_relaxed));
}

unsigned long long met_count(const struct met_series *s)
{
	if (!s)
		return 0;
	return atomic_load_explicit(&s->count, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Registry and families */

struct met_registry *met_registry_new(void)
{
	struct met_registry *reg = calloc(1, sizeof *reg);
	if (!reg)
		return NULL;
	if (pthread_mutex_init(&reg->mu, NULL) != 0) {
		free(reg);
		return NULL;
	}
	return reg;
}

static void family_free(struct met_family *fam)
{
	if (!fam)
		return;
	struct met_series *s = fam->head;
	while (s) {
		struct met_series *next = s->next;
		series_free(s, fam->nlabels);
		s = next;
	}
	series_free(fam->other, fam->nlabels);
	free(fam->slots);
	if (fam->labels) {
		for (size_t i = 0; i < fam->nlabels; i++)
			free(fam->labels[i]);
		free(fam->labels);
	}
	free(fam->bounds);
	free(fam->name);
	free(fam->help);
	pthread_mutex_destroy(&fam->mu);
	free(fam);
}

void met_registry_free(struct met_registry *reg)
{
	if (!reg)
		return;
	struct met_family *f = reg->head;
	while (f) {
		struct met_family *next = f->next;
		family_free(f);
		f = next;
	}
	pthread_mutex_destroy(&reg->mu);
	free(reg);
}

static struct met_family *family_new(struct met_registry *reg, enum met_kind kind,
                                     const char *name, const char *help, const char *labels,
                                     const double *bounds, size_t nbounds)
{
	struct met_family *fam = NULL;
	int ok = 0;

	if (!reg || !valid_metric_name(name))
		return NULL;
	if (kind == MET_COUNTER && !ends_with(name, "_total"))
		return NULL;
	if (kind == MET_HISTOGRAM) {
		if (nbounds > 0 && !bounds)
			return NULL;
		for (size_t i = 0; i < nbounds; i++) {
			if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
				return NULL;
		}
	}

	fam = calloc(1, sizeof *fam);
	if (!fam)
		return NULL;
	if (pthread_mutex_init(&fam->mu, NULL) != 0) {
		free(fam);
		return NULL;
	}
	fam->reg = reg;
	fam->kind = kind;
	fam->name = strdup(name);
	fam->help = strdup(help ? help : "");
	if (!fam->name || !fam->help)
		goto out;
	if (parse_labels(labels, kind, &fam->labels, &fam->nlabels) < 0)
		goto out;
	if (kind == MET_HISTOGRAM && nbounds > 0) {
		fam->bounds = malloc(nbounds * sizeof *fam->bounds);
		if (!fam->bounds)
			goto out;
		memcpy(fam->bounds, bounds, nbounds * sizeof *fam->bounds);
		fam->nbounds = nbounds;
	}
	if (fam->nlabels == 0) {
		/* the one series exists from the start, so it renders a zero */
		fam->head = fam->tail = series_new(fam, NULL);
		if (!fam->head)
			goto out;
		fam->nseries = 1;
	} else {
		const char *vals[MET_MAX_LABELS];
		for (size_t i = 0; i < fam->nlabels; i++)
			vals[i] = MET_OTHER;
		fam->other = series_new(fam, vals);
		if (!fam->other)
			goto out;
	}

	pthread_mutex_lock(&reg->mu);
	for (struct met_family *f = reg->head; f; f = f->next) {
		if (strcmp(f->name, name) == 0) {
			pthread_mutex_unlock(&reg->mu);
			goto out;
		}
	}
	if (reg->tail)
		reg->tail->next = fam;
	else
		reg->head = fam;
	reg->tail = fam;
	pthread_mutex_unlock(&reg->mu);
	ok = 1;
out:
	if (!ok) {
		family_free(fam);
		fam = NULL;
	}
	return fam;
}

struct met_family *met_counter(struct met_registry *reg, const char *name, const char *help,
                               const char *labels)
{
	return family_new(reg, MET_COUNTER, name, help, labels, NULL, 0);
}

struct met_family *met_gauge(struct met_registry *reg, const char *name, const char *help,
                             const char *labels)
{
	return family_new(reg, MET_GAUGE, name, help, labels, NULL, 0);
}

struct met_family *met_histogram(struct met_registry *reg, const char *name, const char *help,
                                 const char *labels, const double *bounds, size_t nbounds)
{
	return family_new(reg, MET_HISTOGRAM, name, help, labels, bounds, nbounds);
}

/* ------------------------------------------------------------------------ */
/* Rendering */

struct buf {
	char *p;
	size_t len, cap;
	int failed;
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 4096;
		while (b->len + n + 1 > ncap)
			ncap *= 2;
		if (ncap > MET_RENDER_MAX) {
			b->failed = 1;
			return;
		}
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->failed = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

/* Escape for HELP text (\\ and \n) or, with quotes, for label values. */
static void buf_escaped(struct buf *b, const char *s, int quotes)
{
	const char *run = s;
	for (const char *p = s; *p; p++) {
		const char *rep = NULL;
		if (*p == '\\')
			rep = "\\\\";
		else if (*p == '\n')
			rep = "\\n";
		else if (quotes && *p == '"')
			rep = "\\\"";
		if (!rep)
			continue;
		buf_put(b, run, (size_t)(p - run));
		buf_puts(b, rep);
		run = p + 1;
	}
	buf_puts(b, run);
}

/* Prometheus-parsable number: integers without exponent, +Inf/-Inf/NaN,
 * otherwise the shortest of %.15g / %.17g that round-trips. */
static void fmt_num(char *out, size_t len, double v)
{
	if (isnan(v))
		snprintf(out, len, "NaN");
	else if (isinf(v))
		snprintf(out, len, "%s", v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 1e15)
		snprintf(out, len, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
	else {
		snprintf(out, len, "%.15g", v);
		if (strtod(out, NULL) != v)
			snprintf(out, len, "%.17g", v);
	}
}

/* name{l1="v1",...[,le="x"]} value\n */
static void put_sample(struct buf *b, const struct met_family *fam, const struct met_series *s,
                       const char *suffix, const char *le, const char *value)
{
	buf_puts(b, fam->name);
	buf_puts(b, suffix);
	if (fam->nlabels > 0 || le) {
		buf_puts(b, "{");
		for (size_t i = 0; i < fam->nlabels; i++) {
			if (i > 0)
				buf_puts(b, ",");
			buf_puts(b, fam->labels[i]);
			buf_puts(b, "=\"");
			buf_escaped(b, s->values[i], 1);
			buf_puts(b, "\"");
		}
		if (le) {
			if (fam->nlabels > 0)
				buf_puts(b, ",");
			buf_puts(b, "le=\"");
			buf_puts(b, le);
			buf_puts(b, "\"");
		}
		buf_puts(b, "}");
	}
	buf_puts(b, " ");
	buf_puts(b, value);
	buf_puts(b, "\n");
}

static void render_series(struct buf *b, const struct met_family *fam, const struct met_series *s)
{
	char num[64], le[64];

	if (fam->kind != MET_HISTOGRAM) {
		fmt_num(num, sizeof num, met_value(s));
		put_sample(b, fam, s, "", NULL, num);
		return;
	}
	/* +Inf and _count both come from the bucket reads, so they always agree */
	unsigned long long cum = 0;
	for (size_t i = 0; i <= fam->nbounds; i++) {
		cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
		if (i < fam->nbounds)
			fmt_num(le, sizeof le, fam->bounds[i]);
		else
			snprintf(le, sizeof le, "+Inf");
		snprintf(num, sizeof num, "%llu", cum);
		put_sample(b, fam, s, "_bucket", le, num);
	}
	fmt_num(num, sizeof num, met_value(s));
	put_sample(b, fam, s, "_sum", NULL, num);
	snprintf(num, sizeof num, "%llu", cum);
	put_sample(b, fam, s, "_count", NULL, num);
}

static const char *kind_name(enum met_kind k)
{
	switch (k) {
	case MET_COUNTER: return "counter";
	case MET_GAUGE: return "gauge";
	case MET_HISTOGRAM: return "histogram";
	}
	return "untyped";
}

static void render_family(struct buf *b, struct met_family *fam)
{
	buf_puts(b, "# HELP ");
	buf_puts(b, fam->name);
	buf_puts(b, " ");
	buf_escaped(b, fam->help, 0);
	buf_puts(b, "\n# TYPE ");
	buf_puts(b, fam->name);
	buf_puts(b, " ");
	buf_puts(b, kind_name(fam->kind));
	buf_puts(b, "\n");

	pthread_mutex_lock(&fam->mu);
	for (const struct met_series *s = fam->head; s; s = s->next)
		render_series(b, fam, s);
	if (fam->other_live)
		render_series(b, fam, fam->other);
	pthread_mutex_unlock(&fam->mu);
}

int met_render(struct met_registry *reg, char **out, size_t *len)
{
	struct buf b = {0};
	int rc = -1;

	if (!reg || !out)
		return -1;
	*out = NULL;
	if (len)
		*len = 0;
	buf_put(&b, "", 0); /* an empty registry still yields "" */
	pthread_mutex_lock(&reg->mu);
	for (struct met_family *f = reg->head; f && !b.failed; f = f->next)
		render_family(&b, f);
	pthread_mutex_unlock(&reg->mu);
	if (b.failed)
		goto out;
	*out = b.p;
	if (len)
		*len = b.len;
	b.p = NULL;
	rc = 0;
out:
	free(b.p);
	return rc;
}
