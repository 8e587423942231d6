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

: "${PGFBB_STAGING:=/var/backups/pg/staging}"
: "${LABEL:=}"                          # as in pre.sh; empty: the one held backup
: "${SHIP_TO:=/var/backups/pg/shipped}" # a directory; or replace cp with restic/borg/rsync
export PGFBB_STAGING

if [ "${1:-}" = abort ]; then
	exec pgfbb-wrap abort ${LABEL:+--label "$LABEL"}
fi
summary=$(pgfbb-wrap post ${LABEL:+--label "$LABEL"})
echo "$summary" >&2 # to the hook's log
label=$(sed -n 's/^pgfbb-wrap: backup \([^ ]*\) complete: .*/\1/p' <<<"$summary")
staged=$(pgfbb-wrap path --label "$label" dir)

pgfbb-wrap verify "$staged" >/dev/null

# The backup is made: from here a failure keeps it, and says so.
dest=$SHIP_TO/$label
trap 'rc=$?; if [ "$rc" != 0 ]; then rm -rf "$dest.partial"
	echo "post.sh: backup $label is made, but shipping it failed: it stays in $staged" >&2; exit 10; fi' EXIT
mkdir -p "$SHIP_TO"
cp -a "$staged" "$dest.partial"
sync -f "$dest.partial"
mv "$dest.partial" "$dest"
rm -rf "$staged"
echo "$dest"
