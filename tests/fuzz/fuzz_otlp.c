/* fuzz_otlp.c -- libFuzzer target: the collector's POST /v1/logs path
 * (collector/hooks_http.c prepare_otlp and add_events): a UTF-8 check, the
 * OTLP/HTTP JSON parser common/otlp.c otlp_logs_to_events, then for each
 * event hook_finish (redact, repair, bound) and ev_normalise_print with the
 * collector's limits. Every event the parser makes must be one the
 * collector can queue; anything else aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "ev.h"
#include "hookmap.h"
#include "otlp.h"

#define NOW_MS 1800000000123LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[160];
	size_t bad, rejected = 0;
	char *body = fuzz_copy(data, size, 0);
	if (!ev_utf8_valid(body, size, &bad))
		goto out;
	cJSON *req = cJSON_ParseWithLength(body, size);
	cJSON *arr = cJSON_CreateArray();
	err[0] = 0;
	if (!req || otlp_logs_to_events(req, NOW_MS, arr, &rejected, err, sizeof err)) {
		if (req && !err[0]) {
			fprintf(stderr, "otlp_logs_to_events failed without saying why\n");
			abort();
		}
		cJSON_Delete(req);
		cJSON_Delete(arr);
		goto out;
	}
	cJSON_Delete(req);
	struct ev_limits lim = ev_default_limits;
	for (cJSON *e = arr->child; e; e = e->next) {
		size_t len;
		struct ev_error ee;
		char *s = hook_finish(e, 64 * 1024, lim.max_event_bytes - 1024, &len);
		if (!s)
			abort();
		cJSON_free(s);
		char *out = NULL;
		if (ev_normalise_print(e, NOW_MS, &lim, &out, &len, &ee)) {
			char *p = cJSON_PrintUnformatted(e);
			fprintf(stderr, "the collector refuses an OTLP event: %s: %s\n%s\n", ee.field, ee.problem,
			        p ? p : "");
			abort();
		}
		cJSON_free(out);
	}
	cJSON_Delete(arr);
out:
	free(body);
	return 0;
}
