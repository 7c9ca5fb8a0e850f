/* alerter.h -- shared declarations of the alerter's parts:
 *   main.c    life cycle: config, Redis consumer group, consume loop, SIGHUP
 *             reload, drain, exit (start reading here)
 *   rules.c   the rule file (config/alerts.yaml) -> struct ruleset, with
 *             line:column errors; matching an event against a rule
 *   eval.c    window state per rule and label group, the six condition kinds,
 *             alert life cycle (firing, re-send, resolve); pure logic, no I/O
 *   notify.c  Alertmanager client: a sender thread with its own queue, JSON
 *             body, libcurl POST with retry and backoff
 *   admin.c   the admin HTTP server: /healthz /readyz /metrics and /rules
 *   seen.c    the event ids evaluated lately: a duplicate event is skipped
 * Threads: main (consume + evaluate), the sender, the admin server. The rule
 * set and the window state are touched by the main thread only. */
#ifndef ALERTER_H
#define ALERTER_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "ev.h"
#include "http.h"
#include "settings.h"

struct alerter_conf {
	char *rules;
	char *metrics_bind;
	long long metrics_port;
	char *group;
	char *consumer;
	char *start_id;
	long long batch_max;
	long long read_pause_ms;
	long long claim_idle_ms;
	long long claim_interval_ms;
	long long eval_interval_ms;
	long long resend_interval_ms;
	long long min_firing_ms;
	char *alertmanager_url;
	long long send_timeout_ms;
	long long send_batch_max;
	long long drain_timeout_ms;
	char *dashboard_url;
	char *grafana_url;
	char *external_url;
	long long max_groups;
	long long max_samples;
	CFG_FIELDS_COMMON;
};

/* ------------------------------------------------------------ rules.c -- */

enum cond_kind { COND_EVERY, COND_COUNT, COND_RATIO, COND_QUANTILE, COND_SUM, COND_ABSENCE };

/* An event field a rule can match on, group by or add up. */
enum field_id {
	F_EVENT_TYPE, F_STATUS, F_TOOL, F_SESSION_ID, F_AGENT_ID, F_AGENT_ROLE,
	F_PARENT_AGENT_ID, F_SOURCE_APP, F_TRACE_ID, /* strings */
	F_LATENCY_MS, F_COST_USD, F_TOKENS_INPUT, F_TOKENS_OUTPUT, F_TOKENS_CACHE_READ,
	F_TOKENS_CACHE_CREATION, F_TOKENS_TOTAL, /* numbers */
	F_PAYLOAD /* payload.<path>: string, number or bool */
};

struct field_ref {
	enum field_id id;
	char *path; /* F_PAYLOAD: dotted path inside payload ("command", "a.b") */
	char *name; /* as written ("payload.command"); label name with '.' -> '_' */
};

enum match_op { MATCH_EQ, MATCH_NOT, MATCH_REGEX, MATCH_EXISTS };

/* One condition on one field: EQ/NOT against any of `values`, REGEX
 * (POSIX extended, unanchored), EXISTS (exists == 1: present and non-empty). */
struct matcher {
	struct field_ref f;
	enum match_op op;
	char **values;
	size_t nvalues;
	regex_t re;
	int has_re;
	int exists;
};

/* All matchers must hold (an empty match matches every event). */
struct match {
	struct matcher *v;
	size_t n;
};

struct kv {
	char *key, *value;
};

struct rule {
	char *name;
	char *severity;
	struct match match;
	enum cond_kind kind;
	int64_t window_ms;    /* count, ratio, quantile, sum (0: whole group life) */
	int64_t hold_ms;      /* every: how long an alert stays after its event */
	int64_t after_ms;     /* absence: silence that fires */
	int64_t forget_ms;    /* sum without window, absence: drop a silent group */
	double threshold;
	int strict;           /* op ">" (1) or ">=" (0) */
	long long min_count;  /* ratio, quantile: fewer events never fire */
	double quantile;      /* quantile: 0 < q <= 1 */
	struct field_ref field; /* quantile, sum */
	struct match numerator; /* ratio */
	struct match until;     /* absence: events that end the group */
	struct field_ref *group_by;
	size_t ngroup_by;
	struct kv *labels; /* static extra labels */
	size_t nlabels;
	struct kv *annotations; /* templates: {value} {threshold} {window} {count} {label} ... */
	size_t nannotations;
	int line;           /* where the rule starts in the file (1-based) */
};

struct ruleset {
	struct rule *v;
	size_t n;
	char *path;
};

/* Load and validate a rule file. On error returns NULL and writes
 * "FILE:LINE:COL: problem" into err. */
struct ruleset *rules_load(const char *path, char *err, size_t errlen);
void rules_free(struct ruleset *rs); /* NULL is a no-op */

/* The value of field f in an event as text ("" and 0 when absent): strings
 * as they are, numbers in %.15g, booleans true/false. buf is used for
 * numbers. */
int field_text(const struct ev_row *row, const struct field_ref *f, const char **out,
               char *buf, size_t buflen);
/* Numeric value of f (numbers, or a payload number/numeric string); 0/-1. */
int field_number(const struct ev_row *row, const struct field_ref *f, double *out);
int match_event(const struct match *m, const struct ev_row *row);
/* "payload.command" / "tool" -> field reference (owns strings); 0 / -1. */
int field_parse(const char *s, struct field_ref *out);
void field_free(struct field_ref *f);

const char *cond_kind_name(enum cond_kind k);
/* "30s", "5m", "1h30m", "250ms", "2" (seconds) -> ms; -1 when invalid. */
int64_t parse_duration(const char *s);
/* 30000 -> "30s", 90000 -> "1m30s". */
void format_duration(int64_t ms, char *buf, size_t len);

/* ------------------------------------------------------------- eval.c -- */

/* One alert state to send to Alertmanager. Strings are valid during the
 * callback only. */
struct alert_note {
	const struct rule *rule;
	const char *const *label_names; /* alertname and severity first */
	const char *const *label_values;
	size_t nlabels;
	const char *const *ann_names;
	const char *const *ann_values;
	size_t nann;
	int64_t starts_ms, ends_ms;
	int firing;            /* 0: resolved (ends_ms in the past) */
	int64_t trigger_ms;    /* receipt time of the event that made it fire, 0 for re-sends */
	const char *generator_url;
};

struct engine_hooks {
	/* Queue a note; returns its sequence number (> 0), 0 when dropped. */
	uint64_t (*send)(void *ud, const struct alert_note *n);
	/* 1 when every note up to seq has reached Alertmanager. */
	int (*delivered)(void *ud, uint64_t seq);
	void *ud;
};

struct engine_opts {
	int64_t resend_ms;   /* re-send firing alerts this often */
	int64_t min_firing_ms; /* keep an alert firing this long after delivery */
	size_t max_groups;   /* label groups per rule (oldest silent one evicted) */
	size_t max_samples;  /* samples kept per group (oldest dropped) */
	const char *dashboard_url; /* + session id -> annotation "dashboard" */
	const char *grafana_url;   /* "" or Grafana base URL -> annotation "grafana" */
	const char *external_url;  /* the alerter's own URL, for generatorURL */
};

struct engine_stats {
	uint64_t evaluations;  /* condition checks */
	uint64_t fired;        /* transitions to firing */
	uint64_t resolved;
	uint64_t groups_evicted, samples_dropped;
	size_t groups;         /* live label groups */
	size_t firing;         /* alerts firing now */
};

struct engine;
struct engine *engine_new(const struct engine_opts *o, const struct engine_hooks *h);
/* Release everything, without sending anything. NULL is a no-op. */
void engine_free(struct engine *e);
/* Install a rule set (taken over; the previous one is freed). Window state of
 * a rule with the same name, kind, grouping and field is kept; alerts of
 * rules that went away or changed shape are resolved. */
void engine_set_rules(struct engine *e, struct ruleset *rs, int64_t now_ms);
const struct ruleset *engine_rules(const struct engine *e);
/* Feed one event (time base: its timestamp, clamped to now). */
void engine_event(struct engine *e, const struct ev_row *row, int64_t now_ms);
/* Periodic work: expire windows, absence, resolve, re-send. */
void engine_tick(struct engine *e, int64_t now_ms);
void engine_get_stats(const struct engine *e, struct engine_stats *st);
/* Firing alerts of one rule (for the firing gauge). */
size_t engine_firing(const struct engine *e, const char *rule);

/* ----------------------------------------------------------- notify.c -- */

struct notifier;
struct met_registry;
/* Start the sender thread. url "" disables sending (notes are dropped and
 * logged at debug). */
struct notifier *notifier_start(const char *url, long timeout_ms, size_t batch_max,
                                struct met_registry *reg, char *err, size_t errlen);
/* Stop: try to deliver what is queued for up to drain_ms, then join. */
void notifier_stop(struct notifier *n, long drain_ms);
uint64_t notifier_send(void *notifier, const struct alert_note *note);
int notifier_delivered(void *notifier, uint64_t seq);
size_t notifier_queued(struct notifier *n);
int notifier_healthy(struct notifier *n); /* last POST succeeded (or none yet) */
/* The Alertmanager JSON of one note (malloc'd; exposed for tests). */
char *notify_alert_json(const struct alert_note *n);

/* ------------------------------------------------------------ admin.c -- */

struct alerter_admin;
/* Admin server with /rules besides the admin endpoints. */
struct alerter_admin *admin_start(const char *addr, int port, struct met_registry *reg,
                                  http_ready_fn ready, void *ud, struct auth *auth, char *err,
                                  size_t errlen);
/* Publish the loaded rules (JSON text, copied) for /rules. */
void admin_set_rules(struct alerter_admin *a, const struct ruleset *rs);
void admin_stop(struct alerter_admin *a);

/* ---------- seen.c ---------- */

/* Remembers at least the SEEN_GEN (and at most 2 x SEEN_GEN) latest ids. */
#define SEEN_GEN 32768
struct seen;
struct seen *seen_new(void);
void seen_free(struct seen *s); /* NULL is a no-op */
/* 1 if id was seen lately (a duplicate), else remember it and return 0.
 * NULL or empty ids are never duplicates. */
int seen_check_add(struct seen *s, const char *id);

#endif
