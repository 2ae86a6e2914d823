#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on loopback for the store tests and prints its admin URL.
# Installs Debian's postgresql when it is missing. Usage: eval "$(.ci/postgres.sh)"
set -euo pipefail
PORT="${WACRM_PG_PORT:-54329}"
DIR="${WACRM_PG_DIR:-/tmp/wacrm-pg}"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "installing postgresql" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
run_as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}
if ! "$bin/pg_isready" -h 127.0.0.1 -p "$PORT" -q 2>/dev/null; then
  rm -rf "$DIR"
  mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$DIR"
  run_as_pg "'$bin/initdb' -D '$DIR/data' -U postgres --auth=trust -E UTF8 >/dev/null"
  run_as_pg "'$bin/pg_ctl' -D '$DIR/data' -l '$DIR/log' -o \"-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off\" -w start >/dev/null"
fi
echo "export WACRM_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
