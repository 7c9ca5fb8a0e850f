/* lease.c -- a lease on a consumer name in a consumer group (see lease.h),
 * so two processes never share one (and a restarted process finds its own
 * pending entries). The lease is a Redis key "agent_obs:consumer:<group>:<name>"
 * holding "<host>:<pid>", with a TTL refreshed by the owner's loop; a lease
 * left by a dead process on this host is taken over at once. Used by the
 * processor and the alerter, from their main thread only. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lease.h"

#define LEASE_MS 30000

static char me[300];

static void key_for(char *buf, size_t len, const char *group, const char *name)
{
	snprintf(buf, len, "agent_obs:consumer:%s:%s", group, name);
}

static void init_me(void)
{
	char host[256] = "localhost";
	gethostname(host, sizeof host - 1);
	snprintf(me, sizeof me, "%s:%ld", host, (long)getpid());
}

/* 1 if the holder "host:pid" is a dead process on this host. */
static int holder_dead(const char *holder)
{
	char host[256] = "localhost";
	gethostname(host, sizeof host - 1);
	const char *colon = strrchr(holder, ':');
	if (!colon || (size_t)(colon - holder) != strlen(host) ||
	    strncmp(holder, host, strlen(host)) != 0)
		return 0;
	long pid = strtol(colon + 1, NULL, 10);
	if (pid <= 0)
		return 0;
	if (pid == (long)getpid())
		return 1;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

static int try_take(redisContext *c, const char *key)
{
	redisReply *r = redisCommand(c, "SET %s %s NX PX %d", key, me, LEASE_MS);
	int ok = r && r->type == REDIS_REPLY_STATUS;
	if (r)
		freeReplyObject(r);
	if (ok)
		return 1;
	r = redisCommand(c, "GET %s", key);
	int dead = r && r->type == REDIS_REPLY_STRING && holder_dead(r->str);
	if (r)
		freeReplyObject(r);
	if (!dead)
		return 0;
	r = redisCommand(c, "SET %s %s PX %d", key, me, LEASE_MS);
	ok = r && r->type == REDIS_REPLY_STATUS;
	if (r)
		freeReplyObject(r);
	return ok;
}

int lease_acquire(redisContext *c, const char *group, const char *wanted, const char *who,
                  const char *setting, char *out, size_t outlen, char *err, size_t errlen)
{
	char key[512];
	init_me();
	if (wanted && wanted[0]) {
		key_for(key, sizeof key, group, wanted);
		if (!try_take(c, key)) {
			snprintf(err, errlen,
			         "consumer name \"%s\" is in use by another live %s; choose another "
			         "with %s", wanted, who, setting);
			return -1;
		}
		snprintf(out, outlen, "%s", wanted);
		return 0;
	}
	char host[200] = "localhost";
	gethostname(host, sizeof host - 1);
	for (int i = 1; i <= 64; i++) {
		char name[256];
		snprintf(name, sizeof name, "%s-%d", host, i);
		key_for(key, sizeof key, group, name);
		if (try_take(c, key)) {
			snprintf(out, outlen, "%s", name);
			return 0;
		}
	}
	snprintf(err, errlen, "no free consumer name %s-1..64 in group %s", host, group);
	return -1;
}

int lease_refresh(redisContext *c, const char *group, const char *name)
{
	char key[512];
	key_for(key, sizeof key, group, name);
	/* Extend only a lease that is still ours. */
	redisReply *r = redisCommand(c,
		"EVAL %s 1 %s %s %d",
		"if redis.call('get', KEYS[1]) == ARGV[1] then "
		"return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end",
		key, me, LEASE_MS);
	int ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	if (r)
		freeReplyObject(r);
	if (!ok)
		ok = try_take(c, key); /* expired while Redis was away: take it back */
	return ok ? 0 : -1;
}

void lease_release(redisContext *c, const char *group, const char *name)
{
	char key[512];
	key_for(key, sizeof key, group, name);
	redisReply *r = redisCommand(c, "GET %s", key);
	int mine = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, me) == 0;
	if (r)
		freeReplyObject(r);
	if (mine) {
		r = redisCommand(c, "DEL %s", key);
		if (r)
			freeReplyObject(r);
	}
}
