#!/usr/bin/env bash
# restic: a btrfs snapshot backup shipped off the host. One restic snapshot
# holds the read-only snapshot of the data directory and the staged label and
# WAL; then both local copies go and restic's retention runs. Restoring: the
# README's "Restoring from restic". Run as root.
#
# Settings come from the environment, with the defaults below: restic's own
# (RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE, ...) and pgfbb-wrap's PGFBB_*
# pass through.
set -euo pipefail
# cron starts with PATH=/usr/bin:/bin: pgfbb-wrap is in /usr/local/bin,
# the volume tools in /sbin.
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

: "${PGDATA_SUBVOL:=/srv/pgdata}"                   # the subvolume that holds the whole cluster
: "${SNAPDIR:=/srv/snapshots}"                       # on the same btrfs file system
: "${STAGING:=/var/backups/pg}"                      # label and WAL until they are shipped
: "${RESTIC_TAG:=pgfbb}"                             # one tag per cluster sharing a repository
: "${RESTIC_KEEP:=--keep-daily 7 --keep-weekly 4}" # restic forget's policy
export PGHOST="${PGHOST:-/var/run/postgresql}" PGUSER="${PGUSER:-postgres}"

install -d -m 0700 "$STAGING"
mkdir -p "$SNAPDIR"
# A label of this run alone ($$): the cleanup below removes nothing of another.
label=pgfbb-$(date -u +%Y%m%dT%H%M%SZ)-$$
# The delete command is one string, split like a shell would: single quotes.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
snapdir=$(quote "$SNAPDIR")

# Set before the backup: whatever happens later, this run leaves no local
# copy behind. (A backup that fails after its snapshot has it deleted by
# pgfbb-wrap itself, through --delete-command.)
cleanup() {
	if [ -d "$SNAPDIR/$label" ]; then btrfs subvolume delete "$SNAPDIR/$label" >/dev/null; fi
	rm -rf "${STAGING:?}/$label"
}
trap cleanup EXIT

pgfbb-wrap --staging "$STAGING" --label "$label" --fast --covers "$PGDATA_SUBVOL" \
	--delete-command "btrfs subvolume delete $snapdir/\${PGFBB_LABEL}" -- \
	btrfs subvolume snapshot -r "$PGDATA_SUBVOL" "$SNAPDIR/$label" >/dev/null

restic backup --quiet --tag "$RESTIC_TAG" "$SNAPDIR/$label" "$STAGING/$label"
# Grouped by host and tags, not paths: every night's paths differ (they hold
# the label), and grouping by them would make each snapshot a group of its
# own, which no policy ever removes.
# shellcheck disable=SC2086 # RESTIC_KEEP is a list of options
restic forget --quiet --tag "$RESTIC_TAG" --group-by host,tags $RESTIC_KEEP --prune
