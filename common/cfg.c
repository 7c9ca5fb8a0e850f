/* cfg.c -- settings-table configuration: defaults, YAML file, OBS_* env (see cfg.h).
 * Memory: CFG_STR fields of the caller's struct get malloc'd copies; cfg_free()
 * frees them and sets them NULL. cfg_load() overwrites (does not free) those
 * fields on entry and frees what it set if it fails. Threads: none; call at
 * start-up (uses getenv). YAML is read with the libyaml event API. */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CFG_KEY_MAX 256  /* longest dotted key */
#define CFG_DEPTH_MAX 16 /* deepest nested mapping */
#define CFG_PROBLEM_MAX 512
#define CFG_SECRET_MAX 4096 /* largest secret file */

static void seterr(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	if (!err || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

void cfg_env_name(const char *key, char *buf, size_t len)
{
	size_t o = 0;
	if (!buf || len == 0)
		return;
	for (const char *p = "OBS_"; *p && o + 1 < len; p++)
		buf[o++] = *p;
	for (const char *p = key ? key : ""; *p && o + 1 < len; p++) {
		char c = *p;
		if (c == '.' || c == '-')
			c = '_';
		buf[o++] = (char)toupper((unsigned char)c);
	}
	buf[o] = '\0';
}

static const char *type_name(enum cfg_type t)
{
	switch (t) {
	case CFG_STR: return "string";
	case CFG_INT: return "int";
	case CFG_BOOL: return "bool";
	case CFG_DOUBLE: return "double";
	}
	return "?";
}

/* min/max bound a setting when min <= max; the all-zero pair a table gets by
 * leaving them out means "unbounded" too (a [0, 0] range is never useful). */
static int has_range(const struct cfg_setting *s)
{
	if (s->type != CFG_INT && s->type != CFG_DOUBLE)
		return 0;
	if (s->min == 0 && s->max == 0)
		return 0;
	return s->min <= s->max;
}

static void *field(const struct cfg_setting *s, void *dst)
{
	return (char *)dst + s->offset;
}

/* ------------------------------------------------------------------------ */
/* Values */

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* Parse `v` strictly and store it in the setting's field. On failure writes
 * the problem ("not an integer: \"12x\"") into `problem`. 0 / -1. */
static int set_value(const struct cfg_setting *s, void *dst, const char *v, char *problem,
                     size_t plen)
{
	char *end = NULL;
	char range[96] = "";

	if (has_range(s))
		snprintf(range, sizeof range, "[%.15g, %.15g]", s->min, s->max);

	switch (s->type) {
	case CFG_STR: {
		char *copy = strdup(v);
		if (!copy) {
			snprintf(problem, plen, "out of memory");
			return -1;
		}
		char **p = field(s, dst);
		free(*p);
		*p = copy;
		return 0;
	}
	case CFG_INT: {
		errno = 0;
		long long n = 0;
		if (*v && !isspace((unsigned char)*v))
			n = strtoll(v, &end, 10);
		if (!end || end == v || *end != '\0') {
			snprintf(problem, plen, "not an integer: \"%s\"", v);
			return -1;
		}
		if (errno == ERANGE) {
			snprintf(problem, plen, "integer out of range: \"%s\"", v);
			return -1;
		}
		if (has_range(s) && ((double)n < s->min || (double)n > s->max)) {
			snprintf(problem, plen, "%s is out of range %s", v, range);
			return -1;
		}
		*(long long *)field(s, dst) = n;
		return 0;
	}
	case CFG_DOUBLE: {
		errno = 0;
		double d = 0;
		if (*v && !isspace((unsigned char)*v))
			d = strtod(v, &end);
		if (!end || end == v || *end != '\0' || !isfinite(d)) {
			snprintf(problem, plen, "not a number: \"%s\"", v);
			return -1;
		}
		if (errno == ERANGE && d != 0) { /* overflow; gradual underflow is fine */
			snprintf(problem, plen, "number out of range: \"%s\"", v);
			return -1;
		}
		if (has_range(s) && (d < s->min || d > s->max)) {
			snprintf(problem, plen, "%s is out of range %s", v, range);
			return -1;
		}
		*(double *)field(s, dst) = d;
		return 0;
	}
	case CFG_BOOL: {
		int b;
		if (parse_bool(v, &b) < 0) {
			snprintf(problem, plen,
			         "not a boolean (true/false/yes/no/on/off/1/0): \"%s\"", v);
			return -1;
		}
		*(int *)field(s, dst) = b;
		return 0;
	}
	}
	snprintf(problem, plen, "unknown setting type");
	return -1;
}

static const struct cfg_setting *find_setting(const struct cfg_setting *table, size_t n,
                                              const char *key, size_t *idx)
{
	for (size_t i = 0; i < n; i++) {
		if (table[i].key && strcmp(table[i].key, key) == 0) {
			*idx = i;
			return &table[i];
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* YAML */

struct yctx {
	yaml_parser_t parser;
	const struct cfg_setting *table;
	size_t n;
	void *dst;
	const char *path;
	const char *own_prefix;
	unsigned char *seen; /* per setting: already set by the file */
	char *err;
	size_t errlen;
};

/* A key we must understand: in the table, or under our own prefix (or the
 * prefix itself, "collector" for "collector."). */
static int is_own(const struct yctx *y, const char *key)
{
	const char *p = y->own_prefix;
	if (!p || !*p)
		return 0;
	size_t len = strlen(p);
	if (strncmp(key, p, len) == 0)
		return 1;
	return p[len - 1] == '.' && strlen(key) == len - 1 && strncmp(key, p, len - 1) == 0;
}

static void yerr(struct yctx *y, const yaml_mark_t *m, const char *key, const char *problem)
{
	seterr(y->err, y->errlen, "%s:%zu:%zu: %s: %s", y->path, m->line + 1, m->column + 1,
	       key, problem);
}

static void yparse_err(struct yctx *y)
{
	const yaml_parser_t *p = &y->parser;
	const char *problem = p->problem ? p->problem : "YAML error";
	if (p->context)
		seterr(y->err, y->errlen, "%s:%zu:%zu: %s %s", y->path,
		       p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context);
	else
		seterr(y->err, y->errlen, "%s:%zu:%zu: %s", y->path, p->problem_mark.line + 1,
		       p->problem_mark.column + 1, problem);
}

static int next_event(struct yctx *y, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&y->parser, ev)) {
		yparse_err(y);
		return -1;
	}
	return 0;
}

/* Skip the rest of a collection whose start event was just consumed. */
static int skip_collection(struct yctx *y)
{
	int depth = 1;
	while (depth > 0) {
		yaml_event_t ev;
		if (next_event(y, &ev) < 0)
			return -1;
		switch (ev.type) {
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT: depth++; break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT: depth--; break;
		default: break;
		}
		yaml_event_delete(&ev);
	}
	return 0;
}

static int is_null_scalar(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
	       strcmp(v, "NULL") == 0;
}

static int handle_scalar(struct yctx *y, const char *key, const yaml_mark_t *key_mark,
                         const yaml_event_t *ev)
{
	char problem[CFG_PROBLEM_MAX];
	size_t idx;
	const struct cfg_setting *s = find_setting(y->table, y->n, key, &idx);

	if (!s) {
		if (!is_own(y, key))
			return 0; /* another component's setting */
		yerr(y, key_mark, key, "unknown setting");
		return -1;
	}
	if (y->seen[idx]) {
		yerr(y, key_mark, key, "set twice in this file");
		return -1;
	}
	y->seen[idx] = 1;
	const char *v = (const char *)ev->data.scalar.value;
	if (strlen(v) != ev->data.scalar.length) {
		yerr(y, &ev->start_mark, key, "value contains a NUL byte");
		return -1;
	}
	if (is_null_scalar(ev) && s->type != CFG_STR) {
		yerr(y, &ev->start_mark, key, "missing value");
		return -1;
	}
	if (is_null_scalar(ev))
		v = "";
	if (set_value(s, y->dst, v, problem, sizeof problem) < 0) {
		yerr(y, &ev->start_mark, key, problem);
		return -1;
	}
	return 0;
}

/* Read key/value pairs until the end of the mapping whose start event was
 * just consumed; keys are prefixed with `prefix` ("" at the top). */
static int parse_mapping(struct yctx *y, const char *prefix, int depth)
{
	yaml_event_t kev = {0}, vev = {0};
	char key[CFG_KEY_MAX];
	int rc = -1;

	for (;;) {
		if (next_event(y, &kev) < 0)
			goto out;
		if (kev.type == YAML_MAPPING_END_EVENT)
			break;
		if (kev.type != YAML_SCALAR_EVENT) {
			yerr(y, &kev.start_mark, *prefix ? prefix : "(top)",
			     "keys must be plain strings");
			goto out;
		}
		int n = snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "",
		                 (const char *)kev.data.scalar.value);
		if (n < 0 || (size_t)n >= sizeof key) {
			yerr(y, &kev.start_mark, prefix, "key too long");
			goto out;
		}
		if (next_event(y, &vev) < 0)
			goto out;

		size_t idx;
		int wanted = find_setting(y->table, y->n, key, &idx) || is_own(y, key);
		switch (vev.type) {
		case YAML_SCALAR_EVENT:
			if (handle_scalar(y, key, &kev.start_mark, &vev) < 0)
				goto out;
			break;
		case YAML_MAPPING_START_EVENT:
			if (find_setting(y->table, y->n, key, &idx)) {
				yerr(y, &vev.start_mark, key, "expected a value, not a mapping");
				goto out;
			}
			if (depth + 1 >= CFG_DEPTH_MAX) {
				yerr(y, &vev.start_mark, key, "mappings nested too deeply");
				goto out;
			}
			if (parse_mapping(y, key, depth + 1) < 0)
				goto out;
			break;
		case YAML_SEQUENCE_START_EVENT:
			if (wanted) {
				yerr(y, &vev.start_mark, key, "sequences are not supported");
				goto out;
			}
			if (skip_collection(y) < 0)
				goto out;
			break;
		case YAML_ALIAS_EVENT:
			if (wanted) {
				yerr(y, &vev.start_mark, key, "aliases are not supported");
				goto out;
			}
			break;
		default:
			yerr(y, &vev.start_mark, key, "unexpected YAML event");
			goto out;
		}
		yaml_event_delete(&kev);
		yaml_event_delete(&vev);
	}
	rc = 0;
out:
	yaml_event_delete(&kev);
	yaml_event_delete(&vev);
	return rc;
}

static int load_yaml(const struct cfg_setting *table, size_t n, void *dst, const char *path,
                     const char *own_prefix, char *err, size_t errlen)
{
	struct yctx y = {
		.table = table, .n = n, .dst = dst, .path = path,
		.own_prefix = own_prefix, .err = err, .errlen = errlen,
	};
	yaml_event_t ev = {0};
	FILE *f = NULL;
	int parser_ok = 0, rc = -1, docs = 0;

	f = fopen(path, "r");
	if (!f) {
		seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		goto out;
	}
	y.seen = calloc(n ? n : 1, 1);
	if (!y.seen) {
		seterr(err, errlen, "%s: out of memory", path);
		goto out;
	}
	if (!yaml_parser_initialize(&y.parser)) {
		seterr(err, errlen, "%s: cannot initialise the YAML parser", path);
		goto out;
	}
	parser_ok = 1;
	yaml_parser_set_input_file(&y.parser, f);

	for (;;) {
		if (next_event(&y, &ev) < 0)
			goto out;
		yaml_event_type_t t = ev.type;
		if (t == YAML_STREAM_END_EVENT)
			break;
		if (t == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
			yerr(&y, &ev.start_mark, "(top)", "only one YAML document is supported");
			goto out;
		}
		if (t == YAML_MAPPING_START_EVENT) {
			if (parse_mapping(&y, "", 0) < 0)
				goto out;
		} else if (t == YAML_SCALAR_EVENT) {
			if (!is_null_scalar(&ev)) { /* a file with only "~" is empty */
				yerr(&y, &ev.start_mark, "(top)", "expected a mapping of settings");
				goto out;
			}
		} else if (t == YAML_SEQUENCE_START_EVENT || t == YAML_ALIAS_EVENT) {
			yerr(&y, &ev.start_mark, "(top)", "expected a mapping of settings");
			goto out;
		}
		yaml_event_delete(&ev);
	}
	rc = 0;
out:
	yaml_event_delete(&ev);
	if (parser_ok)
		yaml_parser_delete(&y.parser);
	free(y.seen);
	if (f)
		fclose(f);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Loading */

/* Read a secret file: one line, the trailing newline dropped. The secret
 * itself never goes into `problem`. 0 / -1. */
static int read_secret(const char *path, char **out, char *problem, size_t plen)
{
	char buf[CFG_SECRET_MAX + 2];
	struct stat st;
	ssize_t n = 0, got;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(problem, plen, "cannot read \"%s\": %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(problem, plen, "\"%s\" is not a regular file", path);
		close(fd);
		return -1;
	}
	while ((size_t)n < sizeof buf - 1 && (got = read(fd, buf + n, sizeof buf - 1 - (size_t)n)) > 0)
		n += got;
	close(fd);
	if ((size_t)n > CFG_SECRET_MAX) {
		snprintf(problem, plen, "\"%s\" is larger than %d bytes", path, CFG_SECRET_MAX);
		return -1;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', (size_t)n)) {
		snprintf(problem, plen, "\"%s\" contains a NUL byte", path);
		return -1;
	}
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	if (n == 0 || strchr(buf, '\n')) {
		snprintf(problem, plen, "\"%s\" must hold the secret on one non-empty line", path);
		return -1;
	}
	char *copy = strdup(buf);
	explicit_bzero(buf, sizeof buf);
	if (!copy) {
		snprintf(problem, plen, "out of memory");
		return -1;
	}
	free(*out);
	*out = copy;
	return 0;
}

/* Every non-empty "<x>_file" string setting whose "<x>" is a string setting
 * too: load <x> from that file. Setting both is an error. */
static int load_secret_files(const struct cfg_setting *table, size_t n, void *dst, char *err,
                             size_t errlen)
{
	char problem[CFG_PROBLEM_MAX], key[CFG_KEY_MAX];
	for (size_t i = 0; i < n; i++) {
		const struct cfg_setting *s = &table[i];
		size_t len = strlen(s->key);
		const char *path = s->type == CFG_STR ? *(char **)field(s, dst) : NULL;
		if (!path || !*path || len < 6 || len - 5 >= sizeof key || strcmp(s->key + len - 5, "_file") != 0)
			continue;
		memcpy(key, s->key, len - 5);
		key[len - 5] = '\0';
		size_t idx;
		const struct cfg_setting *t = find_setting(table, n, key, &idx);
		if (!t || t->type != CFG_STR)
			continue;
		char **val = field(t, dst);
		if (*val && **val) {
			seterr(err, errlen, "%s: set either %s or %s, not both", s->key, key, s->key);
			return -1;
		}
		if (read_secret(path, val, problem, sizeof problem) < 0) {
			seterr(err, errlen, "%s: %s", s->key, problem);
			return -1;
		}
	}
	return 0;
}

int cfg_yaml_load(const char *path, yaml_document_t *doc, char *err, size_t errlen)
{
	yaml_parser_t parser;
	FILE *f = fopen(path, "rb");
	if (!f) {
		if (errno == ENOENT)
			return 1;
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		seterr(err, errlen, "%s: out of memory", path);
		return -1;
	}
	yaml_parser_set_input_file(&parser, f);
	int rc = 0;
	if (!yaml_parser_load(&parser, doc)) {
		seterr(err, errlen, "%s:%lu: %s", path, (unsigned long)parser.problem_mark.line + 1,
		       parser.problem ? parser.problem : "YAML syntax error");
		rc = -1;
	}
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

int cfg_load(const struct cfg_setting *table, size_t n, void *dst, const char *yaml_path,
             const char *own_prefix, char *err, size_t errlen)
{
	char problem[CFG_PROBLEM_MAX];
	int rc = -1;

	seterr(err, errlen, "%s", "");
	if (!table || !dst) {
		seterr(err, errlen, "cfg_load: no settings table");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (table[i].type == CFG_STR)
			*(char **)field(&table[i], dst) = NULL;

	for (size_t i = 0; i < n; i++) {
		const struct cfg_setting *s = &table[i];
		if (s->type == CFG_STR && !s->def)
			continue; /* stays NULL */
		if (set_value(s, dst, s->def ? s->def : "", problem, sizeof problem) < 0) {
			seterr(err, errlen, "%s: bad default: %s", s->key, problem);
			goto out;
		}
	}

	if (yaml_path && load_yaml(table, n, dst, yaml_path, own_prefix, err, errlen) < 0)
		goto out;

	for (size_t i = 0; i < n; i++) {
		char env[CFG_KEY_MAX + 8];
		cfg_env_name(table[i].key, env, sizeof env);
		const char *v = getenv(env);
		if (!v)
			continue;
		if (set_value(&table[i], dst, v, problem, sizeof problem) < 0) {
			seterr(err, errlen, "%s: %s", env, problem);
			goto out;
		}
	}
	if (load_secret_files(table, n, dst, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		cfg_free(table, n, dst);
	return rc;
}

void cfg_free(const struct cfg_setting *table, size_t n, void *dst)
{
	if (!table || !dst)
		return;
	for (size_t i = 0; i < n; i++) {
		if (table[i].type != CFG_STR)
			continue;
		char **p = field(&table[i], dst);
		free(*p);
		*p = NULL;
	}
}

/* ------------------------------------------------------------------------ */
/* Command line */

static const char *base_name(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	if (slash)
		return slash + 1;
	return path && *path ? path : "agent-obs";
}

void cfg_help(FILE *out, const char *prog, const char *summary, const struct cfg_setting *table,
              size_t n)
{
	char env[CFG_KEY_MAX + 8];
	int wkey = 3, wenv = 8, wdef = 7;

	prog = base_name(prog);
	for (size_t i = 0; i < n; i++) {
		int k = (int)strlen(table[i].key), d = table[i].def ? (int)strlen(table[i].def) : 6;
		cfg_env_name(table[i].key, env, sizeof env);
		int e = (int)strlen(env);
		if (table[i].def && !*table[i].def)
			d = 2; /* "" */
		wkey = k > wkey ? k : wkey;
		wenv = e > wenv ? e : wenv;
		wdef = d > wdef ? d : wdef;
	}

	fprintf(out, "Usage: %s [--config FILE] [--help]\n", prog);
	if (summary && *summary)
		fprintf(out, "%s\n", summary);
	fprintf(out, "\nOptions:\n"
	             "  -c, --config FILE  YAML configuration file (default: $OBS_CONFIG)\n"
	             "  -h, --help         print this help and exit\n"
	             "\nSettings: defaults < config file < environment variables.\n"
	             "A key \"a.b\" is written in YAML as a: {b: ...} or as \"a.b: ...\".\n\n");
	fprintf(out, "  %-*s  %-*s  %-6s  %-*s  %s\n", wkey, "KEY", wenv, "ENVIRONMENT", "TYPE",
	        wdef, "DEFAULT", "DESCRIPTION");
	for (size_t i = 0; i < n; i++) {
		const struct cfg_setting *s = &table[i];
		const char *def = s->def ? (*s->def ? s->def : "\"\"") : "(none)";
		cfg_env_name(s->key, env, sizeof env);
		fprintf(out, "  %-*s  %-*s  %-6s  %-*s  %s", wkey, s->key, wenv, env,
		        type_name(s->type), wdef, def, s->doc ? s->doc : "");
		if (has_range(s))
			fprintf(out, " [%.15g..%.15g]", s->min, s->max);
		fputc('\n', out);
	}
}

static int is_extra(const char *arg, const char *const *extra, int *with_value)
{
	for (const char *const *e = extra; e && *e; e++) {
		size_t len = strlen(*e);
		if (strcmp(arg, *e) == 0) {
			*with_value = 1;
			return 1;
		}
		if (strncmp(arg, *e, len) == 0 && arg[len] == '=') {
			*with_value = 0;
			return 1;
		}
	}
	return 0;
}

int cfg_args(int argc, char **argv, const char *summary, const struct cfg_setting *table,
             size_t n, const char **config_path, const char *const *extra)
{
	const char *prog = base_name(argc > 0 ? argv[0] : NULL);
	const char *path = getenv("OBS_CONFIG");
	int with_value;

	if (path && !*path)
		path = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cfg_help(stdout, prog, summary, table, n);
			return 1;
		}
		if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
			if (i + 1 >= argc || !*argv[i + 1]) {
				fprintf(stderr, "%s: %s needs a FILE argument (try --help)\n", prog, a);
				return -1;
			}
			path = argv[++i];
			continue;
		}
		if (strncmp(a, "--config=", 9) == 0) {
			if (!a[9]) {
				fprintf(stderr, "%s: --config needs a FILE argument (try --help)\n", prog);
				return -1;
			}
			path = a + 9;
			continue;
		}
		if (is_extra(a, extra, &with_value)) {
			/* the caller's option; its value, if any, is the next word
			 * unless that word is itself an option */
			if (with_value && i + 1 < argc &&
			    (argv[i + 1][0] != '-' || strcmp(argv[i + 1], "-") == 0))
				i++;
			continue;
		}
		fprintf(stderr, "%s: unknown argument \"%s\" (try --help)\n", prog, a);
		return -1;
	}
	if (config_path)
		*config_path = path;
	return 0;
}
