#!/usr/bin/env bash
# restic: a btrfs snapshot backup shipped off the host. One restic snapshot
# holds the read-only snapshot of the data directory and the staged label and
# WAL; then both local copies go and restic's retention runs. A backup that
# could not be shipped stays and goes with the next run. Restoring: the
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
: "${RESTIC_TAG:=pgfbb}"                             # a tag per cluster sharing a repository (it starts
                                                     # the labels: letters, digits, . _ -)
: "${RESTIC_KEEP:=--keep-daily 7 --keep-weekly 4}" # restic forget's policy
: "${SHIP_FROM:=/run/pgfbb-ship/$RESTIC_TAG}"      # where a backup is bound while it ships
: "${LOCAL_KEEP:=7}"                                 # unshipped backups kept here at most (the newest)
export PGHOST="${PGHOST:-/var/run/postgresql}" PGUSER="${PGUSER:-postgres}"

install -d -m 0700 "$STAGING"
mkdir -p "$SNAPDIR"
# A label of this run alone ($$), which starts with the cluster's RESTIC_TAG.
label=$RESTIC_TAG-$(date -u +%Y%m%dT%H%M%SZ)-$$
# The delete command is one string, split like a shell would: single quotes.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
snapdir=$(quote "$SNAPDIR")

# Set before the backup. A backup made but not shipped (the repository
# locked or out of reach) stays, snapshot and staged files, and goes with
# the next run; anything else this run made goes. (A backup that fails after
# its snapshot has it deleted by pgfbb-wrap itself, through --delete-command.)
shipped=
cleanup() {
	if [ -d "$STAGING/$label" ] && [ -z "$shipped" ]; then
		echo "$(basename "$0"): backup $label is made but not shipped: the next run ships it" >&2
		return
	fi
	if [ -d "$SNAPDIR/$label" ]; then btrfs subvolume delete "$SNAPDIR/$label" >/dev/null; fi
	rm -rf "${STAGING:?}/$label"
}
trap cleanup EXIT
# A signal ends the script once the command running has ended, and the
# cleanup runs after it, not beside it.
trap 'exit 143' TERM
trap 'exit 130' INT

# bound LABEL COMMAND...: runs COMMAND with LABEL's snapshot and staged
# directory bound at SHIP_FROM, in a mount namespace of its own: the binds
# end with it, also when it is killed, and runs side by side do not meet.
bound() {
	mkdir -p "$SHIP_FROM/pgdata" "$SHIP_FROM/staged"
	unshare --mount --propagation private sh -euc '
		mount --bind "$1" "$3/pgdata"
		mount --bind "$2" "$3/staged"
		shift 3
		exec "$@"' bound "$SNAPDIR/$1" "$STAGING/$1" "$SHIP_FROM" "${@:2}"
}

# ship LABEL: the snapshot and its staged label and WAL into one restic
# snapshot, then both local copies go. restic reads only the files that
# changed since its parent, the newest snapshot of the same paths: so the
# backup is bound at fixed paths, SHIP_FROM/pgdata and SHIP_FROM/staged,
# and the label, new every night, is a tag.
# A snapshot of the label in the repository is one a killed run uploaded
# before it could delete the local copies: it is not made again. The
# snapshot's time is the label's, not the upload's, for retention.
ship() {
	local existing stamp=${1#"$RESTIC_TAG"-}
	stamp=${stamp:0:4}-${stamp:4:2}-${stamp:6:2}" "${stamp:9:2}:${stamp:11:2}:${stamp:13:2}
	existing=$(restic snapshots --quiet --tag "label=$1" --json) || return
	if [ "$existing" = "[]" ]; then
		bound "$1" env TZ=UTC restic backup --quiet --time "$stamp" --tag "$RESTIC_TAG" --tag "label=$1" "$SHIP_FROM" || return
	fi
	btrfs subvolume delete "$SNAPDIR/$1" >/dev/null || return
	rm -rf "${STAGING:?}/$1"
}

pgfbb-wrap --staging "$STAGING" --label "$label" --fast --covers "$PGDATA_SUBVOL" --keep-last "$LOCAL_KEEP" \
	--delete-command "btrfs subvolume delete $snapdir/\${PGFBB_LABEL}" -- \
	btrfs subvolume snapshot -r "$PGDATA_SUBVOL" "$SNAPDIR/$label" >/dev/null

# One run ships at a time. Under the lock, a snapshot without its staged
# backup (complete or being made) is one a killed run left, and a staged
# backup without its snapshot one whose shipping was killed after the
# snapshot went: neither is of use. Then earlier runs' backups that were
# made but not shipped go first; one that fails again stays for the next
# run and does not hold this run's own back.
exec 9>"$STAGING/.$(basename "$0").lock"
flock 9
for snap in "$SNAPDIR/$RESTIC_TAG"-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T*/; do
	old=$(basename "$snap")
	if [ -d "$snap" ] && ! compgen -G "$STAGING/.$old.partial-*" >/dev/null && [ ! -e "$STAGING/$old" ]; then
		echo "$(basename "$0"): deleting $snap, a snapshot without its backup" >&2
		btrfs subvolume delete "$snap" >/dev/null || echo "$(basename "$0"): warning: could not delete $snap" >&2
	fi
done
for dir in "$STAGING/$RESTIC_TAG"-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T*/; do
	old=$(basename "$dir")
	if [ ! -d "$dir" ] || [ "$old" = "$label" ]; then continue; fi
	if [ ! -d "$SNAPDIR/$old" ]; then
		rm -rf "$dir"
	elif ! ship "$old"; then
		echo "$(basename "$0"): warning: backup $old could not be shipped again: it stays for the next run" >&2
	fi
done
# Another run may have shipped this one while it waited for the lock.
if [ -d "$STAGING/$label" ]; then ship "$label"; fi
shipped=1

# Grouped by host and the fixed paths, not tags: every night's label tag
# differs, and grouping by it would make each snapshot a group of its own,
# which no policy ever removes.
# shellcheck disable=SC2086 # RESTIC_KEEP is a list of options
restic forget --quiet --tag "$RESTIC_TAG" --group-by host,paths $RESTIC_KEEP --prune
