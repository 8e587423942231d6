package pgbackup

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Archiver is the state of the server's WAL archiver, from pg_stat_archiver.
type Archiver struct {
	ArchivedCount    int64
	LastArchivedWAL  string
	LastArchivedTime time.Time
	FailedCount      int64
	LastFailedWAL    string
	LastFailedTime   time.Time
}

// Archiver reads pg_stat_archiver, which every role may read.
func (s *Session) Archiver(ctx context.Context) (*Archiver, error) {
	var a Archiver
	var archived, failed sql.NullString
	var archivedAt, failedAt sql.NullTime
	err := s.conn.QueryRowContext(ctx, `SELECT archived_count, last_archived_wal, last_archived_time,
       failed_count, last_failed_wal, last_failed_time FROM pg_catalog.pg_stat_archiver`).Scan(
		&a.ArchivedCount, &archived, &archivedAt, &a.FailedCount, &failed, &failedAt)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_archiver: %w", s.classify(ctx, err))
	}
	a.LastArchivedWAL, a.LastArchivedTime = archived.String, archivedAt.Time
	a.LastFailedWAL, a.LastFailedTime = failed.String, failedAt.Time
	return &a, nil
}

// Archived tells whether the archiver is past name. It archives ready files
// in name order and retries a failing one until it succeeds, so every file
// that sorts before the last archived one is archived too.
func (a *Archiver) Archived(name string) bool { return a.LastArchivedWAL >= name }

// String is what a DBA needs to see when archiving lags: the failures first.
func (a *Archiver) String() string {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	}
	s := fmt.Sprintf("pg_stat_archiver: failed_count %d", a.FailedCount)
	if a.LastFailedWAL != "" {
		s += fmt.Sprintf(", last_failed_wal %s at %s", a.LastFailedWAL, at(a.LastFailedTime))
	}
	return s + fmt.Sprintf(", last_archived_wal %q at %s", a.LastArchivedWAL, at(a.LastArchivedTime))
}
