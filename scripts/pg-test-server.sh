#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL server for Basin's tests and print
# its connection URL on stdout (everything else goes to stderr):
#
#   export BASIN_TEST_PG_URL="$(bash scripts/pg-test-server.sh)"
#   bash scripts/pg-test-server.sh stop
#
# The server listens on 127.0.0.1:$BASIN_TEST_PG_PORT (default 54329) with
# trust authentication, its data dir is $TMPDIR/basin-test-pg-<port>, and it
# is left running for later test runs (a running server is reused). As root,
# it runs as the `postgres` user (PostgreSQL refuses to run as root); when the
# server binaries are missing it installs Debian's `postgresql` package.
set -euo pipefail

PORT="${BASIN_TEST_PG_PORT:-54329}"
DIR="${TMPDIR:-/tmp}/basin-test-pg-$PORT"
URL="postgres://postgres@127.0.0.1:$PORT/postgres"

log() { echo "pg-test-server: $*" >&2; }

find_bin() {
  local name="$1"
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return
  fi
  compgen -G "/usr/lib/postgresql/*/bin/$name" | sort -V | tail -1
}

ensure_installed() {
  if [[ -n "$(find_bin initdb)" && -n "$(find_bin pg_ctl)" ]]; then
    return
  fi
  log "PostgreSQL server binaries missing; installing Debian's postgresql"
  local sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql >&2
}

# as_owner CMD...: run as the server's owner (postgres when we are root).
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

ready() {
  as_owner "$(find_bin pg_ctl)" -D "$DIR" status >/dev/null 2>&1
}

start() {
  ensure_installed
  # Concurrent test processes may call this at once: one initdb at a time.
  exec 9>"$DIR.lock"
  flock 9
  if [[ -f "$DIR/PG_VERSION" ]] && ready; then
    log "reusing the server in $DIR"
    echo "$URL"
    return
  fi
  mkdir -p "$DIR"
  [[ $(id -u) -eq 0 ]] && chown postgres "$DIR"
  if [[ ! -f "$DIR/PG_VERSION" ]]; then
    log "initdb $DIR"
    as_owner "$(find_bin initdb)" -D "$DIR" -U postgres --auth=trust -E UTF8 --locale=C >"$DIR.initdb.log" 2>&1 ||
      { cat "$DIR.initdb.log" >&2; exit 1; }
  fi
  log "starting PostgreSQL on 127.0.0.1:$PORT (log: $DIR/server.log)"
  # 9>&-: the server must not inherit the lock, or it holds it forever
  # and the next caller waits forever.
  as_owner "$(find_bin pg_ctl)" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >&2 9>&- ||
    { cat "$DIR/server.log" >&2; exit 1; }
  echo "$URL"
}

stop() {
  if [[ -f "$DIR/PG_VERSION" ]] && ready; then
    as_owner "$(find_bin pg_ctl)" -D "$DIR" -m fast stop >&2
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
