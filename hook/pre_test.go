package hook

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/runner"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/pgfbb/pgfbb-wrap/walcollect"
)

// fakeHolderEnv makes the test binary a holder that starts its backup in
// the same instant as pre's SIGTERM arrives: a window too narrow to hit with
// a real server, which the e2e tests cover otherwise.
const fakeHolderEnv = "PGFBB_TEST_FAKE_HOLDER"

func TestMain(m *testing.M) {
	if os.Getenv(fakeHolderEnv) != "" {
		os.Exit(fakeHolder())
	}
	os.Exit(m.Run())
}

// fakeHolder follows the holder's protocol: the label's lock, "started" on
// fd 4 (sent only once SIGTERM came), then the abort's outcome left in the
// run directory because pre no longer listens for it.
func fakeHolder() int {
	var spec Spec
	if err := json.NewDecoder(os.NewFile(3, "spec")).Decode(&spec); err != nil {
		return backup.ExitUsage
	}
	d, label := runDir(spec.RunDir), spec.Backup.Label
	lock, err := d.tryLock(label)
	if err != nil {
		return backup.ExitUsage
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	os.WriteFile(filepath.Join(string(d), "ready"), nil, 0o600)
	<-sigs
	status := os.NewFile(4, "status")
	json.NewEncoder(status).Encode(message{Started: &State{Label: label, PID: os.Getpid()}})
	status.Close()
	writeJSON(d.path(label, "result"), &Result{Label: label, ExitCode: 143, Report: "backup x ABORTED: interrupted by SIGTERM\n"})
	d.release(lock, label, "result", "log")
	return 143
}

// TestPreInterruptedAsTheBackupStarts: pre reports the outcome of the
// stopped backup and leaves nothing in the run directory for a later post.
func TestPreInterruptedAsTheBackupStarts(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeHolderEnv, "1")
	staging := filepath.Join(t.TempDir(), "staging")
	spec := Spec{RunDir: DefaultRunDir(staging), HoldTimeout: time.Hour, Backup: backup.Options{
		Staging: staging, Label: "x", WAL: staged.WALCopy, WALSource: walcollect.SourceAuto,
		ArchiveTimeout: time.Minute, StartTimeout: time.Minute}}
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		for i := 0; i < 200; i++ {
			if _, err := os.Stat(filepath.Join(spec.RunDir, "ready")); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel(&runner.Interrupted{Signal: syscall.SIGINT})
	}()
	_, err = Pre(ctx, spec, exe)
	var failed *Failed
	if !errors.As(err, &failed) {
		t.Fatalf("Pre = %v, want a *Failed", err)
	}
	if res := failed.Result; res.ExitCode != 130 || !strings.Contains(res.Report, "pre interrupted by SIGINT: the holder was told to stop") ||
		!strings.Contains(res.Report, "backup x ABORTED") {
		t.Errorf("Pre reported exit %d:\n%s", res.ExitCode, res.Report)
	}
	entries, err := List(spec.RunDir)
	if err != nil || len(entries) != 0 {
		t.Errorf("run directory lists %+v (%v), want nothing left for post", entries, err)
	}
}
