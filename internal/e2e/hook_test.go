package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/hook"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// holderState reads what the holder of label recorded once its backup started.
func holderState(t *testing.T, staging, label string) *hook.State {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(hook.DefaultRunDir(staging), label+".state"))
	if err != nil {
		t.Fatalf("holder state of %s: %v", label, err)
	}
	var st hook.State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// killHolders makes sure no holder outlives a test that failed midway.
func killHolders(t *testing.T, staging string) {
	t.Cleanup(func() {
		entries, _ := hook.List(hook.DefaultRunDir(staging))
		for _, e := range entries {
			if e.State != nil && e.Status == hook.StatusHeld {
				syscall.Kill(e.State.PID, syscall.SIGKILL)
			}
		}
	})
}

// waitGone waits for a holder process to exit.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(data), ") Z ") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("holder %d still running after 10s", pid)
}

// preVars parses pre's PGFBB_NAME=value lines.
func preVars(t *testing.T, out string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "PGFBB_") {
			t.Fatalf("pre printed %q, want PGFBB_NAME=value lines", line)
		}
		vars[k] = strings.Trim(v, "'")
	}
	return vars
}

// runDirEmpty checks that nothing of a finished label is left to confuse
// the next pre or post.
func runDirEmpty(t *testing.T, staging string) {
	t.Helper()
	left, _ := os.ReadDir(hook.DefaultRunDir(staging))
	for _, e := range left {
		t.Errorf("run directory still holds %s", e.Name())
	}
}

// TestHookRestore is the two-command backup an orchestrator runs: pre, a
// snapshot taken by a separate process, post; then restored and checked.
func TestHookRestore(t *testing.T) {
	pgtest.Each(t, pgtest.SpotTargets(t), func(t *testing.T, tg pgtest.Target) { hookRestore(t, tg.Install) })
}

func hookRestore(t *testing.T, in pgtest.Install) {
	b := newBench(t, in, pgtest.Options{})
	stop := b.load(t, 400*time.Millisecond)
	staging := filepath.Join(t.TempDir(), "var", "backups", "pg", "staging") // as on a fresh host: no parents yet
	killHolders(t, staging)

	// The example hooks, run as a hook runner would: pre, the snapshot and
	// post are three processes that share nothing but the label.
	shipped := filepath.Join(t.TempDir(), "shipped")
	env := append(b.c.Env(), "PATH="+filepath.Dir(toolBin)+":"+os.Getenv("PATH"),
		"PGFBB_STAGING="+staging, "SHIP_TO="+shipped)
	hookScript := func(name string) result {
		t.Helper()
		cmd := exec.Command("bash", filepath.Join("..", "..", "examples", "prepost", name))
		cmd.Env = append(os.Environ(), env...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		t.Logf("%s: exit %d\n%s%s", name, cmd.ProcessState.ExitCode(), stdout.String(), stderr.String())
		return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	}
	r := hookScript("pre.sh")
	r.want(t, 0)
	vars := preVars(t, r.stdout)
	// No LABEL: the default one, a new one each backup, which post.sh learns.
	label := vars["PGFBB_LABEL"]
	if !strings.HasPrefix(label, "pgfbb-") || vars["PGFBB_PGDATA"] != b.c.PGData || vars["PGFBB_TIMELINE"] != "1" {
		t.Fatalf("pre printed %v", vars)
	}
	st := holderState(t, staging, label)
	if st.Vars["PGFBB_START_LSN"] != vars["PGFBB_START_LSN"] {
		t.Errorf("holder state %v disagrees with pre's output %v", st.Vars, vars)
	}
	// The holder has its own session, no terminal, and shrugs off a hangup.
	if sid, _ := syscall.Getpgid(st.PID); sid != st.PID {
		t.Errorf("holder %d is in process group %d, want its own", st.PID, sid)
	}
	for fd, want := range map[string]string{"0": "/dev/null", "1": st.Log, "2": st.Log} {
		if got, _ := os.Readlink("/proc/" + strconv.Itoa(st.PID) + "/fd/" + fd); got != want {
			t.Errorf("holder fd %s is %q, want %q", fd, got, want)
		}
	}
	syscall.Kill(st.PID, syscall.SIGHUP)
	runTool(t, nil, "status", "--staging", staging).want(t, 0, label, "held", strconv.Itoa(st.PID), vars["PGFBB_START_LSN"])

	snapshot := filepath.Join(b.snaps, label)
	time.Sleep(2 * time.Second) // the backup spans WAL switches under load
	if out, err := exec.Command("btrfs", "subvolume", "snapshot", "-r", vars["PGFBB_PGDATA"], snapshot).CombinedOutput(); err != nil {
		t.Fatalf("snapshot: %v %s", err, out)
	}
	time.Sleep(2 * time.Second)
	r = hookScript("post.sh")
	stop()
	r.want(t, 0)
	waitGone(t, st.PID)
	waitClean(t, b.c.DB(t))
	runDirEmpty(t, staging)
	if _, err := os.Stat(filepath.Join(staging, label)); !os.IsNotExist(err) {
		t.Errorf("post.sh left the staged backup after shipping it: %v", err)
	}

	backupDir := strings.TrimSpace(r.stdout)
	m := readManifest(t, backupDir)
	if m.Label != label || backupDir != filepath.Join(shipped, label) || m.StartLSN.String() != vars["PGFBB_START_LSN"] || m.Command != nil {
		t.Errorf("manifest %+v", m)
	}
	if m.StartWAL == m.StopWAL {
		t.Errorf("the backup spans one segment only (%s): the WAL switches did not happen", m.StartWAL)
	}
	runTool(t, nil, "verify", backupDir).want(t, 0, "ok: backup "+label)
	b.restoreAndCheck(t, snapshot, backupDir)
}

// TestHookFailures covers every way a held backup can end other than post.
func TestHookFailures(t *testing.T) {
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	db := c.DB(t)
	env := c.Env()
	newStaging := func(t *testing.T) string {
		st := filepath.Join(t.TempDir(), "staging")
		killHolders(t, st)
		return st
	}
	pre := func(t *testing.T, staging, label string, args ...string) *hook.State {
		t.Helper()
		runTool(t, env, append([]string{"pre", "--staging", staging, "--label", label, "--fast"}, args...)...).want(t, 0)
		return holderState(t, staging, label)
	}
	published := func(t *testing.T, staging, label string) bool {
		_, err := os.Stat(filepath.Join(staging, label, staged.ManifestFile))
		return err == nil
	}

	t.Run("post without pre", func(t *testing.T) {
		st := newStaging(t)
		runTool(t, nil, "post", "--staging", st).want(t, 2, "no backup is held")
		runTool(t, nil, "post", "--staging", st, "--label", "nope").want(t, 2, "no backup labelled nope is held")
	})

	t.Run("pre twice with one label", func(t *testing.T) {
		st := newStaging(t)
		first := pre(t, st, "twice")
		runTool(t, env, "pre", "--staging", st, "--label", "twice", "--fast").want(t, 2, "already held by pid "+strconv.Itoa(first.PID))
		runTool(t, nil, "post", "--staging", st, "--label", "twice").want(t, 0, "backup twice complete")
		backupDir, _ := filepath.Abs(filepath.Join(st, "twice"))
		for kind, want := range map[string]string{"dir": backupDir, "label-file": filepath.Join(backupDir, staged.LabelFile),
			"wal-list": filepath.Join(backupDir, staged.WALListFile)} {
			r := runTool(t, nil, "path", "--staging", st, "--label", "twice", kind)
			r.want(t, 0)
			if got := strings.TrimSpace(r.stdout); got != want {
				t.Errorf("path %s = %q, want %q", kind, got, want)
			}
		}
		runTool(t, nil, "path", "--staging", st, "--label", "never", "dir").want(t, 1, "no published backup never")
		waitClean(t, db)
	})

	t.Run("pre that cannot start leaves nothing running", func(t *testing.T) {
		st := newStaging(t)
		runTool(t, []string{"PGHOST=/nonexistent"}, "pre", "--staging", st, "--label", "nodb").want(t, 3, "connect:", "/nonexistent")
		runDirEmpty(t, st)
		runTool(t, nil, "status", "--staging", st).want(t, 0, "no backups held")
	})

	t.Run("holder killed with SIGKILL", func(t *testing.T) {
		st := newStaging(t)
		h := pre(t, st, "killed")
		syscall.Kill(h.PID, syscall.SIGKILL)
		waitGone(t, h.PID)
		// Its session ended with it: PostgreSQL aborted the backup and
		// dropped the temporary slot.
		waitClean(t, db)
		runTool(t, nil, "status", "--staging", st).want(t, 0, "killed", "dead")
		runTool(t, nil, "post", "--staging", st).want(t, 1, "holder of backup killed (pid "+strconv.Itoa(h.PID), "died without stopping it",
			"PostgreSQL aborted the backup", "nothing was published")
		if _, err := os.Stat(h.Partial); !os.IsNotExist(err) {
			t.Errorf("the partial backup %s is left: %v", h.Partial, err)
		}
		if published(t, st, "killed") {
			t.Error("a killed holder's backup was published")
		}
		// Only the log stays, for the post-mortem; the label is free.
		pre(t, st, "killed")
		runTool(t, nil, "post", "--staging", st).want(t, 0)
	})

	// A holder that ends without post leaves its outcome for the next post.
	for _, tt := range []struct {
		name string
		args []string
		end  func(h *hook.State) // what ends the hold; nothing for the timeout
		code int
		want string
	}{
		{"hold timeout", []string{"--hold-timeout", "2s"}, func(*hook.State) {}, 4, "no post or abort within --hold-timeout 2s"},
		{"session terminated while held", nil, func(*hook.State) {
			pgtest.Exec(t, db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgfbb-wrap'")
		}, 1, "hold: check session: database session lost"},
		{"SIGTERM to the holder", nil, func(h *hook.State) { syscall.Kill(h.PID, syscall.SIGTERM) }, 143, "hold: interrupted by SIGTERM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := newStaging(t)
			h := pre(t, st, "ended", tt.args...)
			tt.end(h)
			waitGone(t, h.PID) // a lost session is noticed within seconds
			waitClean(t, db)
			runTool(t, nil, "status", "--staging", st).want(t, 0, "ended", "(exit "+strconv.Itoa(tt.code)+", run post)")
			// Tomorrow's backup, under another label, is not held up by it.
			pre(t, st, "next")
			runTool(t, nil, "post", "--staging", st).want(t, 0, "backup next complete",
				"warning: backup ended ended without a post: pgfbb-wrap post --label ended reports it")
			runTool(t, nil, "post", "--staging", st).want(t, tt.code, tt.want, "nothing was published")
			runDirEmpty(t, st)
			if published(t, st, "ended") || !published(t, st, "next") {
				t.Errorf("published: ended %v, next %v; want only next", published(t, st, "ended"), published(t, st, "next"))
			}
		})
	}

	t.Run("one backup per cluster, two clusters side by side", func(t *testing.T) {
		st := newStaging(t)
		other := pgtest.New(t, c.Install, pgtest.Options{})
		first := pre(t, st, "one-a")
		runTool(t, env, "pre", "--staging", st, "--label", "one-x", "--fast").
			want(t, 2, "a backup of this cluster is running: label one-a, pid "+strconv.Itoa(first.PID))
		runTool(t, other.Env(), "pre", "--staging", st, "--label", "two", "--fast").want(t, 0)
		runTool(t, nil, "status", "--staging", st).want(t, 0, "one-a", "two")
		runTool(t, nil, "post", "--staging", st).want(t, 2, "2 backups are held", "one-a (held by pid", "give --label")
		runTool(t, nil, "abort", "--staging", st, "--label", "one-a").want(t, 0, "ABORTED", "aborted on request by pgfbb-wrap abort")
		pre(t, st, "one-b")
		runTool(t, nil, "post", "--staging", st, "--label", "one-b").want(t, 0)
		runTool(t, nil, "post", "--staging", st, "--label", "two").want(t, 0)
		for label, want := range map[string]bool{"one-a": false, "one-x": false, "one-b": true, "two": true} {
			if published(t, st, label) != want {
				t.Errorf("%s published: %v, want %v", label, !want, want)
			}
		}
		if a, b := readManifest(t, filepath.Join(st, "one-b")), readManifest(t, filepath.Join(st, "two")); a.SystemIdentifier == b.SystemIdentifier {
			t.Error("the two clusters' backups have one system identifier")
		}
		runTool(t, nil, "verify", filepath.Join(st, "one-b")).want(t, 0)
		runTool(t, nil, "verify", filepath.Join(st, "two")).want(t, 0)
		runDirEmpty(t, st)
		waitClean(t, db)
		waitClean(t, other.DB(t))
	})
}

// TestPreNeverStarted covers a pre whose backup does not start: bounded by
// --start-timeout, or interrupted. Either way no holder is left running.
func TestPreNeverStarted(t *testing.T) {
	// A spread checkpoint over many dirty buffers takes minutes.
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{Conf: []string{"checkpoint_timeout = 1h"}})
	db := c.DB(t)
	dirty := func() {
		pgtest.Exec(t, db, "DROP TABLE IF EXISTS dirty; CREATE TABLE dirty AS SELECT generate_series(1, 300000) AS i")
	}

	t.Run("start timeout", func(t *testing.T) {
		dirty()
		st := filepath.Join(t.TempDir(), "staging")
		runTool(t, c.Env(), "pre", "--staging", st, "--start-timeout", "1s").want(t, 1, "did not start within --start-timeout 1s")
		runDirEmpty(t, st)
		waitClean(t, db)
	})

	t.Run("SIGINT while starting", func(t *testing.T) {
		dirty()
		st := filepath.Join(t.TempDir(), "staging")
		cmd, stderr := tool(c.Env(), "pre", "--staging", st, "--label", "intr")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		backendRunning(t, db) // the holder is in the spread checkpoint
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		r := result{code: cmd.ProcessState.ExitCode(), stderr: stderr.String()}
		t.Logf("pre: exit %d\n%s", r.code, r.stderr)
		r.want(t, 130, "pre interrupted by SIGINT", "start: ")
		runDirEmpty(t, st)
		waitClean(t, db)
	})
}
