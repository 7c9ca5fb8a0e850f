/* retention.c -- drop what is older than processor.retention_days (see
 * history.h): daily partitions of agent_events and transcript_messages
 * (instant, no bloat), then the per-session and per-transcript summary rows
 * last seen before the same day. One transaction; lock_timeout bounds how
 * long the ACCESS EXCLUSIVE lock on the parents may be waited for (reads
 * running on a parent delay a DROP), so ingest never stalls behind it: a
 * timeout just means "try again next round". Main thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

static int exec_cmd(PGconn *pg, const char *sql, int n, const char *const *vals, char *err,
                    size_t errlen)
{
	PGresult *r = PQexecParams(pg, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "retention: %s", PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = '\0';
		PQclear(r);
		return -1;
	}
	PQclear(r);
	return 0;
}

int retention_run(PGconn *pg, int keep_days, void (*dropped)(const char *name), char *err,
                  size_t errlen)
{
	char days[16];
	const char *vals[1] = {days};
	snprintf(days, sizeof days, "%d", keep_days);
	if (exec_cmd(pg, "BEGIN", 0, NULL, err, errlen))
		return -1;
	if (exec_cmd(pg, "SET LOCAL lock_timeout = '2s'", 0, NULL, err, errlen))
		goto fail;
	PGresult *r = PQexecParams(pg,
		"SELECT p FROM history_drop_partitions('agent_events', $1::int) AS p "
		"UNION ALL SELECT p FROM history_drop_partitions('transcript_messages', $1::int) AS p",
		1, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "retention: %s", PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = '\0';
		PQclear(r);
		goto fail;
	}
	/* cutoff = start of the oldest day kept, as in history_drop_partitions */
	if (exec_cmd(pg, "DELETE FROM session_summaries WHERE last_seen < "
	                 "((now() AT TIME ZONE 'UTC')::date - $1::int)::timestamp AT TIME ZONE 'UTC'",
	             1, vals, err, errlen) ||
	    exec_cmd(pg, "DELETE FROM chat_transcripts WHERE last_ts < "
	                 "((now() AT TIME ZONE 'UTC')::date - $1::int)::timestamp AT TIME ZONE 'UTC'",
	             1, vals, err, errlen) ||
	    exec_cmd(pg, "COMMIT", 0, NULL, err, errlen)) {
		PQclear(r);
		goto fail;
	}
	for (int i = 0; i < PQntuples(r); i++)
		dropped(PQgetvalue(r, i, 0));
	PQclear(r);
	return 0;
fail:
	if (PQstatus(pg) == CONNECTION_OK) {
		PGresult *rb = PQexec(pg, "ROLLBACK");
		PQclear(rb);
	}
	return -1;
}
