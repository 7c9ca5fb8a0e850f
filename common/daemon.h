/* daemon.h -- the start-up every daemon shares: command line (--help,
 * --config), configuration load, logging, signal handlers, and the rule that
 * a listener binds loopback unless authentication is configured. Called once
 * from main() before any thread starts. */
#ifndef DAEMON_H
#define DAEMON_H

#include <stddef.h>

#include "auth.h"
#include "cfg.h"

/* Parse argv, load `table` into conf (own_prefix as for cfg_load), init the
 * logger from the loaded `log.level` (*log_level after loading) and install
 * signal handlers. Returns 0 to go on, or -1 when main should return
 * *exit_code (0 after --help, 2 for a usage or configuration error, 1 for
 * other failures); then conf holds no allocated strings. `extra` as in
 * cfg_args; config_path (may be NULL) receives the file used. */
int daemon_setup(int argc, char **argv, const char *name, const char *summary,
                 const struct cfg_setting *table, size_t n, void *conf,
                 const char *own_prefix, char *const *log_level,
                 const char *const *extra, const char **config_path, int *exit_code);

/* For daemons that move large short-lived buffers (request bodies, pipelined
 * Redis commands, COPY data): glibc keeps blocks up to 32 MiB on its heap and
 * keeps up to 64 MiB of free heap, instead of mapping and unmapping them (and
 * faulting their pages in again) for every request. Call before any thread
 * starts. The cost: after a burst, RSS stays up to that much higher. */
void daemon_keep_heap(void);

/* 0 when `addr` may be listened on: loopback always; anything else only when
 * `have_auth`. Logs the refusal naming `setting`. */
int daemon_check_bind(const char *setting, const char *addr, int have_auth);

struct auth;
struct auth_opts;
struct met_registry;
/* auth_load() of auth.keys_file, logging the error. *out stays NULL when no
 * file is configured; pass `*out != NULL` to daemon_check_bind. 0 / -1. */
int daemon_load_auth(const char *keys_file, struct auth_opts opts, struct met_registry *reg,
                     struct auth **out);

#endif
