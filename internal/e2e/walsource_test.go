package e2e

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestWALOverSQL stages WAL with pg_read_binary_file: chosen, and as the
// fallback for a tool that cannot read the data directory.
func TestWALOverSQL(t *testing.T) {
	in := pgtest.DefaultInstall(t)
	b := newBench(t, in, pgtest.Options{Conf: []string{"listen_addresses = '127.0.0.1'"}})

	t.Run("chosen, under load, restored", func(t *testing.T) {
		stop := b.load(t, 400*time.Millisecond)
		st := filepath.Join(t.TempDir(), "staging")
		r := runTool(t, b.c.Env(), "--staging", st, "--label", "sql", "--fast", "--wal-source=sql", "--",
			"sh", "-c", `sleep 2 && btrfs subvolume snapshot -r "$PGFBB_PGDATA" `+b.snaps+`/${PGFBB_LABEL} && sleep 2`)
		stop()
		r.want(t, 0)
		backupDir := filepath.Join(st, "sql")
		m := readManifest(t, backupDir)
		if m.WALSource != "sql:pg_read_binary_file" || m.StartWAL == m.StopWAL {
			t.Errorf("manifest wal_source %q, WAL %s..%s", m.WALSource, m.StartWAL, m.StopWAL)
		}
		runTool(t, nil, "verify", backupDir).want(t, 0)
		b.restoreAndCheck(t, filepath.Join(b.snaps, "sql"), backupDir)
	})

	t.Run("auto falls back when the data directory is unreadable", func(t *testing.T) {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("the test runs the tool as the OS user nobody: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		if _, err := os.ReadDir(b.c.PGData); err == nil && os.Getuid() == uid {
			t.Fatal("nobody can read the data directory: the test proves nothing")
		}
		parent, err := os.MkdirTemp("", "pgfbb-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(parent) })
		st := filepath.Join(parent, "staging")
		for _, err := range []error{os.Chmod(parent, 0o755), os.Mkdir(st, 0o700), os.Chown(st, uid, gid)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		// Over TCP: the socket directory is private to the server's user.
		// lib/pq looks for client certificates in $HOME.
		cmd, stderr := tool(append(b.c.Env(), "PGHOST=127.0.0.1", "HOME="+nobody.HomeDir), "--staging", st, "--label", "fallback", "--fast", "-v", "--", "true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = "/"
		if err := cmd.Run(); err != nil && cmd.ProcessState == nil {
			t.Fatalf("run pgfbb-wrap as nobody: %v", err)
		}
		r := result{code: cmd.ProcessState.ExitCode(), stdout: stdoutOf(cmd), stderr: stderr.String()}
		t.Logf("as nobody: exit %d\n%s", r.code, r.stderr)
		r.want(t, 0, "reading WAL over SQL (pg_read_binary_file): WAL directory not readable for staging", "permission denied")
		backupDir := filepath.Join(st, "fallback")
		if m := readManifest(t, backupDir); m.WALSource != "sql:pg_read_binary_file" {
			t.Errorf("wal_source %q", m.WALSource)
		}
		runTool(t, nil, "verify", backupDir).want(t, 0)
		waitClean(t, b.c.DB(t))
	})
}
