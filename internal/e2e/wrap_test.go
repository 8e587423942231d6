package e2e

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// waitClean waits until PostgreSQL holds no pgfbb-wrap session and no slot:
// the server must never be left in backup mode or with a leaked slot.
func waitClean(t *testing.T, db *sql.DB) {
	t.Helper()
	for i := 0; ; i++ {
		backends := pgtest.QueryString(t, db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfbb-wrap'")
		slots := pgtest.QueryString(t, db, "SELECT count(*) FROM pg_replication_slots")
		if backends == "0" && slots == "0" {
			return
		}
		if i == 100 {
			t.Fatalf("after 10s PostgreSQL still has %s pgfbb-wrap sessions and %s slots", backends, slots)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backendRunning waits until the tool's session is connected and its slot exists.
func backendRunning(t *testing.T, db *sql.DB) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if pgtest.QueryString(t, db, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgfbb_%'") == "1" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the tool never created its slot")
}

func killGroup(pidFile string) {
	if data, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// tmpfs mounts a tmpfs with the mount options opts for the test's duration.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	return tmpfsIn(t, t.TempDir(), opts)
}

// tmpfsIn is tmpfs in the directory parent.
func tmpfsIn(t *testing.T, parent, opts string) string {
	t.Helper()
	dir := filepath.Join(parent, "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs -o %s (tests need root): %v %s", opts, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func TestWrapper(t *testing.T) {
	pgtest.Each(t, pgtest.SpotTargets(t), func(t *testing.T, tg pgtest.Target) { wrapper(t, tg.Install) })
}

func wrapper(t *testing.T, in pgtest.Install) {
	c := pgtest.New(t, in, pgtest.Options{})
	db := c.DB(t)
	env := c.Env()
	work := t.TempDir()
	staging := func(t *testing.T) string { return filepath.Join(t.TempDir(), "staging") }

	t.Run("success stages label, WAL and manifest", func(t *testing.T) {
		st := staging(t)
		envFile := filepath.Join(work, "env")
		r := runTool(t, append(env, "PGPASSWORD=secret"), "--staging", st, "--label", "ok1", "--fast",
			"--command", `sh -c 'env > `+envFile+`; echo "arg=${PGFBB_LABEL}" >> `+envFile+`'`)
		r.want(t, 0)
		if r.stderr != "" {
			t.Errorf("a successful run without -v printed %q", r.stderr)
		}
		m := readManifest(t, filepath.Join(st, "ok1"))
		if m.Label != "ok1" || m.Timeline != 1 || m.StopLSN <= m.StartLSN || m.Command.ExitCode != 0 ||
			m.Command.Argv[0] != "sh" || m.ServerVersionNum/10000 != c.Major || m.SystemIdentifier == "0" {
			t.Errorf("manifest %+v", m)
		}
		label, _ := os.ReadFile(filepath.Join(st, "ok1", staged.LabelFile))
		if !strings.Contains(string(label), "LABEL: ok1\n") {
			t.Errorf("backup_label:\n%s", label)
		}
		list, _ := os.ReadFile(filepath.Join(st, "ok1", staged.WALListFile))
		for _, name := range strings.Fields(string(list)) {
			if _, err := os.Stat(filepath.Join(st, "ok1", "wal", name)); err != nil {
				t.Errorf("wal_list names %s: %v", name, err)
			}
		}
		if !strings.Contains(string(list), m.StartWAL) || !strings.Contains(string(list), m.StopWAL) {
			t.Errorf("wal_list %q lacks %s or %s", list, m.StartWAL, m.StopWAL)
		}
		childEnv, _ := os.ReadFile(envFile)
		for _, want := range []string{"PGFBB_LABEL=ok1\n", "PGFBB_TIMELINE=1\n", "PGFBB_PGDATA=" + c.PGData + "\n",
			"PGFBB_STAGING_DIR=" + st + "\n", "PGFBB_START_LSN=" + m.StartLSN.String() + "\n",
			"PGFBB_START_WAL=" + m.StartWAL + "\n", "arg=ok1\n"} {
			if !strings.Contains(string(childEnv), want) {
				t.Errorf("command environment lacks %q", want)
			}
		}
		if strings.Contains(string(childEnv), "PGPASSWORD") {
			t.Error("PGPASSWORD reached the snapshot command")
		}
		waitClean(t, db)
	})

	t.Run("verbose prints one summary line", func(t *testing.T) {
		r := runTool(t, env, "--staging", staging(t), "--label", "v1", "--fast", "-v", "--", "true")
		r.want(t, 0, "backup v1 complete")
	})

	t.Run("wal=skip stages label only and says so", func(t *testing.T) {
		st := staging(t)
		r := runTool(t, env, "--staging", st, "--label", "skip1", "--fast", "--wal=skip", "--", "true")
		r.want(t, 0, "WAL not staged and archiving not checked (--wal=skip)")
		if _, err := os.Stat(filepath.Join(st, "skip1", "wal")); !os.IsNotExist(err) {
			t.Errorf("--wal=skip staged WAL: %v", err)
		}
		if m := readManifest(t, filepath.Join(st, "skip1")); m.WALMode != staged.WALSkip {
			t.Errorf("manifest wal_mode %q", m.WALMode)
		}
	})

	t.Run("failed command still stops the backup", func(t *testing.T) {
		st := staging(t)
		r := runTool(t, env, "--staging", st, "--label", "fail1", "--fast", "--", "sh", "-c", "echo snapshot broke >&2; exit 5")
		r.want(t, 4, "snapshot: sh: exit status 5", "stop:", "| snapshot broke", "nothing was published")
		assertNothingPublished(t, st)
		waitClean(t, db)
	})

	t.Run("snapshot and stop both fail: both reported", func(t *testing.T) {
		st := staging(t)
		psql := c.ClientBin(t, "psql")
		kill := psql + ` -Atc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgfbb-wrap'"; exit 3`
		r := runTool(t, env, "--staging", st, "--label", "lost", "--fast", "--", "sh", "-c", kill)
		r.want(t, 1, "snapshot: sh: exit status 3", "stop: stop backup: database session lost", "2 error(s)")
		assertNothingPublished(t, st)
		waitClean(t, db)
	})

	t.Run("a WAL segment gone before staging fails the run", func(t *testing.T) {
		st := staging(t)
		// Switch first: the server re-creates the segment it is writing.
		rm := c.ClientBin(t, "psql") + ` -Atc "SELECT pg_switch_wal()" && rm "$PGFBB_PGDATA/pg_wal/$PGFBB_START_WAL"`
		r := runTool(t, env, "--staging", st, "--label", "nowal", "--fast", "--", "sh", "-c", rm)
		r.want(t, 1, "collect-wal: WAL file 0000000", "no such file or directory")
		assertNothingPublished(t, st)
		waitClean(t, db)
	})

	t.Run("a backgrounded snapshot is waited for", func(t *testing.T) {
		st := staging(t)
		done := filepath.Join(work, "background-done")
		r := runTool(t, env, "--staging", st, "--label", "bg", "--fast", "--timeout", "30s", "--", "sh", "-c", "(sleep 2; touch "+done+") & exit 0")
		r.want(t, 0)
		fi, err := os.Stat(done)
		if err != nil {
			t.Fatalf("the run ended before what the snapshot command started: %v", err)
		}
		if m := readManifest(t, filepath.Join(st, "bg")); fi.ModTime().After(m.StoppedAt) {
			t.Errorf("the backup stopped at %s, before the snapshot's background work finished at %s", m.StoppedAt, fi.ModTime())
		}
	})

	t.Run("negative durations", func(t *testing.T) {
		for _, flag := range []string{"--timeout", "--kill-grace"} {
			st := staging(t)
			runTool(t, env, "--staging", st, flag, "-1s", "--", "true").want(t, 2, flag+" must not be negative")
			assertNothingPublished(t, st)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		st := staging(t)
		r := runTool(t, env, "--staging", st, "--label", "slow", "--fast", "--timeout", "300ms", "--", "sleep", "30")
		r.want(t, 4, "timed out after 300ms")
		assertNothingPublished(t, st)
		waitClean(t, db)
	})

	for _, sig := range []struct {
		signal syscall.Signal
		name   string
		code   int
	}{{syscall.SIGINT, "SIGINT", 130}, {syscall.SIGTERM, "SIGTERM", 143}, {syscall.SIGHUP, "SIGHUP", 129}, {syscall.SIGQUIT, "SIGQUIT", 131}} {
		t.Run(sig.name+" mid-command", func(t *testing.T) {
			st := staging(t)
			pidFile := filepath.Join(work, sig.name+".pid")
			t.Cleanup(func() { killGroup(pidFile) })
			cmd, stderr := tool(env, "--staging", st, "--label", "sig", "--fast", "--", "sh", "-c", "echo $$ > "+pidFile+"; exec sleep 60")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			child := waitFile(t, pidFile)
			backendRunning(t, db)
			cmd.Process.Signal(sig.signal)
			cmd.Wait()
			r := result{code: cmd.ProcessState.ExitCode(), stderr: stderr.String()}
			r.want(t, sig.code, "interrupted by "+sig.name, "stop:", "killed by "+sig.name)
			assertNothingPublished(t, st)
			waitClean(t, db)
			if _, err := os.Stat("/proc/" + child); err == nil {
				t.Errorf("snapshot command %s survived", child)
			}
		})
	}

	t.Run("SIGKILL of the wrapper aborts the backup server-side", func(t *testing.T) {
		st := staging(t)
		pidFile := filepath.Join(work, "kill.pid")
		t.Cleanup(func() { killGroup(pidFile) })
		cmd, _ := tool(env, "--staging", st, "--label", "killed", "--fast", "--", "sh", "-c", "echo $$ > "+pidFile+"; exec sleep 60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, pidFile)
		backendRunning(t, db)
		cmd.Process.Kill()
		cmd.Wait()
		// The session ends with the process: the server aborts the backup
		// and drops the temporary slot within seconds.
		waitClean(t, db)
		if _, err := os.Stat(filepath.Join(st, "killed")); !os.IsNotExist(err) {
			t.Errorf("a killed run published its backup: %v", err)
		}
		// Its partial backup is left, and is unmistakably not a backup.
		partial, _ := filepath.Glob(filepath.Join(st, ".killed.partial-*"))
		if len(partial) != 1 {
			t.Fatalf("partial backups of the killed run: %q, want one", partial)
		}
		// The server takes a new backup at once, and the next run
		// removes what the killed one left.
		runTool(t, env, "--staging", st, "--label", "after-kill", "--fast", "--", "true").want(t, 0,
			"removed "+filepath.Base(partial[0])+" from the staging directory: a partial backup left by a run that died")
		if _, err := os.Stat(partial[0]); !os.IsNotExist(err) {
			t.Errorf("the killed run's partial backup is still there: %v", err)
		}
	})

	t.Run("bad label refused before anything is touched", func(t *testing.T) {
		st := staging(t)
		for _, label := range []string{"../x", "", ".x", "a b", "a\nb"} {
			// A dead PGHOST: reaching the database would exit 3, not 2.
			r := runTool(t, []string{"PGHOST=/nonexistent"}, "--staging", st, "--label="+label, "--", "true")
			r.want(t, 2, "invalid label")
			if _, err := os.Stat(st); !os.IsNotExist(err) {
				t.Errorf("label %q: staging directory created", label)
			}
		}
	})

	t.Run("existing label refused", func(t *testing.T) {
		st := staging(t)
		runTool(t, env, "--staging", st, "--label", "dup", "--fast", "--", "true").want(t, 0)
		before, _ := os.ReadFile(filepath.Join(st, "dup", staged.ManifestFile))
		marker := filepath.Join(work, "dup-ran")
		r := runTool(t, []string{"PGHOST=/nonexistent"}, "--staging", st, "--label", "dup", "--", "touch", marker)
		r.want(t, 2, "already exists")
		after, _ := os.ReadFile(filepath.Join(st, "dup", staged.ManifestFile))
		if string(before) != string(after) {
			t.Error("the existing backup changed")
		}
		if _, err := os.Stat(marker); !os.IsNotExist(err) {
			t.Error("the snapshot command ran")
		}
	})

	t.Run("unusable staging refused before the database", func(t *testing.T) {
		ro := tmpfs(t, "ro,size=1m,mode=0700")
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o600)
		marker := filepath.Join(work, "ro-ran")
		for _, tt := range []struct{ staging, want string }{
			{ro, "not writable"},
			{filepath.Join(ro, "sub"), "read-only file system"},
			{filepath.Join(t.TempDir(), "missing", "parent"), "no such file or directory"},
			{file, "not a directory"},
		} {
			r := runTool(t, []string{"PGHOST=/nonexistent"}, "--staging", tt.staging, "--label", "x", "--", "touch", marker)
			r.want(t, 2, "prepare-staging", tt.want)
		}
		if _, err := os.Stat(marker); !os.IsNotExist(err) {
			t.Error("the snapshot command ran")
		}
	})

	t.Run("staging full while copying WAL", func(t *testing.T) {
		// Room for the label, not for the WAL the command writes (zero
		// blocks of a segment take no room: the WAL must be data).
		small := tmpfs(t, "size=4m,mode=0700")
		r := runTool(t, env, "--staging", small, "--label", "full", "--fast", "--", c.ClientBin(t, "psql"), "-Xqc",
			"CREATE TABLE fill AS SELECT g, md5(g::text) || repeat('x', 400) FROM generate_series(1, 40000) g")
		r.want(t, 1, "collect-wal", "no space left on device", "nothing was published")
		assertNothingPublished(t, small)
		waitClean(t, db)
	})

	t.Run("unknown variable in the command", func(t *testing.T) {
		runTool(t, []string{"PGHOST=/nonexistent"}, "--staging", staging(t), "--", "echo", "${PGFBB_NOPE}").
			want(t, 2, "unknown variable ${PGFBB_NOPE}")
	})

	t.Run("missing privileges are named", func(t *testing.T) {
		pgtest.Exec(t, db, "CREATE ROLE nobody LOGIN")
		r := runTool(t, append(env, "PGUSER=nobody"), "--staging", staging(t), "--label", "weak", "--", "true")
		start, _ := in.BackupFunctions()
		r.want(t, 3, "preflight", "lacks EXECUTE on "+start, "lacks REPLICATION", "pass --pgdata")
		waitClean(t, db)
	})

	t.Run("unreadable pg_wal refused", func(t *testing.T) {
		r := runTool(t, env, "--staging", staging(t), "--pgdata", t.TempDir(), "--", "true")
		r.want(t, 3, "WAL directory not readable for staging")
	})

	t.Run("tablespace_map staged as returned", func(t *testing.T) {
		loc := pgtest.TempDir(t)
		pgtest.Exec(t, db, "CREATE TABLESPACE ts1 LOCATION '"+loc+"'")
		t.Cleanup(func() { pgtest.Exec(t, db, "DROP TABLESPACE ts1") })
		st := staging(t)
		runTool(t, env, "--staging", st, "--label", "ts", "--fast", "--", "true").want(t, 0)
		oid := pgtest.QueryString(t, db, "SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
		got, err := os.ReadFile(filepath.Join(st, "ts", staged.MapFile))
		if err != nil || string(got) != oid+" "+loc+"\n" {
			t.Fatalf("tablespace_map %q, %v; want %q", got, err, oid+" "+loc+"\n")
		}
		m := readManifest(t, filepath.Join(st, "ts"))
		if !slicesContainsPath(m.Files, staged.MapFile) {
			t.Errorf("manifest does not list tablespace_map: %+v", m.Files)
		}
	})

	t.Run("pgdata of another cluster refused", func(t *testing.T) {
		other := pgtest.New(t, c.Install, pgtest.Options{})
		r := runTool(t, env, "--staging", staging(t), "--pgdata", other.PGData, "--", "true")
		r.want(t, 3, "belongs to another cluster")
	})
}

func slicesContainsPath(files []staged.File, path string) bool {
	for _, f := range files {
		if f.Path == path {
			return true
		}
	}
	return false
}

func TestStartTimeout(t *testing.T) {
	// A spread checkpoint over many dirty buffers takes minutes with the
	// default checkpoint_timeout; --start-timeout must end the wait.
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{Conf: []string{"checkpoint_timeout = 1h"}})
	db := c.DB(t)
	pgtest.Exec(t, db, "CREATE TABLE dirty AS SELECT generate_series(1, 300000) AS i")
	st := filepath.Join(t.TempDir(), "staging")
	marker := filepath.Join(t.TempDir(), "ran")
	start := time.Now()
	r := runTool(t, c.Env(), "--staging", st, "--start-timeout", "1s", "--", "touch", marker)
	r.want(t, 1, "start:", "did not start within --start-timeout 1s")
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the start took %s despite --start-timeout 1s", d)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Error("the snapshot command ran although the backup never started")
	}
	assertNothingPublished(t, st)
	waitClean(t, db)
}
