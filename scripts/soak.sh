#!/usr/bin/env bash
# The soak (opt-in, not in CI): ROUNDS (default 50) consecutive backups of
# one cluster under continuous pgbench load, each around a btrfs snapshot and
# each verified, every tenth restored and checked. Prints failures, the
# spread of the time PostgreSQL spent in backup mode, and the tool's peak
# RSS. Run as root on Debian: scripts/soak.sh [ROUNDS].
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROUNDS=${1:-50}

cluster 54331 5
start_load 54331
failures=0
: >"$WORK/windows"
: >"$WORK/rss"
step "$ROUNDS backups under pgbench load"
for i in $(seq "$ROUNDS"); do
	label=soak-$i
	sql 54331 "INSERT INTO marker VALUES ('$label')"
	if ! PGPORT=54331 /usr/bin/time -f '%M' -o "$WORK/rss.$i" "$TOOL" --staging "$STAGING" --label "$label" --fast \
		-- btrfs subvolume snapshot -r "$MNT/pgdata" "$MNT/snapshots/$label" >"$WORK/log.$i" 2>&1; then
		echo "FAIL: backup $label:"; sed 's/^/  /' "$WORK/log.$i"
		failures=$((failures + 1))
		continue
	fi
	tail -n1 "$WORK/rss.$i" >>"$WORK/rss"
	grep -o '"backup_mode_seconds": [0-9.e+-]*' "$STAGING/$label/manifest.json" | awk '{print $2}' >>"$WORK/windows"
	if ! "$TOOL" verify "$STAGING/$label" >"$WORK/verify.$i" 2>&1; then
		echo "FAIL: verify $label:"; sed 's/^/  /' "$WORK/verify.$i"
		failures=$((failures + 1))
	fi
	if [ $((i % 10)) = 0 ]; then
		want=$(sql 54331 "SELECT string_agg(phase, ',' ORDER BY phase) FROM marker")
		prove_restore "$label" 54332 "$want" || failures=$((failures + 1))
		pg_stop "$MNT/restore-$label"
		btrfs subvolume delete "$MNT/restore-$label" >/dev/null
	fi
	# Keep the file system small: only this round's snapshot was needed.
	btrfs subvolume delete "$MNT/snapshots/$label" >/dev/null
	echo "backup $i/$ROUNDS ok: $(tail -n1 "$WORK/windows") s in backup mode, $(tail -n1 "$WORK/rss") kB peak RSS"
done
stop_load

step "result"
stats() { sort -g "$1" | awk '{v[NR]=$1} END {printf "min %s, median %s, max %s (n=%d)", v[1], v[int((NR+1)/2)], v[NR], NR}'; }
echo "backups: $ROUNDS, failures: $failures"
echo "time in backup mode (s): $(stats "$WORK/windows")"
echo "tool peak RSS (kB): $(stats "$WORK/rss")"
[ "$failures" = 0 ]
