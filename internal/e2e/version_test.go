package e2e

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kballard/go-shellquote"
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
	runTool(t, nil, "version", "extra").want(t, 2, "version takes no arguments")
	runTool(t, nil, "man").want(t, 0, ".TH pgfbb-wrap 1", "restore")
	bash := runTool(t, nil, "completion")
	bash.want(t, 0, "complete -o default -F _pgfbb_wrap pgfbb-wrap")
	// The bash script, sourced, completes "pgfbb-wrap pr" and "list --st".
	for line, want := range map[string]string{"pr": "prune", "pos": "post", "list --st": "--staging"} {
		words := append([]string{toolBin}, strings.Fields(line)...)
		script := bash.stdout + "\nCOMP_WORDS=(" + shellquote.Join(words...) + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) +
			"; _pgfbb_wrap; echo ${COMPREPLY[*]}"
		out, err := exec.Command("bash", "-c", script).Output()
		if got := strings.Join(strings.Fields(string(out)), " "); err != nil || !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("bash completion of %q: %q (%v), want %q", line, got, err, want)
		}
	}
	// The zsh script, with compadd and compdef stubbed (they need a live
	// completion system), offers what pgfbb-wrap offers.
	zsh := runTool(t, nil, "completion", "zsh")
	zsh.want(t, 0, "#compdef pgfbb-wrap")
	script := "compdef() { :; }; compadd() { print -l -- ${(P)2}; }\n" + zsh.stdout +
		"\nwords=(" + shellquote.Join(toolBin, "list", "--st") + "); CURRENT=3; _pgfbb_wrap"
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Fatal("zsh not found: install Debian's zsh (scripts/install-deps.sh does)")
	}
	if out, err := exec.Command("zsh", "-c", script).Output(); err != nil || strings.TrimSpace(string(out)) != "--staging" {
		t.Errorf("zsh completion of \"list --st\": %q (%v), want --staging", out, err)
	}
	runTool(t, nil, "completion", "fish").want(t, 0, "complete -c pgfbb-wrap", "staging")
	runTool(t, nil, "completion", "tcsh").want(t, 2, "want bash, zsh or fish")
	runTool(t, nil, "--generate-bash-completion").want(t, 0, "check", "prune", "post")

	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	st := filepath.Join(t.TempDir(), "staging")
	runTool(t, c.Env(), "--staging", st, "--label", "v", "--fast", "--", "true").want(t, 0)
	if m := readManifest(t, filepath.Join(st, "v")); m.Tool+"\n" != flag.stdout {
		t.Errorf("manifest tool %q, --version %q", m.Tool, flag.stdout)
	}
}
