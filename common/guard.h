/* guard.h -- the PreToolUse guard: decides whether a tool call (a Bash
 * command, a file write) is too dangerous to run. Built-in rules block
 * recursive deletion of the filesystem root, the home directory or a system
 * directory (rm, find -delete; sudo/env/sh -c/eval wrappers; flag variants;
 * --no-preserve-root), formatting or overwriting disks (mkfs, dd of=/dev/sd*,
 * redirects and tee to a disk, wipefs, shred), fork bombs, and recursive or
 * world-writable chmod/chown of the root or a system directory. A YAML
 * policy (config/hook-policy.yaml) can add deny rules (regular expressions
 * over commands or file paths) and change the protected directories.
 * Deterministic: no network, no filesystem access during evaluation.
 * A policy is immutable once built; evaluation is thread-safe. */
#ifndef GUARD_H
#define GUARD_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct guard_policy;

struct guard_verdict {
	int block;       /* 1: deny the tool call */
	char rule[64];   /* which rule: rm-root, disk-write, fork-bomb, user:<name>... */
	char reason[320]; /* one line, for the agent and the event */
};

/* Where the command runs; both may be NULL (unknown). home is the agent's
 * $HOME; cwd is the hook's "cwd" (relative paths resolve against it). */
struct guard_ctx {
	const char *home;
	const char *cwd;
};

/* The built-in policy (never NULL unless out of memory). */
struct guard_policy *guard_policy_builtin(void);
/* Parse a YAML policy; NULL with err on a syntax or schema error. */
struct guard_policy *guard_policy_parse(const char *yaml, size_t len, char *err, size_t errlen);
/* Read and parse a file; NULL with err (a missing file says so). */
struct guard_policy *guard_policy_load(const char *path, char *err, size_t errlen);
void guard_policy_free(struct guard_policy *p); /* NULL is a no-op */

/* Each returns 1 (block, *v filled) or 0 (allow, v->block = 0). */
int guard_check_command(const struct guard_policy *p, const char *cmd, const struct guard_ctx *cx,
                        struct guard_verdict *v);
int guard_check_path(const struct guard_policy *p, const char *tool, const char *path,
                     const struct guard_ctx *cx, struct guard_verdict *v);
/* A PreToolUse call: tool_name and tool_input as Claude Code sends them
 * (Bash -> tool_input.command; Write/Edit/MultiEdit/NotebookEdit ->
 * file_path / notebook_path). */
int guard_check_tool(const struct guard_policy *p, const char *tool, const cJSON *tool_input,
                     const struct guard_ctx *cx, struct guard_verdict *v);

#endif
