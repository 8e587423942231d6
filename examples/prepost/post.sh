#!/usr/bin/env bash
# Post-snapshot hook, the pair of pre.sh: stops the backup, stages label, map
# and WAL, then ships the staged backup and removes it locally. Exit codes:
#   0    the backup is made and shipped (its path on stdout)
#   10   the backup is made, but shipping it failed: it stays in the staging
#        directory (the message names it); keep the snapshot, ship it by hand
#   else the backup failed (pgfbb-wrap's exit codes): discard the snapshot
#
# If the snapshot failed, call it with "abort" instead: the backup is stopped
# and nothing is published.
set -euo pipefail
# cron starts with PATH=/usr/bin:/bin: pgfbb-wrap is in /usr/local/bin.
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

: "${PGFBB_STAGING:=/var/backups/pg/staging}"
: "${LABEL:=}"                          # as in pre.sh; empty: the one held backup
: "${SHIP_TO:=/var/backups/pg/shipped}" # a directory; or replace cp with restic/borg/rsync
export PGFBB_STAGING

if [ "${1:-}" = abort ]; then
	exec pgfbb-wrap abort ${LABEL:+--label "$LABEL"}
fi
summary=$(pgfbb-wrap post --json=false ${LABEL:+--label "$LABEL"})
echo "$summary" >&2 # to the hook's log
label=$(sed -n 's/^pgfbb-wrap: backup \([^ ]*\) complete: .*/\1/p' <<<"$summary")

# The backup is made: from here a failure keeps it, and says so.
trap 'rc=$?; if [ "$rc" != 0 ]; then rm -rf "${dest:-}.partial"
	echo "post.sh: backup ${label:-?} is made, but shipping it failed: it stays in ${staged:-$PGFBB_STAGING}" >&2; exit 10; fi' EXIT
if [ -z "$label" ]; then
	echo "post.sh: no label in pgfbb-wrap post's summary" >&2
	exit 1
fi
staged=$(pgfbb-wrap path --label "$label" dir)
pgfbb-wrap verify "$staged" >/dev/null

# A fixed LABEL ships to the same place every night: the new copy replaces
# the old one only once it is complete.
dest=$SHIP_TO/$label
mkdir -p "$SHIP_TO"
rm -rf "$dest.partial" # a copy a killed run began
cp -a "$staged" "$dest.partial"
sync -f "$dest.partial"
if [ -e "$dest" ]; then
	rm -rf "$dest.old"
	mv -T "$dest" "$dest.old"
fi
mv -T "$dest.partial" "$dest"
rm -rf "$dest.old" "$staged"
echo "$dest"
