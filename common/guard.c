/* guard.c -- the PreToolUse guard (see guard.h).
 *
 * A command is read like a shell would read it, closely enough to see what
 * runs: words with quotes removed, simple commands split at ; & | && || ( )
 * and newlines, redirections, here-documents (evaluated only when a shell
 * reads them), and the text of $(...), `...`, <(...), sh -c, eval, su -c and
 * env -S evaluated recursively. Wrappers (sudo, env, nice, nohup, timeout,
 * xargs, ...) are skipped to find the real command, `cd` moves the working
 * directory, and each command's targets are resolved (~, $HOME, .., globs)
 * before they are compared with the protected directories.
 *
 * Sections: policy (built-in, YAML), paths, tokenizer, command rules,
 * fork bombs, entry points. */
#include "guard.h"

#include "buf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#define MAX_DEPTH 8
#define MAX_PATH 4096

/* ---------- policy ---------- */

struct rule {
	char *name, *reason;
	int on_path; /* 0: matches commands, 1: file paths */
	char *tools; /* "|Bash|Write|" or NULL for the default tools */
	regex_t re;
};

struct guard_policy {
	int builtin;
	char **prot; /* protected directories besides / and ~ (normalised) */
	size_t nprot;
	struct rule *rules;
	size_t nrules;
};

static const char *const default_protected[] = {
	"/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/opt",
	"/proc", "/root", "/sbin", "/srv", "/sys", "/usr", "/var", "/Users", "/System",
	"/Library", "/Applications", NULL};

static const char *const write_tools = "|Write|Edit|MultiEdit|NotebookEdit|";

void guard_policy_free(struct guard_policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nprot; i++)
		free(p->prot[i]);
	free(p->prot);
	for (size_t i = 0; i < p->nrules; i++) {
		free(p->rules[i].name);
		free(p->rules[i].reason);
		free(p->rules[i].tools);
		regfree(&p->rules[i].re);
	}
	free(p->rules);
	free(p);
}

static int add_prot(struct guard_policy *p, const char *path)
{
	char **a = realloc(p->prot, (p->nprot + 1) * sizeof *a);
	if (!a)
		return -1;
	p->prot = a;
	a[p->nprot] = strdup(path);
	if (!a[p->nprot])
		return -1;
	p->nprot++;
	return 0;
}

struct guard_policy *guard_policy_builtin(void)
{
	struct guard_policy *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->builtin = 1;
	for (const char *const *d = default_protected; *d; d++)
		if (add_prot(p, *d)) {
			guard_policy_free(p);
			return NULL;
		}
	return p;
}

static const char *scalar(yaml_document_t *d, yaml_node_t *n)
{
	(void)d;
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int parse_bool(const char *s, int *out)
{
	if (!s)
		return -1;
	if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) {
		*out = 1;
		return 0;
	}
	if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) {
		*out = 0;
		return 0;
	}
	return -1;
}

static int norm_path(const char *in, char *out, size_t outlen);

/* tools: a sequence of names or one "A|B" string -> "|A|B|" */
static char *parse_tools(yaml_document_t *d, yaml_node_t *n)
{
	char buf[1024];
	size_t off = 0;
	buf[off++] = '|';
	buf[off] = 0;
	if (n->type == YAML_SCALAR_NODE) {
		for (const char *s = scalar(d, n); *s && off + 2 < sizeof buf; s++)
			if (*s != ' ')
				buf[off++] = *s == ',' ? '|' : *s;
		buf[off++] = '|';
		buf[off] = 0;
		return strdup(buf);
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		const char *s = scalar(d, yaml_document_get_node(d, *it));
		if (!s)
			return NULL;
		off += (size_t)snprintf(buf + off, sizeof buf - off, "%s|", s);
		if (off >= sizeof buf)
			return NULL;
	}
	return strdup(buf);
}

static int parse_rule(struct guard_policy *p, yaml_document_t *d, yaml_node_t *n, size_t idx,
                      char *err, size_t errlen)
{
	const char *name = NULL, *cmd = NULL, *path = NULL, *reason = NULL;
	yaml_node_t *tools = NULL;
	int icase = 0;
	if (n->type != YAML_MAPPING_NODE) {
		snprintf(err, errlen, "deny[%zu]: must be a mapping", idx);
		return -1;
	}
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		const char *k = scalar(d, yaml_document_get_node(d, pr->key));
		yaml_node_t *v = yaml_document_get_node(d, pr->value);
		if (!k) {
			snprintf(err, errlen, "deny[%zu]: keys must be strings", idx);
			return -1;
		}
		if (!strcmp(k, "tools")) {
			tools = v;
			continue;
		}
		if (!strcmp(k, "ignore_case")) {
			if (parse_bool(scalar(d, v), &icase)) {
				snprintf(err, errlen, "deny[%zu].ignore_case: expected true or false", idx);
				return -1;
			}
			continue;
		}
		const char *s = scalar(d, v);
		if (!s) {
			snprintf(err, errlen, "deny[%zu].%s: expected a string", idx, k);
			return -1;
		}
		if (!strcmp(k, "name"))
			name = s;
		else if (!strcmp(k, "command"))
			cmd = s;
		else if (!strcmp(k, "path"))
			path = s;
		else if (!strcmp(k, "reason"))
			reason = s;
		else {
			snprintf(err, errlen, "deny[%zu]: unknown key \"%s\" (name, command, path, tools, reason, ignore_case)",
			         idx, k);
			return -1;
		}
	}
	if (!!cmd == !!path) {
		snprintf(err, errlen, "deny[%zu]: give exactly one of command: or path: (a regular expression)", idx);
		return -1;
	}
	struct rule *a = realloc(p->rules, (p->nrules + 1) * sizeof *a);
	if (!a)
		return -1;
	p->rules = a;
	struct rule *r = &a[p->nrules];
	memset(r, 0, sizeof *r);
	int rc = regcomp(&r->re, cmd ? cmd : path, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
	if (rc) {
		char m[128];
		regerror(rc, &r->re, m, sizeof m);
		snprintf(err, errlen, "deny[%zu]: bad regular expression: %s", idx, m);
		return -1;
	}
	char defname[32];
	snprintf(defname, sizeof defname, "rule-%zu", idx + 1);
	r->on_path = path != NULL;
	r->name = strdup(name ? name : defname);
	r->reason = strdup(reason ? reason : cmd ? "command denied by policy" : "path denied by policy");
	r->tools = tools ? parse_tools(d, tools) : NULL;
	p->nrules++;
	if (!r->name || !r->reason || (tools && !r->tools)) {
		snprintf(err, errlen, "deny[%zu]: tools: expected a list of tool names", idx);
		return -1;
	}
	return 0;
}

struct guard_policy *guard_policy_parse(const char *yaml, size_t len, char *err, size_t errlen)
{
	yaml_parser_t ps;
	yaml_document_t doc;
	struct guard_policy *p = calloc(1, sizeof *p);
	int have_doc = 0, prot_given = 0;
	if (!p || !yaml_parser_initialize(&ps)) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->builtin = 1;
	yaml_parser_set_input_string(&ps, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&ps, &doc)) {
		snprintf(err, errlen, "line %lu: %s", (unsigned long)ps.problem_mark.line + 1,
		         ps.problem ? ps.problem : "YAML syntax error");
		goto fail;
	}
	have_doc = 1;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root && root->type == YAML_MAPPING_NODE) {
		for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
			yaml_node_t *kn = yaml_document_get_node(&doc, pr->key);
			yaml_node_t *v = yaml_document_get_node(&doc, pr->value);
			const char *k = scalar(&doc, kn);
			if (!k) {
				snprintf(err, errlen, "top-level keys must be strings");
				goto fail;
			}
			if (!strcmp(k, "builtin")) {
				if (parse_bool(scalar(&doc, v), &p->builtin)) {
					snprintf(err, errlen, "builtin: expected true or false");
					goto fail;
				}
			} else if (!strcmp(k, "protected_paths")) {
				prot_given = 1;
				if (v->type != YAML_SEQUENCE_NODE) {
					snprintf(err, errlen, "protected_paths: expected a list of directories");
					goto fail;
				}
				for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
					const char *s = scalar(&doc, yaml_document_get_node(&doc, *it));
					char np[MAX_PATH];
					if (!s || (s[0] != '/' && s[0] != '~') || norm_path(s, np, sizeof np)) {
						snprintf(err, errlen, "protected_paths: \"%s\" is not an absolute path",
						         s ? s : "(not a string)");
						goto fail;
					}
					if (add_prot(p, np))
						goto fail;
				}
			} else if (!strcmp(k, "deny")) {
				if (v->type != YAML_SEQUENCE_NODE) {
					snprintf(err, errlen, "deny: expected a list of rules");
					goto fail;
				}
				size_t idx = 0;
				for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
				     it++, idx++)
					if (parse_rule(p, &doc, yaml_document_get_node(&doc, *it), idx, err, errlen))
						goto fail;
			} else {
				snprintf(err, errlen, "unknown key \"%s\" (builtin, protected_paths, deny)", k);
				goto fail;
			}
		}
	} else if (root && !(root->type == YAML_SCALAR_NODE && !*scalar(&doc, root))) {
		snprintf(err, errlen, "the policy must be a mapping (builtin, protected_paths, deny)");
		goto fail;
	}
	if (!prot_given)
		for (const char *const *d = default_protected; *d; d++)
			if (add_prot(p, *d))
				goto fail;
	yaml_document_delete(&doc);
	yaml_parser_delete(&ps);
	return p;
fail:
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&ps);
	guard_policy_free(p);
	return NULL;
}

struct guard_policy *guard_policy_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char ebuf[256];
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 8192, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
		if (len == cap) {
			if (cap >= (1u << 20))
				break; /* a policy is small; 1 MiB is plenty */
			char *b = realloc(buf, cap * 2);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
	}
	fclose(f);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	struct guard_policy *p = guard_policy_parse(buf, len, ebuf, sizeof ebuf);
	free(buf);
	if (!p)
		snprintf(err, errlen, "%s: %s", path, ebuf);
	return p;
}

/* ---------- paths ---------- */

/* Lexically normalise an absolute ("/...") or home-relative ("~...") path:
 * collapse //, drop ".", resolve ".." (never above the root). A ".." above
 * an unknown home gives "~..", the parent of home. 0 / -1 (too long). */
static int norm_path(const char *in, char *out, size_t outlen)
{
	size_t o = 0, base;
	const char *s = in;
	if (outlen < 4)
		return -1;
	if (*s == '~') {
		out[o++] = '~';
		s++;
	} else if (*s == '/') {
		out[o++] = '/';
	} else {
		return -1;
	}
	base = o;
	out[o] = 0;
	while (*s) {
		while (*s == '/')
			s++;
		if (!*s)
			break;
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 1 && s[0] == '.') {
			/* nothing */
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (o > base) {
				while (o > base && out[o - 1] != '/')
					o--;
				if (o > base && out[o - 1] == '/' && o - 1 >= base)
					o--;
				if (o < base)
					o = base;
			} else if (out[0] == '~') {
				if (o + 2 >= outlen)
					return -1;
				out[o++] = '.'; /* "~..": above the home directory */
				out[o++] = '.';
				base = o;
			}
		} else {
			if (o + n + 2 >= outlen)
				return -1;
			if (!(o == 1 && out[0] == '/'))
				out[o++] = '/';
			memcpy(out + o, s, n);
			o += n;
		}
		out[o] = 0;
		s += n;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = 0;
	return 0;
}

static int has_glob(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '*' || s[i] == '?' || s[i] == '[' || s[i] == '{')
			return 1;
	return 0;
}

struct ev;
static int resolve(const struct ev *e, const char *word, char *out, size_t outlen);

/* ---------- evaluation state ---------- */

struct ev {
	const struct guard_policy *p;
	struct guard_verdict *v;
	char home[MAX_PATH]; /* normalised, "" unknown */
	char cwd[MAX_PATH];  /* normalised, "" unknown */
	int depth;
	int blocked;
	const char *noun;     /* "command" or "file change", for the reason */
	int line_shell_stdin; /* a shell reading stdin on the current line */
	char *pipe_text;      /* echo/printf text piped into the next command */
};

static void verdict(struct ev *e, const char *rule, const char *what, const char *cmd)
{
	char snip[96];
	size_t k = 0;
	if (e->blocked)
		return;
	e->blocked = 1;
	for (const char *s = cmd ? cmd : ""; *s && k < 80; s++)
		snip[k++] = (*s == '\n' || *s == '\r' || *s == '\t') ? ' ' : *s;
	while (k > 0 && ((unsigned char)snip[k - 1] & 0xC0) == 0x80)
		k--; /* do not end inside a UTF-8 sequence */
	if (k > 0 && ((unsigned char)snip[k - 1] & 0xC0) == 0xC0)
		k--;
	snip[k] = 0;
	e->v->block = 1;
	snprintf(e->v->rule, sizeof e->v->rule, "%s", rule);
	snprintf(e->v->reason, sizeof e->v->reason, "agent-obs guard blocked this %s (%s): %s%s%s%s",
	         e->noun ? e->noun : "command", rule, what, *snip ? ": `" : "", snip, *snip ? (cmd && strlen(cmd) > 80 ? "...`" : "`") : "");
}

/* Word -> normalised absolute/home path in out. 0, or -1 when unknown
 * (another variable, a relative path with an unknown cwd). */
static int resolve(const struct ev *e, const char *w, char *out, size_t outlen)
{
	char buf[MAX_PATH];
	const char *rest = NULL, *base = NULL;
	if (w[0] == '~' && (w[1] == 0 || w[1] == '/')) {
		base = e->home[0] ? e->home : "~";
		rest = w + 1;
	} else if (!strncmp(w, "$HOME", 5) && (w[5] == 0 || w[5] == '/')) {
		base = e->home[0] ? e->home : "~";
		rest = w + 5;
	} else if (!strncmp(w, "${HOME}", 7) && (w[7] == 0 || w[7] == '/')) {
		base = e->home[0] ? e->home : "~";
		rest = w + 7;
	} else if (w[0] == '~' && !strncmp(w, "~root", 5) && (w[5] == 0 || w[5] == '/')) {
		base = "/root";
		rest = w + 5;
	} else if (w[0] == '/') {
		base = "";
		rest = w;
	} else if (w[0] == '$' || w[0] == '~' || w[0] == '`') {
		return -1;
	} else if (e->cwd[0]) {
		base = e->cwd;
		if (snprintf(buf, sizeof buf, "%s/%s", base, w) >= (int)sizeof buf)
			return -1;
		return norm_path(buf, out, outlen);
	} else {
		return -1;
	}
	if (snprintf(buf, sizeof buf, "%s%s%s", base, *base && *rest && rest[0] != '/' ? "/" : "", rest) >=
	    (int)sizeof buf)
		return -1;
	return norm_path(buf, out, outlen);
}

enum prot { P_NONE, P_ROOT, P_HOME, P_SYSTEM };

/* Is a resolved path (or the directory a glob in it expands inside) protected? */
static enum prot protected_of(const struct ev *e, const char *path)
{
	char dir[MAX_PATH];
	snprintf(dir, sizeof dir, "%s", path);
	/* cut at the first component holding a glob: "/usr/x*" -> "/usr" */
	for (char *c = dir + 1; *c;) {
		char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		if (has_glob(c, n)) {
			if (c - dir == 1 && dir[0] == '/')
				dir[1] = 0;
			else
				c[-1] = 0;
			break;
		}
		if (!slash)
			break;
		c = slash + 1;
	}
	if (!strcmp(dir, "/") || !strcmp(dir, "//"))
		return P_ROOT;
	if (!strcmp(dir, "~.."))
		return P_SYSTEM; /* the parent of an unknown home directory */
	if (!strcmp(dir, "~") || (e->home[0] && !strcmp(dir, e->home)))
		return P_HOME;
	/* anyone's home: /home/<user>, /Users/<user> */
	if ((!strncmp(dir, "/home/", 6) && dir[6] && !strchr(dir + 6, '/')) ||
	    (!strncmp(dir, "/Users/", 7) && dir[7] && !strchr(dir + 7, '/')))
		return P_HOME;
	for (size_t i = 0; i < e->p->nprot; i++) {
		const char *pp = e->p->prot[i];
		size_t hl = strlen(e->home);
		if (!strcmp(dir, pp))
			return P_SYSTEM;
		/* "~/keep" in the policy, with the home directory known */
		if (pp[0] == '~' && pp[1] == '/' && hl && !strncmp(dir, e->home, hl) && !strcmp(dir + hl, pp + 1))
			return P_SYSTEM;
	}
	return P_NONE;
}

static int is_device(const struct ev *e, const char *w)
{
	static const char *const dev[] = {"sd", "hd", "vd", "xvd", "nvme", "mmcblk", "disk", "rdisk",
		"md", "dm-", "mapper/", "nbd", "root", "mtdblock", "ubd", NULL};
	char p[MAX_PATH];
	if (resolve(e, w, p, sizeof p) || strncmp(p, "/dev/", 5))
		return 0;
	for (const char *const *d = dev; *d; d++)
		if (!strncmp(p + 5, *d, strlen(*d)))
			return 1;
	return 0;
}

/* ---------- tokenizer ---------- */


struct vec {
	char **w;
	size_t n, cap;
};

static int vec_push(struct vec *v, char *s)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		char **w = realloc(v->w, cap * sizeof *w);
		if (!w)
			return -1;
		v->w = w;
		v->cap = cap;
	}
	v->w[v->n++] = s;
	return 0;
}

static void vec_clear(struct vec *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->w[i]);
	v->n = 0;
}

struct cmd {
	struct vec words, redirs;
	char *herestr;
};

static void scan(struct ev *e, const char *s, size_t n);

/* Evaluate nested text ($(...), sh -c '...') in its own subshell state. */
static void nested(struct ev *e, const char *s, size_t n)
{
	if (e->depth >= MAX_DEPTH || e->blocked)
		return;
	char cwd[MAX_PATH];
	int shell_stdin = e->line_shell_stdin;
	char *pipe_text = e->pipe_text;
	memcpy(cwd, e->cwd, sizeof cwd);
	e->pipe_text = NULL;
	e->line_shell_stdin = 0;
	e->depth++;
	scan(e, s, n);
	e->depth--;
	free(e->pipe_text);
	e->pipe_text = pipe_text;
	e->line_shell_stdin = shell_stdin;
	memcpy(e->cwd, cwd, sizeof cwd);
}

static int is_meta(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '&' || c == '|' || c == '(' ||
	       c == ')' || c == '<' || c == '>';
}

/* Index of the ')' closing the '(' at s[i], or n. Skips quotes, comments
 * and here-document bodies (an apostrophe in a commit message must not
 * hide what follows). */
static size_t match_paren(const char *s, size_t n, size_t i)
{
	char delim[8][64];
	int strip[8], nd = 0, depth = 0;
	for (size_t k = i; k < n; k++) {
		char c = s[k];
		if (c == '\\') {
			k++;
		} else if (c == '\'') {
			const char *q = memchr(s + k + 1, '\'', n - k - 1);
			k = q ? (size_t)(q - s) : n;
		} else if (c == '"') {
			for (k++; k < n && s[k] != '"'; k++)
				if (s[k] == '\\')
					k++;
		} else if (c == '#' && k > i && isspace((unsigned char)s[k - 1])) {
			while (k + 1 < n && s[k + 1] != '\n')
				k++;
		} else if (c == '<' && k + 1 < n && s[k + 1] == '<' && !(k + 2 < n && s[k + 2] == '<')) {
			size_t j = k + 2, dl = 0;
			int st = 0;
			if (j < n && s[j] == '-') {
				st = 1;
				j++;
			}
			while (j < n && (s[j] == ' ' || s[j] == '\t'))
				j++;
			char d[64];
			for (; j < n && !is_meta(s[j]); j++)
				if (s[j] != '\'' && s[j] != '"' && s[j] != '\\' && dl < sizeof d - 1)
					d[dl++] = s[j];
			d[dl] = 0;
			if (dl && nd < 8) {
				memcpy(delim[nd], d, dl + 1);
				strip[nd++] = st;
			}
			k = j - 1;
		} else if (c == '\n' && nd) {
			size_t p = k + 1;
			for (int h = 0; h < nd; h++) {
				while (p < n) {
					const char *nl = memchr(s + p, '\n', n - p);
					size_t le = nl ? (size_t)(nl - s) : n, t = p;
					if (strip[h])
						while (t < le && s[t] == '\t')
							t++;
					int end = le - t == strlen(delim[h]) && !memcmp(s + t, delim[h], le - t);
					p = nl ? le + 1 : n;
					if (end)
						break;
				}
			}
			nd = 0;
			k = p - 1;
		} else if (c == '(') {
			depth++;
		} else if (c == ')') {
			if (--depth == 0)
				return k;
		}
	}
	return n;
}

/* $(...) `...` and ${...} at s[*i] (s[*i] == '$' or '`'): evaluate the
 * command text and append the raw text to the word. */
static void substitution(struct ev *e, const char *s, size_t n, size_t *i, struct buf *w)
{
	size_t k = *i, end;
	if (s[k] == '`') {
		for (end = k + 1; end < n && s[end] != '`'; end++)
			if (s[end] == '\\')
				end++;
		if (end > n)
			end = n;
		nested(e, s + k + 1, end - k - 1);
	} else if (k + 1 < n && s[k + 1] == '{') {
		const char *c = memchr(s + k, '}', n - k);
		end = c ? (size_t)(c - s) : n;
	} else if (k + 2 < n && s[k + 1] == '(' && s[k + 2] == '(') {
		end = match_paren(s, n, k + 1); /* arithmetic: nothing runs */
	} else {
		end = match_paren(s, n, k + 1);
		nested(e, s + k + 2, end > k + 2 ? end - k - 2 : 0);
	}
	size_t stop = end < n ? end + 1 : n;
	buf_put(w, s + k, stop - k);
	*i = stop;
}

/* Read one word at s[*i] (not a metacharacter): quote removal, escapes,
 * substitutions. *quoted is set when any part was quoted. */
static void read_word(struct ev *e, const char *s, size_t n, size_t *i, struct buf *w, int *quoted)
{
	size_t k = *i;
	while (k < n && !is_meta(s[k])) {
		char c = s[k];
		if (c == '\\') {
			if (k + 1 < n && s[k + 1] != '\n')
				buf_put(w, s + k + 1, 1);
			k += 2;
		} else if (c == '\'') {
			const char *q = memchr(s + k + 1, '\'', n - k - 1);
			size_t end = q ? (size_t)(q - s) : n;
			buf_put(w, s + k + 1, end - k - 1);
			k = end + 1;
			*quoted = 1;
		} else if (c == '"') {
			*quoted = 1;
			for (k++; k < n && s[k] != '"';) {
				if (s[k] == '\\' && k + 1 < n && strchr("$`\"\\\n", s[k + 1])) {
					if (s[k + 1] != '\n')
						buf_put(w, s + k + 1, 1);
					k += 2;
				} else if ((s[k] == '$' && k + 1 < n && (s[k + 1] == '(' || s[k + 1] == '{')) || s[k] == '`') {
					substitution(e, s, n, &k, w);
				} else {
					buf_put(w, s + k, 1);
					k++;
				}
			}
			k++;
		} else if (c == '$' && k + 1 < n && s[k + 1] == '\'') {
			/* $'...' ANSI-C quoting */
			*quoted = 1;
			for (k += 2; k < n && s[k] != '\''; k++) {
				char ch = s[k];
				if (ch == '\\' && k + 1 < n) {
					char x = s[++k];
					ch = x == 'n' ? '\n' : x == 't' ? '\t' : x == 'r' ? '\r' : x;
					if (x == 'x' && k + 2 < n && isxdigit((unsigned char)s[k + 1])) {
						char hex[3] = {s[k + 1], isxdigit((unsigned char)s[k + 2]) ? s[k + 2] : 0, 0};
						ch = (char)strtol(hex, NULL, 16);
						k += hex[1] ? 2 : 1;
					}
				}
				buf_put(w, &ch, 1);
			}
			k++;
		} else if ((c == '$' && k + 1 < n && (s[k + 1] == '(' || s[k + 1] == '{')) || c == '`') {
			substitution(e, s, n, &k, w);
		} else {
			buf_put(w, s + k, 1);
			k++;
		}
	}
	*i = k > n ? n : k;
}

/* ---------- command rules ---------- */

static const char *base_name(const char *w)
{
	const char *s = strrchr(w, '/');
	return s && s[1] ? s + 1 : w;
}

static int is_assignment(const char *w)
{
	if (!isalpha((unsigned char)*w) && *w != '_')
		return 0;
	for (const char *s = w; *s; s++) {
		if (*s == '=')
			return 1;
		if (!isalnum((unsigned char)*s) && *s != '_')
			return 0;
	}
	return 0;
}

static int in(const char *w, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(w, *list))
			return 1;
	return 0;
}

static const char *const keywords[] = {"if", "then", "else", "elif", "fi", "do", "done", "while",
	"until", "for", "in", "case", "esac", "!", "{", "}", "[[", "]]", "time", "coproc", NULL};
static const char *const shells[] = {"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish",
	"yash", "posh", NULL};

/* Skip a wrapper's options: short options in `arg_short` and long ones in
 * `arg_long` take a value. Returns the index of the first operand. */
static size_t skip_opts(char **w, size_t n, size_t k, const char *arg_short, const char *const *arg_long)
{
	for (k++; k < n; k++) {
		const char *a = w[k];
		if (a[0] != '-' || !a[1])
			break;
		if (!strcmp(a, "--"))
			return k + 1;
		if (a[1] == '-') {
			if (!strchr(a, '=') && arg_long && in(a + 2, arg_long))
				k++;
			continue;
		}
		for (const char *c = a + 1; *c; c++)
			if (arg_short && strchr(arg_short, *c)) {
				if (!c[1])
					k++; /* value is the next word */
				break;
			}
	}
	return k;
}

static void join(char **w, size_t from, size_t n, struct buf *out)
{
	for (size_t i = from; i < n; i++) {
		if (i > from)
			buf_put(out, " ", 1);
		buf_put(out, w[i], strlen(w[i]));
	}
}

static void joined_cmd(char **w, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	out[0] = 0;
	for (size_t i = 0; i < n && o + 1 < outlen; i++)
		o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? " " : "", w[i]);
}

static void block_target(struct ev *e, enum prot pr, const char *rule_base, const char *verb,
                         const char *target, char **w, size_t n)
{
	char rule[48], what[256], cmd[128];
	const char *where = pr == P_ROOT ? "the filesystem root" : pr == P_HOME ? "the home directory"
	                                                                          : "a system directory";
	snprintf(rule, sizeof rule, "%s-%s", rule_base, pr == P_ROOT ? "root" : pr == P_HOME ? "home" : "system");
	snprintf(what, sizeof what, "%s %s (%s)", verb, where, target);
	joined_cmd(w, n, cmd, sizeof cmd);
	verdict(e, rule, what, cmd);
}

static void check_rm(struct ev *e, char **w, size_t k, size_t n)
{
	int rec = 0, nopreserve = 0, done = 0;
	enum prot worst = P_NONE;
	const char *target = NULL;
	for (size_t j = k + 1; j < n; j++) {
		const char *a = w[j];
		if (!done && !strcmp(a, "--")) {
			done = 1;
			continue;
		}
		if (!done && a[0] == '-' && a[1]) {
			if (a[1] == '-') {
				rec |= !strcmp(a, "--recursive");
				nopreserve |= !strcmp(a, "--no-preserve-root");
			} else {
				rec |= strchr(a, 'r') || strchr(a, 'R');
			}
			continue;
		}
		char p[MAX_PATH];
		if (resolve(e, a, p, sizeof p) == 0) {
			enum prot pr = protected_of(e, p);
			if (pr != P_NONE && (worst == P_NONE || pr < worst)) {
				worst = pr;
				target = a;
			}
		}
	}
	if (nopreserve) {
		char cmd[128];
		joined_cmd(w + k, n - k, cmd, sizeof cmd);
		verdict(e, "rm-no-preserve-root", "rm with --no-preserve-root", cmd);
	} else if (rec && worst != P_NONE) {
		block_target(e, worst, "rm", "recursive delete of", target, w + k, n - k);
	}
}

static void check_find(struct ev *e, char **w, size_t k, size_t n)
{
	size_t j = k + 1;
	while (j < n && w[j][0] == '-' && (!strcmp(w[j], "-H") || !strcmp(w[j], "-L") || !strcmp(w[j], "-P") ||
	                                   !strncmp(w[j], "-O", 2) || !strcmp(w[j], "-D")))
		j += !strcmp(w[j], "-D") ? 2 : 1;
	size_t first_expr = j;
	while (first_expr < n && w[first_expr][0] != '-' && w[first_expr][0] != '(' && w[first_expr][0] != '!')
		first_expr++;
	int deletes = 0;
	for (size_t x = first_expr; x < n; x++) {
		if (!strcmp(w[x], "-delete"))
			deletes = 1;
		if ((!strcmp(w[x], "-exec") || !strcmp(w[x], "-execdir") || !strcmp(w[x], "-ok") ||
		     !strcmp(w[x], "-okdir")) && x + 1 < n) {
			const char *c = base_name(w[x + 1]);
			if (!strcmp(c, "rm") || !strcmp(c, "shred") || !strcmp(c, "unlink") || !strcmp(c, "rmdir"))
				deletes = 1;
		}
	}
	if (!deletes)
		return;
	for (size_t x = j; x < first_expr; x++) {
		char p[MAX_PATH];
		if (resolve(e, w[x], p, sizeof p) == 0) {
			enum prot pr = protected_of(e, p);
			if (pr != P_NONE) {
				block_target(e, pr, "find-delete", "find deleting everything under", w[x], w + k, n - k);
				return;
			}
		}
	}
	if (j == first_expr && e->cwd[0] && protected_of(e, e->cwd) != P_NONE)
		block_target(e, protected_of(e, e->cwd), "find-delete", "find deleting everything under",
		             e->cwd, w + k, n - k);
}

/* chmod mode that makes files world-writable: 777, 0666, a+w, o=rwx... */
static int world_writable(const char *m)
{
	if (isdigit((unsigned char)m[0])) {
		size_t l = strlen(m);
		for (size_t i = 0; i < l; i++)
			if (m[i] < '0' || m[i] > '7')
				return 0;
		return (m[l - 1] - '0') & 2;
	}
	char buf[128];
	snprintf(buf, sizeof buf, "%s", m);
	for (char *cl = buf, *next; cl; cl = next) {
		next = strchr(cl, ',');
		if (next)
			*next++ = 0;
		size_t who = strspn(cl, "ugoa");
		int all = who == 0 || memchr(cl, 'a', who) || memchr(cl, 'o', who);
		const char *op = cl + who;
		if ((*op == '+' || *op == '=') && strchr(op, 'w') && all && who > 0)
			return 1;
	}
	return 0;
}

static void check_perm(struct ev *e, const char *name, char **w, size_t k, size_t n)
{
	int rec = 0, ref = 0, chmod = !strcmp(name, "chmod");
	const char *mode = NULL;
	size_t first_target = 0;
	for (size_t j = k + 1; j < n; j++) {
		const char *a = w[j];
		if (a[0] == '-' && a[1] && !(chmod && strspn(a + 1, "rwxXstugo") == strlen(a + 1))) {
			if (a[1] == '-') {
				rec |= !strcmp(a, "--recursive");
				ref |= !strncmp(a, "--reference", 11);
			} else {
				rec |= strchr(a, 'R') != NULL;
			}
			continue;
		}
		if (!mode && !ref) {
			mode = a;
			continue;
		}
		if (!first_target)
			first_target = j;
	}
	if (!first_target)
		return;
	int ww = chmod && mode && world_writable(mode);
	for (size_t j = first_target; j < n; j++) {
		char p[MAX_PATH];
		if (w[j][0] == '-' || resolve(e, w[j], p, sizeof p))
			continue;
		enum prot pr = protected_of(e, p);
		if (((pr == P_ROOT || pr == P_SYSTEM) && (rec || ww)) || (pr == P_HOME && rec && ww)) {
			char verb[64];
			snprintf(verb, sizeof verb, "%s%s of", rec ? "recursive " : "", name);
			block_target(e, pr, name, verb, w[j], w + k, n - k);
			return;
		}
	}
}

static void block_device(struct ev *e, const char *rule, const char *what, const char *dev, char **w,
                         size_t n)
{
	char msg[256], cmd[128];
	snprintf(msg, sizeof msg, "%s %s", what, dev);
	joined_cmd(w, n, cmd, sizeof cmd);
	verdict(e, rule, msg, cmd);
}

static int is_mkfs(const char *c)
{
	return !strcmp(c, "mkfs") || !strncmp(c, "mkfs.", 5) || !strcmp(c, "mke2fs") ||
	       !strcmp(c, "mkswap") || !strcmp(c, "mkntfs") || !strcmp(c, "mkdosfs") ||
	       !strcmp(c, "mkexfatfs") || !strcmp(c, "newfs") || !strncmp(c, "newfs_", 6);
}

static void check_devices(struct ev *e, const char *c, char **w, size_t k, size_t n)
{
	if (!strcmp(c, "dd")) {
		for (size_t j = k + 1; j < n; j++)
			if (!strncmp(w[j], "of=", 3) && is_device(e, w[j] + 3))
				return block_device(e, "disk-write", "dd overwriting the disk device", w[j] + 3, w + k, n - k);
		return;
	}
	int format = is_mkfs(c), wipe = 0, last_only = 0;
	if (!strcmp(c, "wipefs")) {
		for (size_t j = k + 1; j < n; j++)
			if (w[j][0] == '-' && (!strcmp(w[j], "--all") || !strncmp(w[j], "--offset", 8) ||
			                       (w[j][1] != '-' && (strchr(w[j], 'a') || strchr(w[j], 'o')))))
				wipe = 1;
		if (!wipe)
			return;
	} else if (!strcmp(c, "shred") || !strcmp(c, "blkdiscard") || !strcmp(c, "tee") ||
	           !strcmp(c, "sgdisk") || !strcmp(c, "badblocks")) {
		wipe = !strcmp(c, "badblocks") ? 0 : 1;
		if (!strcmp(c, "sgdisk")) {
			wipe = 0;
			for (size_t j = k + 1; j < n; j++)
				wipe |= !strcmp(w[j], "--zap-all") || !strcmp(w[j], "-Z") || !strcmp(w[j], "-o");
		}
		if (!strcmp(c, "badblocks"))
			for (size_t j = k + 1; j < n; j++)
				wipe |= w[j][0] == '-' && strchr(w[j], 'w');
		if (!wipe)
			return;
	} else if (!strcmp(c, "cp") || !strcmp(c, "pv") || !strcmp(c, "install")) {
		wipe = 1;
		last_only = 1;
	} else if (!format) {
		return;
	}
	for (size_t j = last_only ? n - 1 : k + 1; j < n && j > k; j++) {
		if (w[j][0] == '-' && !strchr(w[j], '/'))
			continue;
		const char *t = w[j][0] == '-' && strchr(w[j], '=') ? strchr(w[j], '=') + 1 : w[j];
		if (is_device(e, t)) {
			if (format)
				return block_device(e, "disk-format", "formatting the disk device", t, w + k, n - k);
			return block_device(e, "disk-write", "overwriting the disk device", t, w + k, n - k);
		}
	}
}

static void check_cd(struct ev *e, char **w, size_t k, size_t n)
{
	size_t j = k + 1;
	while (j < n && w[j][0] == '-' && w[j][1])
		j++;
	char p[MAX_PATH];
	if (j >= n) {
		if (e->home[0])
			memcpy(e->cwd, e->home, sizeof e->cwd);
		else
			snprintf(e->cwd, sizeof e->cwd, "~");
	} else if (resolve(e, w[j], p, sizeof p) == 0) {
		memcpy(e->cwd, p, sizeof e->cwd);
	} else {
		e->cwd[0] = 0;
	}
}

/* sh/bash ... -c 'text' -> evaluate text; without -c or a script: stdin. */
static void check_shell(struct ev *e, struct cmd *cm, char **w, size_t k, size_t n)
{
	int has_c = 0;
	size_t j;
	for (j = k + 1; j < n; j++) {
		const char *a = w[j];
		if ((a[0] != '-' && a[0] != '+') || !a[1])
			break;
		if (!strcmp(a, "--"))
			{ j++; break; }
		if (a[1] == '-') {
			if (!strcmp(a, "--rcfile") || !strcmp(a, "--init-file"))
				j++;
			continue;
		}
		if (strchr(a + 1, 'c'))
			has_c = 1;
		if (a[strlen(a) - 1] == 'o' && j + 1 < n)
			j++; /* -o option */
	}
	if (has_c) {
		if (j < n)
			nested(e, w[j], strlen(w[j]));
		return;
	}
	if (j < n && strcmp(w[j], "-") != 0)
		return; /* runs a script file: not ours to read */
	e->line_shell_stdin = 1;
	if (cm->herestr)
		nested(e, cm->herestr, strlen(cm->herestr));
	if (e->pipe_text)
		nested(e, e->pipe_text, strlen(e->pipe_text));
}

static void check_simple(struct ev *e, struct cmd *cm, int into_pipe)
{
	char **w = cm->words.w;
	size_t n = cm->words.n, k = 0;
	const struct guard_policy *p = e->p;
	char *pipe_text = e->pipe_text;
	e->pipe_text = NULL;

	for (size_t r = 0; r < cm->redirs.n && !e->blocked; r++)
		if (is_device(e, cm->redirs.w[r])) {
			char cmd[128];
			joined_cmd(w, n, cmd, sizeof cmd);
			char msg[256];
			snprintf(msg, sizeof msg, "redirecting output onto the disk device %s", cm->redirs.w[r]);
			verdict(e, "disk-write", msg, cmd);
		}
	for (;;) {
		while (k < n && (is_assignment(w[k]) || in(w[k], keywords)))
			k++;
		if (k >= n || e->blocked)
			goto out;
		const char *c = base_name(w[k]);
		static const char *const sudo_l[] = {"user", "group", "host", "prompt", "chdir", "role",
			"type", "other-user", "close-from", "command-timeout", NULL};
		static const char *const env_l[] = {"unset", "chdir", NULL};
		if (!strcmp(c, "sudo")) {
			k = skip_opts(w, n, k, "ugpChDrtUT", sudo_l);
		} else if (!strcmp(c, "doas")) {
			k = skip_opts(w, n, k, "uC", NULL);
		} else if (!strcmp(c, "env")) {
			/* env -S "rm -rf /" splits its argument into words */
			for (size_t j = k + 1; j < n && w[j][0] == '-'; j++) {
				const char *a = w[j];
				const char *str = NULL;
				size_t rest = j + 1;
				if ((!strcmp(a, "-S") || !strcmp(a, "--split-string")) && j + 1 < n) {
					str = w[j + 1];
					rest = j + 2;
				} else if (!strncmp(a, "-S", 2) && a[2]) {
					str = a + 2;
				} else if (!strncmp(a, "--split-string=", 15)) {
					str = a + 15;
				}
				if (str) {
					struct buf t = {0};
					buf_put(&t, str, strlen(str));
					for (size_t x = rest; x < n; x++) {
						buf_put(&t, " ", 1);
						buf_put(&t, w[x], strlen(w[x]));
					}
					if (t.p)
						nested(e, t.p, t.len);
					free(t.p);
					goto out;
				}
			}
			k = skip_opts(w, n, k, "uC", env_l);
		} else if (!strcmp(c, "nice")) {
			k = skip_opts(w, n, k, "n0123456789", NULL);
		} else if (!strcmp(c, "ionice")) {
			k = skip_opts(w, n, k, "cnpPu", NULL);
		} else if (!strcmp(c, "nohup") || !strcmp(c, "builtin") || !strcmp(c, "busybox") ||
		           !strcmp(c, "chronic") || !strcmp(c, "unbuffer") || !strcmp(c, "setsid") ||
		           !strcmp(c, "catchsegv") || !strcmp(c, "nocache") || !strcmp(c, "caffeinate")) {
			k = skip_opts(w, n, k, NULL, NULL);
		} else if (!strcmp(c, "command")) {
			for (size_t j = k + 1; j < n && w[j][0] == '-'; j++)
				if (strchr(w[j], 'v') || strchr(w[j], 'V'))
					goto out; /* lookup only */
			k = skip_opts(w, n, k, NULL, NULL);
		} else if (!strcmp(c, "exec")) {
			k = skip_opts(w, n, k, "a", NULL);
		} else if (!strcmp(c, "stdbuf")) {
			k = skip_opts(w, n, k, "ioe", NULL);
		} else if (!strcmp(c, "timeout")) {
			static const char *const tl[] = {"signal", "kill-after", NULL};
			k = skip_opts(w, n, k, "sk", tl) + 1; /* and the duration */
		} else if (!strcmp(c, "xargs")) {
			static const char *const xl[] = {"arg-file", "delimiter", "max-args", "max-procs",
				"max-lines", "max-chars", "replace", "eof", "process-slot-var", NULL};
			k = skip_opts(w, n, k, "aEdILnPs", xl);
		} else if (!strcmp(c, "flock")) {
			static const char *const fl[] = {"timeout", "conflict-exit-code", "command", NULL};
			size_t j;
			for (j = k + 1; j < n; j++)
				if ((!strcmp(w[j], "-c") || !strcmp(w[j], "--command")) && j + 1 < n) {
					nested(e, w[j + 1], strlen(w[j + 1]));
					goto out;
				}
			k = skip_opts(w, n, k, "wEn", fl) + 1; /* and the lock file */
		} else if (!strcmp(c, "time")) {
			k = skip_opts(w, n, k, "fo", NULL);
		} else {
			break;
		}
	}
	const char *c = base_name(w[k]);
	if (!strcmp(c, "cd") || !strcmp(c, "pushd")) {
		check_cd(e, w, k, n);
	} else if (!strcmp(c, "popd")) {
		e->cwd[0] = 0;
	} else if (in(c, shells)) {
		e->pipe_text = pipe_text;
		pipe_text = NULL;
		check_shell(e, cm, w, k, n);
		free(e->pipe_text);
		e->pipe_text = NULL;
	} else if (!strcmp(c, "eval")) {
		struct buf t = {0};
		join(w, k + 1, n, &t);
		if (t.p)
			nested(e, t.p, t.len);
		free(t.p);
	} else if (!strcmp(c, "su")) {
		for (size_t j = k + 1; j < n; j++) {
			if ((!strcmp(w[j], "-c") || !strcmp(w[j], "--command")) && j + 1 < n)
				nested(e, w[j + 1], strlen(w[j + 1]));
			else if (!strncmp(w[j], "--command=", 10))
				nested(e, w[j] + 10, strlen(w[j] + 10));
		}
	} else if (p->builtin) {
		if (!strcmp(c, "rm"))
			check_rm(e, w, k, n);
		else if (!strcmp(c, "find"))
			check_find(e, w, k, n);
		else if (!strcmp(c, "chmod") || !strcmp(c, "chown") || !strcmp(c, "chgrp"))
			check_perm(e, c, w, k, n);
		else
			check_devices(e, c, w, k, n);
	}
	if (into_pipe && (!strcmp(c, "echo") || !strcmp(c, "printf")) && !e->blocked) {
		struct buf t = {0};
		size_t j = k + 1;
		while (j < n && w[j][0] == '-')
			j++;
		join(w, j, n, &t);
		e->pipe_text = t.p;
	}
out:
	free(pipe_text);
}

static void cmd_reset(struct cmd *cm)
{
	vec_clear(&cm->words);
	vec_clear(&cm->redirs);
	free(cm->herestr);
	cm->herestr = NULL;
}

static void end_cmd(struct ev *e, struct cmd *cm, int into_pipe)
{
	if ((cm->words.n || cm->redirs.n) && !e->blocked)
		check_simple(e, cm, into_pipe);
	else if (!into_pipe) {
		free(e->pipe_text);
		e->pipe_text = NULL;
	}
	cmd_reset(cm);
}

struct heredoc {
	char *delim;
	int strip;
};

static void scan(struct ev *e, const char *s, size_t n)
{
	struct cmd cm = {0};
	struct heredoc hd[8];
	int nhd = 0;
	size_t i = 0;
	while (i < n && !e->blocked) {
		char c = s[i];
		if (c == ' ' || c == '\t' || c == '\r') {
			i++;
			continue;
		}
		if (c == '\\' && i + 1 < n && s[i + 1] == '\n') {
			i += 2;
			continue;
		}
		if (c == '#') {
			while (i < n && s[i] != '\n')
				i++;
			continue;
		}
		if (c == '&' && i + 1 < n && s[i + 1] == '>')
			c = '>'; /* &> and &>> redirect both streams */
		if (c == '<' || c == '>') {
			if (s[i] == '&')
				i++;
			if (i + 1 < n && s[i + 1] == '(') {
				/* process substitution */
				size_t end = match_paren(s, n, i + 1);
				nested(e, s + i + 2, end > i + 2 ? end - i - 2 : 0);
				i = end < n ? end + 1 : n;
				continue;
			}
			int here = 0, herestr = 0, dup = 0, strip = 0, out = c == '>';
			if (c == '<' && i + 2 < n && s[i + 1] == '<' && s[i + 2] == '<') {
				herestr = 1;
				i += 3;
			} else if (c == '<' && i + 1 < n && s[i + 1] == '<') {
				here = 1;
				i += 2;
				if (i < n && s[i] == '-') {
					strip = 1;
					i++;
				}
			} else {
				i++;
				if (i < n && (s[i] == '>' || s[i] == '|' || s[i] == '&'))
					dup = s[i] == '&', i++;
				if (c == '<' && i < n && s[i] == '>')
					i++;
			}
			while (i < n && (s[i] == ' ' || s[i] == '\t'))
				i++;
			struct buf t = {0};
			int q = 0;
			read_word(e, s, n, &i, &t, &q);
			if (!t.p)
				continue;
			if (here) {
				if (nhd < 8) {
					hd[nhd].delim = t.p;
					hd[nhd++].strip = strip;
				} else {
					free(t.p);
				}
				continue;
			}
			if (herestr) {
				free(cm.herestr);
				cm.herestr = t.p;
			} else if (out && !(dup && (isdigit((unsigned char)t.p[0]) || t.p[0] == '-'))) {
				vec_push(&cm.redirs, t.p);
			} else {
				free(t.p);
			}
			continue;
		}
		if (c == '\n' || c == ';' || c == '&' || c == '|' || c == '(' || c == ')') {
			int into_pipe = c == '|' && !(i + 1 < n && s[i + 1] == '|');
			end_cmd(e, &cm, into_pipe);
			if (c == '|' && i + 1 < n && (s[i + 1] == '|' || s[i + 1] == '&'))
				i++;
			else if ((c == '&' && i + 1 < n && s[i + 1] == '&') || (c == ';' && i + 1 < n && s[i + 1] == ';'))
				i++;
			i++;
			if (c == '\n') {
				/* here-document bodies follow the line that opened them */
				for (int h = 0; h < nhd; h++) {
					size_t start = i, body_end = n;
					while (i < n) {
						size_t ls = i;
						const char *nl = memchr(s + i, '\n', n - i);
						size_t le = nl ? (size_t)(nl - s) : n;
						size_t t = ls;
						if (hd[h].strip)
							while (t < le && s[t] == '\t')
								t++;
						i = nl ? le + 1 : n;
						if (le - t == strlen(hd[h].delim) && !memcmp(s + t, hd[h].delim, le - t)) {
							body_end = ls;
							break;
						}
					}
					if (e->line_shell_stdin)
						nested(e, s + start, body_end - start);
					free(hd[h].delim);
				}
				nhd = 0;
				e->line_shell_stdin = 0;
			}
			continue;
		}
		struct buf t = {0};
		int q = 0;
		read_word(e, s, n, &i, &t, &q);
		if (!t.p)
			t.p = strdup(""); /* "" is a word too */
		if (!q && i < n && (s[i] == '<' || s[i] == '>') && strspn(t.p, "0123456789") == strlen(t.p)) {
			free(t.p); /* 2>file: the fd number */
			continue;
		}
		if (t.p)
			vec_push(&cm.words, t.p);
	}
	end_cmd(e, &cm, 0);
	for (int h = 0; h < nhd; h++)
		free(hd[h].delim);
	cmd_reset(&cm);
	free(cm.words.w);
	free(cm.redirs.w);
	free(e->pipe_text);
	e->pipe_text = NULL;
}

/* ---------- fork bombs ---------- */

static int fork_bomb(const char *cmd, char *name_out, size_t outlen)
{
	size_t n = strlen(cmd), k = 0;
	if (n > 1 << 16)
		n = 1 << 16;
	char *c = malloc(n + 1);
	if (!c)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isspace((unsigned char)cmd[i]) && cmd[i] != '"' && cmd[i] != '\'')
			c[k++] = cmd[i];
	c[k] = 0;
	int found = 0;
	if (strstr(c, "forkwhilefork") || strstr(c, "whileTrue:os.fork()") || strstr(c, "while1:os.fork()") ||
	    strstr(c, "while(1){fork()") || strstr(c, "for(;;)fork()")) {
		snprintf(name_out, outlen, "fork loop");
		found = 1;
	}
	for (char *p = c; !found && (p = strstr(p, "(){")); p += 3) {
		char *b = p;
		while (b > c && (isalnum((unsigned char)b[-1]) || strchr("_:.-", b[-1])))
			b--;
		size_t nl = (size_t)(p - b);
		if (nl == 0 || nl > 64)
			continue;
		char name[80], pipe2[170], amp[90];
		memcpy(name, b, nl);
		name[nl] = 0;
		snprintf(pipe2, sizeof pipe2, "%s|%s", name, name);
		snprintf(amp, sizeof amp, "%s&", name);
		size_t end = match_paren(p, strlen(p), 0); /* skip "()" */
		char *body = p + end + 1, *close = strchr(body, '}');
		if (!close)
			close = body + strlen(body);
		char saved = *close;
		*close = 0;
		int selfpipe = strstr(body, pipe2) && strchr(body, '&');
		char *a1 = strstr(body, amp);
		int twice = a1 && strstr(a1 + nl + 1, amp);
		*close = saved;
		if (selfpipe || twice) {
			snprintf(name_out, outlen, "%s", name);
			found = 1;
		}
	}
	free(c);
	return found;
}

/* ---------- entry points ---------- */

static void ev_init(struct ev *e, const struct guard_policy *p, const struct guard_ctx *cx,
                    struct guard_verdict *v)
{
	memset(e, 0, sizeof *e);
	memset(v, 0, sizeof *v);
	e->p = p;
	e->v = v;
	if (cx && cx->home && cx->home[0] == '/' && norm_path(cx->home, e->home, sizeof e->home) == 0 &&
	    !strcmp(e->home, "/"))
		e->home[0] = 0; /* HOME=/ would make every path "home" */
	if (cx && cx->cwd && cx->cwd[0] == '/')
		norm_path(cx->cwd, e->cwd, sizeof e->cwd);
}

static int tool_listed(const char *tools, const char *tool, const char *def)
{
	char pat[160];
	snprintf(pat, sizeof pat, "|%s|", tool ? tool : "");
	return strstr(tools ? tools : def, pat) != NULL;
}

static int user_rules(const struct guard_policy *p, int on_path, const char *tool, const char *text,
                      struct guard_verdict *v)
{
	for (size_t i = 0; i < p->nrules; i++) {
		const struct rule *r = &p->rules[i];
		if (r->on_path != on_path || !tool_listed(r->tools, tool, on_path ? write_tools : "|Bash|"))
			continue;
		if (regexec(&r->re, text, 0, NULL, 0) == 0) {
			v->block = 1;
			snprintf(v->rule, sizeof v->rule, "user:%s", r->name);
			snprintf(v->reason, sizeof v->reason, "agent-obs guard blocked this %s (policy rule %s): %s",
			         on_path ? "file change" : "command", r->name, r->reason);
			return 1;
		}
	}
	return 0;
}

int guard_check_command(const struct guard_policy *p, const char *cmd, const struct guard_ctx *cx,
                        struct guard_verdict *v)
{
	struct ev e;
	ev_init(&e, p, cx, v);
	if (!cmd)
		return 0;
	if (p->builtin) {
		char name[80];
		if (fork_bomb(cmd, name, sizeof name)) {
			char what[128];
			snprintf(what, sizeof what, "a fork bomb (%s)", name);
			verdict(&e, "fork-bomb", what, cmd);
			return 1;
		}
		scan(&e, cmd, strlen(cmd));
		if (e.blocked)
			return 1;
	}
	return user_rules(p, 0, "Bash", cmd, v);
}

int guard_check_path(const struct guard_policy *p, const char *tool, const char *path,
                     const struct guard_ctx *cx, struct guard_verdict *v)
{
	struct ev e;
	ev_init(&e, p, cx, v);
	e.noun = "file change";
	if (!path)
		return 0;
	if (p->builtin && tool_listed(NULL, tool, write_tools)) {
		char rp[MAX_PATH];
		static const char *const sys_files[] = {"/etc/passwd", "/etc/shadow", "/etc/group",
			"/etc/gshadow", "/etc/sudoers", NULL};
		if (is_device(&e, path)) {
			verdict(&e, "disk-write", "writing to a disk device", path);
			return 1;
		}
		if (resolve(&e, path, rp, sizeof rp) == 0 &&
		    (in(rp, sys_files) || !strncmp(rp, "/etc/sudoers.d/", 15) || !strncmp(rp, "/boot/", 6))) {
			verdict(&e, "system-file", "changing a system file", path);
			return 1;
		}
	}
	return user_rules(p, 1, tool, path, v);
}

int guard_check_tool(const struct guard_policy *p, const char *tool, const cJSON *in,
                     const struct guard_ctx *cx, struct guard_verdict *v)
{
	memset(v, 0, sizeof *v);
	if (!p || !tool || !cJSON_IsObject(in))
		return 0;
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(in, "command");
	if (!strcmp(tool, "Bash") && cJSON_IsString(c))
		return guard_check_command(p, c->valuestring, cx, v);
	static const char *const keys[] = {"file_path", "notebook_path", "path", NULL};
	for (const char *const *k = keys; *k; k++) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(in, *k);
		if (cJSON_IsString(f))
			return guard_check_path(p, tool, f->valuestring, cx, v);
	}
	return 0;
}
