package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// alive reports whether the pid written to file by a test command still runs.
func alive(t *testing.T, file string) bool {
	t.Helper()
	var data []byte
	for i := 0; i < 100; i++ {
		if data, _ = os.ReadFile(file); len(data) > 0 && data[len(data)-1] == '\n' {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pid file %s: %q", file, data)
	}
	// A zombie still answers kill 0; its state says it is gone.
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string
		env      []string
		timeout  time.Duration
		wantCode int
		wantErr  string
		wantOut  string
		wantTail string
	}{
		{name: "success", argv: sh("echo out; echo err >&2"), wantCode: 0, wantOut: "out\n", wantTail: "err\n"},
		{name: "exit status", argv: sh("exit 3"), wantCode: 3, wantErr: "exit status 3"},
		{name: "killed", argv: sh("kill -KILL $$"), wantCode: -1, wantErr: "killed by SIGKILL"},
		{name: "stdin is empty", argv: sh("cat; echo done"), wantOut: "done\n"},
		{name: "environment", argv: sh(`echo "$PGFBB_LABEL"`), env: []string{"PGFBB_LABEL=x1"}, wantOut: "x1\n"},
		{name: "stderr tail is bounded", argv: sh("head -c 100000 /dev/zero | tr '\\0' a >&2; echo END >&2"),
			wantTail: strings.Repeat("a", 60) + "END\n"},
		{name: "not found", argv: []string{"/nonexistent/snap"}, wantCode: -1, wantErr: "start /nonexistent/snap"},
		{name: "timeout", argv: sh("sleep 30"), timeout: 200 * time.Millisecond, wantCode: -1,
			wantErr: "timed out after 200ms (killed by SIGTERM)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := Run(context.Background(), Spec{Argv: tt.argv, Env: tt.env, Timeout: tt.timeout,
				Grace: 5 * time.Second, Stdout: &out, TailBytes: 64})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Run: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Run error = %v, want one containing %q", err, tt.wantErr)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, tt.wantCode)
			}
			if out.String() != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out.String(), tt.wantOut)
			}
			if tt.wantTail != "" && res.StderrTail != tt.wantTail {
				t.Errorf("stderr tail = %q, want %q", res.StderrTail, tt.wantTail)
			}
		})
	}
}

func TestRunTimeoutKillsGroupAfterGrace(t *testing.T) {
	dir := t.TempDir()
	child, grandchild := filepath.Join(dir, "child"), filepath.Join(dir, "grandchild")
	// The leader ignores SIGTERM, so only SIGKILL after the grace ends it;
	// its background child must die too.
	script := `trap '' TERM; sleep 60 & echo $! > ` + grandchild + `; echo $$ > ` + child + `; while :; do sleep 0.05; done`
	start := time.Now()
	res, err := Run(context.Background(), Spec{Argv: sh(script), Timeout: time.Second, Grace: 300 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v does not wrap ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "killed by SIGKILL") {
		t.Errorf("error %q should say the command needed SIGKILL", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %s", d)
	}
	if res.ExitCode != -1 {
		t.Errorf("ExitCode = %d", res.ExitCode)
	}
	time.Sleep(100 * time.Millisecond)
	for _, f := range []string{child, grandchild} {
		if alive(t, f) {
			t.Errorf("%s survived", filepath.Base(f))
		}
	}
}

func TestRunForwardsInterrupt(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	ready := filepath.Join(dir, "ready")
	script := `trap 'echo INT > ` + got + `; exit 7' INT; touch ` + ready + `; while :; do sleep 0.05; done`
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		for {
			if _, err := os.Stat(ready); err == nil {
				cancel(&Interrupted{Signal: syscall.SIGINT})
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	res, err := Run(ctx, Spec{Argv: sh(script), Grace: 5 * time.Second})
	var intr *Interrupted
	if !errors.As(err, &intr) || intr.Signal != syscall.SIGINT || intr.ExitCode() != 130 {
		t.Fatalf("error %v does not carry the SIGINT interruption", err)
	}
	if data, _ := os.ReadFile(got); string(data) != "INT\n" {
		t.Errorf("child did not receive SIGINT: %q", data)
	}
	if res.ExitCode != 7 {
		t.Errorf("ExitCode = %d, want the child's 7", res.ExitCode)
	}
}

func TestRunForceKills(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancelCause(context.Background())
	force := make(chan struct{})
	go func() {
		// Only once the trap is set does SIGTERM stop nothing.
		for {
			if _, err := os.Stat(ready); err == nil {
				cancel(&Interrupted{Signal: syscall.SIGTERM})
				close(force)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	start := time.Now()
	_, err := Run(ctx, Spec{Argv: sh("trap '' TERM; touch " + ready + "; while :; do sleep 0.05; done"), Grace: time.Hour, Force: force})
	if err == nil || !strings.Contains(err.Error(), "killed by SIGKILL") {
		t.Fatalf("error = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("force took %s", d)
	}
}

func TestInterruptedMessage(t *testing.T) {
	e := &Interrupted{Signal: syscall.SIGTERM}
	if e.Error() != "interrupted by SIGTERM" || e.ExitCode() != 143 {
		t.Fatalf("%q %d", e.Error(), e.ExitCode())
	}
}

// TestRunWaitsForWhatTheCommandStarted: a command is over only when every
// process it started is, daemons included.
func TestRunWaitsForWhatTheCommandStarted(t *testing.T) {
	tests := []struct {
		name, script string
	}{
		{"backgrounded", "(sleep 1; touch F) & exit 0"},
		{"daemon in its own session", "setsid sh -c 'sleep 1; touch F' & exit 0"},
		{"holding stderr", "sh -c 'sleep 1; touch F' >&2 & exit 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			script := strings.ReplaceAll(tt.script, "F", filepath.Join(dir, "f"))
			res, err := Run(context.Background(), Spec{Argv: sh(script), Timeout: 20 * time.Second, Grace: time.Second, TailBytes: 64})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "f")); err != nil {
				t.Errorf("Run returned before what the command started had finished (after %s): %v", res.Duration, err)
			}
			if strings.Contains(res.StderrTail, "still open") || len(res.Leftovers) > 0 {
				t.Errorf("tail %q, leftovers %q", res.StderrTail, res.Leftovers)
			}
		})
	}
}

// TestRunKillsLeftoversAtTimeout names what it had to kill, and says the
// command itself had exited 0.
func TestRunKillsLeftoversAtTimeout(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	script := "setsid sh -c 'echo $$ > " + pidFile + "; exec sleep 30' & exit 0"
	res, err := Run(context.Background(), Spec{Argv: sh(script), Timeout: 500 * time.Millisecond, Grace: time.Second, TailBytes: 64})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "exit status 0") || !strings.Contains(err.Error(), "(sleep)") {
		t.Fatalf("Run error = %v, want a timeout naming the leftover sleep", err)
	}
	if len(res.Leftovers) != 1 {
		t.Errorf("Leftovers = %q", res.Leftovers)
	}
	if alive(t, pidFile) {
		t.Error("the leftover survived")
	}
}

// TestRunInterruptReachesLeftovers: a signal after the command exited still
// ends what it left running.
func TestRunInterruptReachesLeftovers(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(500*time.Millisecond, func() { cancel(&Interrupted{Signal: syscall.SIGINT}) })
	_, err := Run(ctx, Spec{Argv: sh("setsid sh -c 'echo $$ > " + pidFile + "; exec sleep 30' & exit 0"), Grace: time.Second, TailBytes: 64})
	var intr *Interrupted
	if !errors.As(err, &intr) || !strings.Contains(err.Error(), "(sleep)") {
		t.Fatalf("Run error = %v, want the interruption naming the leftover sleep", err)
	}
	if alive(t, pidFile) {
		t.Error("the leftover survived")
	}
}
