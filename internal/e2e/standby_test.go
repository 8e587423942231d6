package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// TestStandby backs up a streaming hot standby of a primary under pgbench
// load, restores the backups, then promotes the standby mid-backup, and
// finally backs up the promoted server, now on timeline 2.
func TestStandby(t *testing.T) {
	pgtest.Each(t, pgtest.MajorTargets(t), func(t *testing.T, tg pgtest.Target) { standby(t, tg.Install) })
}

func standby(t *testing.T, in pgtest.Install) {
	parent := t
	b := newBench(t, in, pgtest.Options{})
	dir := b.fs.Subvolume(t, "standby")
	pgtest.Chown(t, dir)
	s := b.c.Standby(t, dir)
	b.c.WaitReplayed(t, s)
	sdb := s.DB(t)
	// Restores of the standby's backups are checked like the primary's.
	sb := &bench{fs: b.fs, c: s, snaps: b.snaps, markers: "before"}
	snapshot := []string{"--", "sh", "-c", `sleep 1 && btrfs subvolume snapshot -r "$PGFBB_PGDATA" ` + b.snaps + `/${PGFBB_LABEL} && sleep 1`}
	backup := func(t *testing.T, label string, args ...string) (backupDir string, r result) {
		t.Helper()
		st := filepath.Join(t.TempDir(), "staging")
		r = runTool(t, s.Env(), append(append([]string{"--staging", st, "--label", label}, args...), snapshot...)...)
		return filepath.Join(st, label), r
	}
	labelFrom := func(t *testing.T, backupDir string) string {
		data, err := os.ReadFile(filepath.Join(backupDir, staged.LabelFile))
		if err != nil {
			t.Fatal(err)
		}
		bl, err := pgformat.ParseBackupLabel(data)
		if err != nil {
			t.Fatal(err)
		}
		return bl.From
	}

	t.Run("idle primary: the last segment is partial", func(t *testing.T) {
		// A write without a segment switch leaves the standby mid-segment.
		pgtest.Exec(t, b.c.DB(t), "CREATE TABLE idle AS SELECT 1 AS i")
		b.c.WaitReplayed(t, s)
		backupDir, r := backup(t, "idle")
		r.want(t, 0, "backup from a standby: its last WAL segment", "is still being filled")
		m := readManifest(t, backupDir)
		if m.BackupFrom != "standby" || m.WALZeroedFrom < m.StopLSN || labelFrom(t, backupDir) != "standby" {
			t.Errorf("manifest backup_from %q, wal_zeroed_from %s, stop %s; label from %q", m.BackupFrom, m.WALZeroedFrom, m.StopLSN, labelFrom(t, backupDir))
		}
		runTool(t, nil, "verify", backupDir).want(t, 0)
		sb.restoreAndCheck(t, filepath.Join(b.snaps, "idle"), backupDir)
	})

	t.Run("pgbench on the primary, WAL read over SQL", func(t *testing.T) {
		stop := b.load(t, 300*time.Millisecond)
		backupDir, r := backup(t, "busy", "--wal-source=sql")
		stop()
		r.want(t, 0)
		m := readManifest(t, backupDir)
		if m.BackupFrom != "standby" || m.StartWAL == m.StopWAL || m.WALSource != "sql:pg_read_binary_file" {
			t.Errorf("manifest backup_from %q, WAL %s..%s from %s", m.BackupFrom, m.StartWAL, m.StopWAL, m.WALSource)
		}
		t.Logf("WAL %s..%s, zeroed from %s", m.StartWAL, m.StopWAL, m.WALZeroedFrom)
		runTool(t, nil, "verify", backupDir).want(t, 0)
		sb.restoreAndCheck(t, filepath.Join(b.snaps, "busy"), backupDir)
	})

	t.Run("archive_mode = always: --wal=archive waits for the standby's archiver", func(t *testing.T) {
		archive := pgtest.TempDir(parent) // the promoted server archives there too
		s.Stop(t)
		// Plain cp: after the promotion below, the server archives files of
		// the old timeline the standby archived already.
		s.AppendConf(t, "archive_mode = always", "archive_command = 'cp %p "+archive+"/%f'")
		s.Start(t)
		sdb = s.DB(parent) // used by the later subtests
		b.c.WaitReplayed(t, s)
		// The standby archives its last segment once the primary has
		// moved past it.
		stopSwitch := switchWAL(t, b.c, 300*time.Millisecond)
		backupDir, r := backup(t, "archived", "--wal=archive", "--archive-timeout", "2m")
		stopSwitch()
		r.want(t, 0)
		m := readManifest(t, backupDir)
		if m.Archive == nil || !m.Archive.Confirmed || len(m.Archive.Required) != 1 || m.Archive.Required[0] != m.StopWAL {
			t.Fatalf("manifest archive %+v, want the stop segment %s alone (a standby writes no .backup file)", m.Archive, m.StopWAL)
		}
		if _, err := os.Stat(filepath.Join(archive, m.StopWAL)); err != nil {
			t.Errorf("confirmed, but: %v", err)
		}
		runTool(t, nil, "verify", backupDir).want(t, 0, "from the WAL archive")
	})

	t.Run("promoted during the backup", func(t *testing.T) {
		b.c.WaitReplayed(t, s) // the primary's last rows are on the standby
		promotedDuringBackup(t, s)
	})

	t.Run("the promoted server on timeline 2", func(t *testing.T) {
		sb.markers = pgtest.QueryString(t, sdb, "SELECT string_agg(phase, ',' ORDER BY phase) FROM marker")
		backupDir, r := backup(t, "tli2", "--fast", "--archive-timeout", "1m")
		r.want(t, 0)
		m := readManifest(t, backupDir)
		list, _ := os.ReadFile(filepath.Join(backupDir, staged.WALListFile))
		if m.Timeline != 2 || m.BackupFrom != "primary" || !strings.Contains(string(list), "00000002.history\n") {
			t.Errorf("manifest timeline %d, backup_from %q; wal_list:\n%s", m.Timeline, m.BackupFrom, list)
		}
		runTool(t, nil, "verify", backupDir).want(t, 0)
		sb.restoreAndCheck(t, filepath.Join(b.snaps, "tli2"), backupDir)
	})
}

// promotedDuringBackup backs up the standby s with a snapshot command that
// promotes it, and checks that the backup fails as it must.
func promotedDuringBackup(t *testing.T, s *pgtest.Cluster) {
	t.Helper()
	st := filepath.Join(t.TempDir(), "staging")
	// What pg_ctl promote does, on every version; then wait for it.
	promote := `touch "$PGFBB_PGDATA/promote" && kill -USR1 $(head -1 "$PGFBB_PGDATA/postmaster.pid") && ` +
		`until [ "$(` + s.ClientBin(t, "psql") + ` -Atc "SELECT pg_is_in_recovery()")" = f ]; do sleep 0.1; done`
	r := runTool(t, s.Env(), "--staging", st, "--label", "promoted", "--", "sh", "-c", promote)
	r.want(t, 1, "stop: ", "the standby was promoted during the backup: this backup is unusable")
	assertNothingPublished(t, st)
	waitClean(t, s.DB(t))
}
