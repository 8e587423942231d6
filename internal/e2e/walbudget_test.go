package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestWALBudget writes WAL steadily on a cluster whose pg_wal has a small
// file system of its own, and a backup nobody finishes: a hung snapshot
// command, then a held backup with no post. The slot keeps every segment
// from the start, and with max_slot_wal_keep_size = -1 (the default)
// nothing else would stop pg_wal from filling and PostgreSQL from
// stopping. The default budget, half of pg_wal's free space, ends each
// backup first; the server keeps running.
func TestWALBudget(t *testing.T) {
	in := pgtest.DefaultInstall(t)
	wal := tmpfsIn(t, pgtest.TempDir(t), "size=256m,mode=0755") // the server's user reaches it
	pgtest.Chown(t, wal)
	c := pgtest.New(t, in, pgtest.Options{InitArgs: []string{"-X", filepath.Join(wal, "wal")},
		Conf: []string{"max_wal_size = 32MB", "min_wal_size = 32MB"}})
	db := c.DB(t)
	pgtest.Exec(t, db, "CREATE TABLE churn (i int)")
	// About 15 MB of WAL a second: the budget is read every few seconds,
	// and what is written meanwhile must still fit.
	ctx, cancel := context.WithCancel(context.Background())
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for ctx.Err() == nil {
			db.ExecContext(ctx, "INSERT INTO churn SELECT generate_series(1, 30000)")
			db.ExecContext(ctx, "TRUNCATE churn")
			time.Sleep(100 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-writing }()
	alive := func(t *testing.T) {
		t.Helper()
		if got := pgtest.QueryString(t, db, "SELECT 1"); got != "1" {
			t.Fatalf("the server does not answer: %q", got)
		}
		waitClean(t, db)
	}

	t.Run("no budget and no max_slot_wal_keep_size: a warning", func(t *testing.T) {
		runTool(t, c.Env(), "--staging", filepath.Join(t.TempDir(), "staging"), "--max-wal-retained", "0", "--fast", "--", "true").
			want(t, 0, "WAL retention is unbounded")
	})

	t.Run("a hung snapshot command", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "staging")
		r := runTool(t, c.Env(), "--staging", st, "--label", "hung", "--fast", "-v", "--", "sleep", "600")
		r.want(t, 4, "WAL retention budget", "passed --max-wal-retained", "killed by SIGTERM", "stop:")
		assertNothingPublished(t, st)
		alive(t)
	})

	t.Run("a held backup nobody posts", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "staging")
		runTool(t, c.Env(), "pre", "--staging", st, "--label", "held", "--fast", "--max-wal-retained", "48MB").want(t, 0, "PGFBB_LABEL=")
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(runTool(t, nil, "status", "--staging", st).stdout, "ended") {
			if time.Now().After(deadline) {
				t.Fatal("the holder did not end the backup")
			}
			time.Sleep(time.Second)
		}
		runTool(t, nil, "post", "--staging", st, "--label", "held").want(t, 4, "passed --max-wal-retained 48.0 MiB")
		alive(t)
	})
}
