package pgformat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ArchiveDone tells whether the server has archived the WAL file name of the
// pg_wal directory pgwal, judged as PostgreSQL itself judges it when
// pg_backup_stop waits for the archive: a .done status file means archived,
// a .ready one means not yet, and with neither, a file that is gone was
// archived and recycled while one still present is about to be marked.
func ArchiveDone(pgwal, name string) (bool, error) {
	exists := func(p string) (bool, error) {
		_, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("archive status of %s: %w", name, err)
		}
		return true, nil
	}
	status := filepath.Join(pgwal, "archive_status", name)
	if done, err := exists(status + ".done"); done || err != nil {
		return done, err
	}
	if ready, err := exists(status + ".ready"); ready || err != nil {
		return false, err
	}
	present, err := exists(filepath.Join(pgwal, name))
	return !present, err
}
