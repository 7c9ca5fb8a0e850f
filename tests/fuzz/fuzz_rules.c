/* fuzz_rules.c -- libFuzzer target: the alerter's rule-file loader
 * (alerter/rules.c rules_load) on arbitrary YAML. The input is written to an
 * in-memory file (memfd) and loaded by its /proc path, as the alerter loads
 * config/alerts.yaml. A loaded rule set is then used the way eval.c uses it:
 * each rule's matchers against a sample event, its group-by fields as text
 * and its numeric field as a number. A refused file must say where. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

#include "../../alerter/alerter.h"

static int fd = -1;
static char path[64];
static struct ev_row row;

static const char sample[] =
	"{\"id\":\"0b0c6a4e-8a6e-4b8f-9c1d-2f3e4a5b6c7d\",\"event_type\":\"PostToolUse\","
	"\"timestamp\":\"2026-11-23T11:54:11.123Z\",\"received_at\":\"2026-11-23T11:54:11.200Z\","
	"\"session_id\":\"s1\",\"agent_id\":\"main\",\"agent_role\":\"main\",\"tool\":\"Bash\","
	"\"status\":\"error\",\"latency_ms\":1500,\"cost_usd\":0.25,"
	"\"tokens\":{\"input\":1000,\"output\":50,\"cache_read\":7,\"cache_creation\":3},"
	"\"source_app\":\"claude-code\",\"payload\":{\"command\":\"rm -rf build\",\"a\":{\"b\":\"42\","
	"\"c\":true,\"d\":[1,2]},\"n\":3.5}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct ev_error err;
	(void)argc;
	(void)argv;
	fd = memfd_create("alerts.yaml", 0);
	if (fd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	if (ev_row_parse(sample, strlen(sample), &row, &err)) {
		fprintf(stderr, "sample event: %s: %s\n", err.field, err.problem);
		abort();
	}
	return 0;
}

static void use_rule(const struct rule *r)
{
	char buf[64];
	const char *s;
	double d;
	match_event(&r->match, &row);
	match_event(&r->numerator, &row);
	match_event(&r->until, &row);
	for (size_t i = 0; i < r->ngroup_by; i++)
		field_text(&row, &r->group_by[i], &s, buf, sizeof buf);
	if (r->kind == COND_QUANTILE || r->kind == COND_SUM)
		field_number(&row, &r->field, &d);
	format_duration(r->window_ms, buf, sizeof buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	err[0] = 0;
	struct ruleset *rs = rules_load(path, err, sizeof err);
	if (rs) {
		for (size_t i = 0; i < rs->n; i++)
			use_rule(&rs->v[i]);
		rules_free(rs);
	} else if (strncmp(err, path, strlen(path)) != 0) {
		fprintf(stderr, "error does not name the file: %s\n", err);
		abort();
	}
	return 0;
}
