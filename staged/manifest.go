package staged

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/volume"
)

// StatusComplete is the only status a published manifest has: a backup that
// failed is never published.
const StatusComplete = "complete"

// FormatVersion is the manifest format this tool writes and the newest it
// reads: a reader refuses a manifest it might misunderstand.
const FormatVersion = 1

// WALMode says how a backup's WAL is kept.
type WALMode string

// The WAL modes.
const (
	WALCopy    WALMode = "copy"    // every WAL file the restore needs is staged with the backup
	WALArchive WALMode = "archive" // label and map are staged; the WAL is in the archive, which was checked
	WALSkip    WALMode = "skip"    // label and map only, nothing checked: the site handles WAL
)

// ParseWALMode checks a --wal value.
func ParseWALMode(s string) (WALMode, error) {
	switch m := WALMode(s); m {
	case WALCopy, WALArchive, WALSkip:
		return m, nil
	}
	return "", fmt.Errorf("--wal=%q: want copy, archive or skip", s)
}

// Where a backup was taken, as the manifest's backup_from records it.
const (
	FromPrimary = "primary"
	FromStandby = "standby"
)

// Manifest describes a staged backup. It is written last, so its presence
// under the backup's final name means every file it lists is complete.
type Manifest struct {
	FormatVersion    int                   `json:"format_version"`
	Tool             string                `json:"tool"`
	Label            string                `json:"label"`
	Status           string                `json:"status"`
	ServerVersionNum int                   `json:"server_version_num"`
	SystemIdentifier string                `json:"system_identifier"` // a string: JSON numbers lose uint64 precision in many readers
	Timeline         uint32                `json:"timeline"`
	StartLSN         pgformat.LSN          `json:"start_lsn"`
	StopLSN          pgformat.LSN          `json:"stop_lsn"`
	StartWAL         string                `json:"start_wal"`
	StopWAL          string                `json:"stop_wal"`
	WALSegmentSize   uint64                `json:"wal_segment_size"`
	BackupFrom       string                `json:"backup_from"`               // primary or standby
	WALZeroedFrom    pgformat.LSN          `json:"wal_zeroed_from,omitempty"` // a standby's last segment was partial: zeros from here
	WALMode          WALMode               `json:"wal_mode"`
	WALSource        string                `json:"wal_source,omitempty"`
	PGData           string                `json:"pgdata,omitempty"`
	StartedAt        time.Time             `json:"started_at"`
	StoppedAt        time.Time             `json:"stopped_at"`
	BackupModeSecs   float64               `json:"backup_mode_seconds"`
	Command          *Command              `json:"command,omitempty"`
	Tablespaces      []pgformat.Tablespace `json:"tablespaces"`
	Volumes          []volume.Place        `json:"volumes,omitempty"` // where each directory lived, when the tool could see it
	Covers           []string              `json:"covers,omitempty"`  // what the snapshot was declared to cover, checked against Volumes
	Archive          *ArchiveCheck         `json:"archive,omitempty"`
	Files            []File                `json:"files"`
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

// File is one staged file, as recorded in the manifest.
type File struct {
	Path   string `json:"path"` // relative to the backup directory, "/"-separated
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ParseManifest decodes a manifest, refusing one of a format this version
// does not know.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.FormatVersion < 1 || m.FormatVersion > FormatVersion {
		return nil, fmt.Errorf("manifest: format_version %d, this pgfbb-wrap reads 1 to %d: use a newer one", m.FormatVersion, FormatVersion)
	}
	return &m, nil
}
