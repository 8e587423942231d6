package hook

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"golang.org/x/sys/unix"
)

func TestLockExcludesAndSurvivesRelease(t *testing.T) {
	d := runDir(t.TempDir())
	first, err := d.tryLock("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.lock("a", 50*time.Millisecond); !errors.Is(err, errBusy) {
		t.Fatalf("second lock = %v, want errBusy", err)
	}
	d.release(first, "a")
	if _, err := os.Stat(d.path("a", "lock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("release left the lock file: %v", err)
	}
	second, err := d.tryLock("a")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	second.Close()
}

// entries writes a run directory with one label in each status.
func entries(t *testing.T) (runDir, func()) {
	t.Helper()
	staging := t.TempDir()
	d := runDir(DefaultRunDir(staging))
	os.Mkdir(string(d), 0o700)
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	state := func(label string, age time.Duration) string {
		partial := filepath.Join(staging, "."+label+".partial-1")
		os.Mkdir(partial, 0o700)
		st := &State{Label: label, PID: 42, StartedAt: at.Add(-age), Partial: partial, Vars: map[string]string{backup.EnvStaging: staging}}
		if err := writeJSON(d.path(label, "state"), st); err != nil {
			t.Fatal(err)
		}
		return partial
	}
	held, err := d.tryLock("held")
	if err != nil {
		t.Fatal(err)
	}
	// A live holder's run holds its partial backup's flock.
	heldPartial, err := os.Open(state("held", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(heldPartial.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	starting, err := d.tryLock("starting")
	if err != nil {
		t.Fatal(err)
	}
	state("dead", time.Hour)
	if err := writeJSON(d.path("ended", "result"), &Result{Label: "ended", ExitCode: 4, Report: "timed out\n"}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(d.path("leftover", "lock"), nil, 0o600)
	os.WriteFile(d.path("old", "log"), nil, 0o600)
	return d, func() { held.Close(); starting.Close(); heldPartial.Close() }
}

func TestList(t *testing.T) {
	d, unlock := entries(t)
	defer unlock()
	got, err := List(string(d))
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, e := range got {
		summary = append(summary, e.Label+"="+e.Status)
	}
	// Oldest first; entries without a state sort first.
	want := "ended=ended starting=starting dead=dead held=held"
	if strings.Join(summary, " ") != want {
		t.Fatalf("List = %v, want %s", summary, want)
	}
	if _, err := os.Stat(d.path("leftover", "lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a lock file with no entry was kept")
	}
	if _, err := os.Stat(d.path("old", "log")); err != nil {
		t.Errorf("List removed a log: %v", err)
	}
}

func TestSelect(t *testing.T) {
	d, unlock := entries(t)
	defer unlock()
	only := func(t *testing.T, results ...string) string {
		d := runDir(t.TempDir())
		for _, label := range results {
			writeJSON(d.path(label, "result"), &Result{Label: label})
		}
		return string(d)
	}
	// One backup held beside two that ended: the held one is post's.
	mixed := runDir(only(t, "ended1", "ended2"))
	held, err := mixed.tryLock("tonight")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	writeJSON(mixed.path("tonight", "state"), &State{Label: "tonight", PID: 7})

	tests := []struct {
		name, dir, label string
		want             string // the label picked, or the error
		notes            []string
	}{
		{"given", string(d), "given", "given", nil},
		{"invalid", string(d), "../x", "invalid label", nil},
		{"two running", string(d), "", "2 backups are held in " + string(d) + ": starting (starting), held (held by pid 42); give --label", nil},
		{"one running beside ended ones", string(mixed), "", "tonight", []string{
			"backup ended1 ended without a post: pgfbb-wrap post --label ended1 reports it",
			"backup ended2 ended without a post: pgfbb-wrap post --label ended2 reports it"}},
		{"only ended", only(t, "one"), "", "one", nil},
		{"several ended", only(t, "a", "b"), "", "2 backups ended without a post in", nil},
		{"empty", t.TempDir(), "", "no backup is held", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, notes, err := Select(tt.dir, tt.label)
			if err != nil {
				if backup.ExitCode(err) != backup.ExitUsage || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Select = %v, want exit 2 and %q", err, tt.want)
				}
				return
			}
			if got != tt.want || strings.Join(notes, "\n") != strings.Join(tt.notes, "\n") {
				t.Fatalf("Select = %q, notes %q; want %q, %q", got, notes, tt.want, tt.notes)
			}
		})
	}
}

func TestFinishWithoutHolder(t *testing.T) {
	d, unlock := entries(t)
	defer unlock()
	ctx := context.Background()
	tests := []struct {
		label, op string
		code      int
		want      string
	}{
		{"ended", OpPost, 4, "timed out"},
		{"dead", OpPost, backup.ExitFailed, "died without stopping it"},
		{"dead", OpAbort, backup.ExitUsage, "no backup labelled dead is held"}, // collected just above
		{"never", OpPost, backup.ExitUsage, "no backup labelled never is held"},
	}
	for _, tt := range tests {
		res, err := Finish(ctx, string(d), tt.label, tt.op)
		code, text := backup.ExitCode(err), ""
		if err != nil {
			text = err.Error()
		} else {
			code, text = res.ExitCode, res.Report
		}
		if code != tt.code || !strings.Contains(text, tt.want) {
			t.Errorf("%s %s: exit %d %q, want %d and %q", tt.op, tt.label, code, text, tt.code, tt.want)
		}
	}
	staging := filepath.Dir(string(d))
	if _, err := os.Stat(filepath.Join(staging, ".dead.partial-1")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the dead holder's partial backup was kept")
	}
	if _, err := os.Stat(filepath.Join(staging, ".held.partial-1")); err != nil {
		t.Errorf("the live holder's partial backup was swept: %v", err)
	}
	if _, err := os.Stat(d.path("dead", "lock")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the dead holder's lock file was kept")
	}
}
