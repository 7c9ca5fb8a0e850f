#!/bin/sh
# migrate.sh -- compose's one-shot `migrate` service: apply deploy/sql/*.sql
# once each, in name order, tracked in schema_migrations -- the same protocol
# as pg_migrate in deploy/local/lib.sh (one transaction per file, an advisory
# lock and a re-check, so concurrent runs apply each file exactly once).
# Runs in the postgres image; PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
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
	$psql -v mig_name="$name" -v mig_path="$f" <<'SQL'
SET client_min_messages = warning;
\o /dev/null
BEGIN;
SELECT pg_advisory_xact_lock(727001);
SELECT NOT EXISTS (SELECT 1 FROM schema_migrations WHERE name = :'mig_name') AS mig_todo \gset
\if :mig_todo
\i :mig_path
INSERT INTO schema_migrations (name) VALUES (:'mig_name');
\echo applied :mig_name
\endif
COMMIT;
SQL
done
echo "migrate: database is up to date"
