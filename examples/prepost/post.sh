#!/usr/bin/env bash
# Post-snapshot hook, the pair of pre.sh: stops the backup, stages label, map
# and WAL, then ships the staged backup next to the snapshot and frees the
# label for the next run. A failed backup exits non-zero and ships nothing;
# the orchestrator should then discard its snapshot.
#
# If the snapshot failed, call it with "abort" instead: the backup is stopped
# and nothing is published.
set -euo pipefail

: "${PGFBB_STAGING:=/var/backups/pg/staging}"
: "${LABEL:=snapshot}"
: "${SHIP_TO:=/var/backups/pg/shipped}" # a directory; or replace cp with restic/borg/rsync
export PGFBB_STAGING

if [ "${1:-}" = abort ]; then
	exec pgfbb-wrap abort --label "$LABEL"
fi
pgfbb-wrap post --label "$LABEL" >&2 # its summary line goes to the hook's log

staged=$(pgfbb-wrap path --label "$LABEL" dir)
pgfbb-wrap verify "$staged" >/dev/null
dest="$SHIP_TO/$LABEL-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$SHIP_TO"
cp -a "$staged" "$dest.partial"
sync -f "$dest.partial"
mv "$dest.partial" "$dest"
rm -rf "$staged"
echo "$dest"
