#!/usr/bin/env bash
# The project's own local PostgreSQL 15 cluster, run by the unprivileged
# `postgres` OS user (the server refuses to run as root).
# Usage: cluster.sh init|start|stop|status|url|state-dir|log
#
# Its state (data, socket, key files) lives where that user can reach it:
#   $SHIELDX_STATE_DIR if set; else <repo>/.local if the postgres user can
#   traverse the repository; else /var/lib/shieldx/<repo name>-<8 hex of the
#   SHA-256 of the repo path> (a clone under /root, mode 700, say).
# `cluster.sh state-dir` prints the folder in use.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PGBIN=/usr/lib/postgresql/15/bin
OSUSER=postgres

as_pg() {
  # From /: the postgres user may not be able to enter the current directory.
  if [ "$(id -un)" = "$OSUSER" ]; then "$@"; else (cd / && runuser -u "$OSUSER" -- "$@"); fi
}

state_dir() {
  if [ -n "${SHIELDX_STATE_DIR:-}" ]; then echo "$SHIELDX_STATE_DIR"; return; fi
  if as_pg test -x "$ROOT" 2>/dev/null; then echo "$ROOT/.local"; return; fi
  echo "/var/lib/shieldx/$(basename "$ROOT")-$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
}

STATE="$(state_dir)"
PGDATA="${SHIELDX_PGDATA:-$STATE/pg}"
RUNDIR="$STATE/run"
PORT="${SHIELDX_PGPORT:-55432}"
KEYDIR="${SHIELDX_KEYDIR:-$STATE/keys}"
DBNAME="${SHIELDX_DBNAME:-shieldx}"

# Statement text never reaches the server log: a failing `vault.top_up(...)`
# typed in psql carries a card number in its text, and a logged statement or
# bind parameter would write it to disk. Errors are still logged (message,
# DETAIL, CONTEXT: the functions' messages name at most the last four digits),
# only the STATEMENT: line and parameter values are left out.
# log_min_duration_statement always prints the statement's text (PostgreSQL
# has no threshold-based duration logging without it), so it stays off; slow
# statements are found with pg_stat_activity and the API's request logs.
# The same settings: deploy/patroni/patroni.yml.in and deploy/k8s/11-db-config.yaml.
LOG_PRIVACY="log_min_error_statement=panic log_statement=none log_min_duration_statement=-1 log_parameter_max_length=0 log_parameter_max_length_on_error=0"

log_privacy() {
  local kv
  for kv in $LOG_PRIVACY; do
    case "$1" in
      conf) echo "${kv%%=*} = '${kv#*=}'" ;;
      sql) echo "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}';" ;;
    esac
  done
}

init() {
  mkdir -p "$STATE" "$RUNDIR"
  chown "$OSUSER:$OSUSER" "$RUNDIR"
  if ! as_pg test -x "$STATE"; then
    echo "cluster.sh: the postgres OS user cannot reach $STATE; set SHIELDX_STATE_DIR to a folder it can reach" >&2
    exit 1
  fi
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
log_line_prefix = '%m [%p] %q%u@%d %a '  # %a: the API's request id (application_name)
$(log_privacy conf)
shieldx.env = 'local'
shieldx.key_dir = '$KEYDIR'
CONF
  fi
  keys
}

# Keyrings (audit, payment, subject) outside the database: deploy/local/keyring.sh.
keys() { "$ROOT/deploy/local/keyring.sh" "$KEYDIR"; }

running() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

start() {
  init
  if ! running; then
    if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >/dev/null; then
      echo "cluster.sh: PostgreSQL did not start; the last lines of its log, $PGDATA/server.log:" >&2
      tail -n 20 "$PGDATA/server.log" >&2 || true
      exit 1
    fi
  fi
  "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PORT" -t 30 >/dev/null
  # The server on this port must be this cluster, not another clone's.
  local serving
  serving="$("$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -c "SHOW data_directory")"
  if [ "$serving" != "$PGDATA" ]; then
    echo "cluster.sh: port $PORT is served by another cluster ($serving), not $PGDATA;" \
         "stop that one or set SHIELDX_PGPORT" >&2
    exit 1
  fi
  "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \
    -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'" | grep -q 1 \
    || "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DBNAME"
  # Clusters made before the keyrings existed learn the path here (reloadable).
  "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \
    -c "SELECT current_setting('shieldx.key_dir', true)" | grep -qxF "$KEYDIR" \
    || "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \
         -c "SET shieldx.key_dir = '$KEYDIR'" -c "ALTER SYSTEM SET shieldx.key_dir = '$KEYDIR'" \
         -c "SELECT pg_reload_conf()" >/dev/null
  # ... and the log settings (clusters made before them).
  "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \
    -c "SHOW log_min_error_statement" | grep -qx panic \
    || { log_privacy sql; echo "SELECT pg_reload_conf();"; } \
       | "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 >/dev/null
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
  state-dir) echo "$STATE" ;;
  log) echo "$PGDATA/server.log" ;;
  *) echo "usage: $0 init|start|stop|status|url|state-dir|log" >&2; exit 2 ;;
esac
