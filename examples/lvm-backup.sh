#!/usr/bin/env bash
# Nightly LVM snapshot backup: pgfbb-wrap holds backup mode around lvcreate,
# then the snapshot is mounted read-only, archived together with the staged
# label and WAL, and removed. Adjust the variables; run as root.
set -euo pipefail

VG=vg0 LV=pgdata SNAP_SIZE=10G
LV_MOUNT=/var/lib/postgresql   # where /dev/$VG/$LV is mounted: all of the cluster must be on it
STAGING=/var/backups/pg/staging
ARCHIVE=/var/backups/pg/archive
LABEL=nightly-$(date -u +%Y%m%dT%H%M%SZ)
MNT=/mnt/pgsnap

export PGHOST=/var/run/postgresql PGUSER=postgres

pgfbb-wrap --staging "$STAGING" --label "$LABEL" --timeout 10m --covers "$LV_MOUNT" -- \
	lvcreate --snapshot --size "$SNAP_SIZE" --name "pgsnap-$LABEL" "/dev/$VG/$LV"

# The snapshot plus the staged directory is the backup; keep them together.
mkdir -p "$MNT" "$ARCHIVE"
trap 'umount "$MNT" 2>/dev/null; lvremove -y "$VG/pgsnap-$LABEL" >/dev/null' EXIT
mount -o ro "/dev/$VG/pgsnap-$LABEL" "$MNT"   # xfs needs: -o ro,nouuid
tar -C / -cf "$ARCHIVE/$LABEL.tar" "${MNT#/}" "${STAGING#/}/$LABEL"
rm -rf "${STAGING:?}/$LABEL"
