// Package pgtest makes throwaway PostgreSQL clusters for tests: initdb in a
// temporary directory, a private socket directory and port, run as the
// postgres OS user when the tests run as root, and removed when the test ends.
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq" // the driver tests talk to the cluster with
)

// Install is one PostgreSQL installation.
type Install struct {
	Major  int
	BinDir string
	LibDir string // set for relocatable builds that need LD_LIBRARY_PATH
}

// Bin is the path of a server program.
func (in Install) Bin(name string) string { return filepath.Join(in.BinDir, name) }

// DefaultInstall is the installation the tests use: PGFBB_TEST_PGBIN when
// set, else the newest /usr/lib/postgresql/N/bin. Missing one fails the test.
func DefaultInstall(t testing.TB) Install {
	t.Helper()
	bin := os.Getenv("PGFBB_TEST_PGBIN")
	if bin == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) < majorOf(dirs[j]) })
		if len(dirs) == 0 {
			t.Fatal("no PostgreSQL server found under /usr/lib/postgresql: run scripts/test.sh, which installs it, or set PGFBB_TEST_PGBIN")
		}
		bin = dirs[len(dirs)-1]
	}
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		t.Fatalf("%s/postgres --version: %v", bin, err)
	}
	// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
	f := strings.Fields(string(out))
	if len(f) < 3 {
		t.Fatalf("unexpected postgres --version output %q", out)
	}
	major, _ := strconv.Atoi(strings.Split(f[2], ".")[0])
	return Install{Major: major, BinDir: bin}
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// ClientBin finds a client program (psql, pgbench, pg_amcheck): the
// installation's own, else Debian's newest, which work against every major.
func (in Install) ClientBin(t testing.TB, name string) string {
	t.Helper()
	if p := in.Bin(name); fileExists(p) {
		return p
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(dirs) == 0 {
		t.Fatalf("%s not found: install postgresql-client (scripts/test.sh does)", name)
	}
	return dirs[len(dirs)-1]
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// osUser is who runs the server: postgres when we are root.
type osUser struct {
	cred *syscall.Credential
}

func serverUser(t testing.TB) osUser {
	t.Helper()
	if os.Geteuid() != 0 {
		return osUser{}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal("tests run as root need the postgres OS user to run the server: install postgresql (scripts/test.sh does)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return osUser{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// Chown gives path to the server's OS user (a no-op when not root).
func Chown(t testing.TB, path string) {
	t.Helper()
	u := serverUser(t)
	if u.cred == nil {
		return
	}
	if err := os.Chown(path, int(u.cred.Uid), int(u.cred.Gid)); err != nil {
		t.Fatal(err)
	}
}

// Command prepares a server program to run as the server's OS user, with the
// installation's libraries.
func (in Install) Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	path := name
	if !filepath.IsAbs(name) {
		path = in.Bin(name)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = os.Environ()
	if in.LibDir != "" {
		cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH="+in.LibDir)
	}
	if u := serverUser(t); u.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
		cmd.Env = append(cmd.Env, "HOME=/tmp")
	}
	cmd.Dir = "/"
	return cmd
}

// Run runs a server program as the server's OS user and fails the test with
// its output when it fails.
func (in Install) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := in.Command(t, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TempDir makes a directory the server's OS user owns, removed at cleanup
// unless PGFBB_TEST_KEEP is set.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgfbb-test-")
	if err != nil {
		t.Fatal(err)
	}
	Chown(t, dir)
	t.Cleanup(func() {
		if os.Getenv("PGFBB_TEST_KEEP") != "" {
			t.Logf("kept %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// Options shape a new cluster.
type Options struct {
	// PGData places the data directory (it must not exist yet, its parent
	// must be writable by the server's OS user); default: in a temp dir.
	PGData   string
	InitArgs []string // extra initdb arguments, e.g. --wal-segsize=1
	Conf     []string // extra postgresql.conf lines
}

// Cluster is a running throwaway cluster.
type Cluster struct {
	Install
	PGData string
	Socket string // the socket directory
	Port   int
	Log    string
}

// Existing wraps a data directory that already exists (a restored backup)
// with its own socket directory and log; the server is stopped when the test
// ends if it was started.
func Existing(t testing.TB, in Install, pgdata string) *Cluster {
	t.Helper()
	dir := TempDir(t)
	c := &Cluster{Install: in, PGData: pgdata, Socket: filepath.Join(dir, "sock"), Log: filepath.Join(dir, "server.log")}
	if err := os.Mkdir(c.Socket, 0o700); err != nil {
		t.Fatal(err)
	}
	Chown(t, c.Socket)
	t.Cleanup(func() {
		c.Stop(t)
		if t.Failed() {
			c.dumpLog(t)
		}
	})
	return c
}

// New initialises and starts a cluster; it is stopped and removed when the
// test ends.
func New(t testing.TB, in Install, opts Options) *Cluster {
	t.Helper()
	c := Existing(t, in, opts.PGData)
	if c.PGData == "" {
		c.PGData = filepath.Join(filepath.Dir(c.Socket), "data")
	}
	args := append([]string{"-D", c.PGData, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"}, opts.InitArgs...)
	in.Run(t, "initdb", args...)
	conf := append([]string{
		"listen_addresses = ''",
		"shared_buffers = 32MB",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		"wal_level = replica",
		"log_line_prefix = '%m [%p] %q%a '",
		"log_connections = on",
		"log_disconnections = on",
	}, opts.Conf...)
	c.AppendConf(t, conf...)
	c.Start(t)
	return c
}

// Standby clones c into pgdata (an empty directory the server's OS user
// owns, or "" for a temp dir) and starts the clone as a hot standby that
// streams from c through a replication slot; it is stopped when the test
// ends. The clone is a low-level backup (start, copy, stop) rather than
// pg_basebackup's: Debian's client cannot clone a newer server, and the npm
// builds ship none.
func (c *Cluster) Standby(t testing.TB, pgdata string) *Cluster {
	t.Helper()
	s := Existing(t, c.Install, pgdata)
	if s.PGData == "" {
		s.PGData = filepath.Join(filepath.Dir(s.Socket), "data")
		if err := os.Mkdir(s.PGData, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	conn, err := c.DB(t).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	slot := fmt.Sprintf("standby_%d", s.Port+int(time.Now().UnixNano()%1e6))
	Exec(t, conn, "SELECT pg_create_physical_replication_slot('"+slot+"', true)")
	_, stop := c.StartBackup(t, conn, "standby")
	copyCluster(t, c.PGData, s.PGData)
	if err := os.Chmod(s.PGData, 0o700); err != nil {
		t.Fatal(err)
	}
	label := stop()
	conf := []string{
		fmt.Sprintf("primary_conninfo = 'host=%s port=%d user=postgres'", c.Socket, c.Port),
		"primary_slot_name = '" + slot + "'",
	}
	files := map[string]string{"backup_label": label}
	if c.Major >= 12 {
		files["standby.signal"] = ""
		s.AppendConf(t, conf...)
	} else {
		files["recovery.conf"] = strings.Join(append(conf, "standby_mode = 'on'"), "\n") + "\n"
	}
	for name, text := range files {
		path := filepath.Join(s.PGData, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		Chown(t, path)
	}
	s.Start(t)
	return s
}

// StartBackup starts a non-exclusive backup in conn with the plain
// low-level API of c's major (no slot, unlike pgfbb-wrap), and returns its
// first WAL file and the stop that returns the backup label.
func (c *Cluster) StartBackup(t testing.TB, conn *sql.Conn, label string) (startWAL string, stop func() string) {
	t.Helper()
	start, end := "pg_backup_start($1, true)", "SELECT labelfile FROM pg_backup_stop(false)"
	if c.Major < 15 {
		start, end = "pg_start_backup($1, true, false)", "SELECT labelfile FROM pg_stop_backup(false, false)"
	}
	ctx := context.Background()
	if err := conn.QueryRowContext(ctx, "SELECT pg_walfile_name("+start+")", label).Scan(&startWAL); err != nil {
		t.Fatalf("start backup: %v", err)
	}
	return startWAL, func() string {
		t.Helper()
		var text string
		if err := conn.QueryRowContext(ctx, end).Scan(&text); err != nil {
			t.Fatalf("stop backup: %v", err)
		}
		return text
	}
}

// copyCluster copies a running cluster's data directory, as a backup in
// progress allows: files that vanish while it reads are skipped, and the
// WAL, the slots and the pid file are left out.
func copyCluster(t testing.TB, from, to string) {
	t.Helper()
	skip := map[string]bool{"postmaster.pid": true, "postmaster.opts": true}
	empty := map[string]bool{"pg_wal": true, "pg_replslot": true}
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(from, path)
		if errors.Is(err, os.ErrNotExist) || skip[rel] {
			return nil
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		switch {
		case rel == ".":
			return nil
		case d.IsDir():
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
			Chown(t, dst)
			if empty[rel] {
				return filepath.SkipDir
			}
			return nil
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			return err
		}
		Chown(t, dst)
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
	os.Mkdir(filepath.Join(to, "pg_wal", "archive_status"), 0o700)
	Chown(t, filepath.Join(to, "pg_wal", "archive_status"))
}

// WaitReplayed waits until standby s has replayed everything c has written.
func (c *Cluster) WaitReplayed(t testing.TB, s *Cluster) {
	t.Helper()
	target := QueryString(t, c.DB(t), "SELECT pg_current_wal_lsn()")
	for i := 0; ; i++ {
		if QueryString(t, s.DB(t), "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target) == "true" {
			return
		}
		if i == 600 {
			t.Fatalf("standby has not replayed up to %s after 60s", target)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// AppendConf adds lines to postgresql.conf.
func (c *Cluster) AppendConf(t testing.TB, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(c.PGData, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

// Start starts the server on a free port; socket and port are given on the
// command line so that a restored copy of a data directory never collides
// with its original.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.TryStart(t); err != nil {
		t.Fatal(err)
	}
}

// StartRecovered starts a restored cluster and waits until recovery has
// ended and it accepts writes; it returns a connection pool.
func (c *Cluster) StartRecovered(t testing.TB) *sql.DB {
	t.Helper()
	c.Start(t)
	db := c.DB(t)
	for i := 0; QueryString(t, db, "SELECT pg_is_in_recovery()") == "true"; i++ {
		if i == 600 {
			t.Fatal("restored cluster still in recovery after 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return db
}

// TryStart is Start for a server that may rightly refuse to start; the error
// carries the tail of the server log.
func (c *Cluster) TryStart(t testing.TB) error {
	t.Helper()
	c.Port = FreePort(t)
	out, err := c.Command(t, "pg_ctl", "start", "-w", "-t", "120", "-D", c.PGData, "-l", c.Log,
		"-o", fmt.Sprintf("-p %d -k %s", c.Port, c.Socket)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, c.LogTail(4000))
	}
	return nil
}

// LogTail returns the end of the server log.
func (c *Cluster) LogTail(n int) string {
	data, _ := os.ReadFile(c.Log)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// Stop stops the server fast if it runs.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if !fileExists(filepath.Join(c.PGData, "postmaster.pid")) {
		return
	}
	out, err := c.Command(t, "pg_ctl", "stop", "-w", "-m", "fast", "-D", c.PGData).CombinedOutput()
	if err != nil {
		t.Logf("pg_ctl stop: %v\n%s", err, out)
		c.Command(t, "pg_ctl", "stop", "-w", "-m", "immediate", "-D", c.PGData).Run()
	}
}

func (c *Cluster) dumpLog(t testing.TB) {
	t.Logf("server log %s (tail):\n%s", c.Log, c.LogTail(16000))
}

// FreePort returns a TCP port nobody listens on now. The server listens only
// on its socket, but the port names the socket and keys shared memory.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ConnString is a conninfo for the superuser postgres on database dbname.
func (c *Cluster) ConnString(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.Socket, c.Port, dbname)
}

// Env is the libpq environment that points a client at the cluster.
func (c *Cluster) Env() []string {
	return []string{"PGHOST=" + c.Socket, "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=postgres", "PGDATABASE=postgres"}
}

// DB opens a connection pool, closed when the test ends.
func (c *Cluster) DB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", c.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Execer is a *sql.DB, or a *sql.Conn for statements that must share one
// session.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Exec runs statements and fails the test on error.
func Exec(t testing.TB, db Execer, query string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// QueryString returns the first column of the first row as text.
func QueryString(t testing.TB, db *sql.DB, query string, args ...any) string {
	t.Helper()
	var s sql.NullString
	if err := db.QueryRow(query, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s.String
}

// Client runs a client program (psql, pgbench, pg_amcheck) against the
// cluster and returns its combined output; it fails the test on error.
func (c *Cluster) Client(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.ClientBin(t, name), args...)
	cmd.Env = append(os.Environ(), c.Env()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
