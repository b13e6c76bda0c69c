#!/bin/sh
# Generates what docker-compose.yml needs and must never be committed:
#   deploy/secrets/audit-signing-key.pem   Ed25519 key signing audit checkpoints (audit.signing_key)
#   deploy/secrets/postgres-password       the audit database password (PostgreSQL and gateway)
#   .env                                   compose variables, created from deploy/env.example
#                                          (with a random KEYCLOAK_ADMIN_PASSWORD)
# Existing files are kept (re-running never rotates a key by accident). Needs only openssl.
# Usage: deploy/init-secrets.sh [secrets-dir] [env-file]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/secrets}
envfile=${2:-$here/../.env}
umask 077
mkdir -p "$dir"
if [ ! -s "$dir/audit-signing-key.pem" ]; then
  openssl genpkey -algorithm ed25519 -out "$dir/audit-signing-key.pem"
  echo "created $dir/audit-signing-key.pem (back it up: audit verify needs its public key)"
fi
openssl pkey -in "$dir/audit-signing-key.pem" -pubout -out "$dir/audit-signing-key.pub.pem"
for name in postgres-password; do
  if [ ! -s "$dir/$name" ]; then
    # hex: safe inside a postgresql:// URL without escaping
    openssl rand -hex 24 | tr -d '\n' > "$dir/$name"
    echo "created $dir/$name"
  fi
done
# The containers run as other users (gateway uid 10001, postgres 999): make the files readable
# to them. On a shared host, chown them to those uids and keep 0600 instead.
chmod 0644 "$dir"/*
chmod 0755 "$dir"
if [ ! -e "$envfile" ]; then
  cp "$here/env.example" "$envfile"
  echo "KEYCLOAK_ADMIN_PASSWORD=$(openssl rand -hex 16)" >> "$envfile"
  echo "created $envfile: set OPENAI_API_KEY and REGOGATE_OIDC_ISSUER in it"
fi
