package pgbackup

import (
	"fmt"
	"strconv"
)

// api is what one PostgreSQL major offers a backup session. Every
// difference between majors that this package acts on is a column here, so
// supporting a new major means adding its row (and testing it).
type api struct {
	since int // the row's first server_version_num

	// The backup functions as has_function_privilege spells them, and the
	// queries that call them: 10-14 default to an exclusive backup, so
	// their start says false explicitly; 15 renamed both.
	startFunc, stopFunc string
	startSQL, stopSQL   string

	// backupFrom is how backup_label's BACKUP FROM names a primary.
	backupFrom string
	// idleSessionTimeout: the server has idle_session_timeout (14+),
	// which would end the session while the snapshot runs.
	idleSessionTimeout bool
	// slotInvalidation: max_slot_wal_keep_size can invalidate the
	// WAL-retention slot (13+).
	slotInvalidation bool
	// readFileGrant: EXECUTE on pg_read_binary_file can be granted (11+);
	// on 10 only a superuser may read WAL over SQL.
	readFileGrant bool
}

const (
	startFunc10 = "pg_catalog.pg_start_backup(text, boolean, boolean)"
	stopFunc10  = "pg_catalog.pg_stop_backup(boolean, boolean)"
	startSQL10  = "SELECT pg_catalog.pg_start_backup($1, $2, false)::text"
	stopSQL10   = "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_stop_backup(false, false)"
	startFunc15 = "pg_catalog.pg_backup_start(text, boolean)"
	stopFunc15  = "pg_catalog.pg_backup_stop(boolean)"
	startSQL15  = "SELECT pg_catalog.pg_backup_start($1, $2)::text"
	stopSQL15   = "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_backup_stop(false)"
)

// apis has a row per major, oldest first. A server newer than the last row
// is driven like the last row.
var apis = []api{
	{since: 100000, startFunc: startFunc10, stopFunc: stopFunc10, startSQL: startSQL10, stopSQL: stopSQL10, backupFrom: "master"},
	{since: 110000, startFunc: startFunc10, stopFunc: stopFunc10, startSQL: startSQL10, stopSQL: stopSQL10, backupFrom: "master", readFileGrant: true},
	{since: 120000, startFunc: startFunc10, stopFunc: stopFunc10, startSQL: startSQL10, stopSQL: stopSQL10, backupFrom: "master", readFileGrant: true},
	{since: 130000, startFunc: startFunc10, stopFunc: stopFunc10, startSQL: startSQL10, stopSQL: stopSQL10, backupFrom: "master", readFileGrant: true, slotInvalidation: true},
	{since: 140000, startFunc: startFunc10, stopFunc: stopFunc10, startSQL: startSQL10, stopSQL: stopSQL10, backupFrom: "primary", readFileGrant: true, slotInvalidation: true, idleSessionTimeout: true},
	{since: 150000, startFunc: startFunc15, stopFunc: stopFunc15, startSQL: startSQL15, stopSQL: stopSQL15, backupFrom: "primary", readFileGrant: true, slotInvalidation: true, idleSessionTimeout: true},
	{since: 160000, startFunc: startFunc15, stopFunc: stopFunc15, startSQL: startSQL15, stopSQL: stopSQL15, backupFrom: "primary", readFileGrant: true, slotInvalidation: true, idleSessionTimeout: true},
	{since: 170000, startFunc: startFunc15, stopFunc: stopFunc15, startSQL: startSQL15, stopSQL: stopSQL15, backupFrom: "primary", readFileGrant: true, slotInvalidation: true, idleSessionTimeout: true},
	{since: 180000, startFunc: startFunc15, stopFunc: stopFunc15, startSQL: startSQL15, stopSQL: stopSQL15, backupFrom: "primary", readFileGrant: true, slotInvalidation: true, idleSessionTimeout: true},
}

// MinVersionNum is the oldest server_version_num supported: non-exclusive
// backups with a temporary slot need PostgreSQL 10.
var MinVersionNum = apis[0].since

// apiFor returns the row for server_version_num num, which is at least
// MinVersionNum.
func apiFor(num int) api {
	row := apis[0]
	for _, a := range apis {
		if a.since <= num {
			row = a
		}
	}
	return row
}

func versionString(num int) string {
	if num >= MinVersionNum {
		return strconv.Itoa(num / 10000)
	}
	return fmt.Sprintf("%d.%d", num/10000, num/100%100)
}
