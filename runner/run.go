package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrTimeout marks a command that ran longer than its timeout.
var ErrTimeout = errors.New("timed out")

// outputDelay bounds how long Run waits for the command's output to close
// once the command and everything it started have exited: only a process
// outside it (one it handed the descriptor to) can still hold it open.
const outputDelay = 2 * time.Second

// pollEvery is how often Run looks for what the command left running.
const pollEvery = 50 * time.Millisecond

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
	// Leftovers names the processes the command left running that Run had
	// to kill ("1234 (sleep)").
	Leftovers []string
}

// Run starts spec.Argv in its own process group with stdin from /dev/null and
// waits for it and for every process it started: the calling process
// becomes a child subreaper (PR_SET_CHILD_SUBREAPER), so what the command
// leaves behind, daemons included, becomes its child, and the command is
// over only when all of it is. Run must therefore be the only thing in the
// process that starts children while it runs. When ctx is cancelled they get
// the interrupting signal (SIGTERM if the cause is not an *Interrupted), when
// the timeout passes SIGTERM; SIGKILL follows after the grace period. The
// error says why the command did not succeed and wraps ErrTimeout or the
// context's cause.
func Run(ctx context.Context, spec Spec) (*Result, error) {
	if len(spec.Argv) == 0 {
		return &Result{ExitCode: -1}, errors.New("empty command")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return &Result{ExitCode: -1}, fmt.Errorf("become a child subreaper: %w", err)
	}
	tail := &tailBuffer{max: spec.TailBytes}
	var errOut io.Writer = tail
	if spec.Stderr != nil {
		errOut = io.MultiWriter(spec.Stderr, tail)
	}
	var out outputs
	defer out.close()
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = spec.Env
	stdout, err := out.pipe(spec.Stdout)
	if err != nil {
		return &Result{ExitCode: -1}, fmt.Errorf("output pipe: %w", err)
	}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if cmd.Stderr, err = out.pipe(errOut); err != nil {
		return &Result{ExitCode: -1}, fmt.Errorf("output pipe: %w", err)
	}
	// Its own group: a terminal's Ctrl-C reaches only us, and we can signal
	// every process the command started, not just the first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	start := time.Now()
	err = cmd.Start()
	out.started()
	if err != nil {
		return &Result{ExitCode: -1}, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	w := &waiter{spec: spec, group: -cmd.Process.Pid, done: make(chan error, 1), killed: map[int]string{}}
	go func() { w.done <- cmd.Wait() }()
	w.wait(ctx)

	res := &Result{
		ExitCode: cmd.ProcessState.ExitCode(),
		Duration: time.Since(start),
	}
	for pid, name := range w.killed {
		res.Leftovers = append(res.Leftovers, fmt.Sprintf("%d (%s)", pid, name))
	}
	slices.Sort(res.Leftovers)
	if !out.wait(outputDelay) {
		tail.Write([]byte("\n[pgfbb-wrap: stderr still open after the command and all it started exited; stopped reading]"))
	}
	res.StderrTail, res.StderrBytes = tail.String(), tail.Total()
	var left string
	if len(res.Leftovers) > 0 {
		left = "; killed what it left running: " + strings.Join(res.Leftovers, ", ")
	}
	switch {
	case w.stopping != nil:
		return res, fmt.Errorf("%s: %w (%s)%s", spec.Argv[0], w.stopping, describe(cmd.ProcessState), left)
	case res.ExitCode != 0:
		return res, fmt.Errorf("%s: %s", spec.Argv[0], describe(cmd.ProcessState))
	}
	return res, nil
}

// waiter waits for a command and what it leaves running.
type waiter struct {
	spec     Spec
	group    int // the command's process group, negated
	done     chan error
	exited   bool
	stopping error          // why we are ending the command, once we are
	signal   syscall.Signal // what we send what is still running
	killed   map[int]string // leftovers signalled, by pid
}

// wait returns once the command has exited and no process it started is
// left. First the command's group gets the signals; once the command has
// exited, every leftover does, alone and with its own group (a daemon has
// left the command's).
func (w *waiter) wait(ctx context.Context) {
	var timeout, grace <-chan time.Time
	if w.spec.Timeout > 0 {
		t := time.NewTimer(w.spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	ctxDone, force := ctx.Done(), w.spec.Force
	stop := func(sig syscall.Signal, why error) {
		w.stopping, w.signal = why, sig
		w.kill(sig)
		grace = time.After(w.spec.Grace)
		timeout, ctxDone = nil, nil
	}
	for {
		if w.exited {
			left := w.leftovers()
			if len(left) == 0 {
				return
			}
			if w.stopping != nil {
				for _, pid := range left {
					w.killOne(pid, w.signal)
				}
			}
		}
		select {
		case <-w.done:
			w.exited = true
			if w.stopping != nil {
				// Whatever the leader left behind goes with it.
				w.kill(unix.SIGKILL)
			}
		case <-poll.C:
		case <-timeout:
			stop(unix.SIGTERM, fmt.Errorf("%w after %s", ErrTimeout, w.spec.Timeout))
		case <-ctxDone:
			cause := context.Cause(ctx)
			sig := unix.SIGTERM
			if intr := (*Interrupted)(nil); errors.As(cause, &intr) {
				sig = intr.Signal
			}
			stop(sig, cause)
		case <-grace:
			w.signal, grace = unix.SIGKILL, nil
			w.kill(unix.SIGKILL)
		case <-force:
			w.signal, force = unix.SIGKILL, nil
			w.kill(unix.SIGKILL)
		}
	}
}

// kill signals the command's group and, once it has exited, what it left.
func (w *waiter) kill(sig syscall.Signal) {
	_ = unix.Kill(w.group, sig)
	if w.exited {
		for _, pid := range w.leftovers() {
			w.killOne(pid, sig)
		}
	}
}

func (w *waiter) killOne(pid int, sig syscall.Signal) {
	if _, ok := w.killed[pid]; !ok {
		w.killed[pid] = comm(pid)
	}
	_ = unix.Kill(pid, sig)
	_ = unix.Kill(-pid, sig)
}

// leftovers reaps the children of this process that have exited and
// returns those still running: with the command gone, they are what it
// started.
func (w *waiter) leftovers() []int {
	var alive []int
	for _, pid := range children() {
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got == pid || errors.Is(err, unix.ECHILD) {
			continue
		}
		alive = append(alive, pid)
	}
	return alive
}

// children lists the processes whose parent is this one.
func children() []int {
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

// comm is a process's command name, for messages.
func comm(pid int) string {
	name, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(name))
}

// outputs are the pipes the command writes into and the goroutines that
// copy them out. The command gets the write ends as plain descriptors, so
// that waiting for the command is not waiting for whoever holds them.
type outputs struct {
	child  []*os.File // write ends, closed here once the command started
	reader []*os.File
	done   sync.WaitGroup
}

// pipe returns what the command's output should be to reach w: nothing
// for nil, the file itself for a file, else a pipe copied into w.
func (o *outputs) pipe(w io.Writer) (*os.File, error) {
	switch f := w.(type) {
	case nil:
		return nil, nil
	case *os.File:
		return f, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	o.child, o.reader = append(o.child, pw), append(o.reader, r)
	o.done.Add(1)
	go func() {
		defer o.done.Done()
		io.Copy(w, r)
	}()
	return pw, nil
}

// started closes this process's copies of the write ends.
func (o *outputs) started() {
	for _, f := range o.child {
		f.Close()
	}
	o.child = nil
}

// wait waits up to d for the outputs to close, and tells whether they did.
func (o *outputs) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() { o.done.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// close stops the copies; whoever still writes gets EPIPE.
func (o *outputs) close() {
	o.started()
	for _, f := range o.reader {
		f.Close()
	}
	o.done.Wait()
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
