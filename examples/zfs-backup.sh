#!/usr/bin/env bash
# ZFS: one recursive snapshot takes the cluster's dataset and its children
# (pg_wal, tablespaces) atomically. The snapshots stay on the pool, the
# newest $KEEP of them with their staged label and WAL; with SHIP_DIR set,
# each backup is also written there as a zfs send stream plus a tar of its
# staged directory. A snapshot a killed run left is destroyed by the next.
# Run as root.
#
# Settings come from the environment, with the defaults below; pgfbb-wrap's
# own PGFBB_* variables (or a config file in PGFBB_CONFIG) pass through.
set -euo pipefail
# cron starts with PATH=/usr/bin:/bin: pgfbb-wrap is in /usr/local/bin,
# the volume tools in /sbin.
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

: "${DATASET:=tank/pgdata}"       # the cluster's dataset; its children are snapshotted with it
: "${STAGING:=/var/backups/pg}"   # label and WAL, a directory per backup (not on $DATASET)
: "${KEEP:=7}"                    # complete backups to keep
: "${SHIP_DIR:=}"                 # e.g. /mnt/backup/pg: where to write each backup off the pool
: "${SHIP_KEEP:=14}"              # backups to keep there
export PGHOST="${PGHOST:-/var/run/postgresql}" PGUSER="${PGUSER:-postgres}"

install -d -m 0700 "$STAGING"
# Every dataset the snapshot takes is covered: a cluster with files outside
# them is refused, instead of a multi-volume warning mailed every night.
# (Read into a variable first: set -e stops the script when zfs list fails.)
mountpoints=$(zfs list -H -o mountpoint -r "$DATASET")
covers=()
while read -r mountpoint; do
	if [[ $mountpoint == /* ]]; then covers+=(--covers "$mountpoint"); fi # not "legacy" or "none"
done <<<"$mountpoints"

# A snapshot without its backup, complete or being made, is one a killed run
# (SIGKILL, a power cut) left: useless without its label and WAL, and no
# prune would ever find it.
snapshots=$(zfs list -H -t snapshot -o name -d 1 "$DATASET")
for snap in $snapshots; do
	label=${snap#*@}
	if [[ $label == pgfbb-[0-9]* ]] && [ ! -e "$STAGING/$label" ] && ! compgen -G "$STAGING/.$label.partial-*" >/dev/null; then
		echo "zfs-backup: destroying $snap, a snapshot without its backup" >&2
		zfs destroy -r "$snap"
	fi
done
label=pgfbb-$(date -u +%Y%m%dT%H%M%SZ)-$$

pgfbb-wrap --staging "$STAGING" --label "$label" "${covers[@]}" \
	--keep-last "$KEEP" --delete-command "zfs destroy -r $DATASET@\${PGFBB_LABEL}" -- \
	zfs snapshot -r "$DATASET@$label"

if [ -n "$SHIP_DIR" ]; then
	# A stream cut short never looks complete: it gets its name at the end.
	trap 'rm -f "$SHIP_DIR/$label".*.partial' EXIT
	zfs send -R "$DATASET@$label" >"$SHIP_DIR/$label.zfs.partial"
	tar -C "$STAGING" -cf "$SHIP_DIR/$label.staged.tar.partial" "$label"
	sync -f "$SHIP_DIR/$label.zfs.partial"
	mv "$SHIP_DIR/$label.zfs.partial" "$SHIP_DIR/$label.zfs"
	mv "$SHIP_DIR/$label.staged.tar.partial" "$SHIP_DIR/$label.staged.tar"
	# The newest SHIP_KEEP stay, each a stream and its staged files.
	find "$SHIP_DIR" -maxdepth 1 -name 'pgfbb-*.zfs' | sort -r | tail -n "+$((SHIP_KEEP + 1))" |
		while read -r old; do rm -- "$old" "${old%.zfs}.staged.tar"; done
fi
