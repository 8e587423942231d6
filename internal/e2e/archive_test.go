package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// TestArchive backs up a cluster that archives its WAL: the end of each
// backup waits for the archiver, and a failing archive_command is reported
// with what pg_stat_archiver says about it.
func TestArchive(t *testing.T) {
	pgtest.Each(t, pgtest.SpotTargets(t), func(t *testing.T, tg pgtest.Target) { archive(t, tg.Install) })
}

func archive(t *testing.T, in pgtest.Install) {
	archive := pgtest.TempDir(t)
	broken := filepath.Join(archive, "broken")
	b := newBench(t, in, pgtest.Options{Conf: []string{
		"archive_mode = on",
		// Creating the file "broken" makes archiving fail, without a restart.
		"archive_command = 'test ! -f " + broken + " && test ! -f " + archive + "/%f && cp %p " + archive + "/%f'",
	}})
	db := b.c.DB(t)
	env := b.c.Env()
	staging := func(t *testing.T) string { return filepath.Join(t.TempDir(), "staging") }
	breakArchive := func(t *testing.T) {
		if err := os.WriteFile(broken, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(broken) })
	}

	t.Run("wal=archive waits for the archiver and restores from the archive", func(t *testing.T) {
		stop := b.load(t, 400*time.Millisecond)
		st := staging(t)
		r := runTool(t, env, "--staging", st, "--label", "arch", "--fast", "--wal=archive", "-v", "--",
			"sh", "-c", `sleep 2 && btrfs subvolume snapshot -r "$PGFBB_PGDATA" `+b.snaps+`/${PGFBB_LABEL} && sleep 2`)
		stop()
		r.want(t, 0, "backup arch complete")
		backupDir := filepath.Join(st, "arch")
		m := readManifest(t, backupDir)
		if m.WALMode != staged.WALArchive || m.Archive == nil || !m.Archive.Confirmed || m.Archive.Method != "archive_status" {
			t.Fatalf("manifest wal_mode %q, archive %+v", m.WALMode, m.Archive)
		}
		for _, name := range m.Archive.Required {
			if _, err := os.Stat(filepath.Join(archive, name)); err != nil {
				t.Errorf("confirmed as archived, but: %v", err)
			}
		}
		if _, err := os.Stat(filepath.Join(backupDir, staged.WALDir)); !os.IsNotExist(err) {
			t.Errorf("--wal=archive staged WAL: %v", err)
		}
		runTool(t, nil, "verify", backupDir).want(t, 0, "from the WAL archive")
		b.restoreAndCheck(t, filepath.Join(b.snaps, "arch"), backupDir, "--restore-command", "cp "+archive+"/%f %p")
	})

	t.Run("wal=archive with failing archiving fails and says why", func(t *testing.T) {
		breakArchive(t)
		st := staging(t)
		r := runTool(t, env, "--staging", st, "--label", "broken", "--fast", "--wal=archive", "--archive-timeout", "3s", "--", "true")
		r.want(t, 1, "archive: ", "not archived within --archive-timeout 3s", "pg_stat_archiver: failed_count", "last_failed_wal 0000000", "nothing was published")
		assertNothingPublished(t, st)
		waitClean(t, db)
	})

	t.Run("wal=copy with failing archiving publishes and warns", func(t *testing.T) {
		breakArchive(t)
		st := staging(t)
		r := runTool(t, env, "--staging", st, "--label", "copied", "--fast", "--archive-timeout", "2s", "--", "true")
		r.want(t, 0, "the backup is complete with its staged WAL, but archiving is failing", "last_failed_wal")
		m := readManifest(t, filepath.Join(st, "copied"))
		if m.Archive == nil || m.Archive.Confirmed || len(m.Archive.Required) != 2 {
			t.Errorf("manifest archive %+v, want an unconfirmed check", m.Archive)
		}
		waitClean(t, db)
	})

	t.Run("without access to the data directory pg_stat_archiver decides", func(t *testing.T) {
		// A role without pg_read_all_settings cannot learn data_directory.
		pgtest.Exec(t, db, "CREATE ROLE archcheck LOGIN REPLICATION")
		start, stop := in.BackupFunctions()
		pgtest.Exec(t, db, "GRANT EXECUTE ON FUNCTION "+start+", "+stop+" TO archcheck")
		st := staging(t)
		runTool(t, append(env, "PGUSER=archcheck"), "--staging", st, "--label", "sql", "--fast", "--wal=archive", "--", "true").want(t, 0)
		if m := readManifest(t, filepath.Join(st, "sql")); m.Archive == nil || !m.Archive.Confirmed || m.Archive.Method != "pg_stat_archiver" {
			t.Errorf("manifest archive %+v", m.Archive)
		}
		waitClean(t, db)
	})

	t.Run("wal=archive refused when the server does not archive", func(t *testing.T) {
		plain := pgtest.New(t, in, pgtest.Options{})
		r := runTool(t, plain.Env(), "--staging", staging(t), "--wal=archive", "--", "true")
		r.want(t, 3, "--wal=archive relies on the WAL archive, but archive_mode is off")
	})
}
