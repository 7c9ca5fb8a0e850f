#!/usr/bin/env bash
# mkkey.sh -- make a new API key for agent-obs and the keys-file entry that
# stores it hashed (SHA-256). The key itself is printed once, on stderr, and
# kept nowhere: hand it to the client (agent-hook: OBS_COLLECTOR_KEY).
#
# Usage: deploy/local/mkkey.sh ID ROLE[,ROLE] [--sign] [--require-signature]
#   ID      a name for the key (metrics label, error messages), e.g. laptop-ingest
#   ROLE    ingest | read | admin (comma-separated for several)
#   --sign  also make a signing secret (agent-hook: OBS_COLLECTOR_SIGNING_SECRET)
#   --require-signature   the key's requests must be signed (implies --sign)
# The entry goes to stdout: append it under `keys:` in config/keys.yaml, e.g.
#   deploy/local/mkkey.sh ci ingest --sign >> config/keys.yaml
# Key format: "aok_" + 43 base64url characters (256 random bits); base64url
# keeps it usable as a WebSocket subprotocol token (agent-obs.key.<key>).
set -euo pipefail

usage() { sed -n '6,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
id=$1 roles=$2 sign=0 require=0
shift 2
for a in "$@"; do
	case $a in
	--sign) sign=1 ;;
	--require-signature) sign=1 require=1 ;;
	*) usage ;;
	esac
done
[[ $id =~ ^[A-Za-z0-9._-]{1,63}$ ]] || { echo "mkkey: ID: 1-63 of A-Z a-z 0-9 . _ -" >&2; exit 2; }
IFS=, read -ra rl <<<"$roles"
for r in "${rl[@]}"; do
	case $r in ingest | read | admin) ;; *) echo "mkkey: unknown role \"$r\" (ingest, read, admin)" >&2; exit 2 ;; esac
done
command -v openssl >/dev/null || { echo "mkkey: needs the openssl command" >&2; exit 1; }

key="aok_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"
hash=$(printf '%s' "$key" | openssl dgst -sha256 -r | cut -d' ' -f1)
{
	echo "key $id: $key"
	echo "(shown once; the keys file stores only its hash)"
} >&2
echo "  - id: $id"
echo "    role: $roles"
echo "    sha256: $hash"
if [ "$sign" = 1 ]; then
	secret=$(openssl rand -hex 32)
	echo "signing secret $id: $secret" >&2
	echo "    signing_secret: \"$secret\"   # or signing_secret_env: SOME_ENV_VAR"
	[ "$require" = 1 ] && echo "    require_signature: true"
fi
exit 0
