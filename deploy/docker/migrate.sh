#!/bin/sh
# migrate.sh -- compose's one-shot `migrate` service: apply deploy/sql/*.sql
# once each, in name order, tracked in schema_migrations, with the protocol in
# deploy/sql/migrate.psql that pg_migrate in deploy/local/lib.sh uses too.
# Runs in the postgres image; PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
# (and AGENT_OBS_PG_READ_PASSWORD, the password of the collector's read role)
# come from the environment. Usage: migrate.sh [SQL_DIR]
set -eu
dir=${1:-/sql}
psql="psql -X -q -v ON_ERROR_STOP=1"
$psql -c "SET client_min_messages = warning;
	CREATE TABLE IF NOT EXISTS schema_migrations (
		name       text PRIMARY KEY,
		applied_at timestamptz DEFAULT now())"
for f in "$dir"/*.sql; do
	[ -f "$f" ] || continue
	name=$(basename "$f")
	$psql -v mig_name="$name" -v mig_path="$f" -f "$dir/migrate.psql"
done
# The collector's read role gets its password from the environment (psql's
# \getenv: never on a command line).
if [ -n "${AGENT_OBS_PG_READ_PASSWORD:-}" ]; then
	$psql <<'SQL'
\getenv pw AGENT_OBS_PG_READ_PASSWORD
ALTER ROLE agent_obs_read PASSWORD :'pw';
SQL
fi
echo "migrate: database is up to date"
