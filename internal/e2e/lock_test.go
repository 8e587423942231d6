package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestClusterLock: one backup of a cluster into a staging directory at a
// time, wrapped or held; another cluster's backup runs beside it.
func TestClusterLock(t *testing.T) {
	in := pgtest.DefaultInstall(t)
	c, other := pgtest.New(t, in, pgtest.Options{}), pgtest.New(t, in, pgtest.Options{})
	st := filepath.Join(t.TempDir(), "staging")
	started := filepath.Join(t.TempDir(), "started")
	first, _ := tool(c.Env(), "--staging", st, "--label", "first", "--fast", "--", "sh", "-c", "echo $$ > "+started+"; sleep 3")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, started)
	runTool(t, c.Env(), "--staging", st, "--label", "second", "--fast", "--", "true").
		want(t, 2, "a backup of this cluster is running: label first, pid "+strconv.Itoa(first.Process.Pid))
	runTool(t, other.Env(), "--staging", st, "--label", "other", "--fast", "--", "true").want(t, 0)
	runTool(t, c.Env(), "--staging", st, "--label", "waited", "--fast", "--lock-wait", "1m", "--", "true").want(t, 0)
	if err := first.Wait(); err != nil {
		t.Fatalf("the first run: %v", err)
	}

	// A default label taken (another cluster's backup started in the
	// same second) moves on to the next free one, never fails the run.
	now := time.Now()
	for i := range 10 {
		if err := os.Mkdir(filepath.Join(st, backup.DefaultLabel(now.Add(time.Duration(i)*time.Second))), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	runTool(t, c.Env(), "--staging", st, "--fast", "--", "true").want(t, 0)
	if moved, _ := filepath.Glob(filepath.Join(st, "pgfbb-*-2")); len(moved) != 1 {
		t.Errorf("backups with a moved default label: %v", moved)
	}
	// An explicit label being made by another run is refused up front.
	first, _ = tool(c.Env(), "--staging", st, "--label", "busy", "--fast", "--", "sh", "-c", "echo $$ > "+started+"2; sleep 3")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, started+"2")
	runTool(t, other.Env(), "--staging", st, "--label", "busy", "--fast", "--", "true").want(t, 2, "busy is being made by another run")
	if err := first.Wait(); err != nil {
		t.Fatalf("the first run: %v", err)
	}

	runTool(t, c.Env(), "pre", "--staging", st, "--label", "held", "--fast").want(t, 0)
	runTool(t, c.Env(), "--staging", st, "--label", "during-hold", "--fast", "--", "true").want(t, 2, "label held", "--lock-wait waits for it")
	runTool(t, c.Env(), "check", "--staging", st).want(t, 0, "warn  a backup of this cluster is running: label held")
	// Interrupted while waiting: 130, and no word of the wait running out.
	waiter, waiterErr := tool(c.Env(), "--staging", st, "--label", "interrupted", "--fast", "--lock-wait", "1m", "--", "true")
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	waiter.Process.Signal(os.Interrupt)
	waiter.Wait()
	if code := waiter.ProcessState.ExitCode(); code != 130 || strings.Contains(waiterErr.String(), "still running") {
		t.Errorf("SIGINT during --lock-wait: exit %d\n%s", code, waiterErr)
	}
	runTool(t, c.Env(), "--staging", st, "--label", "waited-out", "--fast", "--lock-wait", "1s", "--", "true").
		want(t, 2, "label held", "still running after --lock-wait 1s")
	runTool(t, nil, "post", "--staging", st, "--label", "held").want(t, 0)
	runTool(t, c.Env(), "--staging", st, "--label", "after-hold", "--fast", "--", "true").want(t, 0)
}
