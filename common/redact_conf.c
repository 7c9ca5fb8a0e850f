/* redact_conf.c -- config/redaction.yaml -> struct redact_conf (see
 * redact.h). The file:
 *     email: false              # redact e-mail addresses too ([REDACTED:email])
 *     disable: [jwt]            # built-in kinds turned off
 *     patterns:                 # extra named POSIX extended regexes
 *       - {name: employee_id, regex: 'EMP-[0-9]{6}', ignore_case: false}
 * Read once at start-up with libyaml's document API; every error names the
 * file, the line and the entry. The caller owns *rc (redact_conf_clear). */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "cfg.h"
#include "redact.h"

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int bad(char *err, size_t errlen, const char *path, const yaml_node_t *n, const char *what)
{
	snprintf(err, errlen, "%s:%lu: %s", path, n ? (unsigned long)n->start_mark.line + 1 : 0UL, what);
	return -1;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; s && i < 4; i++) {
		if (!strcasecmp(s, yes[i]))
			return *out = 1, 0;
		if (!strcasecmp(s, no[i]))
			return *out = 0, 0;
	}
	return -1;
}

static int load_pattern(yaml_document_t *doc, const char *path, yaml_node_t *n, size_t idx,
                        struct redact_conf *rc, char *err, size_t errlen)
{
	char what[320];
	const char *name = NULL, *regex = NULL;
	int icase = 0;
	if (n->type != YAML_MAPPING_NODE) {
		snprintf(what, sizeof what, "patterns[%zu]: expected {name: ..., regex: ...}", idx);
		return bad(err, errlen, path, n, what);
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
		const char *ks = scalar(k);
		if (ks && !strcmp(ks, "name")) {
			name = scalar(v);
		} else if (ks && !strcmp(ks, "regex")) {
			regex = scalar(v);
		} else if (ks && !strcmp(ks, "ignore_case")) {
			if (parse_bool(scalar(v), &icase)) {
				snprintf(what, sizeof what, "patterns[%zu].ignore_case: expected true or false", idx);
				return bad(err, errlen, path, v, what);
			}
		} else {
			snprintf(what, sizeof what, "patterns[%zu]: unknown key \"%.40s\" (name, regex, ignore_case)",
			         idx, ks ? ks : "?");
			return bad(err, errlen, path, k, what);
		}
	}
	if (!name || !*name || !regex || !*regex) {
		snprintf(what, sizeof what, "patterns[%zu]%s%.40s%s: needs a name and a non-empty regex", idx,
		         name ? " \"" : "", name ? name : "", name ? "\"" : "");
		return bad(err, errlen, path, n, what);
	}
	char why[256];
	if (redact_conf_add_pattern(rc, name, regex, icase, why, sizeof why))
		return bad(err, errlen, path, n, why);
	return 0;
}

static int load_root(yaml_document_t *doc, const char *path, yaml_node_t *root,
                     struct redact_conf *rc, char *err, size_t errlen)
{
	char why[512];
	if (root->type != YAML_MAPPING_NODE)
		return bad(err, errlen, path, root, "expected a mapping (email, disable, patterns)");
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
		const char *ks = scalar(k);
		int empty = v->type == YAML_SCALAR_NODE && !v->data.scalar.length;
		if (ks && !strcmp(ks, "email")) {
			int on;
			if (parse_bool(scalar(v), &on))
				return bad(err, errlen, path, v, "email: expected true or false");
			rc->on[RK_EMAIL] = (unsigned char)on;
		} else if (ks && !strcmp(ks, "disable")) {
			if (empty)
				continue;
			if (v->type != YAML_SEQUENCE_NODE)
				return bad(err, errlen, path, v, "disable: expected a list of built-in kinds");
			for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
				yaml_node_t *e = yaml_document_get_node(doc, *it);
				const char *kind = scalar(e);
				if (!kind || redact_conf_set(rc, kind, 0, why, sizeof why))
					return bad(err, errlen, path, e, kind ? why : "disable: expected kind names");
			}
		} else if (ks && !strcmp(ks, "patterns")) {
			if (empty)
				continue;
			if (v->type != YAML_SEQUENCE_NODE)
				return bad(err, errlen, path, v, "patterns: expected a list of {name, regex}");
			size_t idx = 0;
			for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
			     it++, idx++)
				if (load_pattern(doc, path, yaml_document_get_node(doc, *it), idx, rc, err, errlen))
					return -1;
		} else {
			snprintf(why, sizeof why, "unknown key \"%.40s\" (email, disable, patterns)", ks ? ks : "?");
			return bad(err, errlen, path, k, why);
		}
	}
	return 0;
}

int redact_conf_load(const char *path, struct redact_conf *rc, char *err, size_t errlen)
{
	yaml_document_t doc;
	redact_conf_init(rc);
	int r = cfg_yaml_load(path, &doc, err, errlen);
	if (r)
		return r;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	r = root ? load_root(&doc, path, root, rc, err, errlen) : 0; /* empty file: defaults */
	yaml_document_delete(&doc);
	if (r)
		redact_conf_clear(rc);
	return r;
}
