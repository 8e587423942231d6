package restore

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
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// Rehearsal is what a restore rehearsal measured.
type Rehearsal struct {
	Label         string
	Copy          string        // where the throwaway copy was
	ToConsistency time.Duration // from server start to "consistent recovery state reached"
	ToReady       time.Duration // from server start to the end of recovery, or the pause or shutdown at its target
	Databases     int           // what the query after recovery counted; -1 after a shutdown at the target
	// Stopped is the server's own line on where recovery stopped, e.g.
	// "recovery stopping after commit of transaction 747, time ..."; empty
	// when it replayed to the end of the WAL.
	Stopped string
	// LastCommit is the time of the last transaction recovery replayed, as
	// the server logged it at the end of recovery; empty when it did not.
	LastCommit string
	// FromArchive counts the files restore_command brought, as the server
	// logged them.
	FromArchive int
}

// RehearseOptions add to Options what a rehearsal needs.
type RehearseOptions struct {
	Options
	BinDir  string        // the server's programs; default /usr/lib/postgresql/MAJOR/bin
	Scratch string        // where the copy goes; on the target's file system it is a reflink
	Timeout time.Duration // for recovery to finish
	User    string        // the role to query as; default: the data directory's owner's name
}

// Rehearse restores into a throwaway copy of the target, starts a private
// server on it (own socket, no TCP, no archiving), waits until recovery has
// reached consistency and ended, runs a query, stops the server and removes
// the copy. The target itself is only read.
func Rehearse(ctx context.Context, o RehearseOptions) (*Rehearsal, error) {
	// The copy is of the data directory alone: a server started on it would
	// use the original tablespaces and, through a pg_wal link, WAL directory.
	b, err := staged.Open(o.Staged)
	if err != nil {
		return nil, fmt.Errorf("%w: staged backup %s is not usable (pgfbb-wrap verify lists why): %w", ErrRefused, o.Staged, err)
	}
	hasMap := b.HasTablespaceMap()
	b.Close()
	wal, walErr := os.Lstat(filepath.Join(o.PGData, "pg_wal"))
	if hasMap || (walErr == nil && wal.Mode()&os.ModeSymlink != 0) || o.WALDir != "" {
		return nil, fmt.Errorf("%w: a rehearsal copies the data directory only, and this backup has tablespaces or pg_wal on "+
			"another volume: restore it for real into snapshots of every volume instead", ErrRefused)
	}
	m, err := Check(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	major := pgformat.MajorOf(m.ServerVersionNum)
	if o.BinDir == "" {
		o.BinDir = fmt.Sprintf("/usr/lib/postgresql/%d/bin", major)
	}
	if _, err := os.Stat(filepath.Join(o.BinDir, "pg_ctl")); err != nil {
		return nil, fmt.Errorf("%w: no PostgreSQL %d server programs in %s: give --pg-bin", ErrRefused, major, o.BinDir)
	}
	scratch, err := os.MkdirTemp(o.Scratch, "pgfbb-rehearse-")
	if err != nil {
		return nil, fmt.Errorf("rehearsal directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	// The server's user must reach the copy and the socket.
	if err := os.Chmod(scratch, 0o755); err != nil {
		return nil, err
	}
	copyDir, sock := filepath.Join(scratch, "data"), filepath.Join(scratch, "sock")
	// cp copies a link as a link: copy what --pgdata names.
	src, err := filepath.EvalSymlinks(o.PGData)
	if err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", src, copyDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy %s: %v: %s", src, err, bytes.TrimSpace(out))
	}
	fi, err := os.Stat(copyDir)
	if err != nil {
		return nil, err
	}
	owner := fi.Sys().(*syscall.Stat_t)
	if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, err
	}
	if err := giveTo(sock, owner); err != nil {
		return nil, err
	}
	ro := o.Options
	ro.PGData = copyDir
	ro.WALDir = "" // the copy's own pg_wal
	if _, err := Prepare(ctx, ro); err != nil {
		return nil, err
	}
	// Only the rehearsal reaches this server, through a socket in a
	// directory no one else can enter.
	hba := filepath.Join(scratch, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte("local all all trust\n"), 0o600); err != nil {
		return nil, err
	}
	if err := giveTo(hba, owner); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// The log is in the rehearsal's own directory, where the server's user
	// may write it but not put anything else in its place.
	const logName = "server.log"
	logFile := filepath.Join(scratch, logName)
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		return nil, err
	}
	if err := giveTo(logFile, owner); err != nil {
		return nil, err
	}
	scratchDir, err := beneath.Open(scratch)
	if err != nil {
		return nil, err
	}
	defer scratchDir.Close()
	readLog := func() []byte {
		data, _ := scratchDir.ReadFile(logName, 64<<20)
		return data
	}
	pgctl := func(args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(o.BinDir, "pg_ctl"), args...)
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+filepath.Join(o.BinDir, "..", "lib"))
		cmd.Dir = "/"
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: owner.Uid, Gid: owner.Gid}}
		}
		return cmd
	}
	// The command line overrides what the copy's configuration says about
	// where the data, the socket and a pid file go.
	// hot_standby lets a pause at the target be queried (off, it shuts down).
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses='' -c hba_file=%s -c data_directory=%s -c external_pid_file='' "+
		"-c archive_mode=off -c hot_standby=on -c cluster_name=pgfbb-rehearsal -c lc_messages=C", port, quote(sock), quote(hba), quote(copyDir))
	started := time.Now()
	defer pgctl("stop", "-D", copyDir, "-m", "immediate", "-w").Run()
	// pg_ctl waits for connections, which come only after consistency
	// (the archive may be slow: as long as the rehearsal may take), and
	// which a server that shuts down at its target may never take.
	wait := strconv.Itoa(max(int(o.Timeout.Seconds()), 1))
	if out, err := pgctl("start", "-D", copyDir, "-l", logFile, "-t", wait, "-o", opts).CombinedOutput(); err != nil &&
		!(o.Target.action() == "shutdown" && bytes.Contains(readLog(), []byte("shutdown at recovery target"))) {
		return nil, fmt.Errorf("start rehearsal server: %v: %s; server log:\n%s", err, bytes.TrimSpace(out), tail(readLog()))
	}

	r := &Rehearsal{Label: m.Label, Copy: copyDir}
	deadline := time.Now().Add(o.Timeout)
	role := o.User
	if role == "" {
		role = ownerName(owner)
	}
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable connect_timeout=5", sock, port, quoteConninfo(role))
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	for done := false; !done; {
		log := readLog()
		if r.ToConsistency == 0 && bytes.Contains(log, []byte("consistent recovery state reached")) {
			r.ToConsistency = time.Since(started)
		}
		if r.ToConsistency != 0 {
			if done, err = recovered(ctx, db, o.Target, copyDir, log); err != nil {
				return nil, fmt.Errorf("connect to the rehearsal server as %q: %w: give --rehearse-user, a superuser of the cluster", role, err)
			}
		}
		switch {
		case done:
		case ctx.Err() != nil:
			return nil, context.Cause(ctx)
		case time.Now().After(deadline):
			return nil, fmt.Errorf("recovery did not finish within %s; server log:\n%s", o.Timeout, tail(log))
		case exited(copyDir):
			return nil, fmt.Errorf("rehearsal server stopped during recovery; server log:\n%s", tail(readLog()))
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	r.ToReady = time.Since(started)
	log := readLog()
	if m := stoppedLine.FindSubmatch(log); m != nil {
		r.Stopped = string(m[1])
	}
	if m := lastCommitLine.FindSubmatch(log); m != nil {
		r.LastCommit = string(m[1])
	}
	r.FromArchive = bytes.Count(log, []byte("LOG:  restored log file "))
	if o.Target.action() == "shutdown" {
		r.Databases = -1
		return r, nil
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_database").Scan(&r.Databases); err != nil {
		return nil, fmt.Errorf("query after recovery: %w", err)
	}
	if out, err := pgctl("stop", "-D", copyDir, "-m", "fast", "-w").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("stop rehearsal server: %v: %s", err, bytes.TrimSpace(out))
	}
	return r, nil
}

// The server's log lines on where recovery stopped and what it replayed
// last; lc_messages=C keeps them in English.
var (
	stoppedLine    = regexp.MustCompile(`LOG:  (recovery stopping [^\n]*)`)
	lastCommitLine = regexp.MustCompile(`LOG:  last completed transaction was at log time ([^\n]*)`)
)

// recovered tells whether recovery is over as the target's action says:
// promoted, paused at the target, or shut down there. A role the server
// does not know is an error; other failures to connect are a server that
// does not accept connections yet.
func recovered(ctx context.Context, db *sql.DB, t Target, pgdata string, log []byte) (bool, error) {
	query := "SELECT NOT pg_is_in_recovery()"
	switch t.action() {
	case "shutdown":
		return exited(pgdata) && bytes.Contains(log, []byte("shutdown at recovery target")), nil
	case "pause":
		if !bytes.Contains(log, []byte("recovery stopping")) {
			return false, nil
		}
		query = "SELECT pg_is_wal_replay_paused()"
	}
	var got bool
	err := db.QueryRowContext(ctx, query).Scan(&got)
	if pq.As(err, pqerror.InvalidAuthorizationSpecification) != nil {
		return false, err
	}
	return err == nil && got, nil
}

// exited reports whether the server has gone: pg_ctl start returns before
// recovery, and a failed recovery removes postmaster.pid.
func exited(pgdata string) bool {
	_, err := os.Stat(filepath.Join(pgdata, "postmaster.pid"))
	return errors.Is(err, os.ErrNotExist)
}

// tail is the end of a log, for an error message.
func tail(log []byte) string {
	return string(log[max(0, len(log)-4000):])
}

// quote quotes a value for the postgres command line that pg_ctl passes
// through a shell.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ownerName is the role to connect as: initdb names the bootstrap superuser
// after the OS user that owns the data directory, unless told otherwise.
func ownerName(owner *syscall.Stat_t) string {
	if u, err := user.LookupId(strconv.Itoa(int(owner.Uid))); err == nil {
		return u.Username
	}
	return "postgres"
}

// quoteConninfo quotes a value for a conninfo string.
func quoteConninfo(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

// giveTo gives a file of the rehearsal's own directory to the server's user.
func giveTo(path string, owner *syscall.Stat_t) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(path, int(owner.Uid), int(owner.Gid))
}
