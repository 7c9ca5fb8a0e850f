/* main.c -- agent-hook: the command Claude Code runs for every hook event.
 *
 * Hook mode (`agent-hook [EventName] < hook.json`), the story of one call:
 * read the hook JSON from stdin, map it to a canonical event
 * (common/hookmap.c); on PreToolUse ask the guard (common/guard.c) and, when
 * it blocks, print the deny decision on stdout and the reason on stderr and
 * exit 2; on Stop/SubagentStop add the token usage of the new transcript
 * lines (transcript.c); redact and bound the event (hook_finish); deliver it
 * (spool.c: the spool first, in order; spooled when the collector is down);
 * after a Stop, forward the new transcript messages to POST /transcripts.
 * Capture fails open: every problem short of a guard block exits 0.
 *
 * Other modes: emit (events from scripts and other agents), check (ask the
 * guard about a command or path), flush (send the spool now). Settings come
 * from OBS_* environment variables, listed by --help. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ev.h"
#include "hook.h"

#define HOOK_MAX_INPUT (64 << 20)
#define MAX_EVENT_BYTES (240 * 1024) /* the collector's limit is 256 KiB */

/* ---------- settings ---------- */

static const struct setting {
	const char *env, *def, *doc;
} settings[] = {
	{"OBS_COLLECTOR_URL", "http://127.0.0.1:7070", "collector base URL; events go to POST <url>/events (https:// uses libcurl)"},
	{"OBS_HOOK_TIMEOUT_MS", "300", "timeout of one HTTP request in ms; on expiry the event is spooled"},
	{"OBS_HOOK_FLUSH_MS", "2000", "time one invocation may spend sending spooled events, ms"},
	{"OBS_HOOK_STATE_DIR", "$XDG_STATE_HOME/agent-obs, else ~/.local/state/agent-obs", "state: spool and transcript offsets"},
	{"OBS_HOOK_SPOOL_DIR", "<state dir>/spool", "events waiting for the collector, one file each"},
	{"OBS_HOOK_SPOOL_MAX_BYTES", "67108864", "spool bound in bytes; beyond it the oldest events are dropped"},
	{"OBS_HOOK_SPOOL_MAX_FILES", "10000", "spool bound in events"},
	{"OBS_HOOK_POLICY", "(search)", "guard policy YAML; default: $XDG_CONFIG_HOME/agent-obs/hook-policy.yaml, ~/.config/agent-obs/hook-policy.yaml, <agent-hook>/../config/hook-policy.yaml, else built-in rules"},
	{"OBS_HOOK_MAX_STRING", "16384", "strings longer than this many bytes are cut (after redaction)"},
	{"OBS_HOOK_SOURCE_APP", "claude-code", "source_app of the events"},
	{"OBS_HOOK_TRANSPORT", "builtin", "\"curl\": send http:// through libcurl too"},
	{"OBS_HOOK_CA_FILE", "(system CAs)", "PEM CA file that signed the collector's certificate (https://; e.g. a self-signed one); the certificate and host name are always verified"},
	{"OBS_HOOK_QUIET", "0", "1: no warnings on stderr"},
	{"OBS_COLLECTOR_KEY", "(none)", "API key with the ingest role, sent as Authorization: Bearer"},
	{"OBS_COLLECTOR_SIGNING_SECRET", "(none)", "the key's signing secret: requests get X-Obs-Timestamp and X-Obs-Signature (HMAC-SHA256)"},
};

static const char *usage_text =
	"usage: agent-hook [EVENT] < hook-input.json      (Claude Code command hook)\n"
	"       agent-hook emit --type T --session S [--payload JSON] [--agent ID] [--role R]\n"
	"                       [--tool NAME] [--status S] [--latency-ms N] [--source-app A]\n"
	"       agent-hook check [--cwd DIR] COMMAND | check --path FILE [--tool Write]\n"
	"       agent-hook flush\n"
	"       agent-hook --help\n"
	"\n"
	"Hook mode reads Claude Code's hook JSON on stdin, maps it to an agent-obs event\n"
	"and sends it to the collector. On PreToolUse the guard may block the call: exit 2,\n"
	"the reason on stderr, the deny decision as JSON on stdout. Everything else exits 0,\n"
	"also when the collector is down (the event waits in the spool; the next call that\n"
	"reaches the collector sends the spool first, in order).\n"
	"emit sends one event and prints its id. check asks the guard (exit 2: blocked).\n"
	"flush sends the spool now and prints how many events are left.\n";

static void help(void)
{
	fputs(usage_text, stdout);
	fputs("\nenvironment:\n", stdout);
	for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
		printf("  %-26s default %s\n  %-26s %s\n", settings[i].env, settings[i].def, "", settings[i].doc);
}

static const struct hook_conf *warn_conf;

void hook_warn(const struct hook_conf *c, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	if (c && c->quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "agent-hook: %s\n", buf);
}

static long env_long(const char *name, long def, long min, long max)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *e;
	errno = 0;
	long v = strtol(s, &e, 10);
	if (errno || *e || v < min || v > max) {
		hook_warn(warn_conf, "%s=%s: expected an integer in [%ld, %ld]; using %ld", name, s, min, max, def);
		return def;
	}
	return v;
}

static void load_conf(struct hook_conf *c)
{
	memset(c, 0, sizeof *c);
	warn_conf = c;
	const char *q = getenv("OBS_HOOK_QUIET");
	c->quiet = q && !strcmp(q, "1");
	c->url = getenv("OBS_COLLECTOR_URL");
	if (!c->url || !*c->url)
		c->url = "http://127.0.0.1:7070";
	c->timeout_ms = env_long("OBS_HOOK_TIMEOUT_MS", 300, 1, 600000);
	c->flush_ms = env_long("OBS_HOOK_FLUSH_MS", 2000, 0, 3600000);
	c->spool_max_bytes = env_long("OBS_HOOK_SPOOL_MAX_BYTES", 64L << 20, 4096, 1L << 40);
	c->spool_max_files = env_long("OBS_HOOK_SPOOL_MAX_FILES", 10000, 1, 10000000);
	c->max_string = env_long("OBS_HOOK_MAX_STRING", 16384, 256, 192 * 1024);
	c->policy = getenv("OBS_HOOK_POLICY");
	c->source_app = getenv("OBS_HOOK_SOURCE_APP");
	if (!c->source_app || !*c->source_app)
		c->source_app = "claude-code";
	c->key = getenv("OBS_COLLECTOR_KEY");
	if (c->key && !*c->key)
		c->key = NULL;
	c->signing_secret = getenv("OBS_COLLECTOR_SIGNING_SECRET");
	if (c->signing_secret && !*c->signing_secret)
		c->signing_secret = NULL;
	const char *t = getenv("OBS_HOOK_TRANSPORT");
	c->use_curl = t && !strcmp(t, "curl");
	c->ca_file = getenv("OBS_HOOK_CA_FILE");
	if (c->ca_file && !*c->ca_file)
		c->ca_file = NULL;

	const char *sd = getenv("OBS_HOOK_STATE_DIR"), *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	if (sd && *sd)
		snprintf(c->state_dir, sizeof c->state_dir, "%s", sd);
	else if (xdg && xdg[0] == '/')
		snprintf(c->state_dir, sizeof c->state_dir, "%s/agent-obs", xdg);
	else if (home && home[0] == '/')
		snprintf(c->state_dir, sizeof c->state_dir, "%s/.local/state/agent-obs", home);
	else
		snprintf(c->state_dir, sizeof c->state_dir, "/tmp/agent-obs-%d", (int)getuid());
	const char *sp = getenv("OBS_HOOK_SPOOL_DIR");
	if (sp && *sp)
		snprintf(c->spool_dir, sizeof c->spool_dir, "%s", sp);
	else if (snprintf(c->spool_dir, sizeof c->spool_dir, "%s/spool", c->state_dir) >= (int)sizeof c->spool_dir)
		snprintf(c->spool_dir, sizeof c->spool_dir, "/tmp/agent-obs-%d/spool", (int)getuid());
}

/* ---------- policy ---------- */

static struct guard_policy *load_policy(const struct hook_conf *c)
{
	char err[512], path[PATH_MAX], exe[PATH_MAX];
	struct guard_policy *p;
	if (c->policy && *c->policy) {
		p = guard_policy_load(c->policy, err, sizeof err);
		if (!p)
			hook_warn(c, "policy %s; using the built-in rules", err);
		return p ? p : guard_policy_builtin();
	}
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	const char *cand[3] = {NULL, NULL, NULL};
	char c0[PATH_MAX], c1[PATH_MAX];
	if (xdg && *xdg) {
		snprintf(c0, sizeof c0, "%s/agent-obs/hook-policy.yaml", xdg);
		cand[0] = c0;
	}
	if (home && *home) {
		snprintf(c1, sizeof c1, "%s/.config/agent-obs/hook-policy.yaml", home);
		cand[1] = c1;
	}
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			if (snprintf(path, sizeof path, "%s/../config/hook-policy.yaml", exe) < (int)sizeof path)
				cand[2] = path;
		}
	}
	for (int i = 0; i < 3; i++) {
		if (!cand[i] || access(cand[i], R_OK))
			continue;
		p = guard_policy_load(cand[i], err, sizeof err);
		if (!p)
			hook_warn(c, "policy %s; using the built-in rules", err);
		return p ? p : guard_policy_builtin();
	}
	return guard_policy_builtin();
}

/* ---------- hook mode ---------- */

static char *read_stdin(size_t *len)
{
	size_t cap = 16384, n = 0;
	char *buf = malloc(cap + 1);
	*len = 0;
	if (!buf)
		return NULL;
	for (;;) {
		if (n == cap) {
			if (cap >= HOOK_MAX_INPUT) {
				char sink[65536];
				while (read(0, sink, sizeof sink) > 0)
					; /* drain: the writer must not block */
				break;
			}
			char *b = realloc(buf, cap * 2 + 1);
			if (!b)
				break;
			buf = b;
			cap *= 2;
		}
		ssize_t r = read(0, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

static const char *str_at(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int deliver(const struct hook_conf *c, cJSON *ev)
{
	size_t len;
	char *s = hook_finish(ev, (size_t)c->max_string, MAX_EVENT_BYTES, &len);
	if (!s)
		return -1;
	int rc = spool_deliver(c, s, len);
	cJSON_free(s);
	return rc;
}

static int run_hook(const struct hook_conf *c, const char *name_hint)
{
	size_t len;
	if (isatty(0)) {
		/* run by hand: there is no hook input to wait for */
		fputs(usage_text, stderr);
		return 0;
	}
	char *input = read_stdin(&len);
	struct hook_opts o = {c->source_app, "agent-hook", ev_now_ms()};
	cJSON *in = input && len ? cJSON_ParseWithLength(input, len) : NULL;
	cJSON *ev = hook_map(in, name_hint, &o);
	int code = 0;
	if (!ev)
		goto out;
	cJSON *payload = cJSON_GetObjectItemCaseSensitive(ev, "payload");
	if (!in && input && len)
		cJSON_AddStringToObject(payload, "raw_input", input); /* cut by hook_finish */
	const char *type = str_at(ev, "event_type");

	if (!strcmp(type, "PreToolUse")) {
		struct guard_verdict v;
		struct guard_policy *p = load_policy(c);
		struct guard_ctx cx = {getenv("HOME"), str_at(payload, "cwd")};
		if (p && guard_check_tool(p, str_at(ev, "tool"),
		                          cJSON_GetObjectItemCaseSensitive(payload, "tool_input"), &cx, &v)) {
			for (char *q = v.reason; *q; q++)
				if (*q == '\n' || *q == '\r')
					*q = ' ';
			hook_mark_blocked(ev, &v);
			char *d = hook_decision_json(&v);
			if (d) {
				fputs(d, stdout);
				fputc('\n', stdout);
				cJSON_free(d);
			}
			fflush(stdout);
			fprintf(stderr, "%s\n", v.reason);
			fflush(stderr);
			code = 2;
		}
		guard_policy_free(p);
	} else if (!strcmp(type, "Stop") || !strcmp(type, "SubagentStop")) {
		/* a sub-agent's usage is in its own transcript, never in the main one */
		const char *tp = str_at(payload, !strcmp(type, "Stop") ? "transcript_path" : "agent_transcript_path");
		struct hook_usage u;
		memset(&u, 0, sizeof u);
		if (tp && *tp && transcript_usage(c, tp, &u) == 0)
			hook_set_usage(ev, &u);
	}
	const char *tp = NULL;
	if (!strcmp(type, "Stop") || !strcmp(type, "SubagentStop"))
		tp = str_at(payload, !strcmp(type, "Stop") ? "transcript_path" : "agent_transcript_path");
	if (code == 2) {
		/* the reason must stay the only line on stderr */
		struct hook_conf quiet = *c;
		quiet.quiet = 1;
		deliver(&quiet, ev);
	} else {
		deliver(c, ev);
	}
	if (tp && *tp) {
		/* the new transcript messages, for the history API */
		long sent;
		transcript_forward(c, tp, str_at(ev, "session_id"),
		                   str_at(ev, "parent_agent_id") ? str_at(ev, "agent_id") : NULL, &sent);
	}
out:
	cJSON_Delete(ev);
	cJSON_Delete(in);
	free(input);
	return code;
}

/* ---------- emit ---------- */

static int run_emit(const struct hook_conf *c, int argc, char **argv)
{
	const char *type = NULL, *session = NULL, *payload = NULL, *agent = NULL, *role = NULL,
	           *tool = NULL, *status = NULL, *latency = NULL, *app = NULL;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **slot = !strcmp(a, "--type") ? &type : !strcmp(a, "--session") ? &session
		                  : !strcmp(a, "--payload") ? &payload : !strcmp(a, "--agent") ? &agent
		                  : !strcmp(a, "--role") ? &role : !strcmp(a, "--tool") ? &tool
		                  : !strcmp(a, "--status") ? &status : !strcmp(a, "--latency-ms") ? &latency
		                  : !strcmp(a, "--source-app") ? &app : NULL;
		if (!slot || !v) {
			fprintf(stderr, "agent-hook emit: %s %s\n%s", slot ? "missing value for" : "unknown option", a,
			        usage_text);
			return 64;
		}
		*slot = v;
		i++;
	}
	if (!type || !session) {
		fprintf(stderr, "agent-hook emit: --type and --session are required\n");
		return 64;
	}
	cJSON *in = cJSON_CreateObject(), *p = NULL;
	if (payload) {
		p = cJSON_Parse(payload);
		if (!cJSON_IsObject(p)) {
			fprintf(stderr, "agent-hook emit: --payload must be a JSON object\n");
			cJSON_Delete(p);
			cJSON_Delete(in);
			return 64;
		}
	}
	char id[37], ts[32];
	ev_uuid_v7(id);
	ev_format_iso8601(ev_now_ms(), ts);
	cJSON_AddStringToObject(in, "id", id);
	cJSON_AddStringToObject(in, "event_type", type);
	cJSON_AddStringToObject(in, "timestamp", ts);
	cJSON_AddStringToObject(in, "session_id", session);
	cJSON_AddStringToObject(in, "source_app", app ? app : "agent-hook");
	if (agent)
		cJSON_AddStringToObject(in, "agent_id", agent);
	if (role)
		cJSON_AddStringToObject(in, "agent_role", role);
	if (tool)
		cJSON_AddStringToObject(in, "tool", tool);
	if (status)
		cJSON_AddStringToObject(in, "status", status);
	if (latency) {
		char *e;
		double d = strtod(latency, &e);
		if (*e || d < 0) {
			fprintf(stderr, "agent-hook emit: --latency-ms must be a number >= 0\n");
			cJSON_Delete(in);
			cJSON_Delete(p);
			return 64;
		}
		cJSON_AddNumberToObject(in, "latency_ms", d);
	}
	cJSON_AddItemToObject(in, "payload", p ? p : cJSON_CreateObject());
	/* validate here, so a bad event is refused now rather than spooled */
	cJSON *check = cJSON_Duplicate(in, 1);
	struct ev_error err;
	int bad = ev_normalise(check, ev_now_ms(), &ev_default_limits, &err);
	cJSON_Delete(check);
	if (bad) {
		fprintf(stderr, "agent-hook emit: %s%s%s\n", err.field, err.field[0] ? ": " : "", err.problem);
		cJSON_Delete(in);
		return 64;
	}
	int rc = deliver(c, in);
	cJSON_Delete(in);
	if (rc < 0)
		return 1;
	printf("%s\n", id);
	return 0;
}

/* ---------- check, flush ---------- */

static int run_check(const struct hook_conf *c, int argc, char **argv)
{
	const char *cwd = NULL, *path = NULL, *tool = NULL, *cmd = NULL;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--cwd") && i + 1 < argc)
			cwd = argv[++i];
		else if (!strcmp(argv[i], "--path") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--tool") && i + 1 < argc)
			tool = argv[++i];
		else
			cmd = argv[i];
	}
	if (!cmd && !path) {
		fprintf(stderr, "agent-hook check: give a command or --path FILE\n");
		return 64;
	}
	struct guard_policy *p = load_policy(c);
	struct guard_ctx cx = {getenv("HOME"), cwd};
	struct guard_verdict v;
	int b = path ? guard_check_path(p, tool ? tool : "Write", path, &cx, &v)
	             : guard_check_command(p, cmd, &cx, &v);
	guard_policy_free(p);
	if (b)
		printf("block %s: %s\n", v.rule, v.reason);
	else
		printf("allow\n");
	return b ? 2 : 0;
}

int main(int argc, char **argv)
{
	struct hook_conf c;
	const char *mode = argc > 1 ? argv[1] : NULL;
	if (mode && (!strcmp(mode, "--help") || !strcmp(mode, "-h") || !strcmp(mode, "help"))) {
		help();
		return 0;
	}
	load_conf(&c);
	if (mode && !strcmp(mode, "emit"))
		return run_emit(&c, argc, argv);
	if (mode && !strcmp(mode, "check"))
		return run_check(&c, argc, argv);
	if (mode && !strcmp(mode, "flush")) {
		long left = spool_flush_only(&c);
		printf("%ld events left in %s\n", left, c.spool_dir);
		return left ? 1 : 0;
	}
	return run_hook(&c, mode && mode[0] != '-' ? mode : NULL);
}
