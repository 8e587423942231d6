package walcollect

import (
	"time"

	"github.com/pgfbb/pgfbb-wrap/volume"
)

// StatusComplete is the only status a published manifest has: a backup that
// failed is never published.
const StatusComplete = "complete"

// Manifest describes a staged backup. It is written last, so its presence
// under the backup's final name means every file it lists is complete.
type Manifest struct {
	FormatVersion    int            `json:"format_version"`
	Tool             string         `json:"tool"`
	Label            string         `json:"label"`
	Status           string         `json:"status"`
	ServerVersionNum int            `json:"server_version_num"`
	SystemIdentifier string         `json:"system_identifier"` // a string: JSON numbers lose uint64 precision in many readers
	Timeline         uint32         `json:"timeline"`
	StartLSN         LSN            `json:"start_lsn"`
	StopLSN          LSN            `json:"stop_lsn"`
	StartWAL         string         `json:"start_wal"`
	StopWAL          string         `json:"stop_wal"`
	WALSegmentSize   uint64         `json:"wal_segment_size"`
	BackupFrom       string         `json:"backup_from"`               // primary or standby
	WALZeroedFrom    LSN            `json:"wal_zeroed_from,omitempty"` // a standby's last segment was partial: zeros from here
	WALMode          string         `json:"wal_mode"`
	WALSource        string         `json:"wal_source,omitempty"`
	PGData           string         `json:"pgdata,omitempty"`
	StartedAt        time.Time      `json:"started_at"`
	StoppedAt        time.Time      `json:"stopped_at"`
	BackupModeSecs   float64        `json:"backup_mode_seconds"`
	Command          *Command       `json:"command,omitempty"`
	Tablespaces      []Tablespace   `json:"tablespaces"`
	Volumes          []volume.Place `json:"volumes,omitempty"` // where each directory lived, when the tool could see it
	Covers           []string       `json:"covers,omitempty"`  // what the snapshot was declared to cover, checked against Volumes
	Archive          *ArchiveCheck  `json:"archive,omitempty"`
	Files            []File         `json:"files"`
}

// Command records the snapshot command a backup was wrapped around.
type Command struct {
	Argv        []string `json:"argv"`
	ExitCode    int      `json:"exit_code"`
	DurationSec float64  `json:"duration_seconds"`
}

// ArchiveCheck records the wait for the server's archiver at the end of a
// backup: the files a restore from the archive needs beyond what was already
// archived, and whether the archiver was seen to archive them.
type ArchiveCheck struct {
	Required    []string `json:"required"`
	Confirmed   bool     `json:"confirmed"`
	Method      string   `json:"method"` // archive_status (the server's files) or pg_stat_archiver
	WaitSeconds float64  `json:"wait_seconds"`
}

// Tablespace is a user tablespace at the end of the backup, as in
// tablespace_map (which restores it) plus its name.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"`
}
