/* daemon.c -- shared daemon start-up (see daemon.h). Runs on the main thread
 * before any other; owns nothing after it returns (conf owns its strings). */
#include "daemon.h"

#include <malloc.h>
#include <stdio.h>

#include "http.h"
#include "log.h"
#include "sig.h"

int daemon_setup(int argc, char **argv, const char *name, const char *summary,
                 const struct cfg_setting *table, size_t n, void *conf,
                 const char *own_prefix, char *const *log_level,
                 const char *const *extra, const char **config_path, int *exit_code)
{
	char err[512];
	enum log_level lvl;
	const char *path = NULL;

	int a = cfg_args(argc, argv, summary, table, n, &path, extra);
	*exit_code = 2;
	if (a != 0) {
		*exit_code = a > 0 ? 0 : 2;
		return -1;
	}
	if (config_path)
		*config_path = path;
	if (cfg_load(table, n, conf, path, own_prefix, err, sizeof err)) {
		fprintf(stderr, "%s: configuration: %s\n", name, err);
		return -1;
	}
	if (log_level_parse(*log_level, &lvl)) {
		fprintf(stderr, "%s: configuration: log.level: unknown level \"%s\" (debug, info, warn, error)\n",
		        name, *log_level);
		cfg_free(table, n, conf);
		return -1;
	}
	log_init(name, lvl);
	if (sig_install()) {
		log_error("signal setup: sigaction failed");
		cfg_free(table, n, conf);
		*exit_code = 1;
		return -1;
	}
	return 0;
}

void daemon_keep_heap(void)
{
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int daemon_check_bind(const char *setting, const char *addr, int have_auth)
{
	if (http_addr_is_loopback(addr) || have_auth)
		return 0;
	log_kv(LOG_ERROR, "refusing to listen on a non-loopback address without authentication configured",
	       "setting", setting, "bind", addr, "hint", "bind 127.0.0.1, or configure API keys (auth.keys_file / OBS_AUTH_KEYS_FILE)", NULL);
	return -1;
}

int daemon_load_auth(const char *keys_file, struct auth_opts opts, struct met_registry *reg,
                     struct auth **out)
{
	char err[512];
	if (auth_load(keys_file, &opts, reg, out, err, sizeof err)) {
		log_kv(LOG_ERROR, "cannot load API keys", "error", err, NULL);
		return -1;
	}
	return 0;
}
