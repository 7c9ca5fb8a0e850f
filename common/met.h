/* met.h -- Prometheus metrics registry and text exposition.
 * A registry owns its families; a family owns its series. Series handles stay
 * valid until met_registry_free(). Every function is thread-safe: updates are
 * lock-free atomics, series creation and rendering take the family mutex --
 * but for a struct met_local, which belongs to the one thread using it. */
#ifndef MET_H
#define MET_H

#include <stddef.h>

enum met_kind { MET_COUNTER, MET_GAUGE, MET_HISTOGRAM };

struct met_registry;
struct met_family;
struct met_series;

/* Most distinct label sets one family keeps; further sets fold into one series
 * whose every label value is "_other_" (bounded memory under hostile labels). */
#define MET_MAX_SERIES 2000

struct met_registry *met_registry_new(void);
void met_registry_free(struct met_registry *reg); /* NULL is a no-op */

/* Register a family. `labels` is a comma-separated list of label names
 * ("event_type,status") or NULL/"" for none. Names must be valid Prometheus
 * names; counters must end in _total. Returns NULL on invalid input or a
 * duplicate name. */
struct met_family *met_counter(struct met_registry *reg, const char *name,
                               const char *help, const char *labels);
struct met_family *met_gauge(struct met_registry *reg, const char *name,
                             const char *help, const char *labels);
/* `bounds` are the finite upper bounds, strictly ascending; +Inf is implied. */
struct met_family *met_histogram(struct met_registry *reg, const char *name,
                                 const char *help, const char *labels,
                                 const double *bounds, size_t nbounds);

/* Get or create the series for the given label values (exactly as many
 * `const char *` arguments as the family has labels). Never returns NULL for
 * a valid family. */
struct met_series *met_series(struct met_family *fam, ...);

void met_inc(struct met_series *s, double v);     /* counter/gauge: += v */
void met_set(struct met_series *s, double v);     /* gauge: = v */
void met_observe(struct met_series *s, double v); /* histogram */
double met_value(const struct met_series *s);     /* counter/gauge value, histogram sum */
unsigned long long met_count(const struct met_series *s); /* histogram count */

/* One thread's observations of a histogram series, gathered without atomics
 * and added to the series by met_local_flush (once per event-loop turn, say):
 * for a hot loop where three atomic updates per observation cost too much, or
 * where several threads would fight over the series' cache lines. Owned and
 * used by one thread; the series must outlive it. */
struct met_local {
	struct met_series *s;
	const double *bounds;       /* the family's finite bounds */
	size_t nbounds;
	unsigned long long *counts; /* nbounds + 1, not cumulative (+Inf last) */
	unsigned long long n;
	double sum;
};
/* 0, or -1 when s is not a histogram or memory ran out (l is then zeroed,
 * and observing into it is a no-op). */
int met_local_init(struct met_local *l, struct met_series *s);
void met_local_observe(struct met_local *l, double v);
void met_local_flush(struct met_local *l); /* add to the series, start again at zero */
void met_local_free(struct met_local *l);  /* flushes first; a zeroed l is a no-op */

/* Render the whole registry as Prometheus text exposition format 0.0.4
 * (HELP and TYPE lines, families in registration order, label values
 * escaped, trailing newline). *out is malloc'd; caller frees. 0 / -1. */
int met_render(struct met_registry *reg, char **out, size_t *len);

/* Default latency buckets in seconds: 0.0005 .. 10. */
extern const double met_latency_buckets[];
extern const size_t met_latency_nbuckets;

#endif
