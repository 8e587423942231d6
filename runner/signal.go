package runner

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Interrupted is the cause of a context cancelled by a signal.
type Interrupted struct {
	Signal syscall.Signal
}

func (e *Interrupted) Error() string { return "interrupted by " + unix.SignalName(e.Signal) }

// ExitCode follows the shell convention of 128 plus the signal number.
func (e *Interrupted) ExitCode() int { return 128 + int(e.Signal) }

// Signals are the signals that interrupt a run: a terminal's Ctrl-C and
// Ctrl-\, a service manager's stop, a closed terminal or session.
var Signals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// NotifyContext returns a context that the first of Signals cancels with an
// *Interrupted cause, and a channel that a second one closes: the first asks
// the child to stop (and the backup is still stopped cleanly), the second
// kills the child's process group at once. stop releases the signals.
func NotifyContext(parent context.Context) (ctx context.Context, force <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, Signals...)
	forceCh := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(&Interrupted{Signal: s.(syscall.Signal)})
		case <-quit:
			return
		}
		select {
		case <-sigs:
			close(forceCh)
		case <-quit:
		}
	}()
	return ctx, forceCh, func() {
		signal.Stop(sigs)
		close(quit)
		cancel(nil)
	}
}
