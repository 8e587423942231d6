package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgfbb/pgfbb-wrap/pgbackup"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/pgfbb/pgfbb-wrap/walcollect"
)

const archivePoll = 250 * time.Millisecond

// archiving tells whether the server archives the WAL it writes: a standby
// archives only with archive_mode = always.
func archiving(srv *pgbackup.Server) bool {
	return srv.ArchiveMode == "always" || (srv.ArchiveMode == "on" && !srv.InRecovery)
}

// waitArchived waits until the archiver has archived the backup's last
// segment and (on a primary) its backup history file, as
// pg_backup_stop(true) would, but
// bounded by --archive-timeout and after the label is safe. Locally it reads
// the server's archive_status files; without access, pg_stat_archiver.
func (r *run) waitArchived(ctx context.Context, plan *walcollect.Plan) (*staged.ArchiveCheck, error) {
	check := &staged.ArchiveCheck{
		Required: []string{pgformat.SegmentFileName(plan.Timeline, plan.LastSegment, plan.SegmentSize)},
		Method:   "pg_stat_archiver",
	}
	// A standby writes no backup history file.
	if !r.sess.Server().InRecovery {
		check.Required = append(check.Required, plan.BackupHistory)
	}
	pgwal := ""
	if r.pgdata != "" {
		if _, err := os.ReadDir(filepath.Join(r.pgdata, "pg_wal", "archive_status")); err == nil {
			pgwal, check.Method = filepath.Join(r.pgdata, "pg_wal"), "archive_status"
		}
	}
	// The session outlives a signal here; the wait itself does not.
	db := context.WithoutCancel(ctx)
	began := time.Now()
	defer r.progress("waiting for the archiver to archive "+strings.Join(check.Required, " and "),
		fixed(fmt.Sprintf("(--archive-timeout %s)", r.opts.ArchiveTimeout)))()
	for {
		pending, err := r.notArchived(db, pgwal, check.Required)
		check.WaitSeconds = time.Since(began).Seconds()
		if err != nil {
			return check, err
		}
		if len(pending) == 0 {
			check.Confirmed = true
			r.log.Info("archived", "files", check.Required, "method", check.Method)
			return check, nil
		}
		if time.Since(began) > r.opts.ArchiveTimeout {
			err := fmt.Errorf("%s not archived within --archive-timeout %s", strings.Join(pending, " and "), r.opts.ArchiveTimeout)
			qctx, cancel := context.WithTimeout(db, cleanupTimeout)
			defer cancel()
			if a, aerr := r.sess.Archiver(qctx); aerr == nil {
				err = fmt.Errorf("%w; %s", err, a)
			}
			return check, err
		}
		select {
		case <-ctx.Done():
			return check, context.Cause(ctx)
		case <-time.After(archivePoll):
		}
	}
}

// notArchived lists the names the archiver has not archived yet.
func (r *run) notArchived(ctx context.Context, pgwal string, names []string) ([]string, error) {
	var a *pgbackup.Archiver
	if pgwal == "" {
		qctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		defer cancel()
		var err error
		if a, err = r.sess.Archiver(qctx); err != nil {
			return nil, err
		}
	}
	var pending []string
	for _, name := range names {
		done := a != nil && a.Archived(name)
		if a == nil {
			var err error
			if done, err = pgformat.ArchiveDone(pgwal, name); err != nil {
				return nil, err
			}
		}
		if !done {
			pending = append(pending, name)
		}
	}
	return pending, nil
}
