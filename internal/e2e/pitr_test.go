package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/btrfstest"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestPITR restores one backup, staged with --wal=archive, from a real WAL
// archive (archive_command copying into a directory) to every kind of
// recovery target, as a DBA does after an accidental DELETE, on 10, 12, 14
// and 18 (the system's server when none of them is selected). Each restore
// is checked by which marker rows exist after recovery.
func TestPITR(t *testing.T) {
	var targets []pgtest.Target
	for _, tg := range pgtest.MajorTargets(t) {
		if slices.Contains([]int{10, 12, 14, 18}, tg.Major) {
			targets = append(targets, tg)
		}
	}
	if len(targets) == 0 {
		targets = []pgtest.Target{{Install: pgtest.DefaultInstall(t)}}
	}
	pgtest.Each(t, targets, func(t *testing.T, tg pgtest.Target) { pitr(t, tg.Install) })
}

func pitr(t *testing.T, in pgtest.Install) {
	archive := pgtest.TempDir(t)
	b := newBench(t, in, pgtest.Options{Conf: []string{
		"archive_mode = on",
		"archive_command = 'test ! -f " + archive + "/%f && cp %p " + archive + "/%f'",
	}})
	db := b.c.DB(t)
	query := func(q string) string { t.Helper(); return pgtest.QueryString(t, db, q) }
	beforeBackup := query("SELECT now()::text")
	st := filepath.Join(t.TempDir(), "staging")
	runTool(t, b.c.Env(), "--staging", st, "--label", "pitr", "--fast", "--wal=archive", "--",
		"sh", "-c", `btrfs subvolume snapshot -r "$PGFBB_PGDATA" `+b.snaps+`/${PGFBB_LABEL}`).want(t, 0)
	backupDir, snapshot := filepath.Join(st, "pitr"), filepath.Join(b.snaps, "pitr")

	// The night after the backup, one marker row at a time. Commit
	// timestamps are microseconds: a pause keeps them apart from now().
	insert := func(phase string) { t.Helper(); pgtest.Exec(t, db, "INSERT INTO marker VALUES ($1)", phase) }
	insert("m1")
	time.Sleep(20 * time.Millisecond)
	afterM1 := query("SELECT now()::text") // pasted as psql prints it: 2026-11-28 04:17:49.025677+00
	time.Sleep(20 * time.Millisecond)
	insert("m2")
	query("SELECT pg_create_restore_point('before-m3')::text")
	xidM3 := query("INSERT INTO marker VALUES ('m3') RETURNING txid_current()::text")
	insert("m4")
	afterM4 := query("SELECT pg_current_wal_lsn()::text")
	insert("m5")
	last := query("SELECT pg_walfile_name(pg_current_wal_lsn())")
	query("SELECT pg_switch_wal()::text")
	waitArchived(t, filepath.Join(archive, last))

	restoreCommand := "cp " + archive + "/%f %p"
	restore := func(t *testing.T, name string, args ...string) (*pgtest.Cluster, result) {
		t.Helper()
		dir := filepath.Join(b.fs.Mount, "pitr-"+name)
		btrfstest.Snapshot(t, snapshot, dir, false)
		r := runTool(t, nil, append([]string{"restore", "--staged", backupDir, "--pgdata", dir, "--restore-command", restoreCommand}, args...)...)
		return pgtest.Existing(t, in, dir), r
	}
	markers := func(t *testing.T, rc *pgtest.Cluster, want string) {
		t.Helper()
		if got := pgtest.QueryString(t, rc.DB(t), "SELECT string_agg(phase, ',' ORDER BY phase) FROM marker"); got != want {
			t.Errorf("marker rows %q, want %q", got, want)
		}
	}

	for _, tc := range []struct {
		name    string
		args    []string
		summary string // in restore's summary
		stopped string // in the server log; "" for latest
		want    string
	}{
		{"a time pasted from now()", []string{"--target", afterM1}, "stops at the last commit at or before " + afterM1,
			"recovery stopping before commit of transaction", "before,m1"},
		{"a restore point", []string{"--target-name", "before-m3"}, `stops at restore point "before-m3"`,
			`recovery stopping at restore point "before-m3"`, "before,m1,m2"},
		{"an xid", []string{"--target-xid", xidM3}, "stops after transaction " + xidM3,
			"recovery stopping after commit of transaction " + xidM3, "before,m1,m2,m3"},
		{"an xid, exclusive", []string{"--target-xid", xidM3, "--target-exclusive"}, "stops just before transaction " + xidM3,
			"recovery stopping before commit of transaction " + xidM3, "before,m1,m2"},
		{"an LSN", []string{"--target", afterM4}, "stops after the first record at or after " + afterM4,
			"recovery stopping after WAL location (LSN)", "before,m1,m2,m3,m4"},
		{"latest", []string{"--target", "latest"}, "replays all the WAL the archive holds", "", "before,m1,m2,m3,m4,m5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, r := restore(t, strings.ReplaceAll(tc.name, " ", "-"), tc.args...)
			r.want(t, 0, tc.summary, "from the archive (--restore-command)")
			rc.AppendConf(t, "archive_mode = off") // not into the original's archive
			rc.StartRecovered(t)
			if log := rc.LogTail(1 << 20); tc.stopped != "" && !strings.Contains(log, tc.stopped) {
				t.Errorf("server log lacks %q", tc.stopped)
			}
			markers(t, rc, tc.want)
			amcheck(t, rc)
		})
	}

	t.Run("pause at the target, then promote", func(t *testing.T) {
		rc, r := restore(t, "pause", "--target-name", "before-m3", "--target-action", "pause")
		r.want(t, 0, `stops at restore point "before-m3", then pauses`)
		rc.AppendConf(t, "archive_mode = off")
		rc.Start(t)
		rdb := rc.DB(t)
		for i := 0; pgtest.QueryString(t, rdb, "SELECT pg_is_wal_replay_paused()") != "true"; i++ {
			if i == 600 {
				t.Fatal("recovery did not pause at the target within 60s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := pgtest.QueryString(t, rdb, "SELECT pg_is_in_recovery()"); got != "true" {
			t.Fatalf("paused server in recovery: %s", got)
		}
		markers(t, rc, "before,m1,m2") // read-only, while paused
		// Resuming a pause at the target ends recovery: the server promotes.
		pgtest.QueryString(t, rdb, "SELECT pg_wal_replay_resume()::text")
		for i := 0; pgtest.QueryString(t, rdb, "SELECT pg_is_in_recovery()") != "false"; i++ {
			if i == 600 {
				t.Fatal("not promoted within 60s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		pgtest.Exec(t, rdb, "INSERT INTO marker VALUES ('promoted')")
		markers(t, rc, "before,m1,m2,promoted")
	})

	t.Run("targets before the backup's end are refused", func(t *testing.T) {
		for _, target := range []string{beforeBackup, "0/1000000"} {
			_, r := restore(t, "early-"+strings.NewReplacer("/", "-", " ", "-", ":", "-", "+", "-").Replace(target), "--target", target)
			r.want(t, 3, "is before the end of backup pitr")
		}
	})

	t.Run("rehearsals", func(t *testing.T) {
		rehearse := func(args ...string) result {
			return runTool(t, nil, append([]string{"restore", "--rehearse", "--staged", backupDir, "--pgdata", snapshot,
				"--pg-bin", in.BinDir, "--scratch", b.fs.Mount, "--restore-command", restoreCommand}, args...)...)
		}
		rehearse("--target-xid", xidM3).want(t, 0, "recovery stopping after commit of transaction "+xidM3, "; recovery finished after")
		rehearse("--target-name", "before-m3", "--target-action", "pause").want(t, 0, `recovery stopping at restore point "before-m3"`,
			"; paused at the target after")
		rehearse("--target", afterM4, "--target-action", "shutdown").want(t, 0, "recovery stopping after WAL location (LSN)",
			"; shut down at the target after")
	})

	// A cluster that was itself restored keeps its recovery settings in
	// postgresql.auto.conf, and its backups carry them: the next restore
	// must not inherit its time target (with immediate: two targets, and
	// the server refuses to start).
	t.Run("a restored cluster's own recovery settings are not inherited", func(t *testing.T) {
		rc, r := restore(t, "again", "--target", afterM1)
		r.want(t, 0)
		rc.AppendConf(t, "archive_mode = off")
		pgtest.Exec(t, rc.StartRecovered(t), "INSERT INTO marker VALUES ('again')")
		st2 := filepath.Join(t.TempDir(), "staging")
		runTool(t, rc.Env(), "--staging", st2, "--label", "again", "--fast", "--",
			"btrfs", "subvolume", "snapshot", "-r", rc.PGData, filepath.Join(b.snaps, "again")).want(t, 0)
		dir := filepath.Join(b.fs.Mount, "pitr-again-restored")
		btrfstest.Snapshot(t, filepath.Join(b.snaps, "again"), dir, false)
		runTool(t, nil, "restore", "--staged", filepath.Join(st2, "again"), "--pgdata", dir).want(t, 0)
		rc2 := pgtest.Existing(t, in, dir)
		rc2.AppendConf(t, "archive_mode = off")
		rc2.StartRecovered(t)
		markers(t, rc2, "again,before,m1")
	})

	// Last: the archive gains timeline 2 here, which latest would follow.
	t.Run("latest along timeline 2 after a promotion", func(t *testing.T) {
		rc, r := restore(t, "promoted", "--target-name", "before-m3")
		r.want(t, 0)
		rdb := rc.StartRecovered(t) // promoted onto timeline 2, archiving into the archive
		pgtest.Exec(t, rdb, "INSERT INTO marker VALUES ('t2')")
		segment := pgtest.QueryString(t, rdb, "SELECT pg_walfile_name(pg_current_wal_lsn())")
		if !strings.HasPrefix(segment, "00000002") {
			t.Fatalf("the promoted server writes %s, not timeline 2", segment)
		}
		pgtest.QueryString(t, rdb, "SELECT pg_switch_wal()::text")
		waitArchived(t, filepath.Join(archive, segment))
		rc.Stop(t)

		rc2, r := restore(t, "timeline2", "--target", "latest", "--target-timeline", "2")
		r.want(t, 0)
		rc2.AppendConf(t, "archive_mode = off")
		rc2.StartRecovered(t)
		markers(t, rc2, "before,m1,m2,t2")
		amcheck(t, rc2)
	})
}

// TestRehearseUser rehearses a cluster whose superuser is not named after
// the data directory's owner: the default role is refused at once with the
// fix, and --rehearse-user connects.
func TestRehearseUser(t *testing.T) {
	b := newBench(t, pgtest.DefaultInstall(t), pgtest.Options{})
	pgtest.Exec(t, b.c.DB(t), "CREATE ROLE admin SUPERUSER LOGIN")
	admin := append(b.c.Env(), "PGUSER=admin")
	// initdb -U admin would have named the bootstrap superuser so; renaming
	// postgres leaves no role of the owner's name.
	rename := exec.Command(b.c.ClientBin(t, "psql"), "-Xqc", "ALTER ROLE postgres RENAME TO boss")
	rename.Env = append(os.Environ(), admin...)
	if out, err := rename.CombinedOutput(); err != nil {
		t.Fatalf("rename postgres: %v\n%s", err, out)
	}
	st := filepath.Join(t.TempDir(), "staging")
	runTool(t, admin, "--staging", st, "--label", "u", "--fast", "--",
		"sh", "-c", `btrfs subvolume snapshot -r "$PGFBB_PGDATA" `+b.snaps+`/${PGFBB_LABEL}`).want(t, 0)
	rehearse := func(args ...string) result {
		return runTool(t, nil, append([]string{"restore", "--rehearse", "--staged", filepath.Join(st, "u"),
			"--pgdata", filepath.Join(b.snaps, "u"), "--pg-bin", b.c.BinDir, "--scratch", b.fs.Mount, "--rehearse-timeout", "2m"}, args...)...)
	}
	rehearse().want(t, 1, `connect to the rehearsal server as "postgres"`, "give --rehearse-user")
	rehearse("--rehearse-user", "admin").want(t, 0, "rehearsal of u ok")
	if left, _ := filepath.Glob(filepath.Join(b.fs.Mount, "pgfbb-rehearse-*")); len(left) > 0 {
		t.Errorf("rehearsals left %v", left)
	}
}

// waitArchived waits until the archive holds the whole 16 MiB segment path.
func waitArchived(t *testing.T, path string) {
	t.Helper()
	for range 600 {
		if fi, err := os.Stat(path); err == nil && fi.Size() == 16<<20 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s was not archived within 60s", path)
}
