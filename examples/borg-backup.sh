#!/usr/bin/env bash
# borg: btrfs snapshot, then one borg archive named after the label holding the
# snapshot and the staged label and WAL. BORG_REPO and BORG_PASSCOMMAND come
# from the environment.
set -euo pipefail

STAGING=/var/backups/pg
SNAPDIR=/srv/snapshots
LABEL=pgfbb-$(date -u +%Y%m%dT%H%M%SZ)

export PGHOST=/var/run/postgresql PGUSER=postgres

pgfbb-wrap --staging "$STAGING" --label "$LABEL" -- \
	btrfs subvolume snapshot -r /srv/pgdata "$SNAPDIR/$LABEL"
trap 'btrfs subvolume delete "$SNAPDIR/$LABEL" >/dev/null' EXIT

borg create --stats --compression zstd "::$LABEL" "$SNAPDIR/$LABEL" "$STAGING/$LABEL"
rm -rf "${STAGING:?}/$LABEL"
borg prune --glob-archives 'pgfbb-*' --keep-daily 7 --keep-weekly 4
