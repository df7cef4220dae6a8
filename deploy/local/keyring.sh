#!/usr/bin/env bash
# Keyrings for the audit HMAC, payment-data encryption and per-subject key
# wrapping: outside the database, readable only by the server's OS user.
# Usage: keyring.sh <dir>            create the keyring in <dir> (idempotent)
#        keyring.sh copy <src> <dst> give a node the keys of <src> (adds what
#                                    <dst> lacks; never overwrites, never deletes)
#        keyring.sh new <dir> <purpose>
#                                    add a new random key to <dir>/<purpose>
#                                    and print its id (CURRENT is unchanged: a
#                                    rotation installs it on every node first,
#                                    then activates it with
#                                    vault.rotate_key(purpose, key_id))
#        keyring.sh current <dir> <purpose> <key_id>
#                                    name an installed key in CURRENT
#
# Layout: <dir>/<purpose>/<key_id>.key holds 32 random bytes in hex; CURRENT
# names the key new data uses (purposes: audit, payment, subject). Directories
# are mode 700 and files mode 600, all owned by the postgres OS user, so only
# the server process (and root) can read them: a database role, the
# application's included, reads them only through the server's own functions.
# Used by deploy/local/cluster.sh (single node) and the HA harness
# (deploy/local/shieldx_local), which gives every node a copy of one keyring.
set -euo pipefail
# The files' owner: the server's OS user (SHIELDX_KEYRING_OWNER to make a
# keyring elsewhere, e.g. for the Kubernetes Secrets in deploy/k8s/13-db-statefulset.yaml).
OSUSER="${SHIELDX_KEYRING_OWNER:-postgres}"
PURPOSES="audit payment subject"

new_key() {  # <dir> <purpose>: write a new key file, print its id
  local dir="$1" purpose="$2" id
  install -d -o "$OSUSER" -g "$OSUSER" -m 700 "$dir" "$dir/$purpose"
  id="k$(date -u +%Y%m%d%H%M%S)$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
  (umask 077; set -o noclobber; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$dir/$purpose/$id.key")
  chown "$OSUSER:$OSUSER" "$dir/$purpose/$id.key"
  echo "$id"
}

set_current() {  # <dir> <purpose> <key_id>
  local dir="$1" purpose="$2" id="$3"
  [ -s "$dir/$purpose/$id.key" ] || { echo "no key $id in $dir/$purpose" >&2; exit 1; }
  (umask 077; echo "$id" > "$dir/$purpose/CURRENT.tmp")
  chown "$OSUSER:$OSUSER" "$dir/$purpose/CURRENT.tmp"
  mv -f "$dir/$purpose/CURRENT.tmp" "$dir/$purpose/CURRENT"
}

create() {
  local dir="$1" purpose id
  install -d -o "$OSUSER" -g "$OSUSER" -m 700 "$dir"
  for purpose in $PURPOSES; do
    install -d -o "$OSUSER" -g "$OSUSER" -m 700 "$dir/$purpose"
    if [ ! -s "$dir/$purpose/CURRENT" ]; then
      id="$(new_key "$dir" "$purpose")"
      set_current "$dir" "$purpose" "$id"
    fi
  done
}

copy() {
  local src="$1" dst="$2" purpose f
  install -d -o "$OSUSER" -g "$OSUSER" -m 700 "$dst"
  for purpose in $PURPOSES; do
    install -d -o "$OSUSER" -g "$OSUSER" -m 700 "$dst/$purpose"
    for f in "$src/$purpose"/*.key "$src/$purpose/CURRENT"; do
      [ -e "$f" ] || continue
      [ -e "$dst/$purpose/$(basename "$f")" ] && continue
      install -o "$OSUSER" -g "$OSUSER" -m 600 "$f" "$dst/$purpose/$(basename "$f")"
    done
  done
}

case "${1:-}" in
  copy) [ $# -eq 3 ] || { echo "usage: $0 copy <src> <dst>" >&2; exit 2; }; copy "$2" "$3" ;;
  new) [ $# -eq 3 ] || { echo "usage: $0 new <dir> <purpose>" >&2; exit 2; }; new_key "$2" "$3" ;;
  current) [ $# -eq 4 ] || { echo "usage: $0 current <dir> <purpose> <key_id>" >&2; exit 2; }
           set_current "$2" "$3" "$4" ;;
  ""|-*) echo "usage: $0 <dir> | $0 copy <src> <dst> | $0 new <dir> <purpose> | $0 current <dir> <purpose> <key_id>" >&2
         exit 2 ;;
  *) [ $# -eq 1 ] || { echo "usage: $0 <dir>" >&2; exit 2; }; create "$1" ;;
esac
