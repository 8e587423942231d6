package pgtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Target is one server configuration the version-matrix tests run against.
type Target struct {
	Install
	WALSegSizeMB int // initdb --wal-segsize; 0 for the default 16 MB
}

// Name names the target in test names and result tables.
func (tg Target) Name() string {
	if tg.WALSegSizeMB == 0 {
		return fmt.Sprintf("pg%d", tg.Major)
	}
	return fmt.Sprintf("pg%d-wal%dMB", tg.Major, tg.WALSegSizeMB)
}

// InitArgs are the initdb arguments the target needs.
func (tg Target) InitArgs() []string {
	if tg.WALSegSizeMB == 0 {
		return nil
	}
	return []string{"--wal-segsize=" + strconv.Itoa(tg.WALSegSizeMB)}
}

// SegmentSize is the target's WAL segment size in bytes.
func (tg Target) SegmentSize() uint64 {
	if tg.WALSegSizeMB == 0 {
		return 16 << 20
	}
	return uint64(tg.WALSegSizeMB) << 20
}

// AllTargets is the full matrix: every supported major with default segments,
// plus non-default segment sizes, which initdb accepts from 11 on.
const AllTargets = "10,11,12,13,14,15,16,17,18,12:1,17:64"

// Matrix returns the targets PGFBB_TEST_PG selects: "all" (AllTargets), a
// list like "10,15,18" with optional ":SEGSIZE_MB" ("12:1"), or, when unset,
// the system's PostgreSQL alone.
func Matrix(t testing.TB) []Target {
	t.Helper()
	spec := os.Getenv("PGFBB_TEST_PG")
	if spec == "" {
		return []Target{{Install: DefaultInstall(t)}}
	}
	if spec == "all" {
		spec = AllTargets
	}
	var targets []Target
	for _, item := range strings.Split(spec, ",") {
		majorStr, segStr, _ := strings.Cut(strings.TrimSpace(item), ":")
		major, err := strconv.Atoi(majorStr)
		if err != nil {
			t.Fatalf("PGFBB_TEST_PG=%q: %q is not a major version", spec, item)
		}
		tg := Target{Install: Fetch(t, major)}
		if segStr != "" {
			if tg.WALSegSizeMB, err = strconv.Atoi(segStr); err != nil {
				t.Fatalf("PGFBB_TEST_PG=%q: %q is not a segment size in MB", spec, item)
			}
		}
		targets = append(targets, tg)
	}
	return targets
}

// MajorTargets is Matrix without the non-default segment sizes, for tests in
// which the segment size changes nothing.
func MajorTargets(t testing.TB) []Target {
	t.Helper()
	var majors []Target
	for _, tg := range Matrix(t) {
		if tg.WALSegSizeMB == 0 {
			majors = append(majors, tg)
		}
	}
	return majors
}

// SpotTargets are the system's server and, of the majors Matrix selects,
// 10, 14 and 18: the oldest, the last with pg_start_backup, and the newest.
// They are for suites too long to run on every major that must still meet
// each backup API.
func SpotTargets(t testing.TB) []Target {
	t.Helper()
	targets := []Target{{Install: DefaultInstall(t)}}
	for _, tg := range MajorTargets(t) {
		if tg.Major == 10 || tg.Major == 14 || tg.Major == 18 {
			targets = append(targets, tg)
		}
	}
	return targets
}

// BackupFunctions are the backup functions of the install's major as GRANT
// names them: written here apart from pgbackup's table, so that tests check
// that table rather than repeat it.
func (in Install) BackupFunctions() (start, stop string) {
	if in.Major < 15 {
		return "pg_catalog.pg_start_backup(text, boolean, boolean)", "pg_catalog.pg_stop_backup(boolean, boolean)"
	}
	return "pg_catalog.pg_backup_start(text, boolean)", "pg_catalog.pg_backup_stop(boolean)"
}

// Each runs test once per target, as parallel subtests named by the target:
// their clusters and file systems are their own, and on a two-core CI
// machine the matrix is most of the suite's time. go test -parallel bounds
// how many run at once.
func Each(t *testing.T, targets []Target, test func(t *testing.T, tg Target)) {
	t.Helper()
	for _, tg := range targets {
		t.Run(tg.Name(), func(t *testing.T) {
			t.Parallel()
			test(t, tg)
		})
	}
}
