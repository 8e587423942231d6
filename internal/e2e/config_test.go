package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// TestConfig: flags from a YAML file, beaten by PGFBB_* variables and the
// command line; unknown keys and bad values refused; the old shell tool's
// variables named; and the shipped example config used as it is.
func TestConfig(t *testing.T) {
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	dir := t.TempDir()
	st := filepath.Join(dir, "staging")
	config := func(text string) string {
		p := filepath.Join(t.TempDir(), "pgfbb.yaml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := config("staging: " + st + "\nlabel: fromfile\nwal: skip\nfast: true\n")

	runTool(t, c.Env(), "--config", file, "--", "true").want(t, 0)
	if m := readManifest(t, filepath.Join(st, "fromfile")); m.WALMode != staged.WALSkip {
		t.Errorf("wal_mode %q, want the file's skip", m.WALMode)
	}
	runTool(t, append(c.Env(), "PGFBB_WAL=copy"), "--config", file, "--label", "fromcli", "--", "true").want(t, 0)
	if m := readManifest(t, filepath.Join(st, "fromcli")); m.WALMode != staged.WALCopy {
		t.Errorf("wal_mode %q, want the environment's copy", m.WALMode)
	}
	// A snapshot command after -- wins over --command from the environment
	// or the file; from the command line both are an error.
	runTool(t, append(c.Env(), "PGFBB_COMMAND=false"), "--staging", st, "--label", "clicmd", "--fast", "--", "true").want(t, 0)
	runTool(t, c.Env(), "--config", config("command: \"false\"\n"), "--staging", st, "--label", "clicmd2", "--fast", "--", "true").want(t, 0)
	runTool(t, c.Env(), "--staging", st, "--command", "false", "--", "true").want(t, 2, "not both")
	// Settings given before a subcommand's name apply to it: the file's
	// and the command line's.
	runTool(t, nil, "--config", file, "list").want(t, 0, "fromfile", "fromcli")
	runTool(t, nil, "--staging", st, "list").want(t, 0, "fromfile")
	if r := runTool(t, nil, "--config", config("staging: "+st+"\nkeep-within: 720h\n"), "prune", "--keep-last", "1", "--staged-only", "--dry-run"); r.code != 0 ||
		strings.Contains(r.stdout, "would remove") {
		t.Errorf("the file's keep-within, given before prune, was not kept to:\n%s", r.stdout)
	}
	runTool(t, c.Env(), "--config", config("stagin: /x\n"), "--", "true").want(t, 2, `unknown key "stagin"`, "pgfbb.yaml")
	for text, want := range map[string]string{
		"staging: /x\nstaging: /y\n":     "staging is set twice",
		"staging: /x\n---\nfast: true\n": "want one YAML document",
		"config: /x\n":                   `unknown key "config"`,
		"version: true\n":                `unknown key "version"`,
	} {
		runTool(t, c.Env(), "--config", config(text), "--", "true").want(t, 2, want)
	}
	runTool(t, c.Env(), "--config", config("staging: "+st+"\nstart-timeout: forever\n"), "--", "true").
		want(t, 2, "start-timeout", `"forever" is not a value it takes`)
	runTool(t, append(c.Env(), "PGFBB_START_TIMEOUT=forever"), "--staging", st, "--", "true").want(t, 2, "PGFBB_START_TIMEOUT")
	runTool(t, append(c.Env(), "PG_FBB_TIMEOUT=600"), "version").want(t, 0, "PG_FBB_TIMEOUT is the old shell tool's setting", "--start-timeout")
	// Once, from the command that runs; -q, from anywhere, silences it.
	if res := runTool(t, append(c.Env(), "PG_FBB_TIMEOUT=600"), "list", "--staging", t.TempDir()); strings.Count(res.stderr, "PG_FBB_TIMEOUT") != 1 {
		t.Errorf("the hint, want it once:\n%s", res.stderr)
	}
	for _, env := range [][]string{nil, {"PGFBB_QUIET=true"}} {
		args := []string{"check", "--staging", t.TempDir()}
		if env == nil {
			args = append(args, "-q")
		}
		if res := runTool(t, append(append(c.Env(), "PG_FBB_TIMEOUT=600"), env...), args...); strings.Contains(res.stderr, "PG_FBB_TIMEOUT") {
			t.Errorf("-q %v still gives the hint:\n%s", env, res.stderr)
		}
	}

	// Values as written, and a file others could change refused.
	runTool(t, c.Env(), "--config", config("staging: "+st+"\nlabel: 007\nfast: true\n"), "--", "true").want(t, 0)
	if _, err := os.Stat(filepath.Join(st, "007")); err != nil {
		t.Errorf("label 007 from the file: %v", err)
	}
	open := config("staging: " + st + "\n")
	os.Chmod(open, 0o666)
	runTool(t, c.Env(), "--config", open, "--", "true").want(t, 2, "writable by no one else")

	// The shipped example, as it is, with the staging directory overridden.
	example := filepath.Join("..", "..", "examples", "pgfbb-wrap.yaml")
	runTool(t, c.Env(), "--config", example, "--staging", st, "--label", "example", "--", "true").want(t, 0)
	runTool(t, c.Env(), "check", "--config", example, "--staging", st).want(t, 0)
}
