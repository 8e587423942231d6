# Sourced by demo.sh and soak.sh: a throwaway PostgreSQL cluster on a btrfs
# subvolume of a loop-mounted file system, pgbench load, and the restore
# proof. Everything lives in $WORK and is removed on exit.
# shellcheck shell=bash

[ "$(id -u)" = 0 ] || { echo "run as root (it mounts a loop device), e.g. sudo $0" >&2; exit 1; }
scripts/install-deps.sh

BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
WORK=$(mktemp -d "/tmp/pgfbb-$(basename "$0" .sh).XXXXXX")
chmod 755 "$WORK"
MNT=$WORK/mnt SOCK=$WORK/sock STAGING=$WORK/staging TOOL=$WORK/pgfbb-wrap
LOAD_PID=
export PGHOST=$SOCK PGUSER=postgres PGDATABASE=postgres

as_pg() { runuser -u postgres -- "$@"; }
step() { printf '\n== %s\n' "$*"; }
pg_start() { as_pg "$BIN/pg_ctl" start -w -D "$1" -l "$SOCK/$2.log" -o "-p $3 -k $SOCK -c listen_addresses=''" >/dev/null; }
pg_stop() { as_pg "$BIN/pg_ctl" stop -w -m fast -D "$1" >/dev/null; }
sql() { "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -p "$1" -c "$2"; }
cleanup() {
	set +e
	stop_load
	for d in "$MNT"/restore* "$MNT/pgdata"; do
		[ -f "$d/postmaster.pid" ] && as_pg "$BIN/pg_ctl" stop -w -m immediate -D "$d" >/dev/null
	done
	mountpoint -q "$MNT" && umount "$MNT"
	rm -rf "$WORK"
}
trap cleanup EXIT

# cluster PORT SCALE: build the tool, make the file system and a cluster on
# it with pgbench data and a marker table, and start it on PORT.
cluster() {
	step "build pgfbb-wrap"
	go build -o "$TOOL" .
	step "btrfs on a loop device, PGDATA on a subvolume"
	truncate -s 4G "$WORK/fs.img"
	mkfs.btrfs -q "$WORK/fs.img" >/dev/null 2>&1
	mkdir "$MNT" "$SOCK"
	mount -o loop "$WORK/fs.img" "$MNT"
	btrfs subvolume create "$MNT/pgdata" >/dev/null
	mkdir "$MNT/snapshots"
	chown postgres: "$MNT/pgdata" "$SOCK"
	step "throwaway cluster ($("$BIN/postgres" --version)) with pgbench data"
	as_pg "$BIN/initdb" -D "$MNT/pgdata" -U postgres --auth=trust >/dev/null
	pg_start "$MNT/pgdata" primary "$1"
	"$BIN/pgbench" -p "$1" -i -q -s "$2" 2>/dev/null
	sql "$1" "CREATE TABLE marker (phase text PRIMARY KEY)"
}

start_load() {
	"$BIN/pgbench" -p "$1" -n -c 2 -T 3600 >/dev/null 2>&1 &
	LOAD_PID=$!
	sleep 2
}

stop_load() {
	[ -n "$LOAD_PID" ] || return 0
	kill "$LOAD_PID" 2>/dev/null
	wait "$LOAD_PID" 2>/dev/null || true
	LOAD_PID=
}

# prove_restore LABEL PORT WANT: restore the backup LABEL into a writable
# copy of its snapshot, start it on PORT, and check that recovery reached
# consistency, that the marker rows are WANT, and that pg_amcheck is clean.
prove_restore() {
	local r=$MNT/restore-$1 rows
	btrfs subvolume snapshot "$MNT/snapshots/$1" "$r" >/dev/null
	"$TOOL" restore --staged "$STAGING/$1" --pgdata "$r"
	pg_start "$r" "restore-$1" "$2"
	for _ in $(seq 600); do
		[ "$(sql "$2" 'SELECT pg_is_in_recovery()')" = f ] && break
		sleep 0.1
	done
	grep -q "consistent recovery state reached" "$SOCK/restore-$1.log" || { echo "FAIL: $1: recovery never reached consistency" >&2; return 1; }
	rows=$(sql "$2" "SELECT string_agg(phase, ',' ORDER BY phase) FROM marker")
	[ "$rows" = "$3" ] || { echo "FAIL: $1: marker rows '$rows', want '$3'" >&2; return 1; }
	"$BIN/pg_amcheck" -p "$2" --all --heapallindexed --install-missing || { echo "FAIL: $1: pg_amcheck" >&2; return 1; }
	echo "$1: recovery reached consistency ($(grep -o 'consistent recovery state reached at [0-9A-F/]*' "$SOCK/restore-$1.log")), marker rows '$rows', pg_amcheck clean"
}
