#!/usr/bin/env bash
# ZFS: a recursive snapshot covers PGDATA and any child datasets (pg_wal,
# tablespaces) atomically; the staged label and WAL are kept in a dataset of
# their own and snapshotted right after, under the same name.
set -euo pipefail

DATASET=tank/pgdata
STAGING_DATASET=tank/pgbackup
STAGING=/tank/pgbackup
LABEL=pgfbb-$(date -u +%Y%m%dT%H%M%SZ)

export PGHOST=/var/run/postgresql PGUSER=postgres

pgfbb-wrap --staging "$STAGING" --label "$LABEL" --command "zfs snapshot -r $DATASET@\${PGFBB_LABEL}"
zfs snapshot "$STAGING_DATASET@$LABEL"
# Ship both: zfs send -R $DATASET@$LABEL | ... ; zfs send $STAGING_DATASET@$LABEL | ...
