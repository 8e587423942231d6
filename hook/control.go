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
	"github.com/pgfbb/pgfbb-wrap/walcollect"
)

// A holder that is alive but does not listen has closed its socket and is
// writing its outcome; post waits this long for it.
const (
	retryEvery = 100 * time.Millisecond
	retryFor   = 30 * time.Second
)

// Select picks the label post or abort act on: label itself when given,
// else the only entry of the run directory. Several entries are refused,
// listed, because finishing the wrong backup cannot be undone.
func Select(dir, label string) (string, error) {
	if label != "" {
		if err := walcollect.ValidateLabel(label); err != nil {
			return "", backup.UsageError(err)
		}
		return label, nil
	}
	entries, err := List(dir)
	if err != nil {
		return "", backup.UsageError(err)
	}
	switch len(entries) {
	case 0:
		return "", backup.UsageError(fmt.Errorf("no backup is held in %s: run pre first", dir))
	case 1:
		return entries[0].Label, nil
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Label+" ("+e.Status+e.pid()+")")
	}
	return "", backup.UsageError(fmt.Errorf("%d backups are held in %s: %s; give --label", len(entries), dir, strings.Join(names, ", ")))
}

// Finish sends op (OpPost or OpAbort) to the holder of label and returns its
// outcome. A holder that already ended hands over the outcome it left; one
// that died is reported as a failed backup, and what it left is removed.
func Finish(ctx context.Context, dir, label, op string) (*Result, error) {
	d := runDir(dir)
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

// collect takes over a label whose holder is gone; lock is its lock.
func (d runDir) collect(lock *os.File, label string) (*Result, error) {
	res, rerr := readJSON[Result](d.path(label, "result"))
	st, serr := readJSON[State](d.path(label, "state"))
	switch {
	case rerr != nil || serr != nil:
		lock.Close()
		return nil, errors.Join(rerr, serr)
	case res != nil:
		d.release(lock, label)
		return res, nil
	case st != nil:
		os.RemoveAll(st.Partial)
		d.release(lock, label, "log")
		return &Result{Label: label, ExitCode: backup.ExitFailed, Report: fmt.Sprintf(
			"pgfbb-wrap: error: the holder of backup %s (pid %d, started %s) died without stopping it (killed?): "+
				"PostgreSQL aborted the backup when its session ended; nothing was published; holder log: %s\n",
			label, st.PID, st.StartedAt.Format(time.RFC3339), st.Log)}, nil
	}
	d.release(lock, label, "log")
	return nil, backup.UsageError(fmt.Errorf("no backup labelled %s is held in %s", label, string(d)))
}
