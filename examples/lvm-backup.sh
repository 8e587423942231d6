#!/usr/bin/env bash
# LVM: pgfbb-wrap holds backup mode around lvcreate; the snapshot is then
# mounted read-only, archived together with the staged label and WAL, and
# removed; one a killed run left is removed by the next run. Run as root.
#
# Settings come from the environment, with the defaults below; pgfbb-wrap's
# own PGFBB_* variables (or a config file in PGFBB_CONFIG) pass through.
set -euo pipefail
# cron starts with PATH=/usr/bin:/bin: pgfbb-wrap is in /usr/local/bin,
# the volume tools in /sbin.
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

: "${VG:=vg0}"                              # the volume group
: "${LV:=pgdata}"                           # the logical volume of the cluster
: "${SNAP_SIZE:=10G}"                       # room for the changes while the snapshot lives
: "${LV_MOUNT:=/var/lib/postgresql}"        # where /dev/$VG/$LV is mounted: all of the cluster must be on it
: "${STAGING:=/var/backups/pg/staging}"     # label and WAL until they are archived
: "${ARCHIVE:=/var/backups/pg/archive}"     # one tar per backup
: "${ARCHIVE_KEEP:=7}"                      # tars to keep there
: "${MNT_BASE:=/mnt}"                        # each run mounts its snapshot in a directory of its own here
export PGHOST="${PGHOST:-/var/run/postgresql}" PGUSER="${PGUSER:-postgres}"

install -d -m 0700 "$STAGING"
mkdir -p "$MNT_BASE" "$ARCHIVE"
if ! [[ $ARCHIVE_KEEP =~ ^[1-9][0-9]*$ ]]; then
	echo "lvm-backup: ARCHIVE_KEEP=$ARCHIVE_KEEP: want 1 or more" >&2
	exit 2
fi
# One run per staging directory at a time. Under the lock, a snapshot of
# $LV made by this script is one a killed run (SIGKILL, a power cut) left,
# maybe mounted: it goes before it fills up or slows the origin's writes;
# so do the staged files and tars of killed runs. Snapshots of other
# volumes are other clusters'. (LVM warns about inherited descriptors, the
# lock's among them.)
export LVM_SUPPRESS_FD_WARNINGS=1
exec 9>"$STAGING/.lvm-backup.lock"
flock 9
volumes=$(lvs --noheadings -o lv_name,origin "$VG")
while read -r old origin; do
	if [[ $old != pgsnap-nightly-* || $origin != "$LV" ]]; then continue; fi
	echo "lvm-backup: removing $VG/$old, a snapshot volume a killed run left" >&2
	if mountpoint -q "$MNT_BASE/$old"; then umount "$MNT_BASE/$old" || umount -l "$MNT_BASE/$old"; fi
	rmdir "$MNT_BASE/$old" 2>/dev/null || true
	lvremove -y "$VG/$old" >/dev/null
done <<<"$volumes"
rm -rf "${STAGING:?}"/nightly-[0-9]*/ "$ARCHIVE"/nightly-*.tar.partial
# A label of this run alone ($$): the cleanup below removes nothing of another.
label=nightly-$(date -u +%Y%m%dT%H%M%SZ)-$$
snap=pgsnap-$label
mnt=$MNT_BASE/$snap

# Set before the backup, so that no failure leaves the snapshot mounted or
# in the volume group (a full snapshot volume is invalidated, and a forgotten
# one slows every write to the origin).
# Every step is tried, whatever failed before it: set -e ends a trap too.
cleanup() {
	set +e
	if mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt"; fi
	rmdir "$mnt" 2>/dev/null
	if lvs "$VG/$snap" >/dev/null 2>&1; then lvremove -y "$VG/$snap" >/dev/null; fi
	rm -rf "${STAGING:?}/$label" "$ARCHIVE/$label.tar.partial"
}
trap cleanup EXIT
# A signal ends the script once the command running has ended, and the
# cleanup runs after it, not beside it.
trap 'exit 143' TERM
trap 'exit 130' INT

pgfbb-wrap --staging "$STAGING" --label "$label" --timeout 10m --covers "$LV_MOUNT" \
	--delete-command "lvremove -y $VG/pgsnap-\${PGFBB_LABEL}" -- \
	lvcreate --snapshot --size "$SNAP_SIZE" --name "$snap" "$VG/$LV" >/dev/null

# XFS refuses to mount a snapshot beside its origin, same UUID, without nouuid.
opts=ro
if [ "$(blkid -o value -s TYPE "/dev/$VG/$snap")" = xfs ]; then opts=ro,nouuid; fi
mkdir "$mnt"
mount -o "$opts" "/dev/$VG/$snap" "$mnt"
tar -C / -cf "$ARCHIVE/$label.tar.partial" "${mnt#/}" "${STAGING#/}/$label"
sync -f "$ARCHIVE/$label.tar.partial"
mv "$ARCHIVE/$label.tar.partial" "$ARCHIVE/$label.tar"
# The newest ARCHIVE_KEEP tars stay (labels start with their date).
find "$ARCHIVE" -maxdepth 1 -name 'nightly-*.tar' -print0 | sort -rz | tail -zn "+$((ARCHIVE_KEEP + 1))" | xargs -0r rm --
