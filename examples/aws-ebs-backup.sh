#!/usr/bin/env bash
# AWS EBS: the cluster on one EBS volume, its snapshot tagged with the label.
# create-snapshot returns at once, before the data is copied, but the
# snapshot holds the volume as it was at the call: backup mode may end as
# soon as the call returns. The staged label and WAL (on another volume) go
# to S3 under the label when S3_URI is set. Keeps the newest $KEEP backups:
# the prune deletes the older snapshots (found by their tag) and S3 copies.
#
# A cluster on several volumes (pg_wal, tablespaces, a RAID set) needs them
# all at one point in time: snapshot the instance's volumes with
# "aws ec2 create-snapshots" (crash-consistent together) and --covers each
# mount, or freeze the file systems (fsfreeze) around separate calls.
#
# Settings come from the environment, with the defaults below; the AWS CLI's
# own (AWS_PROFILE, AWS_REGION, ...) and pgfbb-wrap's PGFBB_* pass through.
set -euo pipefail
# cron starts with PATH=/usr/bin:/bin: pgfbb-wrap is in /usr/local/bin,
# the volume tools in /sbin.
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The prune's delete command: this script, called with "delete LABEL".
if [ "${1:-}" = delete ]; then
	ids=$(aws ec2 describe-snapshots --owner-ids self --filters "Name=tag:pgfbb-label,Values=$2" \
		--query 'Snapshots[].SnapshotId' --output text)
	for id in $ids; do aws ec2 delete-snapshot --snapshot-id "$id"; done
	if [ -n "${S3_URI:-}" ]; then aws s3 rm --quiet --recursive "$S3_URI/$2/"; fi
	exit 0
fi

: "${VOLUME_ID:?set VOLUME_ID to the EBS volume of the cluster (vol-...)}"
: "${PGDATA_MOUNT:=/var/lib/postgresql}" # where the volume is mounted: all of the cluster must be on it
: "${STAGING:=/var/backups/pg}"          # label and WAL, on another volume
: "${S3_URI:=}"                          # e.g. s3://bucket/pg
: "${KEEP:=7}"                           # complete backups to keep
export PGHOST="${PGHOST:-/var/run/postgresql}" PGUSER="${PGUSER:-postgres}" S3_URI

install -d -m 0700 "$STAGING"
label=pgfbb-$(date -u +%Y%m%dT%H%M%SZ)-$$
# The delete command is one string, split like a shell would: single quotes.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
self=$(quote "$(realpath "$0")")

# create-snapshot may have made the snapshot and still fail (a timeout, a
# signal): a run that publishes nothing deletes its snapshot by its tag.
trap 'rc=$?; [ -d "$STAGING/$label" ] || "$(realpath "$0")" delete "$label" ||
	echo "aws-ebs-backup: delete the snapshot tagged pgfbb-label=$label by hand" >&2; exit $rc' EXIT

pgfbb-wrap --staging "$STAGING" --label "$label" --covers "$PGDATA_MOUNT" --timeout 5m \
	--keep-last "$KEEP" --delete-command "$self delete \${PGFBB_LABEL}" -- \
	aws ec2 create-snapshot --volume-id "$VOLUME_ID" --description "pgfbb-wrap $label" \
	--tag-specifications "ResourceType=snapshot,Tags=[{Key=pgfbb-label,Value=$label}]" \
	--query SnapshotId --output text >/dev/null

if [ -n "$S3_URI" ]; then
	aws s3 cp --quiet --recursive "$STAGING/$label" "$S3_URI/$label/"
fi
