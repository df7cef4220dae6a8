#!/usr/bin/env bash
# The project's own local PostgreSQL 15 cluster: data in .local/pg, run by the
# unprivileged `postgres` OS user (the server refuses to run as root).
# Usage: cluster.sh init|start|stop|status|url
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PGBIN=/usr/lib/postgresql/15/bin
PGDATA="${SHIELDX_PGDATA:-$ROOT/.local/pg}"
RUNDIR="$ROOT/.local/run"
PORT="${SHIELDX_PGPORT:-55432}"
OSUSER=postgres
KEYDIR="${SHIELDX_KEYDIR:-$ROOT/.local/keys}"
DBNAME="${SHIELDX_DBNAME:-shieldx}"

as_pg() {
  if [ "$(id -un)" = "$OSUSER" ]; then "$@"; else runuser -u "$OSUSER" -- "$@"; fi
}

init() {
  mkdir -p "$ROOT/.local" "$RUNDIR"
  chown "$OSUSER:$OSUSER" "$RUNDIR"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"; chown "$OSUSER:$OSUSER" "$PGDATA"; chmod 700 "$PGDATA"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=trust \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$PGDATA/postgresql.conf" <<CONF

# --- ShieldX local cluster ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUNDIR'
max_connections = 300
shared_buffers = 512MB
work_mem = 16MB
maintenance_work_mem = 256MB
wal_level = replica
max_wal_size = 4GB
checkpoint_timeout = 15min
max_prepared_transactions = 64
shared_preload_libraries = 'pg_cron'
cron.database_name = '$DBNAME'
cron.use_background_workers = on
max_worker_processes = 32
cron.max_running_jobs = 8
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
shieldx.env = 'local'
shieldx.key_dir = '$KEYDIR'
CONF
  fi
  keys
}

# Keyrings for the audit HMAC, payment-data encryption and per-subject key
# wrapping: outside the database, readable only by the server's OS user.
# <purpose>/<key_id>.key holds 32 random bytes in hex; CURRENT names the key in use.
keys() {
  install -d -o "$OSUSER" -g "$OSUSER" -m 700 "$KEYDIR"
  local purpose id
  for purpose in audit payment subject; do
    install -d -o "$OSUSER" -g "$OSUSER" -m 700 "$KEYDIR/$purpose"
    if [ ! -s "$KEYDIR/$purpose/CURRENT" ]; then
      id="k$(date -u +%Y%m%d%H%M%S)$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
      (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$KEYDIR/$purpose/$id.key"
       echo "$id" > "$KEYDIR/$purpose/CURRENT")
      chown "$OSUSER:$OSUSER" "$KEYDIR/$purpose/$id.key" "$KEYDIR/$purpose/CURRENT"
    fi
  done
}

running() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

start() {
  init
  if ! running; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >/dev/null
  fi
  "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PORT" -t 30 >/dev/null
  "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \
    -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'" | grep -q 1 \
    || "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DBNAME"
  # Clusters made before the keyrings existed learn the path here (reloadable).
  "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \
    -c "SELECT current_setting('shieldx.key_dir', true)" | grep -qxF "$KEYDIR" \
    || "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \
         -c "SET shieldx.key_dir = '$KEYDIR'" -c "ALTER SYSTEM SET shieldx.key_dir = '$KEYDIR'" \
         -c "SELECT pg_reload_conf()" >/dev/null
}

stop() {
  if [ -s "$PGDATA/PG_VERSION" ] && running; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  fi
}

case "${1:-}" in
  init) init ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running on 127.0.0.1:$PORT ($PGDATA)"; else echo "stopped"; exit 3; fi ;;
  url) echo "postgresql://postgres@127.0.0.1:$PORT/$DBNAME" ;;
  *) echo "usage: $0 init|start|stop|status|url" >&2; exit 2 ;;
esac
