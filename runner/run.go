package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrTimeout marks a command that ran longer than its timeout.
var ErrTimeout = errors.New("timed out")

// waitDelay bounds how long Run waits for the child's output to close after
// the child exits: a daemon the command started may keep stderr open forever.
const waitDelay = 2 * time.Second

// Spec describes one run of a command.
type Spec struct {
	Argv    []string
	Env     []string      // the child's whole environment
	Timeout time.Duration // 0: no limit
	// Grace is how long the process group has between SIGTERM (or the
	// forwarded signal) and SIGKILL.
	Grace  time.Duration
	Stdout io.Writer // nil discards
	Stderr io.Writer // nil discards; the tail is captured either way
	// TailBytes is how much of the end of stderr Result keeps.
	TailBytes int
	// Force, when closed, kills the process group at once.
	Force <-chan struct{}
}

// Result is what is known about a finished run.
type Result struct {
	ExitCode   int // -1 when killed by a signal or not started
	Duration   time.Duration
	StderrTail string
	// StderrBytes counts all of stderr, of which StderrTail is the end.
	StderrBytes int64
}

// Run starts spec.Argv in its own process group with stdin from /dev/null and
// waits for it. When ctx is cancelled the group gets the interrupting signal
// (SIGTERM if the cause is not an *Interrupted), when the timeout passes it
// gets SIGTERM; SIGKILL follows after the grace period. The error says why the
// command did not succeed and wraps ErrTimeout or the context's cause.
func Run(ctx context.Context, spec Spec) (*Result, error) {
	if len(spec.Argv) == 0 {
		return &Result{ExitCode: -1}, errors.New("empty command")
	}
	tail := &tailBuffer{max: spec.TailBytes}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = spec.Env
	cmd.Stdout = spec.Stdout
	cmd.Stderr = tail
	if spec.Stderr != nil {
		cmd.Stderr = io.MultiWriter(spec.Stderr, tail)
	}
	// Its own group: a terminal's Ctrl-C reaches only us, and we can signal
	// every process the command started, not just the first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = waitDelay

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return &Result{ExitCode: -1}, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	group := -cmd.Process.Pid
	var timeout, grace <-chan time.Time
	if spec.Timeout > 0 {
		t := time.NewTimer(spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	ctxDone, force := ctx.Done(), spec.Force
	var stopping error // why we are ending the command, once we are
	stop := func(sig syscall.Signal, why error) {
		stopping = why
		_ = unix.Kill(group, sig)
		grace = time.After(spec.Grace)
		timeout, ctxDone = nil, nil
	}
	for {
		select {
		case waitErr := <-done:
			res := &Result{
				ExitCode:    cmd.ProcessState.ExitCode(),
				Duration:    time.Since(start),
				StderrTail:  tail.String(),
				StderrBytes: tail.Total(),
			}
			if stopping != nil {
				// Whatever the leader left behind goes with it.
				_ = unix.Kill(group, unix.SIGKILL)
				return res, fmt.Errorf("%s: %w (%s)", spec.Argv[0], stopping, describe(cmd.ProcessState))
			}
			if res.ExitCode != 0 {
				return res, fmt.Errorf("%s: %s", spec.Argv[0], describe(cmd.ProcessState))
			}
			if errors.Is(waitErr, exec.ErrWaitDelay) {
				res.StderrTail += "\n[pgfbb-wrap: stderr still open after the command exited; stopped reading]"
			}
			return res, nil
		case <-timeout:
			stop(unix.SIGTERM, fmt.Errorf("%w after %s", ErrTimeout, spec.Timeout))
		case <-ctxDone:
			cause := context.Cause(ctx)
			sig := unix.SIGTERM
			if intr := (*Interrupted)(nil); errors.As(cause, &intr) {
				sig = intr.Signal
			}
			stop(sig, cause)
		case <-grace:
			_ = unix.Kill(group, unix.SIGKILL)
			grace = nil
		case <-force:
			_ = unix.Kill(group, unix.SIGKILL)
			force = nil
		}
	}
}

func describe(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ps.ExitCode())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Total counts every byte written, kept or not.
func (t *tailBuffer) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
