/* fuzz.h -- what every libFuzzer target in tests/fuzz shares: the entry
 * points libFuzzer calls, an exact-size copy of the input (so ASan reports a
 * read one byte past it), and an invariant check that aborts (libFuzzer
 * then keeps the input). Header-only; single-threaded like libFuzzer. */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* malloc'd copy of the input; nul: with a terminating NUL (not counted). */
static inline char *fuzz_copy(const uint8_t *data, size_t size, int nul)
{
	char *s = malloc(size + (nul ? 1 : 0) + (size == 0 && !nul));
	if (!s)
		abort();
	memcpy(s, data, size);
	if (nul)
		s[size] = 0;
	return s;
}

static inline void fuzz_check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "invariant broken: %s\n", what);
		abort();
	}
}

#endif
