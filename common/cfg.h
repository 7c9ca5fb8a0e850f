/* cfg.h -- configuration from one settings table: defaults in code, then a
 * YAML file (libyaml), then OBS_* environment variables; --help from the same
 * table. The caller's struct owns the loaded strings: cfg_free() releases them.
 * Not thread-safe; call during start-up. */
#ifndef CFG_H
#define CFG_H

#include <stddef.h>
#include <stdio.h>

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL, CFG_DOUBLE };

/* One row per setting. `key` is dotted ("redis.port"); it is read from the
 * YAML file as nested mappings (redis: {port: 6390}) or as the literal dotted
 * key, and from the environment as OBS_ + upper-case key with '.' and '-'
 * turned into '_' (OBS_REDIS_PORT). The destination field at `offset` is
 *   CFG_STR: char * (malloc'd), CFG_INT: long long, CFG_BOOL: int (0/1),
 *   CFG_DOUBLE: double.
 * `min`/`max` bound CFG_INT and CFG_DOUBLE values (no bound when min > max, or
 * when both are 0).
 * Secret files: when the table has string settings "x" and "x_file" (e.g.
 * redis.password and redis.password_file) and x_file is set, x is read from
 * that file (one line; trailing newline dropped; at most 4096 bytes). Setting
 * both is an error. Error messages name the file, never the secret. */
struct cfg_setting {
	const char *key;
	enum cfg_type type;
	const char *def;
	const char *doc;
	size_t offset;
	double min, max;
};

/* Load defaults, then the YAML file at `yaml_path` (NULL: skip), then the
 * environment. Keys in the file that are not in the table are ignored when
 * they belong to another component, but a key under `own_prefix` (e.g.
 * "collector.") that is not in the table is an error (typo protection).
 * On error returns -1 and writes "file:line:col: key: problem" or
 * "OBS_X: problem" into err. Values are parsed strictly: "12x" is not an int;
 * booleans accept true/false/yes/no/on/off/1/0. */
int cfg_load(const struct cfg_setting *table, size_t n, void *dst,
             const char *yaml_path, const char *own_prefix,
             char *err, size_t errlen);

void cfg_free(const struct cfg_setting *table, size_t n, void *dst);

/* Parse a whole YAML file with libyaml's document API, for files that are
 * not settings tables (prices, redaction patterns). Returns 0 (the caller
 * yaml_document_delete()s *doc), 1 when the file does not exist, or -1 with
 * err ("path:line: problem"). */
struct yaml_document_s;
int cfg_yaml_load(const char *path, struct yaml_document_s *doc, char *err, size_t errlen);

/* "redis.port" -> "OBS_REDIS_PORT" (always NUL-terminated, truncated). */
void cfg_env_name(const char *key, char *buf, size_t len);

/* Print usage: a summary line, the common options (--config FILE, --help),
 * then one line per setting: key, env name, type, default, doc. */
void cfg_help(FILE *out, const char *prog, const char *summary,
              const struct cfg_setting *table, size_t n);

/* Handle the command line shared by every daemon:
 *   --help / -h         print cfg_help to stdout, return 1 (caller exits 0)
 *   --config FILE / -c  set *config_path (else $OBS_CONFIG, else NULL)
 * Unknown arguments: message on stderr, return -1 (caller exits 2).
 * Returns 0 to continue. `extra` (may be NULL) names arguments the caller
 * handles itself (NULL-terminated list, e.g. {"--check", NULL}); they are
 * skipped together with one following value. */
int cfg_args(int argc, char **argv, const char *summary,
             const struct cfg_setting *table, size_t n,
             const char **config_path, const char *const *extra);

#endif
