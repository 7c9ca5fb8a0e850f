/* prices.c -- the model price table (config/prices.yaml) and cost from token
 * counts (see history.h). The file:
 *     models:
 *       claude-sonnet-4-5: {input: 3, output: 15, cache_read: 0.3, cache_creation: 3.75}
 * in USD per million tokens. Loaded once at start-up with libyaml's document
 * API; lookups are read-only afterwards. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "cfg.h"
#include "history.h"

const char *const price_kinds[PRICE_KINDS] = {"input", "output", "cache_read", "cache_creation"};

void prices_free(struct prices *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].model);
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

static int scalar_is(const yaml_node_t *n, const char *s)
{
	return n && n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, s) == 0;
}

static int bad(char *err, size_t errlen, const char *path, const yaml_node_t *n, const char *what)
{
	snprintf(err, errlen, "%s:%lu: %s", path, n ? (unsigned long)n->start_mark.line + 1 : 0UL, what);
	return -1;
}

static int load_model(yaml_document_t *doc, const char *path, const yaml_node_t *name,
                      const yaml_node_t *m, struct price *out, char *err, size_t errlen)
{
	char what[256];
	if (name->type != YAML_SCALAR_NODE || !name->data.scalar.length)
		return bad(err, errlen, path, name, "a model name must be a non-empty string");
	if (m->type != YAML_MAPPING_NODE)
		return bad(err, errlen, path, m, "a model's prices must be a mapping {input, output, cache_read, cache_creation}");
	memset(out, 0, sizeof *out);
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
		int kind = -1;
		for (int i = 0; i < PRICE_KINDS; i++)
			if (scalar_is(k, price_kinds[i]))
				kind = i;
		if (kind < 0) {
			snprintf(what, sizeof what, "%s: unknown key (use input, output, cache_read, cache_creation)",
			         k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?");
			return bad(err, errlen, path, k, what);
		}
		char *end = NULL;
		const char *text = v && v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : "";
		errno = 0;
		double d = strtod(text, &end);
		if (end == text || *end || errno || !isfinite(d) || d < 0) {
			snprintf(what, sizeof what, "%s.%s: must be a non-negative number (USD per million tokens)",
			         (const char *)name->data.scalar.value, price_kinds[kind]);
			return bad(err, errlen, path, v, what);
		}
		out->usd_per_mtok[kind] = d;
	}
	out->model = strdup((const char *)name->data.scalar.value);
	return out->model ? 0 : bad(err, errlen, path, name, "out of memory");
}

int prices_load(const char *path, struct prices *out, char *err, size_t errlen)
{
	yaml_document_t doc;
	memset(out, 0, sizeof *out);
	int rc = cfg_yaml_load(path, &doc, err, errlen);
	if (rc)
		return rc;
	rc = -1;
	yaml_node_t *root = yaml_document_get_root_node(&doc), *models = NULL;
	if (!root) { /* empty file */
		rc = 0;
		goto out;
	}
	if (root->type != YAML_MAPPING_NODE) {
		bad(err, errlen, path, root, "expected a mapping with key \"models\"");
		goto out;
	}
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(&doc, p->key);
		if (scalar_is(k, "models"))
			models = yaml_document_get_node(&doc, p->value);
		else {
			bad(err, errlen, path, k, "unknown top-level key (only \"models\")");
			goto out;
		}
	}
	if (!models || (models->type == YAML_SCALAR_NODE && !models->data.scalar.length)) {
		rc = 0;
		goto out;
	}
	if (models->type != YAML_MAPPING_NODE) {
		bad(err, errlen, path, models, "\"models\" must be a mapping of model name to prices");
		goto out;
	}
	size_t n = (size_t)(models->data.mapping.pairs.top - models->data.mapping.pairs.start);
	out->v = calloc(n ? n : 1, sizeof *out->v);
	if (!out->v) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	for (yaml_node_pair_t *p = models->data.mapping.pairs.start; p < models->data.mapping.pairs.top; p++) {
		if (load_model(&doc, path, yaml_document_get_node(&doc, p->key),
		               yaml_document_get_node(&doc, p->value), &out->v[out->n], err, errlen))
			goto out;
		out->n++;
	}
	rc = 0;
out:
	if (rc)
		prices_free(out);
	yaml_document_delete(&doc);
	return rc;
}

const struct price *prices_find(const struct prices *p, const char *model)
{
	const struct price *best = NULL;
	size_t best_len = 0;
	if (!model || !*model)
		return NULL;
	for (size_t i = 0; i < p->n; i++) {
		size_t len = strlen(p->v[i].model);
		if (strcasecmp(p->v[i].model, model) == 0)
			return &p->v[i];
		if (len > best_len && strncasecmp(p->v[i].model, model, len) == 0) {
			best = &p->v[i];
			best_len = len;
		}
	}
	return best;
}

double prices_cost(const struct price *pr, const long long tokens[PRICE_KINDS],
                   const int has[PRICE_KINDS])
{
	double usd = 0;
	for (int i = 0; i < PRICE_KINDS; i++)
		if (has[i])
			usd += (double)tokens[i] * pr->usd_per_mtok[i] / 1e6;
	return usd;
}
