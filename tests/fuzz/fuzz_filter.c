/* fuzz_filter.c -- libFuzzer target: the streamer's filter parser
 * (streamer/filter.c flt_parse), the text a dashboard user sends in
 * `/stream?filter=` or a {"type":"filter"} message, then flt_match against a
 * few events. A parsed filter must keep the text as given and respect the
 * limits; a refused one must own nothing and say why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "../../streamer/filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_copy(data, size, 0);
	char err[256];
	struct filter f;
	err[0] = 0;
	if (flt_parse(s, size, &f, err, sizeof err) == 0) {
		fuzz_check(f.text && strlen(f.text) == size && memcmp(f.text, s, size) == 0, "text kept");
		fuzz_check(f.n <= FLT_MAX_CLAUSES, "clause limit");
		fuzz_check(flt_is_all(&f) == (size == 0), "only the empty filter matches all");
		for (size_t i = 0; i < f.n; i++) {
			fuzz_check(f.c[i].key < FK_COUNT, "key in range");
			fuzz_check(f.c[i].n >= 1 && f.c[i].n <= FLT_MAX_VALUES, "value count");
			for (size_t j = 0; j < f.c[i].n; j++)
				fuzz_check(strlen(f.c[i].v[j].s) == f.c[i].v[j].len, "value length");
		}
		/* an event without fields, and one whose fields are the filter's own
		 * first values: a positive clause on the second must match. */
		struct flt_fields none, own;
		memset(&none, 0, sizeof none);
		memset(&own, 0, sizeof own);
		flt_match(&f, &none);
		for (size_t i = 0; i < f.n; i++) {
			enum flt_key k = f.c[i].key;
			if (!own.v[k]) {
				own.v[k] = f.c[i].v[0].s;
				own.len[k] = f.c[i].v[0].len;
			}
		}
		flt_match(&f, &own);
		if (f.n == 1 && !f.c[0].neg)
			fuzz_check(flt_match(&f, &own) == 1, "a one-clause filter matches its own value");
		flt_free(&f);
		flt_free(&f); /* freeing twice is safe: flt_free zeroes */
	} else {
		fuzz_check(f.n == 0 && f.c == NULL && f.text == NULL, "a refused filter owns nothing");
		fuzz_check(strncmp(err, "offset ", 7) == 0, "error names the offset");
	}
	free(s);
	return 0;
}
