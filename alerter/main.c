/* main.c -- the alerter daemon: consumer group "alerter" on the event stream
 * -> rules from config/alerts.yaml (rules.c) -> window state and conditions
 * (eval.c) -> Alertmanager /api/v2/alerts through a sender thread (notify.c).
 * Reads top to bottom: --check, config, rules, connect, re-read own pending
 * entries, consume loop (evaluate, ack, tick, SIGHUP reload, claim), drain,
 * exit.
 *
 * State lives in memory only. Entries are acknowledged once evaluated, so a
 * restart loses the window contents (counts, ratios, quantiles, sums, the
 * last-seen times of absence rules) and the list of firing alerts: a spike
 * that straddles the restart counts only its events after it, and an alert
 * firing at the restart is not re-sent and resolves in Alertmanager by itself
 * at its endsAt (at most 4 x alerter.resend_interval_ms later). Entries read
 * but not yet acknowledged when the process died are read again on restart
 * (the consumer name is leased, see common/lease.c). An entry whose
 * evaluation queued an alert is acknowledged only once Alertmanager has that
 * alert (held below), so a crash while Alertmanager is away loses no alert. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alerter.h"
#include "daemon.h"
#include "lease.h"
#include "log.h"
#include "met.h"
#include "rs.h"
#include "sig.h"
#include "ev.h"

#define T struct alerter_conf
static const struct cfg_setting settings[] = {
	{"alerter.rules", CFG_STR, "config/alerts.yaml", "Rule file (YAML); SIGHUP reloads it",
	 offsetof(T, rules), 0, -1},
	{"alerter.metrics_bind", CFG_STR, "127.0.0.1", "Admin HTTP address (/healthz /readyz /metrics /rules)",
	 offsetof(T, metrics_bind), 0, -1},
	{"alerter.metrics_port", CFG_INT, "7073", "Admin HTTP port", offsetof(T, metrics_port), 1, 65535},
	{"alerter.group", CFG_STR, "alerter", "Consumer group name", offsetof(T, group), 0, -1},
	{"alerter.consumer", CFG_STR, "", "Consumer name (empty: first free <hostname>-N)",
	 offsetof(T, consumer), 0, -1},
	{"alerter.start_id", CFG_STR, "$",
	 "Where a new consumer group starts: $ (new events only) or 0 (whole stream)",
	 offsetof(T, start_id), 0, -1},
	{"alerter.batch_max", CFG_INT, "1000", "Most entries read per XREADGROUP", offsetof(T, batch_max), 1, 100000},
	{"alerter.read_pause_ms", CFG_INT, "20",
	 "Pause after a read that emptied the stream, so a trickle of events costs one wake-up per pause, "
	 "not one per event (adds at most this to alert latency; 0: none)",
	 offsetof(T, read_pause_ms), 0, 1000},
	{"alerter.claim_idle_ms", CFG_INT, "30000", "Claim entries pending this long on dead consumers",
	 offsetof(T, claim_idle_ms), 1000, 86400000},
	{"alerter.claim_interval_ms", CFG_INT, "5000", "How often to look for entries to claim",
	 offsetof(T, claim_interval_ms), 100, 3600000},
	{"alerter.eval_interval_ms", CFG_INT, "1000",
	 "How often windows are re-evaluated without events (expiry, absence, resolve)",
	 offsetof(T, eval_interval_ms), 10, 60000},
	{"alerter.resend_interval_ms", CFG_INT, "60000",
	 "Re-send firing alerts this often (endsAt = now + 4 x this)", offsetof(T, resend_interval_ms), 100, 3600000},
	{"alerter.min_firing_ms", CFG_INT, "15000",
	 "An alert stays firing at least this long after Alertmanager has it (> its group_wait)",
	 offsetof(T, min_firing_ms), 0, 3600000},
	{"alerter.alertmanager_url", CFG_STR, "http://127.0.0.1:9093",
	 "Alertmanager base URL (POST <url>/api/v2/alerts); empty: do not send", offsetof(T, alertmanager_url), 0, -1},
	{"alerter.send_timeout_ms", CFG_INT, "5000", "Timeout of one POST to Alertmanager",
	 offsetof(T, send_timeout_ms), 100, 600000},
	{"alerter.send_batch_max", CFG_INT, "500", "Most alerts in one POST", offsetof(T, send_batch_max), 1, 100000},
	{"alerter.drain_timeout_ms", CFG_INT, "5000", "On shutdown, time to deliver queued alerts",
	 offsetof(T, drain_timeout_ms), 0, 600000},
	{"alerter.dashboard_url", CFG_STR, "http://127.0.0.1:7071/",
	 "Live dashboard; alerts link to it with ?session=<id>", offsetof(T, dashboard_url), 0, -1},
	{"alerter.grafana_url", CFG_STR, "",
	 "Grafana base URL; when set, alerts also link to its session-timeline dashboard",
	 offsetof(T, grafana_url), 0, -1},
	{"alerter.external_url", CFG_STR, "http://127.0.0.1:7073",
	 "This alerter's URL as others reach it (generatorURL = <url>/rules?name=<rule>)",
	 offsetof(T, external_url), 0, -1},
	{"alerter.max_groups", CFG_INT, "10000",
	 "Label groups kept per rule (the longest-silent one that is not firing is evicted)",
	 offsetof(T, max_groups), 1, 10000000},
	{"alerter.max_samples", CFG_INT, "100000", "Samples kept per group and window (oldest dropped)",
	 offsetof(T, max_samples), 2, 100000000},
	CFG_ROWS_COMMON(T),
};
#undef T
#define N_SETTINGS (sizeof settings / sizeof settings[0])

static struct alerter_conf cf;
static struct rs_conf rconf;
static redisContext *rc;
static char consumer[256];
static atomic_int redis_ok;
static struct engine *eng;
static struct notifier *notifier;
static struct alerter_admin *admin;
static struct auth *auth; /* API keys (NULL: none, loopback only) */
static char **rule_names; /* names with a firing gauge series, for zeroing */
static size_t nrule_names;

/* Entries held unacknowledged until the alerts their batch queued are
 * delivered: (stream id, notifier sequence number). Main thread only. */
#define HELD_MAX 100000
static struct held {
	char id[48];
	uint64_t seq;
	int acked;
} *held;
static size_t nheld, capheld;
static uint64_t batch_seq; /* highest sequence queued while evaluating a batch */
static struct seen *seen;  /* ids evaluated lately: a re-sent event counts once */

static struct {
	struct met_registry *reg;
	struct met_series *events, *duplicates, *invalid, *evaluations, *loaded, *fired, *resolved, *groups,
		*evicted, *dropped_samples, *redis_errors;
	struct met_family *firing, *reloads;
	uint64_t last_eval, last_fired, last_resolved, last_evicted, last_dropped;
} m;

static int ready(void *ud, char *why, size_t whylen)
{
	(void)ud;
	if (!atomic_load(&redis_ok)) {
		snprintf(why, whylen, "redis unavailable");
		return 0;
	}
	return 1;
}

static void setup_metrics(void)
{
	struct met_registry *g = m.reg;
	m.events = met_series(met_counter(g, "agent_obs_alerter_events_total", "Stream entries evaluated", NULL));
	m.duplicates = met_series(met_counter(g, "agent_obs_alerter_events_duplicate_total",
	                                      "Events seen before (same id, e.g. a client retry): skipped", NULL));
	m.invalid = met_series(met_counter(g, "agent_obs_alerter_events_invalid_total",
	                                   "Stream entries that are not valid events (skipped)", NULL));
	m.evaluations = met_series(met_counter(g, "agent_obs_alerter_rule_evaluations_total",
	                                       "Rule conditions evaluated (per event and per tick)", NULL));
	m.loaded = met_series(met_gauge(g, "agent_obs_alerter_rules_loaded", "Rules in force", NULL));
	m.fired = met_series(met_counter(g, "agent_obs_alerter_alerts_fired_total",
	                                 "Alerts that started firing", NULL));
	m.resolved = met_series(met_counter(g, "agent_obs_alerter_alerts_resolved_total",
	                                    "Alerts that were resolved", NULL));
	m.groups = met_series(met_gauge(g, "agent_obs_alerter_groups",
	                                "Label groups with window state, all rules", NULL));
	m.evicted = met_series(met_counter(g, "agent_obs_alerter_groups_evicted_total",
	                                   "Groups dropped because a rule reached alerter.max_groups", NULL));
	m.dropped_samples = met_series(met_counter(g, "agent_obs_alerter_samples_dropped_total",
	                                           "Samples dropped because a group reached alerter.max_samples", NULL));
	m.redis_errors = met_series(met_counter(g, "agent_obs_alerter_redis_errors_total", "Redis failures", NULL));
	m.firing = met_gauge(g, "agent_obs_alerter_alerts_firing", "Alerts firing now, by rule and severity",
	                     "rule,severity");
	m.reloads = met_counter(g, "agent_obs_alerter_reloads_total", "Rule reloads (SIGHUP), by result", "result");
}

static void update_metrics(void)
{
	struct engine_stats st;
	engine_get_stats(eng, &st);
	met_inc(m.evaluations, (double)(st.evaluations - m.last_eval));
	met_inc(m.fired, (double)(st.fired - m.last_fired));
	met_inc(m.resolved, (double)(st.resolved - m.last_resolved));
	met_inc(m.evicted, (double)(st.groups_evicted - m.last_evicted));
	met_inc(m.dropped_samples, (double)(st.samples_dropped - m.last_dropped));
	m.last_eval = st.evaluations;
	m.last_fired = st.fired;
	m.last_resolved = st.resolved;
	m.last_evicted = st.groups_evicted;
	m.last_dropped = st.samples_dropped;
	met_set(m.groups, (double)st.groups);
	const struct ruleset *rs = engine_rules(eng);
	for (size_t i = 0; rs && i < rs->n; i++)
		met_set(met_series(m.firing, rs->v[i].name, rs->v[i].severity),
		        (double)engine_firing(eng, rs->v[i].name));
}

/* Remember which (rule, severity) series exist, zeroing those of rules that
 * went away. */
static void note_rule_names(const struct ruleset *rs)
{
	for (size_t i = 0; i < nrule_names; i++) {
		int still = 0;
		char *sev = strchr(rule_names[i], '\n');
		*sev = '\0';
		for (size_t j = 0; rs && j < rs->n && !still; j++)
			still = strcmp(rs->v[j].name, rule_names[i]) == 0 && strcmp(rs->v[j].severity, sev + 1) == 0;
		if (!still)
			met_set(met_series(m.firing, rule_names[i], sev + 1), 0);
		free(rule_names[i]);
	}
	free(rule_names);
	nrule_names = 0;
	rule_names = calloc(rs && rs->n ? rs->n : 1, sizeof *rule_names);
	for (size_t j = 0; rule_names && rs && j < rs->n; j++) {
		size_t len = strlen(rs->v[j].name) + strlen(rs->v[j].severity) + 2;
		char *s = malloc(len);
		if (!s)
			break;
		snprintf(s, len, "%s\n%s", rs->v[j].name, rs->v[j].severity);
		rule_names[nrule_names++] = s;
	}
}

static void install_rules(struct ruleset *rs)
{
	char n[24];
	engine_set_rules(eng, rs, ev_now_ms());
	admin_set_rules(admin, rs);
	met_set(m.loaded, (double)rs->n);
	note_rule_names(rs);
	update_metrics();
	snprintf(n, sizeof n, "%zu", rs->n);
	log_kv(LOG_INFO, "rules loaded", "file", rs->path, "rules", n, NULL);
}

static void reload(void)
{
	char err[600];
	struct ruleset *rs = rules_load(cf.rules, err, sizeof err);
	if (!rs) {
		met_inc(met_series(m.reloads, "error"), 1);
		log_kv(LOG_ERROR, "reload failed; keeping the rules in force", "error", err, NULL);
		return;
	}
	install_rules(rs);
	met_inc(met_series(m.reloads, "ok"), 1);
}

/* ---------- Redis ---------- */

static int redis_connect(void)
{
	char err[256];
	if (rc)
		redisFree(rc);
	atomic_store(&redis_ok, 0);
	rc = rs_connect_retry(&rconf, &sig_stop);
	if (!rc)
		return -1;
	if (rs_group_ensure(rc, cf.stream, cf.group, cf.start_id, err, sizeof err)) {
		log_kv(LOG_ERROR, "cannot create consumer group", "error", err, NULL);
		return -1;
	}
	atomic_store(&redis_ok, 1);
	return 0;
}

static void redis_failed(const char *what, const char *err)
{
	met_inc(m.redis_errors, 1);
	log_kv(LOG_WARN, what, "error", err, NULL);
	if (rc && rc->err) {
		redisFree(rc);
		rc = NULL;
		atomic_store(&redis_ok, 0);
	}
}

/* The engine's send hook: queue the note and remember its sequence number. */
static uint64_t send_note(void *ud, const struct alert_note *n)
{
	uint64_t seq = notifier_send(ud, n);
	if (seq > batch_seq)
		batch_seq = seq;
	return seq;
}

static int is_held(const char *id)
{
	for (size_t i = 0; i < nheld; i++)
		if (strcmp(held[i].id, id) == 0)
			return 1;
	return 0;
}

/* Hold the ids of an evaluated batch until `seq` is delivered. Past HELD_MAX
 * the entries are acknowledged at once (returns 1): memory stays bounded. */
static int hold(const char *const *ids, size_t n, uint64_t seq)
{
	if (nheld + n > HELD_MAX)
		return 1;
	if (nheld + n > capheld) {
		size_t cap = capheld ? capheld : 1024;
		while (cap < nheld + n)
			cap *= 2;
		struct held *v = realloc(held, cap * sizeof *v);
		if (!v)
			return 1;
		held = v;
		capheld = cap;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(held[nheld].id, sizeof held[nheld].id, "%s", ids[i]);
		held[nheld++].seq = seq;
	}
	return 0;
}

/* Acknowledge the held entries whose alerts Alertmanager now has. */
static void ack_delivered(void)
{
	char err[256];
	if (!nheld || !rc)
		return;
	const char **ids = malloc(nheld * sizeof *ids);
	if (!ids)
		return;
	/* decide once per entry: the sender thread may deliver more meanwhile */
	size_t n = 0, k = 0;
	for (size_t i = 0; i < nheld; i++) {
		held[i].acked = notifier_delivered(notifier, held[i].seq);
		if (held[i].acked)
			ids[n++] = held[i].id;
	}
	if (n && rs_ack(rc, cf.stream, cf.group, ids, n, err, sizeof err)) {
		redis_failed("XACK of delivered entries failed; retried", err);
		n = 0;
	}
	free(ids);
	if (!n)
		return;
	for (size_t i = 0; i < nheld; i++)
		if (!held[i].acked)
			held[k++] = held[i];
	nheld = k;
}

/* Evaluate a batch of entries, then acknowledge them, or hold them while an
 * alert they caused is not yet delivered. Entries already held (read again
 * after a reconnect or claimed: `reread`) are not evaluated twice. -1 on
 * Redis failure. */
static int process(struct rs_batch *b, int reread)
{
	char err[256];
	const char **ids = calloc(b->n ? b->n : 1, sizeof *ids);
	if (!ids) {
		log_error("process batch: out of memory");
		return -1;
	}
	size_t nids = 0;
	batch_seq = 0;
	for (size_t i = 0; i < b->n; i++) {
		struct rs_entry *e = &b->v[i];
		struct ev_row row;
		struct ev_error ee;
		if (reread && nheld && is_held(e->id))
			continue;
		ids[nids++] = e->id;
		if (!e->data)
			continue; /* trimmed before we saw it */
		if (ev_row_parse(e->data, e->len, &row, &ee)) {
			met_inc(m.invalid, 1);
			log_kv(LOG_DEBUG, "skipping invalid entry", "stream_id", e->id, "field", ee.field,
			       "problem", ee.problem, NULL);
			continue;
		}
		if (seen_check_add(seen, row.id)) {
			met_inc(m.duplicates, 1);
			log_kv(LOG_DEBUG, "skipping an event evaluated before", "id", row.id, "stream_id", e->id, NULL);
		} else {
			engine_event(eng, &row, ev_now_ms());
		}
		ev_row_free(&row);
	}
	met_inc(m.events, (double)nids);
	update_metrics();
	int r = 0;
	if (nids && batch_seq && !notifier_delivered(notifier, batch_seq) && hold(ids, nids, batch_seq) == 0)
		nids = 0;
	if (nids && rs_ack(rc, cf.stream, cf.group, ids, nids, err, sizeof err)) {
		redis_failed("XACK failed; entries will be evaluated again after a restart", err);
		r = -1;
	}
	free(ids);
	return r;
}

static void claim(void)
{
	char next[48] = "0-0", err[256];
	struct rs_batch b = {0};
	for (int rounds = 0; rounds < 100 && !sig_stop; rounds++) {
		char start[48];
		snprintf(start, sizeof start, "%s", next);
		rs_batch_clear(&b);
		if (rs_autoclaim(rc, cf.stream, cf.group, consumer, cf.claim_idle_ms, start,
		                 (long)cf.batch_max, next, &b, err, sizeof err) < 0) {
			redis_failed("XAUTOCLAIM failed", err);
			break;
		}
		if (b.n) {
			char cnt[24];
			snprintf(cnt, sizeof cnt, "%zu", b.n);
			log_kv(LOG_INFO, "claimed entries idle on a consumer", "count", cnt, NULL);
		}
		if (b.n && process(&b, 1))
			break;
		if (strcmp(next, "0-0") == 0)
			break;
	}
	rs_batch_free(&b);
}

/* ---------- the consume loop ---------- */

/* Sleep `ms` (at most until the next window tick, `until_tick` ms away) or
 * until a stop signal: a caught-up reader lets events gather. */
static void pause_ms(long long ms, int64_t until_tick)
{
	if (until_tick < ms)
		ms = until_tick;
	if (ms <= 0 || sig_stop)
		return;
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void consume(void)
{
	struct rs_batch b = {0};
	char err[256];
	int pending_phase = 1;
	char pend_from[48] = "0"; /* own pending entries after this id (held ones stay pending) */
	int64_t next_claim = 0, next_lease = 0, next_tick = 0;
	long block = cf.eval_interval_ms < 1000 ? (long)cf.eval_interval_ms : 1000;

	while (!sig_stop) {
		if (sig_reload) {
			sig_reload = 0;
			sig_drain();
			reload();
		}
		int64_t now = ev_mono_ms();
		ack_delivered();
		if (now >= next_tick) {
			engine_tick(eng, ev_now_ms());
			update_metrics();
			next_tick = now + cf.eval_interval_ms;
		}
		if (!rc) {
			if (redis_connect())
				break;
			if (lease_refresh(rc, cf.group, consumer))
				log_kv(LOG_WARN, "consumer lease lost; continuing", "consumer", consumer, NULL);
			pending_phase = 1;
			snprintf(pend_from, sizeof pend_from, "0");
		}
		if (now >= next_lease) {
			lease_refresh(rc, cf.group, consumer);
			next_lease = now + 10000;
		}
		if (!pending_phase && now >= next_claim) {
			claim();
			next_claim = now + cf.claim_interval_ms;
			if (!rc)
				continue;
		}
		rs_batch_clear(&b);
		int got;
		if (pending_phase) {
			got = rs_readgroup(rc, cf.stream, cf.group, consumer, pend_from, (long)cf.batch_max, -1, &b,
			                   err, sizeof err);
			if (got == 0) {
				pending_phase = 0;
				continue;
			}
			if (b.n)
				snprintf(pend_from, sizeof pend_from, "%s", b.v[b.n - 1].id);
		} else {
			int64_t left = next_tick - ev_mono_ms();
			long blk = left < 1 ? 1 : left < block ? (long)left : block;
			got = rs_readgroup(rc, cf.stream, cf.group, consumer, ">", (long)cf.batch_max, blk, &b,
			                   err, sizeof err);
		}
		if (got < 0) {
			if (strstr(err, "NOGROUP") && rc && !rc->err) {
				log_kv(LOG_WARN, "consumer group missing (stream deleted?); recreating", NULL);
				rs_group_ensure(rc, cf.stream, cf.group, cf.start_id, err, sizeof err);
			} else {
				redis_failed("XREADGROUP failed", err);
			}
			if (b.n == 0 || !rc)
				continue; /* no connection to acknowledge on: read again later */
		}
		if (b.n && process(&b, pending_phase) == 0) {
			if (!pending_phase && got > 0 && got < cf.batch_max && cf.read_pause_ms > 0)
				pause_ms(cf.read_pause_ms, next_tick - ev_mono_ms());
			continue;
		}
		if (rc && rc->err)
			redis_failed("redis connection lost", rc->errstr);
	}
	rs_batch_free(&b);
}

/* ---------- --check ---------- */

static int check_only(const char *path)
{
	char err[600];
	struct ruleset *rs = rules_load(path, err, sizeof err);
	if (!rs) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("%s: %zu rule%s OK\n", path, rs->n, rs->n == 1 ? "" : "s");
	for (size_t i = 0; i < rs->n; i++)
		printf("  %-28s %-9s %s\n", rs->v[i].name, cond_kind_name(rs->v[i].kind), rs->v[i].severity);
	rules_free(rs);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const extra[] = {"--check", NULL};
	char err[600];
	int code;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--check") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "usage: alerter --check RULES.yaml\n");
				return 2;
			}
			return check_only(argv[i + 1]);
		}
	}
	if (daemon_setup(argc, argv, "alerter",
	                 "alerter: alert rules over the event stream -> Alertmanager\n"
	                 "       alerter --check RULES.yaml   validate a rule file and exit",
	                 settings, N_SETTINGS, &cf, "alerter.", &cf.log_level, extra, NULL, &code))
		return code;
	code = 1;
	rconf = CFG_RS_CONF(cf);

	struct ruleset *rs = rules_load(cf.rules, err, sizeof err);
	if (!rs) {
		log_kv(LOG_ERROR, "cannot load rules", "error", err, NULL);
		goto out;
	}
	m.reg = met_registry_new();
	if (!m.reg) {
		rules_free(rs);
		log_error("start: out of memory");
		goto out;
	}
	if (daemon_load_auth(cf.auth_keys_file, CFG_AUTH_OPTS(&cf), m.reg, &auth) ||
	    daemon_check_bind("alerter.metrics_bind", cf.metrics_bind, auth != NULL)) {
		rules_free(rs);
		goto out;
	}
	setup_metrics();
	notifier = notifier_start(cf.alertmanager_url, (long)cf.send_timeout_ms, (size_t)cf.send_batch_max,
	                          m.reg, err, sizeof err);
	if (!notifier) {
		rules_free(rs);
		log_kv(LOG_ERROR, "start failed", "error", err, NULL);
		goto out;
	}
	struct engine_opts eo = {
		.resend_ms = cf.resend_interval_ms,
		.min_firing_ms = cf.min_firing_ms,
		.max_groups = (size_t)cf.max_groups,
		.max_samples = (size_t)cf.max_samples,
		.dashboard_url = cf.dashboard_url,
		.grafana_url = cf.grafana_url,
		.external_url = cf.external_url,
	};
	struct engine_hooks hooks = {send_note, notifier_delivered, notifier};
	eng = engine_new(&eo, &hooks);
	seen = seen_new();
	admin = admin_start(cf.metrics_bind, (int)cf.metrics_port, m.reg, ready, NULL, auth, err, sizeof err);
	if (!eng || !admin || !seen) {
		rules_free(rs);
		log_kv(LOG_ERROR, "start failed", "error", eng && seen ? err : "out of memory", NULL);
		goto out;
	}
	install_rules(rs);
	if (redis_connect())
		goto stopped;
	if (lease_acquire(rc, cf.group, cf.consumer, "alerter", "alerter.consumer / OBS_ALERTER_CONSUMER",
	                  consumer, sizeof consumer, err, sizeof err)) {
		log_kv(LOG_ERROR, "start failed", "error", err, NULL);
		goto out;
	}
	log_kv(LOG_INFO, "alerter consuming", "stream", cf.stream, "group", cf.group, "consumer", consumer,
	       "alertmanager", cf.alertmanager_url, NULL);

	consume();

	/* deliver what the held entries caused, then acknowledge them; whatever
	 * stays undelivered is read and evaluated again on the next start */
	for (int64_t end = ev_mono_ms() + cf.drain_timeout_ms; nheld && rc && ev_mono_ms() < end;) {
		ack_delivered();
		if (nheld)
			nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
	}
	if (nheld)
		log_kv(LOG_WARN, "entries left unacknowledged: their alerts were not delivered; evaluated again on restart",
		       NULL);
	if (rc)
		lease_release(rc, cf.group, consumer);
stopped:
	log_info("stopping: delivering queued alerts");
	code = 0;
out:
	notifier_stop(notifier, (long)cf.drain_timeout_ms);
	admin_stop(admin);
	auth_free(auth);
	engine_free(eng);
	seen_free(seen);
	free(held);
	if (rc)
		redisFree(rc);
	for (size_t i = 0; i < nrule_names; i++)
		free(rule_names[i]);
	free(rule_names);
	met_registry_free(m.reg);
	cfg_free(settings, N_SETTINGS, &cf);
	if (code == 0)
		log_info("stopped");
	return code;
}
