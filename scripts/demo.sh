#!/usr/bin/env bash
# The main job, end to end, on a throwaway cluster: a btrfs file system on a
# loop device, a PostgreSQL cluster on it with pgbench writing, a pgfbb-wrap
# backup around a real btrfs snapshot, then a restore from that snapshot plus
# the staged label and WAL, proven by recovery, rows and pg_amcheck.
# Run as root on Debian (scripts/demo.sh, or sudo scripts/demo.sh).
# Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

cluster 54329 2
sql 54329 "INSERT INTO marker VALUES ('before')"
start_load 54329

step "backup: pgfbb-wrap around a read-only btrfs snapshot, while pgbench writes"
(
	set -x
	PGPORT=54329 "$TOOL" --staging "$STAGING" --label demo --fast -v --covers "$MNT/pgdata" -- \
		btrfs subvolume snapshot -r "$MNT/pgdata" "$MNT/snapshots/\${PGFBB_LABEL}"
)
sql 54329 "INSERT INTO marker VALUES ('after')"
stop_load
echo "staged:"; ls -l "$STAGING/demo"
echo "backup_label:"; sed 's/^/  /' "$STAGING/demo/backup_label"
echo "WAL files: $(wc -l <"$STAGING/demo/wal_list")"

step "verify the staged backup"
"$TOOL" verify "$STAGING/demo"

step "restore: writable copy of the snapshot, then pgfbb-wrap restore lays out label, WAL and recovery settings; start; check"
prove_restore demo 54330 before
echo "(the marker row committed after the backup is rightly absent)"
echo "pgbench_accounts: $(sql 54330 'SELECT count(*) FROM pgbench_accounts') rows"
printf '\nPASS: the snapshot backup restored to a consistent, checked cluster\n'
