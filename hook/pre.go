package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/runner"
	"golang.org/x/sys/unix"
)

// HoldCommand is the hidden subcommand that re-executes the binary as a
// holder; its spec arrives on fd 3 and pre listens on fd 4.
const HoldCommand = "hold"

// Validate checks a spec before anything is started.
func (s *Spec) Validate() error {
	if err := s.Backup.Validate(); err != nil {
		return err
	}
	if s.HoldTimeout <= 0 {
		return backup.UsageError(errors.New("--hold-timeout must be positive"))
	}
	return nil
}

// Pre starts a holder for spec, running the executable exe, and returns once
// the backup has started. When it does not start, the error is a *Failed
// with the holder's report, or says why the holder could not run; either
// way no holder is left running.
func Pre(ctx context.Context, spec Spec, exe string) (*State, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := absolute(&spec.Backup.Staging, &spec.Backup.PGData, &spec.RunDir); err != nil {
		return nil, backup.UsageError(err)
	}
	if err := makeDirs(&spec.Backup.Staging, &spec.RunDir); err != nil {
		return nil, &backup.PhaseError{Phase: backup.PhaseStaging, Err: err}
	}
	d := runDir(spec.RunDir)
	label := spec.Backup.Label
	if e, err := d.entry(label); err != nil {
		return nil, backup.UsageError(err)
	} else if e != nil && (e.Status == StatusHeld || e.Status == StatusStarting) {
		return nil, backup.UsageError(fmt.Errorf("a backup labelled %s is already %s%s (see pgfbb-wrap status)", label, e.Status, e.pid()))
	}
	logf, err := os.OpenFile(d.path(label, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, backup.UsageError(fmt.Errorf("holder log: %w", err))
	}
	defer logf.Close()
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, err
	}
	defer statusR.Close()
	cmd := exec.Command(exe, HoldCommand)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{specR, statusW}
	cmd.Dir = "/"
	// Its own session: the holder outlives the shell that ran pre and gets
	// none of its terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	specR.Close()
	statusW.Close()
	if err != nil {
		specW.Close()
		return nil, fmt.Errorf("start holder: %w", err)
	}
	err = json.NewEncoder(specW).Encode(spec)
	specW.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("send spec to holder: %w", err)
	}

	got := make(chan message, 1)
	failed := make(chan error, 1)
	go func() {
		var m message
		if err := json.NewDecoder(statusR).Decode(&m); err != nil {
			failed <- err
			return
		}
		got <- m
	}()
	var intr *runner.Interrupted
	for {
		select {
		case <-ctx.Done():
			// Interrupted: the holder aborts whatever it started and
			// tells us how that went.
			errors.As(context.Cause(ctx), &intr)
			cmd.Process.Signal(syscall.SIGTERM)
			ctx = context.Background()
			continue
		case m := <-got:
			if m.Started != nil && intr == nil {
				cmd.Process.Release()
				return m.Started, nil
			}
			cmd.Wait()
			res := m.Result
			if res == nil {
				// It had started the backup as the interrupt came, and
				// left the outcome of stopping it for a post to collect.
				res = d.collectEnded(label)
			}
			if intr != nil {
				res.ExitCode = intr.ExitCode()
				res.Report = fmt.Sprintf("pgfbb-wrap: pre %s: the holder was told to stop\n", intr) + res.Report
			}
			return nil, backup.WithExitCode(&Failed{Result: res}, res.ExitCode)
		case err := <-failed:
			werr := cmd.Wait()
			tail, _ := os.ReadFile(d.path(label, "log"))
			err = fmt.Errorf("holder ended before the backup started (%v): %w", werr, err)
			if t := lastLines(string(tail), 10); t != "" {
				err = fmt.Errorf("%w; its log %s ends:\n%s", err, d.path(label, "log"), t)
			}
			if intr != nil {
				err = multierror.Append(err, intr)
			}
			return nil, err
		}
	}
}

func (e *Entry) pid() string {
	if e.State == nil {
		return ""
	}
	return fmt.Sprintf(" by pid %d", e.State.PID)
}

func absolute(paths ...*string) error {
	for _, p := range paths {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	return nil
}

// makeDirs creates the staging directory (not its parents, as a wrapped run
// would) and the run directory, private to the user, refuses either when
// someone else could change it, and replaces each path with the one that
// was checked, links resolved.
func makeDirs(dirs ...*string) error {
	for _, dir := range dirs {
		if _, err := os.Stat(*dir); errors.Is(err, os.ErrNotExist) {
			if err := beneath.CheckAncestors(*dir); err != nil {
				return err
			}
			if err := os.Mkdir(*dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create %s: %w", *dir, err)
			}
		}
		checked, err := beneath.CheckPrivate(*dir)
		if err != nil {
			return err
		}
		*dir = checked
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
