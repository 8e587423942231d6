// Package hook runs one backup across two commands, for orchestrators that
// can only run a command before the snapshot and another after it. The
// non-exclusive backup API ends a backup with its session, so pre starts a
// detached holder process (this binary again) that owns the session; post
// and abort reach it over a unix socket in the run directory.
//
// Per label, the run directory holds:
//
//	LABEL.lock    flock held by the holder for its whole life
//	HASH.sock     the holder's control socket (0600), named for the label
//	LABEL.state   written once the backup has started (pid, LSN, ...)
//	LABEL.result  the outcome, when the holder ended with no post to tell
//	LABEL.log     the holder's log; it outlives the holder when no one
//	              received the outcome, or when the holder died
package hook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"golang.org/x/sys/unix"
)

// DefaultRunDir is the run directory used when none is given: inside the
// staging directory, where a label cannot start with a dot.
func DefaultRunDir(staging string) string { return filepath.Join(staging, ".pgfbb-run") }

// Statuses of an entry in the run directory.
const (
	StatusStarting = "starting" // the holder is connecting and starting the backup
	StatusHeld     = "held"     // the backup has started and waits for post or abort
	StatusEnded    = "ended"    // the holder ended on its own; post prints its report
	StatusDead     = "dead"     // the holder died without stopping the backup
	StatusCorrupt  = "corrupt"  // its records cannot be read: shown, never acted on
)

// State is what a holder records once its backup has started.
type State struct {
	Label       string            `json:"label"`
	PID         int               `json:"pid"`
	Vars        map[string]string `json:"vars"` // PGFBB_* as a snapshot command would see them
	StartedAt   time.Time         `json:"started_at"`
	HoldTimeout time.Duration     `json:"hold_timeout"`
	Partial     string            `json:"partial"` // where the backup is being staged
	Log         string            `json:"log"`
	Notes       []string          `json:"notes,omitempty"` // warnings for pre to print
}

// Result is the outcome of a held backup, as post, abort or pre print it.
type Result struct {
	Label    string `json:"label"`
	ExitCode int    `json:"exit_code"`
	Report   string `json:"report,omitempty"`  // what the wrapper would print for this outcome
	Summary  string `json:"summary,omitempty"` // one line on a published backup
	Path     string `json:"path,omitempty"`    // the published backup
	// JSON is the report as the wrapper's --json prints it.
	JSON json.RawMessage `json:"json,omitempty"`
	// Monitor is where pre was told to report the outcome.
	Monitor *Monitor `json:"monitor,omitempty"`
}

// Failed is the error of a command whose held backup did not succeed: the
// result says what to print and the exit code.
type Failed struct{ Result *Result }

func (f *Failed) Error() string {
	return fmt.Sprintf("backup %s failed with exit code %d", f.Result.Label, f.Result.ExitCode)
}

// Err is nil for a successful outcome and a *Failed otherwise.
func (r *Result) Err() error {
	if r.ExitCode == backup.ExitOK {
		return nil
	}
	return backup.WithExitCode(&Failed{Result: r}, r.ExitCode)
}

// Entry is one label in the run directory.
type Entry struct {
	Label  string
	Status string
	State  *State  // from LABEL.state, when the backup started
	Result *Result // from LABEL.result, when ended
	// Problem says what is wrong with a record that could not be read.
	Problem string
}

// errBusy means a live holder owns the label.
var errBusy = errors.New("held by a running holder")

type runDir string

// check refuses a run directory someone else could change: its sockets
// and records decide which backup a post finishes and what it reports. A
// missing one holds nothing.
func (d runDir) check() error {
	if _, err := os.Stat(string(d)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := beneath.CheckPrivate(string(d)); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	return nil
}

// peerTrusted refuses the other end of a control socket unless it runs as
// this process's user or as root: anyone else who managed to place a
// socket there is not a holder of ours, whatever it answers.
func peerTrusted(conn net.Conn) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return errors.New("control connection is not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if euid := os.Geteuid(); int(cred.Uid) != euid && cred.Uid != 0 {
		return fmt.Errorf("the other end (pid %d) runs as uid %d, not as uid %d or root: refused", cred.Pid, cred.Uid, euid)
	}
	return nil
}

func (d runDir) path(label, kind string) string {
	if kind == "sock" {
		return filepath.Join(string(d), sockName(label))
	}
	return filepath.Join(string(d), label+"."+kind)
}

// sockName is short whatever the label, because a socket's whole address
// must fit in 108 bytes; see socketAddr.
func sockName(label string) string {
	sum := sha256.Sum256([]byte(label))
	return hex.EncodeToString(sum[:8]) + ".sock"
}

// socketAddr calls fn with an address of label's socket that fits in a
// sockaddr_un however long the run directory's path is: the socket is
// reached through the directory's descriptor.
func (d runDir) socketAddr(label string, fn func(addr string) error) error {
	dir, err := os.Open(string(d))
	if err != nil {
		return err
	}
	defer dir.Close()
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), sockName(label)))
}

// lock takes the label, retrying for up to wait: a status probe holds the
// lock for an instant, a live holder for its whole life.
func (d runDir) lock(label string, wait time.Duration) (*os.File, error) {
	deadline := time.Now().Add(wait)
	for {
		f, err := d.tryLock(label)
		if !errors.Is(err, errBusy) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d runDir) tryLock(label string) (*os.File, error) {
	path := d.path(label, "lock")
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", label, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errBusy
			}
			return nil, fmt.Errorf("lock %s: %w", label, err)
		}
		// Whoever releases a label removes its lock file while holding the
		// lock; a lock on a removed file would protect nothing.
		var held, onDisk unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &onDisk) == nil &&
			held.Dev == onDisk.Dev && held.Ino == onDisk.Ino {
			return f, nil
		}
		f.Close()
	}
}

// release removes the label's files, except kept kinds, then its lock.
func (d runDir) release(lock *os.File, label string, keep ...string) {
	for _, kind := range []string{"sock", "state", "result", "log"} {
		if !slices.Contains(keep, kind) {
			os.Remove(d.path(label, kind))
		}
	}
	os.Remove(d.path(label, "lock"))
	lock.Close()
}

// labels lists every label with a file in the run directory.
func (d runDir) labels() ([]string, error) {
	entries, err := os.ReadDir(string(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	var labels []string
	for _, e := range entries {
		label, kind, ok := cutKind(e.Name())
		if ok && kind != "log" && kind != "sock" && staged.ValidateLabel(label) == nil && !slices.Contains(labels, label) {
			labels = append(labels, label)
		}
	}
	return labels, nil
}

func cutKind(name string) (label, kind string, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", "", false
	}
	label, kind = name[:i], name[i+1:]
	return label, kind, slices.Contains([]string{"lock", "sock", "state", "result", "log"}, kind)
}

// entry reads what the run directory says about label. The lock is probed
// and released at once; a label with nothing but a lock file left is no
// entry, and its lock file is removed.
func (d runDir) entry(label string) (*Entry, error) {
	e := &Entry{Label: label}
	lock, err := d.tryLock(label)
	switch {
	case errors.Is(err, errBusy):
		e.Status = StatusStarting
		if e.State, err = readJSON[State](d.path(label, "state")); err != nil {
			e.Problem = err.Error()
		}
		if e.State != nil {
			e.Status = StatusHeld
		}
		return e, nil
	case err != nil:
		return nil, err
	}
	defer lock.Close()
	var rerr, serr error
	e.Result, rerr = readJSON[Result](d.path(label, "result"))
	e.State, serr = readJSON[State](d.path(label, "state"))
	switch {
	case rerr != nil || serr != nil:
		e.Status, e.Problem = StatusCorrupt, errors.Join(rerr, serr).Error()
	case e.Result != nil:
		e.Status = StatusEnded
	case e.State != nil:
		e.Status = StatusDead
	default:
		d.release(lock, label, "log")
		return nil, nil
	}
	return e, nil
}

// List reads every entry of the run directory dir, oldest first.
func List(dir string) ([]Entry, error) {
	d := runDir(dir)
	if err := d.check(); err != nil {
		return nil, backup.UsageError(err)
	}
	labels, err := d.labels()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, label := range labels {
		e, err := d.entry(label)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.started().Compare(b.started()) })
	return out, nil
}

func (e *Entry) started() time.Time {
	if e.State != nil {
		return e.State.StartedAt
	}
	return time.Time{}
}

// readJSON reads a file written by writeJSON; a missing file is nil. Only
// a regular file of a sane size is read: a FIFO planted there must not hang
// status or post.
func readJSON[T any](path string) (*T, error) {
	dir, err := beneath.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	data, err := dir.ReadFile(filepath.Base(path), 1<<20)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// writeJSON replaces path atomically, so a reader never sees half a file.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	// A temporary file a dead writer left is the only one the name can hold.
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
