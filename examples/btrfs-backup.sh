#!/usr/bin/env bash
# btrfs: PGDATA lives on a subvolume; each backup is a read-only snapshot next
# to the staged label and WAL. Keeps the newest $KEEP backups. Run as root.
set -euo pipefail

PGDATA_SUBVOL=/srv/pgdata
SNAPDIR=/srv/snapshots
STAGING=/var/backups/pg
KEEP=7

export PGHOST=/var/run/postgresql PGUSER=postgres

# --covers: refuse to back up once pg_wal or a tablespace lives outside the
# snapshotted subvolume (the snapshot would silently miss it).
pgfbb-wrap --staging "$STAGING" --fast --covers "$PGDATA_SUBVOL" -- \
	btrfs subvolume snapshot -r "$PGDATA_SUBVOL" "$SNAPDIR/\${PGFBB_LABEL}"

# Default labels (pgfbb-YYYYMMDDTHHMMSSZ) sort by time.
ls -1d "$STAGING"/pgfbb-* | head -n -"$KEEP" | while read -r old; do
	btrfs subvolume delete "$SNAPDIR/$(basename "$old")"
	rm -rf "$old"
done
