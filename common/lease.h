/* lease.h -- a lease on a consumer name in a Redis Streams consumer group, so
 * two processes never share one and a restarted process finds its own pending
 * entries. The lease is a Redis key "agent_obs:consumer:<group>:<name>"
 * holding "<host>:<pid>" with a 30 s TTL that the owner refreshes; a lease left
 * by a dead process on this host is taken over at once. One thread per
 * process uses these (they keep the holder string in a static). */
#ifndef LEASE_H
#define LEASE_H

#include <stddef.h>

#include <hiredis/hiredis.h>

/* Take the lease on a consumer name. With `wanted` empty, picks the first
 * free "<hostname>-<n>" (n = 1..64). Writes the name into out. `who` names
 * the daemon and `setting` its consumer setting for the error message
 * ("processor", "processor.consumer / OBS_PROCESSOR_CONSUMER"). 0 / -1 with
 * err. */
int lease_acquire(redisContext *c, const char *group, const char *wanted, const char *who,
                  const char *setting, char *out, size_t outlen, char *err, size_t errlen);
/* Extend our lease, or take it back if it expired meanwhile. 0 / -1. */
int lease_refresh(redisContext *c, const char *group, const char *name);
/* Delete the lease if it is still ours. */
void lease_release(redisContext *c, const char *group, const char *name);

#endif
