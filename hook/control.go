package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// A holder that is alive but does not listen has closed its socket and is
// writing its outcome; post waits this long for it.
const (
	retryEvery = 100 * time.Millisecond
	retryFor   = 30 * time.Second
)

// Select picks the label post or abort act on: label itself when given,
// else the only backup being held, else the only one that ended without a
// post. Several candidates are refused, listed, because finishing the wrong
// backup cannot be undone. The notes name the entries Select passed over, so
// that an outcome nobody collected is not forgotten.
func Select(dir, label string) (string, []string, error) {
	if label != "" {
		if err := staged.ValidateLabel(label); err != nil {
			return "", nil, backup.UsageError(err)
		}
		return label, nil, nil
	}
	entries, err := List(dir)
	if err != nil {
		return "", nil, backup.UsageError(err)
	}
	var running, unattended []Entry
	var notes []string
	for _, e := range entries {
		switch e.Status {
		case StatusHeld, StatusStarting:
			running = append(running, e)
		case StatusCorrupt:
			notes = append(notes, fmt.Sprintf("skipped the records of %s, which cannot be read (%s): remove %s.* from %s", e.Label, e.Problem, e.Label, dir))
		default:
			unattended = append(unattended, e)
		}
	}
	switch {
	case len(running) > 1:
		return "", nil, severalError(dir, running, "are held")
	case len(running) == 1:
		for _, e := range unattended {
			notes = append(notes, fmt.Sprintf("backup %s %s without a post: pgfbb-wrap post --label %s reports it", e.Label, e.Status, e.Label))
		}
		return running[0].Label, notes, nil
	case len(unattended) > 1:
		return "", nil, severalError(dir, unattended, "ended without a post")
	case len(unattended) == 1:
		return unattended[0].Label, notes, nil
	}
	return "", notes, backup.UsageError(fmt.Errorf("no backup is held in %s: run pre first", dir))
}

func severalError(dir string, entries []Entry, what string) error {
	var names []string
	for _, e := range entries {
		names = append(names, e.Label+" ("+e.Status+e.pid()+")")
	}
	return backup.UsageError(fmt.Errorf("%d backups %s in %s: %s; give --label", len(entries), what, dir, strings.Join(names, ", ")))
}

// Finish sends op (OpPost or OpAbort) to the holder of label and returns its
// outcome. A holder that already ended hands over the outcome it left; one
// that died is reported as a failed backup, and what it left is removed.
func Finish(ctx context.Context, dir, label, op string) (*Result, error) {
	d := runDir(dir)
	if err := d.check(); err != nil {
		return nil, backup.UsageError(err)
	}
	deadline := time.Now().Add(retryFor)
	for {
		var conn net.Conn
		err := d.socketAddr(label, func(addr string) error {
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, "unix", addr)
			return err
		})
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return nil, backup.UsageError(fmt.Errorf("no backup labelled %s is held: %w", label, serr))
			}
		}
		if err == nil {
			if perr := peerTrusted(conn); perr != nil {
				conn.Close()
				return nil, backup.UsageError(fmt.Errorf("control socket %s: %w", d.path(label, "sock"), perr))
			}
			res, err := ask(ctx, conn, op)
			if !errors.Is(err, errNoAnswer) {
				return res, err
			}
			// The holder is delivering its outcome elsewhere: find it there.
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		lock, err := d.tryLock(label)
		if errors.Is(err, errBusy) {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the holder of %s is alive but does not answer on %s", label, d.path(label, "sock"))
			}
			time.Sleep(retryEvery)
			continue
		}
		if err != nil {
			return nil, backup.UsageError(err)
		}
		return d.collect(lock, label)
	}
}

// errNoAnswer means the holder closed the connection without an answer.
var errNoAnswer = errors.New("no answer")

func ask(ctx context.Context, conn net.Conn, op string) (*Result, error) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(request{Op: op}); err != nil {
		return nil, fmt.Errorf("send %s to holder: %w", op, err)
	}
	// No deadline: the holder answers once the backup is stopped and staged.
	var res Result
	if err := json.NewDecoder(conn).Decode(&res); err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		// Closed unanswered, or the holder died: either way the run
		// directory tells what happened.
		return nil, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	return &res, nil
}

// collectEnded collects the outcome of a holder known to have exited.
func (d runDir) collectEnded(label string) *Result {
	lock, err := d.tryLock(label)
	if err == nil {
		var res *Result
		if res, err = d.collect(lock, label); err == nil {
			return res
		}
	}
	return failure(label, backup.ExitFailed, fmt.Errorf("the holder started the backup as pre was interrupted, "+
		"and its outcome is unknown (see pgfbb-wrap status): %w", err))
}

// collect takes over a label whose holder is gone; lock is its lock.
func (d runDir) collect(lock *os.File, label string) (*Result, error) {
	res, rerr := readJSON[Result](d.path(label, "result"))
	st, serr := readJSON[State](d.path(label, "state"))
	switch {
	case rerr != nil || serr != nil:
		lock.Close()
		return nil, backup.UsageError(fmt.Errorf("the records of backup %s cannot be read (%w): remove %s.* from %s",
			label, errors.Join(rerr, serr), label, string(d)))
	case res != nil:
		d.release(lock, label)
		return res, nil
	case st != nil:
		// The dead holder's partial backup is no longer locked: the
		// staging sweep removes it with any other dead run's.
		staged.Sweep(st.Vars[backup.EnvStaging])
		d.release(lock, label, "log")
		return &Result{Label: label, ExitCode: backup.ExitFailed, Report: fmt.Sprintf(
			"pgfbb-wrap: error: the holder of backup %s (pid %d, started %s) died without stopping it (killed?): "+
				"PostgreSQL aborted the backup when its session ended; nothing was published; holder log: %s\n",
			label, st.PID, st.StartedAt.Format(time.RFC3339), st.Log)}, nil
	}
	d.release(lock, label, "log")
	return nil, backup.UsageError(fmt.Errorf("no backup labelled %s is held in %s", label, string(d)))
}

// Forget removes the records of backups that ended without a post (their
// holder ended on its own, or died) and started before the time given, and
// returns their labels: prune clears what no post will ever collect.
func Forget(dir string, before time.Time) ([]string, error) {
	d := runDir(dir)
	entries, err := List(dir)
	if err != nil {
		return nil, err
	}
	var forgotten []string
	for _, e := range entries {
		if (e.Status != StatusEnded && e.Status != StatusDead) || !e.started().Before(before) {
			continue
		}
		lock, err := d.tryLock(e.Label)
		if err != nil {
			continue // taken meanwhile: not ours to forget
		}
		if _, err := d.collect(lock, e.Label); err != nil {
			return forgotten, err
		}
		os.Remove(d.path(e.Label, "log"))
		forgotten = append(forgotten, e.Label)
	}
	return forgotten, nil
}
