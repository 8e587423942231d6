#!/usr/bin/env bash
# Pre-snapshot hook for orchestrators that run one command before the snapshot
# and another after it (vzdump/Veeam pre-post scripts, SnapCenter, Velero exec
# hooks, a cron script's "pre" step). Pair it with post.sh.
#
# Returns once the backup has started; its output is PGFBB_LABEL=... lines
# that a calling shell may eval, to name its snapshot after the label. A held
# backup of the cluster makes it fail (exit 2), so a second run never disturbs
# a backup in progress.
set -euo pipefail
# cron starts with PATH=/usr/bin:/bin: pgfbb-wrap is in /usr/local/bin.
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

: "${PGFBB_STAGING:=/var/backups/pg/staging}" # where post publishes the backup
: "${LABEL:=}"                                 # empty: pgfbb-YYYYMMDDTHHMMSSZ, one per backup
: "${HOLD_TIMEOUT:=2h}"                        # longer than the snapshot can take
export PGFBB_STAGING PGHOST="${PGHOST:-/var/run/postgresql}" PGUSER="${PGUSER:-postgres}"

install -d -m 0700 "$PGFBB_STAGING" # parents too, on a host's first run
exec pgfbb-wrap pre ${LABEL:+--label "$LABEL"} --fast --hold-timeout "$HOLD_TIMEOUT"
