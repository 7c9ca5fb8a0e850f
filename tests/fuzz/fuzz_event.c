/* fuzz_event.c -- libFuzzer target: the collector's path from a POST /events
 * body to normalised events (collector/ingest.c ingest_parse -> common/ev.c
 * ev_normalise_print), as a JSON body (one event or an array) and as NDJSON,
 * with the collector's default limits and with tight ones, outside and inside
 * a request arena (as server.c runs it). Every event it accepts must also be
 * readable by the processor (ev_row_parse); anything else aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "../../collector/collector.h"
#include "arena.h"
#include "ev.h"

/* Tight limits reach every limit check with small inputs. */
static const struct ev_limits tight = {
	.max_depth = 3,
	.max_string = 40,
	.max_members = 12,
	.max_array = 4,
	.max_event_bytes = 700,
};

static void run(const char *body, size_t len, enum ingest_format fmt, const struct ev_limits *lim,
                size_t max_events, int in_arena)
{
	struct ingest_result r;
	struct arena *a = in_arena ? arena_new() : NULL, *prev = NULL;
	if (a)
		prev = arena_enter(a);
	memset(&r, 0, sizeof r);
	r.in_arena = a != NULL;
	int rc = ingest_parse(body, len, fmt, 1800000000123LL, lim, max_events, &r);
	if (rc == 0) {
		if (r.n == 0 || r.status != 0 || r.error_json) {
			fprintf(stderr, "accepted a body with n=%zu status=%d\n", r.n, r.status);
			abort();
		}
		for (size_t i = 0; i < r.n; i++) {
			struct ev_row row;
			struct ev_error err;
			if (strlen(r.data[i]) != r.lens[i] || r.lens[i] > lim->max_event_bytes) {
				fprintf(stderr, "event %zu: length %zu, limit %zu\n", i, r.lens[i],
				        lim->max_event_bytes);
				abort();
			}
			if (ev_row_parse(r.data[i], r.lens[i], &row, &err)) {
				fprintf(stderr, "accepted event the processor refuses: %s: %s\n%s\n", err.field,
				        err.problem, r.data[i]);
				abort();
			}
			if (strcmp(row.id, r.ids[i]) != 0) {
				fprintf(stderr, "id %s reported as %s\n", row.id, r.ids[i]);
				abort();
			}
			ev_row_free(&row);
		}
	} else if (r.status < 400 || r.status > 599 || !r.error_json) {
		fprintf(stderr, "refused a body with status %d and no error body\n", r.status);
		abort();
	}
	ingest_result_free(&r);
	if (a) {
		arena_enter(prev);
		arena_free(a);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	arena_install_cjson_hooks(); /* as the collector does at start-up */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = fuzz_copy(data, size, 0);
	run(body, size, FMT_JSON, &ev_default_limits, 10000, 0);
	run(body, size, FMT_NDJSON, &ev_default_limits, 10000, 0);
	run(body, size, FMT_JSON, &tight, 3, 1);
	run(body, size, FMT_NDJSON, &tight, 3, 1);
	free(body);
	return 0;
}
