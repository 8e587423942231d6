package backup

import (
	"fmt"
	"time"
)

// progressEvery is how often a progress line is redrawn.
const progressEvery = time.Second

// progress draws one line on the terminal (Options.Progress) while a long
// wait lasts, "what: 12s" and a hint, and clears it when done returns.
// Without a terminal it does nothing: cron mail and --json stay clean.
func (r *run) progress(what, hint string) (done func()) {
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
		drawn := false
		for {
			select {
			case <-stop:
				if drawn {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-tick.C:
				fmt.Fprintf(w, "\r\033[Kpgfbb-wrap: %s: %s %s", what, time.Since(began).Round(time.Second), hint)
				drawn = true
			}
		}
	}()
	return func() { close(stop); <-stopped }
}
