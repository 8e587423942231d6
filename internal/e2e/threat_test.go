package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// The threat list: what someone who controls a snapshot's data directory
// (the database's OS user), a staged backup or a staging area (anyone who
// can write there), or another account on the host, can try against the
// tool running as root. Each case asserts the exit code, the message, and
// that nothing outside what the command may touch changed: victim files
// and directories are hashed before and after, and a refused restore
// leaves its target byte for byte as it was.

// attacker is the OS user playing the other account.
func attacker(t *testing.T) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the threat tests run as root, with nobody as the attacker: run them as root (see README, Development)")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("the threat tests need the OS user nobody: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// treeHash fingerprints a tree without following links: names, types,
// modes, owners, link targets and contents.
func treeHash(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%s %v %d %d %d\n", p, fi.Mode(), st.Uid, st.Gid, fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintln(h, target)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// victims are a root-owned file and directory that no command may touch.
type victims struct{ file, dir, sum string }

func newVictims(t *testing.T) *victims {
	t.Helper()
	base := t.TempDir()
	v := &victims{file: filepath.Join(base, "file"), dir: filepath.Join(base, "dir")}
	if err := os.WriteFile(v.file, []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(v.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, "keep"), []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v.sum = treeHash(t, base)
	t.Cleanup(func() {
		if treeHash(t, base) != v.sum {
			t.Errorf("a victim file or directory changed")
		}
	})
	return v
}

// forgeManifest rewrites a staged backup's manifest.
func forgeManifest(t *testing.T, dir string, edit func(m *staged.Manifest)) {
	t.Helper()
	path := filepath.Join(dir, staged.ManifestFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m staged.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(&m)
	if data, err = json.Marshal(&m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// forgeFile replaces a staged file and its manifest entry, as someone who
// can write the staging area can.
func forgeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	forgeManifest(t, dir, func(m *staged.Manifest) {
		entry := staged.File{Path: name, Size: int64(len(data)), SHA256: sha256hex(data)}
		for i := range m.Files {
			if m.Files[i].Path == name {
				m.Files[i] = entry
				return
			}
		}
		m.Files = append(m.Files, entry)
	})
}

func TestThreats(t *testing.T) {
	uid, gid := attacker(t)
	in := pgtest.DefaultInstall(t)
	c := pgtest.New(t, in, pgtest.Options{})
	st := filepath.Join(t.TempDir(), "staging")
	// The snapshot: a copy taken while the backup runs, stale
	// postmaster.pid included.
	snap := filepath.Join(t.TempDir(), "snap")
	runTool(t, c.Env(), "--staging", st, "--label", "good", "--fast", "--", "cp", "-a", c.PGData, snap).want(t, 0)
	good := filepath.Join(st, "good")
	m := readManifest(t, good)

	// snapshot is a fresh copy of the snapshot to restore into.
	snapshot := func(t *testing.T) string {
		t.Helper()
		return copyDir(t, snap)
	}
	// refused runs a restore that must be refused and change nothing.
	refused := func(t *testing.T, target string, code int, args []string, contains ...string) {
		t.Helper()
		before := treeHash(t, target)
		runTool(t, nil, append([]string{"restore", "--pgdata", target}, args...)...).want(t, code, contains...)
		if treeHash(t, target) != before {
			t.Errorf("a refused restore changed the target %s", target)
		}
	}

	t.Run("restore: postgresql.auto.conf links to a root file", func(t *testing.T) {
		v := newVictims(t)
		for _, rehearse := range [][]string{nil, {"--rehearse"}} {
			target := snapshot(t)
			os.Remove(filepath.Join(target, "postgresql.auto.conf"))
			os.Symlink(v.file, filepath.Join(target, "postgresql.auto.conf"))
			refused(t, target, 3, append([]string{"--staged", good}, rehearse...), "postgresql.auto.conf is", "never makes")
		}
	})
	t.Run("restore: pg_wal/archive_status links to another directory", func(t *testing.T) {
		v := newVictims(t)
		target := snapshot(t)
		os.RemoveAll(filepath.Join(target, "pg_wal", "archive_status"))
		os.Symlink(v.dir, filepath.Join(target, "pg_wal", "archive_status"))
		refused(t, target, 3, []string{"--staged", good}, "archive_status is", "never makes")
	})
	t.Run("restore: --wal-dir names an unrelated directory", func(t *testing.T) {
		v := newVictims(t)
		target := snapshot(t)
		os.RemoveAll(filepath.Join(target, "pg_wal"))
		os.Symlink("/nonexistent/wal", filepath.Join(target, "pg_wal"))
		refused(t, target, 3, []string{"--staged", good, "--wal-dir", v.dir}, "holds keep, which is not WAL", "--force")
	})
	t.Run("restore: pg_wal is a mount of a running cluster's pg_wal", func(t *testing.T) {
		target := snapshot(t)
		if out, err := exec.Command("mount", "--bind", filepath.Join(c.PGData, "pg_wal"), filepath.Join(target, "pg_wal")).CombinedOutput(); err != nil {
			t.Fatalf("mount --bind: %v: %s", err, out)
		}
		defer exec.Command("umount", filepath.Join(target, "pg_wal")).Run()
		runTool(t, nil, "restore", "--staged", good, "--pgdata", target).want(t, 3, "pg_wal is in use", "is running on")
	})
	t.Run("restore: a server in its own pid namespace is still running", func(t *testing.T) {
		// Where the server's user reaches it.
		target := filepath.Join(pgtest.TempDir(t), "data")
		if out, err := exec.Command("cp", "-a", snap, target).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
		os.Remove(filepath.Join(target, "postmaster.pid"))
		sock := pgtest.TempDir(t)
		server := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "runuser", "-u", "postgres", "--",
			in.Bin("postgres"), "-D", target, "-k", sock, "-p", strconv.Itoa(pgtest.FreePort(t)), "-c", "listen_addresses=")
		var serverLog strings.Builder
		server.Stdout, server.Stderr = &serverLog, &serverLog
		// Its own group, to stop unshare, runuser and the server at once;
		// pg_ctl would signal the pid in postmaster.pid: 1, as the
		// namespace sees it.
		server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		server.WaitDelay = time.Second
		if err := server.Start(); err != nil {
			t.Fatalf("unshare: %v", err)
		}
		defer func() {
			syscall.Kill(-server.Process.Pid, syscall.SIGKILL)
			server.Wait()
		}()
		for i := 0; ; i++ {
			if matches, _ := filepath.Glob(filepath.Join(sock, ".s.PGSQL.*")); len(matches) > 0 {
				break
			}
			if i == 200 {
				t.Fatalf("the server in its own pid namespace never listened:\n%s", serverLog.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		runTool(t, nil, "restore", "--staged", good, "--pgdata", target).want(t, 3, "is in use", "stop it first")
	})
	t.Run("restore: postgresql.auto.conf hard-linked to a file elsewhere", func(t *testing.T) {
		target := snapshot(t)
		elsewhere := filepath.Join(filepath.Dir(target), "elsewhere.conf")
		os.WriteFile(elsewhere, []byte("# someone else's settings\n"), 0o600)
		os.Remove(filepath.Join(target, "postgresql.auto.conf"))
		if err := os.Link(elsewhere, filepath.Join(target, "postgresql.auto.conf")); err != nil {
			t.Fatal(err)
		}
		runTool(t, nil, "restore", "--staged", good, "--pgdata", target).want(t, 0)
		if data, _ := os.ReadFile(elsewhere); string(data) != "# someone else's settings\n" {
			t.Errorf("restore wrote through a hard link: %q", data)
		}
		if data, _ := os.ReadFile(filepath.Join(target, "postgresql.auto.conf")); !strings.Contains(string(data), "# someone else's settings\n") ||
			!strings.Contains(string(data), "recovery_target = 'immediate'") {
			t.Errorf("postgresql.auto.conf: %q", data)
		}
	})
	t.Run("restore: --wal-dir holding WAL written after the backup", func(t *testing.T) {
		target := snapshot(t)
		os.RemoveAll(filepath.Join(target, "pg_wal"))
		os.Symlink("/nonexistent/wal", filepath.Join(target, "pg_wal"))
		db := c.DB(t)
		for i := 0; i < 3; i++ {
			pgtest.Exec(t, db, "CREATE TABLE IF NOT EXISTS later (i int); INSERT INTO later VALUES (1)")
			pgtest.Exec(t, db, "SELECT pg_switch_wal()")
		}
		pgtest.Exec(t, db, "CHECKPOINT")
		newer := copyDir(t, filepath.Join(c.PGData, "pg_wal"))
		before := treeHash(t, newer)
		refused(t, target, 3, []string{"--staged", good, "--wal-dir", newer}, "WAL written after the backup", "--force")
		if treeHash(t, newer) != before {
			t.Error("a refused restore changed --wal-dir")
		}
	})
	t.Run("restore --rehearse: --pgdata a link, data_directory elsewhere", func(t *testing.T) {
		target := snapshot(t)
		elsewhere := filepath.Join(t.TempDir(), "elsewhere")
		f, _ := os.OpenFile(filepath.Join(target, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "data_directory = '%s'\n", elsewhere)
		f.Close()
		link := filepath.Join(t.TempDir(), "link")
		os.Symlink(target, link)
		before := treeHash(t, target)
		runTool(t, nil, "restore", "--rehearse", "--staged", good, "--pgdata", link, "--pg-bin", in.BinDir,
			"--rehearse-timeout", "2m").want(t, 0, "rehearsal of good ok")
		if treeHash(t, target) != before {
			t.Error("a rehearsal changed its target")
		}
		if _, err := os.Stat(elsewhere); !os.IsNotExist(err) {
			t.Errorf("the rehearsal server used the copy's data_directory: %v", err)
		}
	})
	t.Run("verify, restore: wal_list names a file twice", func(t *testing.T) {
		bad := copyDir(t, good)
		list, _ := os.ReadFile(filepath.Join(bad, staged.WALListFile))
		forgeFile(t, bad, staged.WALListFile, append(list, list...))
		runTool(t, nil, "verify", bad).want(t, 1, "listed twice")
		refused(t, snapshot(t), 3, []string{"--staged", bad}, "listed twice")
	})
	t.Run("backup: --pgdata names a copy of the data directory", func(t *testing.T) {
		r := runTool(t, c.Env(), "--staging", filepath.Join(t.TempDir(), "s"), "--pgdata", snapshot(t), "--fast", "--", "true")
		r.want(t, 3, "is not the server's data directory")
	})
	t.Run("verify, restore: wal_list names a file outside the backup", func(t *testing.T) {
		bad := copyDir(t, good)
		list, _ := os.ReadFile(filepath.Join(bad, staged.WALListFile))
		forgeFile(t, bad, staged.WALListFile, append(list, "../../../../tmp/pgfbb-escaped\n"...))
		runTool(t, nil, "verify", bad).want(t, 1, `"../../../../tmp/pgfbb-escaped" is not a WAL file name`)
		refused(t, snapshot(t), 3, []string{"--staged", bad}, "not usable")
		if _, err := os.Lstat("/tmp/pgfbb-escaped"); err == nil {
			t.Error("a restore wrote outside the target")
		}
	})
	t.Run("verify: manifest names a file outside the backup", func(t *testing.T) {
		v := newVictims(t)
		bad := copyDir(t, good)
		secret, _ := os.ReadFile(v.file)
		rel, _ := filepath.Rel(bad, v.file)
		forgeManifest(t, bad, func(m *staged.Manifest) {
			m.Files = append(m.Files, staged.File{Path: filepath.ToSlash(rel), Size: int64(len(secret)), SHA256: sha256hex(secret)})
		})
		r := runTool(t, nil, "verify", bad)
		r.want(t, 1, "is not part of a staged backup")
		if strings.Contains(r.stdout+r.stderr, sha256hex(secret)) {
			t.Error("verify printed the hash of a file outside the backup")
		}
	})
	t.Run("verify: backup_label is a FIFO", func(t *testing.T) {
		bad := copyDir(t, good)
		os.Remove(filepath.Join(bad, staged.LabelFile))
		if err := syscall.Mkfifo(filepath.Join(bad, staged.LabelFile), 0o600); err != nil {
			t.Fatal(err)
		}
		runTool(t, nil, "verify", bad).want(t, 1, "backup_label", "a FIFO")
	})
	t.Run("verify: a segment links to /dev/zero", func(t *testing.T) {
		bad := copyDir(t, good)
		seg := filepath.Join(bad, staged.WALDir, m.StartWAL)
		os.Remove(seg)
		os.Symlink("/dev/zero", seg)
		runTool(t, nil, "verify", bad).want(t, 1, m.StartWAL, "symbolic link")
	})
	t.Run("verify: stop_lsn FFFFFFFF/FFFFFFFF", func(t *testing.T) {
		bad := copyDir(t, good)
		forgeManifest(t, bad, func(m *staged.Manifest) { m.StopLSN = 1<<64 - 1 })
		runTool(t, nil, "verify", bad).want(t, 1, "manifest")
	})
	t.Run("verify: server_version_num -5", func(t *testing.T) {
		bad := copyDir(t, good)
		forgeManifest(t, bad, func(m *staged.Manifest) { m.ServerVersionNum = -5 })
		runTool(t, nil, "verify", bad).want(t, 1, "server_version_num -5")
	})
	t.Run("verify: a newer manifest format", func(t *testing.T) {
		bad := copyDir(t, good)
		forgeManifest(t, bad, func(m *staged.Manifest) { m.FormatVersion = 99 })
		runTool(t, nil, "verify", bad).want(t, 1, "format_version 99")
	})
	t.Run("verify: SIGTERM stops it at once with 143", func(t *testing.T) {
		// Four sparse 1 GiB files take verify seconds to hash.
		bad := copyDir(t, good)
		forgeManifest(t, bad, func(fm *staged.Manifest) {
			fm.WALSegmentSize = 1 << 30
			fm.StartWAL = fmt.Sprintf("%08X%08X%08X", fm.Timeline, 0, 0)
			fm.StopWAL = fm.StartWAL
			for i := 1; i <= 4; i++ {
				name := fmt.Sprintf("%s/%08X%08X%08X", staged.WALDir, fm.Timeline, 0, 0x10+i)
				f, err := os.Create(filepath.Join(bad, name))
				if err == nil {
					err = f.Truncate(1 << 30)
					f.Close()
				}
				if err != nil {
					t.Fatal(err)
				}
				fm.Files = append(fm.Files, staged.File{Path: name, Size: 1 << 30, SHA256: strings.Repeat("0", 64)})
			}
		})
		cmd, stderr := tool(nil, "verify", bad)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		began := time.Now()
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 143 || !strings.Contains(stderr.String(), "interrupted by SIGTERM") {
			t.Fatalf("verify after SIGTERM: exit %d, %s%s", code, stdoutOf(cmd), stderr)
		}
		if strings.Contains(stdoutOf(cmd), ": ok:") {
			t.Error("an interrupted verify said ok")
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("verify took %s to stop after SIGTERM", d)
		}
	})
	t.Run("staging: pre-created by another user, mode 0777", func(t *testing.T) {
		v := newVictims(t)
		evil := filepath.Join(t.TempDir(), "staging")
		os.Mkdir(evil, 0o777)
		os.Chmod(evil, 0o777)
		os.Chown(evil, uid, gid)
		os.Symlink(v.file, filepath.Join(evil, staged.LockFile))
		runTool(t, c.Env(), "--staging", evil, "--label", "x", "--fast", "--", "true").want(t, 2, "owned by uid", "chown")
		os.Chown(evil, 0, 0)
		runTool(t, c.Env(), "--staging", evil, "--label", "x", "--fast", "--", "true").want(t, 2, "writable by group or others", "chmod go-w")
		os.Chmod(evil, os.ModeSticky|0o777)
		runTool(t, c.Env(), "--staging", evil, "--label", "x", "--fast", "--", "true").want(t, 2, "chmod go-w")
	})
	t.Run("hook: run directory pre-created by another user, links planted", func(t *testing.T) {
		v := newVictims(t)
		stg := filepath.Join(t.TempDir(), "staging")
		os.Mkdir(stg, 0o700)
		run := filepath.Join(stg, ".pgfbb-run")
		os.Mkdir(run, 0o777)
		os.Chmod(run, 0o777)
		os.Chown(run, uid, gid)
		for _, name := range []string{"x.log", "x.state.tmp"} {
			os.Symlink(v.file, filepath.Join(run, name))
		}
		runTool(t, c.Env(), "pre", "--staging", stg, "--label", "x", "--fast").want(t, 2, ".pgfbb-run is owned by uid")
		runTool(t, nil, "status", "--staging", stg).want(t, 2, "owned by uid")
		runTool(t, nil, "post", "--staging", stg, "--label", "x").want(t, 2, "owned by uid")
	})
	t.Run("hook: a socket served by another user is no holder", func(t *testing.T) {
		stg := filepath.Join(t.TempDir(), "staging")
		run := filepath.Join(stg, ".pgfbb-run")
		os.MkdirAll(run, 0o700)
		theirs, err := os.MkdirTemp("", "pgfbb-forger-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(theirs)
		os.Chown(theirs, uid, gid)
		sock := filepath.Join(theirs, "s")
		// The test binary plays the forger, from where nobody may run it.
		self := filepath.Join(filepath.Dir(toolBin), "forger")
		if out, err := exec.Command("cp", os.Args[0], self).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
		forger := exec.Command(self)
		forger.Env = append(os.Environ(), forgedHolderEnv+"="+sock)
		forger.Stderr = os.Stderr
		forger.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		if err := forger.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { forger.Process.Kill(); forger.Wait() }()
		waitSocket(t, sock)
		sum := sha256.Sum256([]byte("x"))
		if err := os.Rename(sock, filepath.Join(run, hex.EncodeToString(sum[:8])+".sock")); err != nil {
			t.Fatal(err)
		}
		runTool(t, nil, "post", "--staging", stg, "--label", "x").want(t, 2, "runs as uid "+strconv.Itoa(uid), "refused")
	})
	t.Run("hook: a corrupt record breaks nothing else", func(t *testing.T) {
		stg := filepath.Join(t.TempDir(), "staging")
		run := filepath.Join(stg, ".pgfbb-run")
		os.MkdirAll(run, 0o700)
		os.WriteFile(filepath.Join(run, "bad.state"), []byte("{garbage"), 0o600)
		ended, _ := json.Marshal(map[string]any{"label": "ended", "exit_code": 0, "summary": "backup ended published"})
		os.WriteFile(filepath.Join(run, "ended.result"), ended, 0o600)
		runTool(t, nil, "status", "--staging", stg).want(t, 0, "bad", "corrupt", "ended")
		runTool(t, nil, "post", "--staging", stg).want(t, 0, "skipped the records of bad", "backup ended published")
		runTool(t, nil, "post", "--staging", stg, "--label", "bad").want(t, 2, "cannot be read")
	})
	t.Run("restore: a live cluster's data directory by another path", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "link")
		os.Symlink(c.PGData, link)
		bind := t.TempDir()
		if out, err := exec.Command("mount", "--bind", c.PGData, bind).CombinedOutput(); err != nil {
			t.Fatalf("mount --bind: %v: %s", err, out)
		}
		defer exec.Command("umount", bind).Run()
		// The live directory changes as the server runs: no hash here, the
		// refusal comes before any write.
		for _, target := range []string{link, bind} {
			runTool(t, nil, "restore", "--staged", good, "--pgdata", target).want(t, 3, "is in use", "is running on", "stop it first")
		}
	})
	t.Run("connect: a password in a malformed URL is not printed", func(t *testing.T) {
		r := runTool(t, nil, "--staging", filepath.Join(t.TempDir(), "s"), "-d", "postgres://u:S3cretPW@[::1", "--", "true")
		r.want(t, 2, "connection settings")
		if strings.Contains(r.stdout+r.stderr, "S3cretPW") {
			t.Error("the password was printed")
		}
	})
	t.Run("connect: a password in -d is warned about and not printed", func(t *testing.T) {
		r := runTool(t, nil, "--staging", filepath.Join(t.TempDir(), "s"), "--fast",
			"-d", c.ConnString("postgres")+" password=S3cretPW", "--", "true")
		r.want(t, 0, "process list", "PGPASSFILE")
		if strings.Contains(r.stdout+r.stderr, "S3cretPW") {
			t.Error("the password was printed")
		}
	})
	t.Run("restore: a target before the backup's end", func(t *testing.T) {
		refused(t, snapshot(t), 3, []string{"--staged", good, "--target", "0/0", "--restore-command", "false"}, "before the end of backup")
	})
	t.Run("restore: a restore command with a newline", func(t *testing.T) {
		refused(t, snapshot(t), 2, []string{"--staged", good, "--restore-command", "cp /a/%f %p\nrecovery_target = 'immediate'"}, "control character")
	})
	t.Run("restore: tablespace_map with a bad OID or a relative location", func(t *testing.T) {
		for _, spcmap := range []string{"x /tmp/ts\n", "16400 relative/ts\n"} {
			bad := copyDir(t, good)
			forgeFile(t, bad, staged.MapFile, []byte(spcmap))
			refused(t, snapshot(t), 3, []string{"--staged", bad}, "tablespace_map line 1")
		}
	})
}

// forgedHolderEnv makes the test binary a forged holder (see TestMain).
const forgedHolderEnv = "PGFBB_TEST_FORGED_HOLDER"

// waitSocket waits until a unix socket accepts connections.
func waitSocket(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if conn, err := net.Dial("unix", path); err == nil {
			conn.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s never listened", path)
}

// forgeHolder is what the test binary does when the threat test runs it
// as another user: answer post on the socket at path, claiming success.
func forgeHolder(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(path, 0o777)
	for {
		conn, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		json.NewEncoder(conn).Encode(map[string]any{"label": "x", "exit_code": 0, "summary": "forged success"})
		conn.Close()
	}
}
