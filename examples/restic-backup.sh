#!/usr/bin/env bash
# restic: snapshot with LVM, then back up the mounted snapshot and the staged
# label and WAL in one restic snapshot, tagged with the label, and clean up.
# RESTIC_REPOSITORY and RESTIC_PASSWORD_FILE come from the environment.
set -euo pipefail

VG=vg0 LV=pgdata
STAGING=/var/backups/pg
MNT=/mnt/pgsnap
LABEL=pgfbb-$(date -u +%Y%m%dT%H%M%SZ)

export PGHOST=/var/run/postgresql PGUSER=postgres

pgfbb-wrap --staging "$STAGING" --label "$LABEL" -- \
	lvcreate --snapshot --size 10G --name pgsnap "/dev/$VG/$LV"
mkdir -p "$MNT"
trap 'umount "$MNT" 2>/dev/null; lvremove -y "$VG/pgsnap" >/dev/null' EXIT
mount -o ro "/dev/$VG/pgsnap" "$MNT"

restic backup --tag pgfbb --tag "$LABEL" "$MNT" "$STAGING/$LABEL"
rm -rf "${STAGING:?}/$LABEL"
restic forget --tag pgfbb --keep-daily 7 --keep-weekly 4 --prune
