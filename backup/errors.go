// Package backup runs one wrapped snapshot backup: it prepares the staging
// directory, opens the database session, starts the backup, runs the snapshot
// command, always stops the backup, stages label and WAL, and reports every
// error of the run with the phase it came from.
package backup

import (
	"errors"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/runner"
)

// Phase names a step of a run.
type Phase string

// The phases, in the order a run passes through them.
const (
	PhaseUsage     Phase = "usage"
	PhaseStaging   Phase = "prepare-staging"
	PhaseConnect   Phase = "connect"
	PhasePreflight Phase = "preflight"
	PhaseSlot      Phase = "create-slot"
	PhaseStart     Phase = "start"
	PhaseSnapshot  Phase = "snapshot"
	PhaseHold      Phase = "hold" // hook mode: waiting for post, in place of the snapshot
	PhaseStop      Phase = "stop"
	PhaseCollect   Phase = "collect-wal"
	PhaseArchive   Phase = "archive" // waiting for the archiver to archive the backup's last WAL
	PhasePublish   Phase = "publish"
	PhaseCleanup   Phase = "cleanup"
	PhasePrune     Phase = "prune" // the wrapper's prune after a published backup
)

// PhaseError is an error with the phase it happened in.
type PhaseError struct {
	Phase Phase
	Err   error
}

func (e *PhaseError) Error() string { return string(e.Phase) + ": " + e.Err.Error() }
func (e *PhaseError) Unwrap() error { return e.Err }

// UsageError marks a usage or configuration error: nothing was touched.
func UsageError(err error) error { return &PhaseError{Phase: PhaseUsage, Err: err} }

// Exit codes, as documented in the README and --help.
const (
	ExitOK        = 0
	ExitFailed    = 1 // the backup failed after it started (stop, staging, WAL)
	ExitUsage     = 2 // usage or configuration error: nothing was touched
	ExitPreflight = 3 // preflight refused: cannot connect, unsafe settings, privileges
	ExitSnapshot  = 4 // the snapshot command failed or timed out (hook mode: no post within --hold-timeout); the backup was stopped cleanly
)

// exitCoded is an error whose exit code was decided elsewhere: by the
// holder process of a held backup, say.
type exitCoded struct {
	err  error
	code int
}

func (e *exitCoded) Error() string { return e.err.Error() }
func (e *exitCoded) Unwrap() error { return e.err }

// WithExitCode marks err with the exit code it stands for, which ExitCode
// then returns.
func WithExitCode(err error, code int) error { return &exitCoded{err: err, code: code} }

// ExitCode maps the error of a run to the process exit code. When a run
// collected several errors the most serious decides: an interruption
// (128+signal), then a failed backup, then a failed snapshot.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var coded *exitCoded
	if errors.As(err, &coded) {
		return coded.code
	}
	var intr *runner.Interrupted
	if errors.As(err, &intr) {
		return intr.ExitCode()
	}
	errs := []error{err}
	var merr *multierror.Error
	if errors.As(err, &merr) {
		errs = merr.Errors
	}
	rank := map[int]int{ExitFailed: 4, ExitSnapshot: 3, ExitPreflight: 2, ExitUsage: 1}
	code := ExitUsage
	for _, e := range errs {
		if c := phaseCode(e); rank[c] > rank[code] {
			code = c
		}
	}
	return code
}

func phaseCode(err error) int {
	var pe *PhaseError
	if !errors.As(err, &pe) {
		return ExitFailed
	}
	switch pe.Phase {
	case PhaseUsage, PhaseStaging:
		return ExitUsage
	case PhaseConnect, PhasePreflight:
		return ExitPreflight
	case PhaseSnapshot, PhaseHold:
		return ExitSnapshot
	}
	return ExitFailed
}
