package backup

import (
	"fmt"
	"time"
)

// progressEvery is how often a progress line is redrawn.
const progressEvery = time.Second

// progress draws one line on the terminal (Options.Progress) while a long
// wait lasts, "what: 12s" and what status says, and clears it when done
// returns. It draws at once, so that even a short wait shows what it was.
// Without a terminal it does nothing: cron mail and --json stay clean.
func (r *run) progress(what string, status func() string) (done func()) {
	w := r.opts.Progress
	if w == nil {
		return func() {}
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	began := time.Now()
	go func() {
		defer close(stopped)
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		for {
			fmt.Fprintf(w, "\r\033[Kpgfbb-wrap: %s: %s %s", what, time.Since(began).Round(time.Second), status())
			select {
			case <-stop:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(stop); <-stopped }
}

// fixed is a progress status that does not change.
func fixed(s string) func() string { return func() string { return s } }
