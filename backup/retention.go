package backup

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pgfbb/pgfbb-wrap/pgbackup"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"golang.org/x/sys/unix"
)

// The WAL-retention budget. The backup's slot keeps every WAL segment from
// the start on, and with max_slot_wal_keep_size at its default (-1) nothing
// else stops a hung snapshot or a forgotten post from filling pg_wal's file
// system, which stops PostgreSQL. The budget stops the backup first.
const (
	// AutoWALRetained asks for the budget to be derived from the free
	// space of pg_wal's file system.
	AutoWALRetained = -1
	// defaultWALRetained is the budget when that free space is not visible.
	defaultWALRetained = 16 << 30
	// walWatchEvery is how often the WAL written since the start is read.
	walWatchEvery = 2 * time.Second
)

// WALBudgetError means the WAL written since the backup started passed
// --max-wal-retained.
type WALBudgetError struct {
	Written, Limit int64
}

func (e *WALBudgetError) Error() string {
	return fmt.Sprintf("%s of WAL written since the backup started passed --max-wal-retained %s, "+
		"which the backup's slot would keep in pg_wal: the backup was ended so that pg_wal cannot fill its file system",
		humanBytes(e.Written), humanBytes(e.Limit))
}

// ParseSize reads a --max-wal-retained value: "auto", 0 (no budget), or a
// number of bytes with an optional unit kB, MB, GB or TB (1024-based, as
// PostgreSQL counts).
func ParseSize(s string) (int64, error) {
	if s == "auto" {
		return AutoWALRetained, nil
	}
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(num):])
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want auto, 0, or a number with kB, MB, GB or TB", s)
	}
	shift := map[string]uint{"": 0, "B": 0, "kB": 10, "KB": 10, "MB": 20, "GB": 30, "TB": 40}
	sh, ok := shift[unit]
	if !ok || n > (1<<62)>>sh {
		return 0, fmt.Errorf("size %q: want auto, 0, or a number with kB, MB, GB or TB", s)
	}
	return n << sh, nil
}

// walBudget decides the run's budget and says how, or warns that nothing
// bounds retention.
func (r *run) walBudget() {
	srv := r.sess.Server()
	switch r.budget = r.opts.MaxWALRetained; {
	case r.budget == 0 && srv.MaxSlotWALKeep < 0:
		r.note("WAL retention is unbounded (--max-wal-retained 0, max_slot_wal_keep_size = -1): " +
			"a hung snapshot or a forgotten post can fill pg_wal's file system and stop PostgreSQL")
	case r.budget == AutoWALRetained:
		r.budget = defaultWALRetained
		var fs unix.Statfs_t
		if r.pgdata != "" && unix.Statfs(filepath.Join(r.pgdata, "pg_wal"), &fs) == nil {
			r.budget = int64(fs.Bavail) * fs.Bsize / 2
		}
		r.log.Info("WAL retention budget", "max_wal_retained", humanBytes(r.budget))
	}
	if r.budget > 0 {
		r.ok(fmt.Sprintf("WAL retention bounded: the backup ends when %s of WAL is written (--max-wal-retained)", humanBytes(r.budget)))
	} else if srv.MaxSlotWALKeep >= 0 {
		r.ok(fmt.Sprintf("WAL retention bounded by max_slot_wal_keep_size (%s)", humanBytes(srv.MaxSlotWALKeep)))
	}
}

// overBudget fails with a *WALBudgetError once the WAL written since start
// passes the budget, and with pgbackup.ErrSessionLost once the session is
// gone: PostgreSQL has then aborted the backup, and the snapshot is
// pointless. Any other failed read is no verdict.
func (r *run) overBudget(ctx context.Context, start pgformat.LSN) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	written, err := r.sess.WALSince(qctx, start)
	switch {
	case r.sess.Lost() && !errors.Is(err, pgbackup.ErrSessionLost):
		return fmt.Errorf("%w: %w", pgbackup.ErrSessionLost, err)
	case r.sess.Lost():
		return err
	case err != nil || r.budget <= 0 || written <= r.budget:
		return nil
	}
	return &WALBudgetError{Written: written, Limit: r.budget}
}

// watchWAL ends the snapshot command, through its context, when the
// budget is passed or the session is lost; stop ends the watch.
func (r *run) watchWAL(ctx context.Context, start pgformat.LSN, end context.CancelCauseFunc) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(walWatchEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if err := r.overBudget(ctx, start); err != nil {
					end(err)
					return
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}
