package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestVersion: --version and version print one line, and every manifest
// records the same version; the man page and completion are generated.
func TestVersion(t *testing.T) {
	flag, cmd := runTool(t, nil, "--version"), runTool(t, nil, "version")
	flag.want(t, 0, "pgfbb-wrap ", "go1.")
	cmd.want(t, 0)
	if flag.stdout != cmd.stdout || strings.Count(flag.stdout, "\n") != 1 {
		t.Fatalf("--version printed %q, version %q", flag.stdout, cmd.stdout)
	}
	runTool(t, nil, "man").want(t, 0, ".TH pgfbb-wrap 1", "restore")
	runTool(t, nil, "completion").want(t, 0, "complete -o default -F _pgfbb_wrap pgfbb-wrap")
	runTool(t, nil, "--generate-bash-completion").want(t, 0, "check", "prune", "post")

	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	st := filepath.Join(t.TempDir(), "staging")
	runTool(t, c.Env(), "--staging", st, "--label", "v", "--fast", "--", "true").want(t, 0)
	if m := readManifest(t, filepath.Join(st, "v")); m.Tool+"\n" != flag.stdout {
		t.Errorf("manifest tool %q, --version %q", m.Tool, flag.stdout)
	}
}
