#!/usr/bin/env bash
# ZFS: one recursive snapshot takes the cluster's dataset and its children
# (pg_wal, tablespaces) atomically. The snapshots stay on the pool, the
# newest $KEEP of them with their staged label and WAL; with SHIP_DIR set,
# each backup is also written there, a directory holding a zfs send stream
# of each dataset and a tar of its staged directory. A snapshot a killed
# run left is destroyed by the next.
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

if ! [[ $SHIP_KEEP =~ ^[1-9][0-9]*$ ]]; then
	echo "zfs-backup: SHIP_KEEP=$SHIP_KEEP: want 1 or more" >&2
	exit 2
fi
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
# prune would ever find it. The partial is looked for first: a run that
# publishes in between then has its backup found.
snapshots=$(zfs list -H -t snapshot -o name -d 1 "$DATASET")
for snap in $snapshots; do
	label=${snap#*@}
	if [[ $label == pgfbb-[0-9]* ]] && ! compgen -G "$STAGING/.$label.partial-*" >/dev/null && [ ! -e "$STAGING/$label" ]; then
		echo "zfs-backup: destroying $snap, a snapshot without its backup" >&2
		zfs destroy -r "$snap" || echo "zfs-backup: warning: could not destroy $snap" >&2
	fi
done
label=pgfbb-$(date -u +%Y%m%dT%H%M%SZ)-$$

pgfbb-wrap --staging "$STAGING" --label "$label" "${covers[@]}" \
	--keep-last "$KEEP" --delete-command "zfs destroy -r $DATASET@\${PGFBB_LABEL}" -- \
	zfs snapshot -r "$DATASET@$label"

if [ -n "$SHIP_DIR" ]; then
	# One directory per backup: a stream of each dataset at the label alone
	# (zfs send -R would carry every older snapshot too) and a tar of the
	# staged label and WAL. It gets its name once complete; what a killed
	# run began goes first, under the lock.
	exec 9>"$SHIP_DIR/.zfs-backup.lock"
	flock 9
	rm -rf "$SHIP_DIR"/pgfbb-*.partial
	trap 'rm -rf "$SHIP_DIR/$label.partial"' EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
	mkdir "$SHIP_DIR/$label.partial"
	datasets=$(zfs list -H -o name -r "$DATASET")
	while read -r ds; do
		zfs send "$ds@$label" >"$SHIP_DIR/$label.partial/${ds//\//_}.zfs"
	done <<<"$datasets"
	tar -C "$STAGING" -cf "$SHIP_DIR/$label.partial/staged.tar" "$label"
	sync -f "$SHIP_DIR/$label.partial"
	mv -T "$SHIP_DIR/$label.partial" "$SHIP_DIR/$label"
	# The newest SHIP_KEEP stay (labels start with their date).
	find "$SHIP_DIR" -mindepth 1 -maxdepth 1 -type d -name 'pgfbb-[0-9]*' ! -name '*.partial' -print0 |
		sort -rz | tail -zn "+$((SHIP_KEEP + 1))" | xargs -0r rm -rf --
fi
