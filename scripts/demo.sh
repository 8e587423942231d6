#!/usr/bin/env bash
# The main job, end to end, on a throwaway cluster: a btrfs file system on a
# loop device, a PostgreSQL cluster on it with pgbench writing, a pgfbb-wrap
# backup around a real btrfs snapshot, then a restore from that snapshot plus
# the staged label and WAL, proven by recovery, rows and pg_amcheck.
# Run as root on Debian: sudo scripts/demo.sh. Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ "$(id -u)" = 0 ] || { echo "run as root: sudo scripts/demo.sh (it mounts a loop device)" >&2; exit 1; }

BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
WORK=$(mktemp -d /tmp/pgfbb-demo.XXXXXX)
chmod 755 "$WORK"
MNT=$WORK/mnt SOCK=$WORK/sock STAGING=$WORK/staging
LOAD_PID=

as_pg() { runuser -u postgres -- "$@"; }
step() { printf '\n== %s\n' "$*"; }
pg_start() { as_pg "$BIN/pg_ctl" start -w -D "$1" -l "$SOCK/$2.log" -o "-p $3 -k $SOCK -c listen_addresses=''" >/dev/null; }
sql() { "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -p "$1" -c "$2"; }
cleanup() {
	set +e
	[ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
	for d in "$MNT/restore" "$MNT/pgdata"; do
		[ -f "$d/postmaster.pid" ] && as_pg "$BIN/pg_ctl" stop -w -m immediate -D "$d" >/dev/null
	done
	mountpoint -q "$MNT" && umount "$MNT"
	rm -rf "$WORK"
}
trap cleanup EXIT

step "build pgfbb-wrap"
go build -o "$WORK/pgfbb-wrap" .

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
pg_start "$MNT/pgdata" primary 54329
export PGHOST=$SOCK PGUSER=postgres PGDATABASE=postgres
"$BIN/pgbench" -p 54329 -i -q -s 2 2>/dev/null
sql 54329 "CREATE TABLE marker (phase text PRIMARY KEY); INSERT INTO marker VALUES ('before')"
"$BIN/pgbench" -p 54329 -n -c 2 -T 600 >/dev/null 2>&1 &
LOAD_PID=$!
sleep 2

step "backup: pgfbb-wrap around a read-only btrfs snapshot, while pgbench writes"
(
	set -x
	PGPORT=54329 "$WORK/pgfbb-wrap" --staging "$STAGING" --label demo --fast -v --covers "$MNT/pgdata" -- \
		btrfs subvolume snapshot -r "$MNT/pgdata" "$MNT/snapshots/\${PGFBB_LABEL}"
)
sql 54329 "INSERT INTO marker VALUES ('after')"
kill "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=
echo "staged:"; ls -l "$STAGING/demo"
echo "backup_label:"; sed 's/^/  /' "$STAGING/demo/backup_label"
echo "WAL files: $(wc -l <"$STAGING/demo/wal_list")"

step "verify the staged backup"
"$WORK/pgfbb-wrap" verify "$STAGING/demo"

step "restore: writable copy of the snapshot, then pgfbb-wrap restore lays out label, WAL and recovery settings"
R=$MNT/restore
btrfs subvolume snapshot "$MNT/snapshots/demo" "$R" >/dev/null
"$WORK/pgfbb-wrap" restore --staged "$STAGING/demo" --pgdata "$R"
pg_start "$R" restored 54330
for _ in $(seq 600); do
	[ "$(sql 54330 'SELECT pg_is_in_recovery()')" = f ] && break
	sleep 0.1
done

step "proof"
grep -q "consistent recovery state reached" "$SOCK/restored.log" || { echo "FAIL: recovery never reached consistency" >&2; exit 1; }
echo "recovery reached consistency: $(grep -o 'consistent recovery state reached at [0-9A-F/]*' "$SOCK/restored.log")"
rows=$(sql 54330 "SELECT string_agg(phase, ',') FROM marker")
[ "$rows" = before ] || { echo "FAIL: marker rows '$rows', want 'before'" >&2; exit 1; }
echo "marker rows: '$rows' (the row committed after the backup is rightly absent)"
echo "pgbench_accounts: $(sql 54330 'SELECT count(*) FROM pgbench_accounts') rows"
"$BIN/pg_amcheck" -p 54330 --all --heapallindexed --install-missing
echo "pg_amcheck --heapallindexed: clean"
printf '\nPASS: the snapshot backup restored to a consistent, checked cluster\n'
