package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// TestListAndPrune lists a staging directory holding complete, running,
// partial and damaged backups, then prunes it with a real btrfs delete
// command: the newest kept, the snapshots of what goes deleted, nothing of
// a backup whose snapshot could not be deleted.
func TestListAndPrune(t *testing.T) {
	b := newBench(t, pgtest.DefaultInstall(t), pgtest.Options{})
	st := filepath.Join(t.TempDir(), "staging")
	snapshot := []string{"--", "btrfs", "subvolume", "snapshot", "-r", b.c.PGData, b.snaps + "/${PGFBB_LABEL}"}
	for _, label := range []string{"b1", "b2", "b3", "b4"} {
		runTool(t, b.c.Env(), append([]string{"--staging", st, "--label", label, "--fast"}, snapshot...)...).want(t, 0)
		time.Sleep(1100 * time.Millisecond) // distinct start times
	}
	killHolders(t, st)
	runTool(t, b.c.Env(), "pre", "--staging", st, "--label", "held", "--fast").want(t, 0)
	// After pre, whose run would have swept it.
	os.Mkdir(filepath.Join(st, ".dead.partial-123"), 0o700)
	os.Mkdir(filepath.Join(st, "broken"), 0o700)
	os.WriteFile(filepath.Join(st, "broken", staged.ManifestFile), []byte("{"), 0o600)

	r := runTool(t, nil, "list", "--staging", st, "--json")
	r.want(t, 0)
	var list struct {
		FormatVersion int `json:"format_version"`
		Backups       []struct {
			Label, State string
			WALFiles     int `json:"wal_files"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("list --json: %v", err)
	}
	states := map[string]string{}
	var order []string
	for _, e := range list.Backups {
		states[e.Label] = e.State
		if e.State == staged.StateComplete {
			order = append(order, e.Label)
			if e.WALFiles == 0 {
				t.Errorf("%s: no WAL files listed", e.Label)
			}
		}
	}
	want := map[string]string{"b1": "complete", "b2": "complete", "b3": "complete", "b4": "complete",
		"dead": "partial", "held": "running", "broken": "damaged"}
	for label, state := range want {
		if states[label] != state {
			t.Errorf("%s: state %q, want %q (list %+v)", label, states[label], state, list.Backups)
		}
	}
	if strings.Join(order, ",") != "b4,b3,b2,b1" || list.FormatVersion != 1 {
		t.Errorf("complete backups in order %v, format %d; want newest first", order, list.FormatVersion)
	}
	table := runTool(t, nil, "list", "--staging", st)
	table.want(t, 0, "LABEL", "b4", "complete", "partial", "running", "damaged", "\nbroken: ")
	// One table: every row's STATE column starts where the header's does.
	lines := strings.Split(table.stdout, "\n")
	col := strings.Index(lines[0], "STATE")
	for _, l := range lines[1 : len(want)+1] {
		if rest := l[min(col, len(l)):]; !strings.HasPrefix(rest, "complete") && !strings.HasPrefix(rest, "partial") &&
			!strings.HasPrefix(rest, "running") && !strings.HasPrefix(rest, "damaged") {
			t.Errorf("row %q: its state is not under STATE", l)
		}
	}

	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	t.Run("dry run", func(t *testing.T) {
		runTool(t, nil, "prune", "--staging", st, "--keep-last", "2", "--staged-only", "--dry-run").want(t, 0, "would remove b2", "would remove b1")
		if !exists(filepath.Join(st, "b1")) || !exists(filepath.Join(b.snaps, "b1")) {
			t.Error("a dry run removed something")
		}
	})
	t.Run("a failing delete command keeps the staged directory", func(t *testing.T) {
		runTool(t, nil, "prune", "--staging", st, "--keep-last", "3", "--", "sh", "-c", "exit 7").
			want(t, 1, "b1: delete command", "its staged directory is kept", "removed .dead.partial-123")
		if !exists(filepath.Join(st, "b1")) {
			t.Error("the staged directory of a backup whose snapshot stays was removed")
		}
	})
	t.Run("btrfs snapshots and staged directories go together", func(t *testing.T) {
		// An outcome no post collected, older than any kept backup.
		os.WriteFile(filepath.Join(st, ".pgfbb-run", "forgotten.result"), []byte(`{"label":"forgotten","exit_code":4}`), 0o600)
		runTool(t, nil, "prune", "--staging", st, "--keep-last", "2", "--", "btrfs", "subvolume", "delete", b.snaps+"/${PGFBB_LABEL}").
			want(t, 0, "removed b1", "removed b2", "kept 2: b4 b3", "forgot forgotten")
		for _, gone := range []string{filepath.Join(st, "b1"), filepath.Join(st, "b2"), filepath.Join(b.snaps, "b1"), filepath.Join(b.snaps, "b2"),
			filepath.Join(st, ".dead.partial-123")} {
			if exists(gone) {
				t.Errorf("%s is still there", gone)
			}
		}
		for _, kept := range []string{filepath.Join(st, "b3"), filepath.Join(st, "b4"), filepath.Join(b.snaps, "b4"), filepath.Join(st, "broken")} {
			if !exists(kept) {
				t.Errorf("%s was removed", kept)
			}
		}
		if partial, _ := filepath.Glob(filepath.Join(st, ".held.partial-*")); len(partial) != 1 {
			t.Errorf("the held backup's directory: %v", partial)
		}
	})
	t.Run("the wrapper prunes after a successful backup", func(t *testing.T) {
		runTool(t, nil, "abort", "--staging", st, "--label", "held").want(t, 0) // it holds the cluster's lock
		args := append([]string{"--staging", st, "--label", "b5", "--fast", "-v", "--keep-last", "2",
			"--delete-command", "btrfs subvolume delete " + b.snaps + "/${PGFBB_LABEL}"}, snapshot...)
		runTool(t, b.c.Env(), args...).want(t, 0, "prune: removed b3")
		if exists(filepath.Join(st, "b3")) || exists(filepath.Join(b.snaps, "b3")) || !exists(filepath.Join(st, "b5")) || !exists(filepath.Join(st, "b4")) {
			t.Error("the prune after the backup kept or removed the wrong backups")
		}
		// A manifest dated in the future, and one of another cluster,
		// change nothing for this cluster's newest.
		forgeManifest(t, filepath.Join(st, "b4"), func(m *staged.Manifest) { m.StartedAt = m.StartedAt.AddDate(70, 0, 0); m.StoppedAt = m.StartedAt })
		runTool(t, nil, "prune", "--staging", st, "--keep-last", "1", "--staged-only", "--dry-run").want(t, 0, "kept 2: b4 b5")
		sysid := readManifest(t, filepath.Join(st, "b5")).SystemIdentifier
		forgeManifest(t, filepath.Join(st, "b5"), func(m *staged.Manifest) { m.SystemIdentifier = "1" })
		runTool(t, nil, "prune", "--staging", st, "--cluster", sysid, "--keep-last", "1", "--staged-only", "--dry-run").want(t, 0, "kept 1: b4")
		runTool(t, b.c.Env(), append([]string{"--staging", st, "--label", "b6", "--fast", "--keep-last", "1",
			"--delete-command", "btrfs subvolume delete " + b.snaps + "/${PGFBB_LABEL}"}, snapshot...)...).want(t, 0)
		for _, kept := range []string{"b4", "b5", "b6"} {
			if !exists(filepath.Join(st, kept)) {
				t.Errorf("%s was pruned", kept)
			}
		}
		// A prune that fails after the backup fails the run (the disk
		// would fill), and the one report says the backup is there.
		res := runTool(t, b.c.Env(), append([]string{"--staging", st, "--label", "b7", "--fast", "--keep-last", "1", "--json",
			"--delete-command", "sh -c 'exit 7'"}, snapshot...)...)
		res.want(t, 1, "FAILED after it was published as", "prune: b6: delete command")
		var rep struct {
			ExitCode int    `json:"exit_code"`
			Reached  string `json:"phase_reached"`
			Path     string `json:"path"`
			Errors   []struct {
				Phase string `json:"phase"`
			} `json:"errors"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil || rep.ExitCode != 1 || rep.Reached != "prune" ||
			rep.Path != filepath.Join(st, "b7") || len(rep.Errors) != 1 || rep.Errors[0].Phase != "prune" {
			t.Errorf("--json after a failed prune: %+v, %v", rep, err)
		}
		if !exists(filepath.Join(st, "b7")) {
			t.Error("b7 is gone")
		}
	})
	t.Run("two prunes at once run each delete command once", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "deleted")
		args := []string{"prune", "--staging", st, "--cluster", readManifest(t, filepath.Join(st, "b6")).SystemIdentifier, "--keep-last", "1",
			"--", "sh", "-c", "echo ${PGFBB_LABEL} >> " + log + "; sleep 1"}
		a, _ := tool(nil, args...)
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		runTool(t, nil, args...).want(t, 0)
		if err := a.Wait(); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(log); string(data) != "b6\n" {
			t.Errorf("delete commands run: %q, want b6 once", data)
		}
	})
	// Clusters share a staging directory; a backup's prune applies its
	// rule and its delete command to its own cluster's backups only.
	t.Run("the wrapper prunes its own cluster only", func(t *testing.T) {
		forgeManifest(t, filepath.Join(st, "b7"), func(m *staged.Manifest) { m.SystemIdentifier = "1" }) // cluster 1: b5, b7
		log := filepath.Join(t.TempDir(), "deleted")
		runTool(t, b.c.Env(), append([]string{"--staging", st, "--label", "b8", "--fast", "--keep-last", "1",
			"--delete-command", "sh -c 'echo ${PGFBB_LABEL} >> " + log + "'"}, snapshot...)...).want(t, 0)
		if data, _ := os.ReadFile(log); len(data) > 0 || !exists(filepath.Join(st, "b5")) || !exists(filepath.Join(st, "b7")) {
			t.Errorf("another cluster's backups pruned: delete commands %q", data)
		}
		runTool(t, nil, "prune", "--staging", st, "--keep-last", "1", "--staged-only", "--dry-run").want(t, 2, "holds backups of clusters 1, ")
		runTool(t, nil, "prune", "--staging", st, "--cluster", "1", "--keep-last", "1", "--staged-only", "--dry-run").
			want(t, 0, "would remove b5")
	})
	// A backup that fails after its snapshot was taken (here: its session
	// is terminated while the command runs) publishes nothing, so no prune
	// would ever find its snapshot: the wrapper deletes it at once.
	t.Run("the snapshot of a failed backup is deleted", func(t *testing.T) {
		kill := shellquote.Join(b.c.ClientBin(t, "psql"), "-Atc",
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgfbb-wrap'")
		take := "btrfs subvolume snapshot -r " + b.c.PGData + " " + b.snaps + "/${PGFBB_LABEL} && " + kill
		for label, tc := range map[string]struct {
			del  string
			want string
			gone bool
		}{
			"f1": {"btrfs subvolume delete " + b.snaps + "/${PGFBB_LABEL}", "was deleted with the delete command", true},
			"f2": {"false", "was not deleted", false},
		} {
			runTool(t, b.c.Env(), "--staging", st, "--label", label, "--fast", "--delete-command", tc.del, "--", "sh", "-c", take).
				want(t, 1, "FAILED, nothing was published", tc.want)
			if _, err := os.Stat(filepath.Join(b.snaps, label)); (err == nil) == tc.gone {
				t.Errorf("%s: snapshot there: %v, want gone: %v", label, err == nil, tc.gone)
			}
		}
	})
	t.Run("usage", func(t *testing.T) {
		runTool(t, nil, "prune", "--staging", st).want(t, 2, "--keep-last")
		// Without a delete command the snapshots would be left without
		// their label and WAL: only --staged-only says that is meant.
		runTool(t, nil, "prune", "--staging", st, "--keep-last", "1").want(t, 2, "--delete-command", "--staged-only")
		runTool(t, b.c.Env(), "--staging", st, "--keep-last", "1", "--", "true").want(t, 2, "--staged-only")
		runTool(t, nil, "prune", "--staging", st, "--keep-last", "1", "--staged-only", "--", "true").want(t, 2, "not both")
		// The first run of a cron line with keep flags makes the staging
		// directory, as any backup does.
		runTool(t, b.c.Env(), "--staging", filepath.Join(t.TempDir(), "new"), "--keep-last", "1", "--staged-only", "--fast", "--", "true").want(t, 0)
		runTool(t, nil, "prune", "--staging", st, "--keep-last", "1", "--", "echo", "${PGFBB_NOPE}").want(t, 2, "unknown variable")
	})
}
