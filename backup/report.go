package backup

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// Report is what a run did, for the one report printed at its end.
type Report struct {
	Label    string
	Path     string // the published backup; set on a failure only when publishing was its last step
	Reached  Phase  // the last phase the run entered
	Timeline uint32
	StartLSN pgformat.LSN
	StopLSN  pgformat.LSN

	StartedAt  time.Time // backup start returned
	StoppedAt  time.Time // backup stop returned
	Elapsed    time.Duration
	Command    *staged.Command
	StderrTail string

	WALMode     staged.WALMode
	WALSource   string               // where copied WAL came from: local:DIR or sql:pg_read_binary_file
	Archive     *staged.ArchiveCheck // the wait for the archiver, when archiving is on
	WALFiles    int
	WALBytes    int64
	StagedBytes int64
	SystemID    uint64   // the cluster's, once connected
	Notes       []string // things a DBA must know even when the run succeeded
	Aborted     string   // why the backup was stopped without publishing, on request
	Checks      []string // the checks that passed, in order
	Phases      []PhaseTime

	Err error // every error of the run, nil on success
}

// PhaseTime is a phase the run entered and how long it lasted, until the
// next phase or the run's end (cleanup included).
type PhaseTime struct {
	Phase    Phase
	Duration time.Duration
}

// BackupMode is how long the server was in backup mode.
func (r *Report) BackupMode() time.Duration {
	if r.StartedAt.IsZero() || r.StoppedAt.IsZero() {
		return 0
	}
	return r.StoppedAt.Sub(r.StartedAt)
}

// Summary is the one line printed for a successful run.
func (r *Report) Summary() string {
	return fmt.Sprintf("pgfbb-wrap: backup %s complete: %s, WAL %s..%s on timeline %d, %d WAL files, %s staged, %s in backup mode, %s total",
		r.Label, r.Path, r.StartLSN, r.StopLSN, r.Timeline, r.WALFiles, humanBytes(r.StagedBytes),
		r.BackupMode().Round(time.Millisecond), r.Elapsed.Round(time.Millisecond))
}

// Format writes the full report: what happened, then each error with its phase.
func (r *Report) Format(w io.Writer) {
	status := "complete"
	switch {
	case r.Err != nil && r.Path != "":
		status = "FAILED after it was published as " + r.Path
	case r.Err != nil:
		status = "FAILED, nothing was published"
	case r.Aborted != "":
		status = "ABORTED, nothing was published"
	}
	fmt.Fprintf(w, "pgfbb-wrap: backup %s %s\n", r.Label, status)
	line := func(k, format string, args ...any) {
		fmt.Fprintf(w, "  %-15s "+format+"\n", append([]any{k + ":"}, args...)...)
	}
	line("reached", "%s", r.Reached)
	if r.Aborted != "" {
		line("aborted", "%s", r.Aborted)
	}
	if r.StartLSN != 0 {
		line("start", "%s on timeline %d at %s", r.StartLSN, r.Timeline, r.StartedAt.UTC().Format(time.RFC3339))
	}
	if r.StopLSN != 0 {
		line("stop", "%s at %s (%s in backup mode)", r.StopLSN, r.StoppedAt.UTC().Format(time.RFC3339), r.BackupMode().Round(time.Millisecond))
	}
	if c := r.Command; c != nil {
		line("command", "%s", strings.Join(c.Argv, " "))
		line("command exit", "%d after %s", c.ExitCode, time.Duration(c.DurationSec*float64(time.Second)).Round(time.Millisecond))
	}
	if r.Path != "" {
		line("staged", "%s: %d WAL files, %s", r.Path, r.WALFiles, humanBytes(r.StagedBytes))
	}
	if r.WALSource != "" {
		line("wal", "%s from %s", r.WALMode, r.WALSource)
	} else {
		line("wal", "%s", r.WALMode)
	}
	if a := r.Archive; a != nil {
		state := "NOT confirmed"
		if a.Confirmed {
			state = "confirmed"
		}
		line("archive", "%s %s by %s after %s", strings.Join(a.Required, " and "), state, a.Method,
			time.Duration(a.WaitSeconds*float64(time.Second)).Round(time.Millisecond))
	}
	line("elapsed", "%s", r.Elapsed.Round(time.Millisecond))
	for _, n := range r.Notes {
		line("note", "%s", n)
	}
	if r.Err != nil {
		errs := Errors(r.Err)
		fmt.Fprintf(w, "  %d error(s):\n", len(errs))
		for _, e := range errs {
			fmt.Fprintf(w, "  - %s\n", e)
		}
	}
	if tail := strings.TrimRight(r.StderrTail, "\n"); tail != "" && r.Err != nil {
		fmt.Fprintf(w, "  command stderr (tail):\n")
		for _, l := range strings.Split(tail, "\n") {
			fmt.Fprintf(w, "    | %s\n", l)
		}
	}
}

// Print writes a run's outcome: one line per error when the run failed
// before the backup started, the full report when it failed or was aborted
// later, and on success nothing, or the summary line when verbose.
func Print(w io.Writer, r *Report, err error, verbose bool) {
	switch {
	case err == nil && r != nil && r.Aborted != "":
		r.Format(w)
	case err == nil && r != nil && verbose:
		fmt.Fprintln(w, r.Summary())
	case err == nil:
	case r == nil || (r.StartLSN == 0 && r.Command == nil):
		for _, e := range Errors(err) {
			fmt.Fprintf(w, "pgfbb-wrap: error: %v\n", e)
		}
	default:
		r.Format(w)
	}
}

// Errors lists the errors a run combined, one per line of a report: an error
// that itself combines several (every missing WAL segment, say) is split, each
// part keeping its phase.
func Errors(err error) []error {
	var out []error
	var merr *multierror.Error
	if !errors.As(err, &merr) {
		return []error{err}
	}
	for _, e := range merr.Errors {
		var pe *PhaseError
		if errors.As(e, &pe) {
			inner, ok := pe.Err.(*multierror.Error)
			if !ok {
				out = append(out, e)
				continue
			}
			for _, part := range inner.Errors {
				out = append(out, &PhaseError{Phase: pe.Phase, Err: part})
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
