/* fuzz_guard.c -- libFuzzer target: the guard's command parser
 * (common/guard.c): guard_check_command splits and unwraps a shell command
 * (quotes, escapes, wrappers, sh -c, heredocs, $(...), brace lists) before
 * it applies the rules; guard_check_path resolves a file path. The input is
 * checked as a Bash command and as a Write path, with the built-in policy and
 * with the shipped config/hook-policy.yaml (user regexes), with and without a
 * home and a working directory. A verdict must be well-formed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "guard.h"

static struct guard_policy *builtin, *shipped;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[512];
	const char *path = getenv("OBS_HOOK_POLICY");
	(void)argc;
	(void)argv;
	builtin = guard_policy_builtin();
	shipped = guard_policy_load(path && *path ? path : "config/hook-policy.yaml", err, sizeof err);
	if (!builtin || !shipped) {
		fprintf(stderr, "fuzz_guard: run from the repository root (or set OBS_HOOK_POLICY): %s\n",
		        builtin ? err : "out of memory");
		abort();
	}
	return 0;
}

static void well_formed(int rc, const struct guard_verdict *v)
{
	if (rc != v->block || (rc && (!v->rule[0] || !v->reason[0])) ||
	    !memchr(v->rule, 0, sizeof v->rule) || !memchr(v->reason, 0, sizeof v->reason)) {
		fprintf(stderr, "bad verdict: rc %d block %d\n", rc, v->block);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct guard_ctx ctx[] = {{NULL, NULL}, {"/home/dev", "/home/dev/proj"}, {"/", "/"}};
	struct guard_verdict v;
	char *s = fuzz_copy(data, size, 1);
	for (size_t i = 0; i < sizeof ctx / sizeof ctx[0]; i++) {
		const struct guard_policy *p = i == 1 ? shipped : builtin;
		well_formed(guard_check_command(p, s, &ctx[i], &v), &v);
		well_formed(guard_check_path(p, i ? "Edit" : "Write", s, &ctx[i], &v), &v);
	}
	free(s);
	return 0;
}
