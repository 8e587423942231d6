package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kballard/go-shellquote"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// TestMonitoring: the metrics file after a success and after a failure, as
// node_exporter's textfile collector reads it, and the pings a local
// Healthchecks stand-in receives.
func TestMonitoring(t *testing.T) {
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	var mu sync.Mutex
	var pings []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		pings = append(pings, r.URL.Path+" "+string(body))
		mu.Unlock()
	}))
	defer srv.Close()
	metrics := filepath.Join(t.TempDir(), "pgfbb.prom")
	st := filepath.Join(t.TempDir(), "staging")
	run := func(label string, code int, command ...string) map[string]string {
		t.Helper()
		mu.Lock()
		pings = nil
		mu.Unlock()
		args := append([]string{"--staging", st, "--label", label, "--fast", "--name", "main", "--metrics-file", metrics,
			"--ping-url", srv.URL + "/ping/abc", "--"}, command...)
		runTool(t, c.Env(), args...).want(t, code)
		data, err := os.ReadFile(metrics)
		if err != nil {
			t.Fatal(err)
		}
		samples := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			name, value, ok := strings.Cut(line, `{cluster="main"} `)
			if !ok {
				t.Fatalf("metrics line %q is not one series for the cluster", line)
			}
			samples[name] = value
		}
		return samples
	}

	ok := run("ok", 0, "true")
	if ok["pgfbb_last_exit_code"] != "0" || ok["pgfbb_last_wal_files"] == "0" || ok["pgfbb_last_success_timestamp_seconds"] != ok["pgfbb_last_run_timestamp_seconds"] {
		t.Errorf("metrics after a success: %v", ok)
	}
	mu.Lock()
	if len(pings) != 2 || pings[0] != "/ping/abc/start " || pings[1] != "/ping/abc " {
		t.Errorf("pings after a success: %q", pings)
	}
	mu.Unlock()

	failed := run("failed", 4, "false")
	if failed["pgfbb_last_exit_code"] != "4" || failed["pgfbb_last_success_timestamp_seconds"] != ok["pgfbb_last_success_timestamp_seconds"] {
		t.Errorf("metrics after a failure: %v (before: %v)", failed, ok)
	}
	mu.Lock()
	if len(pings) != 2 || !strings.HasPrefix(pings[1], "/ping/abc/fail pgfbb-wrap: backup failed FAILED") {
		t.Errorf("pings after a failure: %q", pings)
	}
	mu.Unlock()

	// Logs as JSON lines; -q silences warnings.
	// The outcome, too, is a record: its "report" is the JSON report.
	outcome := func(r result) (msg string, exitCode float64) {
		t.Helper()
		for _, line := range strings.FieldsFunc(r.stderr, func(c rune) bool { return c == '\n' }) {
			var rec struct {
				Msg    string         `json:"msg"`
				Report map[string]any `json:"report"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Msg == "" {
				t.Errorf("stderr line %q is not a slog JSON record: %v", line, err)
				continue
			}
			if rec.Report != nil {
				msg, exitCode = rec.Msg, rec.Report["exit_code"].(float64)
			}
		}
		return msg, exitCode
	}
	for _, tc := range []struct {
		args     []string
		msg      string
		exitCode float64
	}{
		{[]string{"--staging", st, "--label", "json", "--fast", "-v", "--log-format", "json", "--", "true"}, "backup complete", 0},
		{[]string{"--staging", st, "--label", "jsonfail", "--fast", "--log-format", "json", "--", "false"}, "backup failed", 4},
		{[]string{"--staging", st, "--log-format", "json", "unexpected"}, "backup failed", 2},
		{[]string{"pre", "--staging", st, "--label", "jsonheld", "--fast", "--log-format", "json"}, "", 0},
		{[]string{"abort", "--staging", st, "--label", "jsonheld", "--log-format", "json"}, "backup aborted", 0},
		{[]string{"post", "--staging", st, "--label", "jsonheld", "--log-format", "json"}, "backup failed", 2},
	} {
		r := runTool(t, c.Env(), tc.args...)
		if msg, code := outcome(r); msg != tc.msg || code != tc.exitCode || r.code != int(tc.exitCode) {
			t.Errorf("%v: exit %d, record %q with exit_code %v, want %q with %v", tc.args, r.code, msg, code, tc.msg, tc.exitCode)
		}
	}
	if q := runTool(t, c.Env(), "--staging", st, "--label", "quiet", "--fast", "-q", "--wal=skip", "--", "true"); q.code != 0 || q.stderr != "" {
		t.Errorf("-q: exit %d, stderr %q", q.code, q.stderr)
	}

	// --json: one object on stdout, for the run, check and verify.
	type report struct {
		FormatVersion int    `json:"format_version"`
		Label         string `json:"label"`
		ExitCode      int    `json:"exit_code"`
		WALFiles      int    `json:"wal_files"`
		Checks        []string
		Errors        []struct{ Phase, Message string }
		OK            *bool   `json:"ok"`
		Elapsed       float64 `json:"elapsed_seconds"`
		Phases        []struct {
			Phase   string
			Seconds float64
		}
	}
	decode := func(r result) report {
		t.Helper()
		var rep report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.FormatVersion != 1 {
			t.Fatalf("stdout is not one JSON report (%v):\n%s", err, r.stdout)
		}
		return rep
	}
	r := runTool(t, c.Env(), "--staging", st, "--label", "j1", "--fast", "--json", "--", "sh", "-c", "echo from-the-command")
	if rep := decode(r); r.code != 0 || rep.Label != "j1" || rep.ExitCode != 0 || rep.WALFiles == 0 || !strings.Contains(r.stderr, "from-the-command") {
		t.Errorf("--json success: exit %d, %+v, stderr %q", r.code, rep, r.stderr)
	}
	// The phases, in order, account for the run's time.
	full := decode(r)
	phases, elapsed := full.Phases, full.Elapsed
	var names []string
	var sum float64
	for _, p := range phases {
		names = append(names, p.Phase)
		sum += p.Seconds
	}
	want := []string{"usage", "prepare-staging", "connect", "preflight", "create-slot", "start", "snapshot", "stop", "collect-wal", "publish"}
	if !slices.Equal(names, want) || sum > elapsed+0.001 || sum < elapsed*0.9 {
		t.Errorf("phases %v sum to %.3fs of %.3fs; want %v", phases, sum, elapsed, want)
	}
	r = runTool(t, c.Env(), "--staging", st, "--label", "j2", "--fast", "--json", "--", "false")
	if rep := decode(r); r.code != 4 || rep.ExitCode != 4 || len(rep.Errors) == 0 || rep.Errors[0].Phase != "snapshot" {
		t.Errorf("--json failure: exit %d, %+v", r.code, rep)
	}
	if rep := decode(runTool(t, c.Env(), "check", "--staging", st, "--json")); rep.ExitCode != 0 || len(rep.Checks) < 3 {
		t.Errorf("check --json: %+v", rep)
	}
	if rep := decode(runTool(t, nil, "verify", "--json", filepath.Join(st, "j1"))); rep.OK == nil || !*rep.OK {
		t.Errorf("verify --json: %+v", rep)
	}

	var pre struct {
		FormatVersion int               `json:"format_version"`
		Label         string            `json:"label"`
		Vars          map[string]string `json:"vars"`
	}
	r = runTool(t, c.Env(), "pre", "--staging", st, "--label", "hj", "--fast", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &pre); err != nil || r.code != 0 || pre.Label != "hj" || pre.Vars["PGFBB_START_LSN"] == "" {
		t.Fatalf("pre --json: exit %d, %+v, %v:\n%s", r.code, pre, err, r.stdout)
	}
	if rep := decode(runTool(t, nil, "post", "--staging", st, "--label", "hj", "--json", "--name", "main", "--metrics-file", metrics,
		"--ping-url", srv.URL+"/ping/abc")); rep.ExitCode != 0 || rep.Label != "hj" || rep.WALFiles == 0 {
		t.Errorf("post --json: %+v", rep)
	}
	mu.Lock()
	if len(pings) == 0 || pings[len(pings)-1] != "/ping/abc " {
		t.Errorf("post's ping: %q", pings)
	}
	mu.Unlock()
	if data, _ := os.ReadFile(metrics); !strings.Contains(string(data), `pgfbb_last_exit_code{cluster="main"} 0`) {
		t.Errorf("post's metrics:\n%s", data)
	}
	// An abort (the snapshot failed) exits 0 but is no success: the fail
	// ping, and the last success time stays.
	success := func() string {
		data, _ := os.ReadFile(metrics)
		_, after, _ := strings.Cut(string(data), `pgfbb_last_success_timestamp_seconds{cluster="main"} `)
		return strings.SplitN(after, "\n", 2)[0]
	}
	before := success()
	runTool(t, c.Env(), "pre", "--staging", st, "--label", "ab", "--fast").want(t, 0)
	runTool(t, nil, "abort", "--staging", st, "--label", "ab", "--name", "main", "--metrics-file", metrics,
		"--ping-url", srv.URL+"/ping/abc").want(t, 0)
	mu.Lock()
	if len(pings) == 0 || !strings.HasPrefix(pings[len(pings)-1], "/ping/abc/fail ") {
		t.Errorf("abort's ping: %q", pings[len(pings)-1:])
	}
	mu.Unlock()
	if after := success(); after != before || before == "" {
		t.Errorf("last success %q after an abort, was %q", after, before)
	}
	// post reports where pre was told to, without being told again.
	runTool(t, c.Env(), "pre", "--staging", st, "--label", "hm", "--fast", "--name", "main", "--metrics-file", metrics,
		"--ping-url", srv.URL+"/ping/abc").want(t, 0)
	runTool(t, nil, "post", "--staging", st, "--label", "hm").want(t, 0)
	mu.Lock()
	if last := pings[len(pings)-1]; last != "/ping/abc " {
		t.Errorf("post after pre with --ping-url pinged %q last", last)
	}
	mu.Unlock()
	if after := success(); after == before {
		t.Errorf("post after pre with --metrics-file left the last success at %q", after)
	}

	// A ping URL that could never be pinged is refused at once, unquoted.
	if r := runTool(t, c.Env(), "--ping-url", "ftp://u:secret@x", "--staging", st, "--", "true"); r.code != 2 ||
		!strings.Contains(r.stderr, "want an http:// or https:// URL") || strings.Contains(r.stdout+r.stderr, "secret") {
		t.Errorf("--ping-url ftp://…: exit %d\n%s", r.code, r.stderr)
	}

	// A command that fails before it does anything still gives stdout
	// its one object, with the exit code and the error.
	for _, args := range [][]string{
		{"list", "--json", "--staging", filepath.Join(st, "missing")},
		{"post", "--json", "--staging", st, "--label", "never-held"},
		{"abort", "--json", "--staging", st},
		{"pre", "--json", "--staging", st, "--label", "bad label"},
		{"verify", "--json", filepath.Join(st, "a"), filepath.Join(st, "b")},
		{"--json", "--staging", st, "unexpected"},
		{"--json", "--staging", st, "--start-timeout", "banana", "--", "true"},
		{"list", "--json", "--bogus"},
		{"check", "--bogus", "--json"},
		{"--json", "--config", filepath.Join(st, "missing.yaml"), "--", "true"},
	} {
		r := runTool(t, c.Env(), args...)
		if rep := decode(r); rep.ExitCode != 2 || r.code != 2 || len(rep.Errors) != 1 || rep.Errors[0].Message == "" {
			t.Errorf("%v: exit %d, %+v", args, r.code, rep)
		}
	}
	if r := runTool(t, c.Env(), "pre", "--staging", st, "--label", "hn", "--fast", "--json"); !strings.Contains(r.stdout, `"notes": []`) {
		t.Errorf("pre --json without notes: %s", r.stdout)
	}
	runTool(t, nil, "abort", "--staging", st, "--label", "hn").want(t, 0)

	// A reader of its output that goes away does not kill a backup.
	pipe := exec.Command("bash", "-c", shellquote.Join(toolBin, "-v", "--staging", st, "--label", "pipe", "--fast", "--", "sleep", "1")+
		` 2>&1 | head -c 1 >/dev/null; exit ${PIPESTATUS[0]}`)
	pipe.Env = append(os.Environ(), c.Env()...)
	if out, err := pipe.CombinedOutput(); err != nil {
		t.Errorf("with its output cut: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(st, "pipe", staged.ManifestFile)); err != nil {
		t.Errorf("with its output cut, the backup was not published: %v", err)
	}

	// A ping that cannot be sent is a warning, never a failed backup.
	runTool(t, c.Env(), "--staging", st, "--label", "noping", "--fast", "--ping-url", "http://127.0.0.1:1/x", "--", "true").
		want(t, 0, "warning: ping")
}
