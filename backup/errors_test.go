package backup

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/runner"
)

func phaseErr(p Phase) error { return &PhaseError{Phase: p, Err: errors.New("boom")} }

func TestExitCode(t *testing.T) {
	intr := func(sig syscall.Signal) error {
		return &PhaseError{Phase: PhaseSnapshot, Err: fmt.Errorf("sh: %w (killed by SIGTERM)", &runner.Interrupted{Signal: sig})}
	}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, ExitOK},
		{"usage", UsageError(errors.New("bad flag")), ExitUsage},
		{"staging", phaseErr(PhaseStaging), ExitUsage},
		{"connect", phaseErr(PhaseConnect), ExitPreflight},
		{"preflight", phaseErr(PhasePreflight), ExitPreflight},
		{"slot", phaseErr(PhaseSlot), ExitFailed},
		{"start", phaseErr(PhaseStart), ExitFailed},
		{"snapshot", phaseErr(PhaseSnapshot), ExitSnapshot},
		{"stop", phaseErr(PhaseStop), ExitFailed},
		{"collect", phaseErr(PhaseCollect), ExitFailed},
		{"publish", phaseErr(PhasePublish), ExitFailed},
		{"cleanup", phaseErr(PhaseCleanup), ExitFailed},
		{"unclassified", errors.New("?"), ExitFailed},
		{"wrapped phase", fmt.Errorf("context: %w", phaseErr(PhaseSnapshot)), ExitSnapshot},
		{"snapshot and stop failed: the backup failed", multierror.Append(phaseErr(PhaseSnapshot), phaseErr(PhaseStop)), ExitFailed},
		{"stop first, snapshot second", multierror.Append(phaseErr(PhaseStop), phaseErr(PhaseSnapshot)), ExitFailed},
		{"snapshot and cleanup", multierror.Append(phaseErr(PhaseSnapshot), phaseErr(PhaseCleanup)), ExitFailed},
		{"SIGINT", intr(syscall.SIGINT), 130},
		{"SIGTERM beats a failed stop", multierror.Append(phaseErr(PhaseStop), intr(syscall.SIGTERM)), 143},
		{"interrupted start", multierror.Append(&PhaseError{Phase: PhaseStart, Err: &runner.Interrupted{Signal: syscall.SIGINT}}), 130},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.err); got != tt.want {
				t.Fatalf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
