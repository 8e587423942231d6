#!/usr/bin/env bash
# btrfs: PGDATA lives on a subvolume; each backup is a read-only snapshot
# beside its staged label and WAL. Keeps the newest $KEEP backups and deletes
# the older ones' snapshots with them; a backup that fails after its snapshot
# was taken has that snapshot deleted at once, and one a killed run left is
# deleted by the next. Run as root (btrfs needs it).
#
# Settings come from the environment, with the defaults below; pgfbb-wrap's
# own PGFBB_* variables (or a config file in PGFBB_CONFIG) pass through.
set -euo pipefail
# cron starts with PATH=/usr/bin:/bin: pgfbb-wrap is in /usr/local/bin,
# the volume tools in /sbin.
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

: "${PGDATA_SUBVOL:=/srv/pgdata}" # the subvolume that holds the whole cluster
: "${SNAPDIR:=/srv/snapshots}"     # on the same btrfs file system; this cluster's alone
: "${STAGING:=/var/backups/pg}"    # label and WAL, a directory per backup
: "${KEEP:=7}"                     # complete backups to keep
export PGHOST="${PGHOST:-/var/run/postgresql}" PGUSER="${PGUSER:-postgres}"

install -d -m 0700 "$STAGING"
mkdir -p "$SNAPDIR"
# The delete command is one string, split like a shell would: single quotes.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
snapdir=$(quote "$SNAPDIR")

# A snapshot without its backup, complete or being made, is one a killed run
# (SIGKILL, a power cut) left: useless without its label and WAL, and no
# prune would ever find it. The partial is looked for first: a run that
# publishes in between then has its backup found. SNAPDIR holds the
# snapshots of this STAGING's cluster alone.
for snap in "$SNAPDIR"/pgfbb-[0-9]*/; do
	label=$(basename "$snap")
	if [ -d "$snap" ] && ! compgen -G "$STAGING/.$label.partial-*" >/dev/null && [ ! -e "$STAGING/$label" ]; then
		echo "btrfs-backup: deleting $snap, a snapshot without its backup" >&2
		btrfs subvolume delete "$snap" >/dev/null || echo "btrfs-backup: warning: could not delete $snap" >&2
	fi
done

# --covers: refuse to back up once pg_wal or a tablespace lives outside the
# snapshotted subvolume (the snapshot would silently miss it).
exec pgfbb-wrap --staging "$STAGING" --fast --covers "$PGDATA_SUBVOL" \
	--keep-last "$KEEP" --delete-command "btrfs subvolume delete $snapdir/\${PGFBB_LABEL}" -- \
	btrfs subvolume snapshot -r "$PGDATA_SUBVOL" "$SNAPDIR/\${PGFBB_LABEL}" >/dev/null
