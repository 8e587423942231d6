package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"
	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/internal/btrfstest"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"gopkg.in/yaml.v3"
)

// The tests of this file run the files under examples/ as shipped: a
// script with its settings in the environment, the cron line through sh -c.

// example is the path of a shipped example file.
func example(name string) string { return filepath.Join("..", "..", "examples", name) }

// toolPath is a PATH whose first directory holds pgfbb-wrap, as installed.
func toolPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(toolBin, filepath.Join(dir, "pgfbb-wrap")); err != nil {
		t.Fatal(err)
	}
	return dir + ":" + os.Getenv("PATH")
}

// runScript runs a shipped example script with env added to the test's
// environment, and returns its exit code and output.
func runScript(t *testing.T, env []string, script string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{example(script)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("%s: %v", script, err)
	}
	t.Logf("%s %s: exit %d\n%s", script, strings.Join(args, " "), code, out)
	return code, string(out)
}

// completeLabels lists the complete backups of a staging directory, newest
// first.
func completeLabels(t *testing.T, st string) []string {
	t.Helper()
	entries, err := staged.List(st)
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, e := range entries {
		if e.State == staged.StateComplete {
			labels = append(labels, e.Label)
		}
	}
	return labels
}

// TestExampleBtrfs runs examples/btrfs-backup.sh as shipped: into a staging
// directory whose parents do not exist yet, keeping KEEP backups with their
// snapshots, carrying on past a snapshot that cannot be deleted, and ending
// with a backup taken under load that restores.
func TestExampleBtrfs(t *testing.T) {
	b := newBench(t, pgtest.DefaultInstall(t), pgtest.Options{})
	st := filepath.Join(t.TempDir(), "var", "backups", "pg")
	env := append(b.c.Env(), "PATH="+toolPath(t), "PGDATA_SUBVOL="+b.c.PGData, "SNAPDIR="+b.snaps, "STAGING="+st, "KEEP=2")
	for range 3 {
		if code, out := runScript(t, env, "btrfs-backup.sh"); code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		time.Sleep(1100 * time.Millisecond) // distinct default labels
	}
	labels := completeLabels(t, st)
	snaps, _ := os.ReadDir(b.snaps)
	if len(labels) != 2 || len(snaps) != 2 || snaps[0].Name() != labels[1] || snaps[1].Name() != labels[0] {
		t.Fatalf("after 3 runs keeping 2: backups %v, snapshots %v", labels, snaps)
	}
	// What a killed run leaves, a snapshot without its backup, goes with
	// the next run (the failing one below).
	orphan := filepath.Join(b.snaps, backup.DefaultLabel(time.Now().Add(-time.Hour)))
	btrfstest.Snapshot(t, b.c.PGData, orphan, true)

	// A snapshot that cannot be deleted (here: no longer a subvolume)
	// keeps its backup and fails that night, but the others still go.
	broken, other := labels[1], labels[0]
	btrfstest.Delete(t, filepath.Join(b.snaps, broken))
	if err := os.Mkdir(filepath.Join(b.snaps, broken), 0o755); err != nil {
		t.Fatal(err)
	}
	stop := b.load(t, 300*time.Millisecond)
	code, out := runScript(t, append(env, "KEEP=1"), "btrfs-backup.sh")
	stop()
	if code != 1 || !strings.Contains(out, "prune: "+broken+": delete command") {
		t.Errorf("a failing delete: exit %d, want 1 naming %s", code, broken)
	}
	labels = completeLabels(t, st)
	if len(labels) != 2 || labels[1] != broken || slices.Contains(labels, other) {
		t.Fatalf("after a failing delete: backups %v, want the new one and %s", labels, broken)
	}
	if _, err := os.Stat(filepath.Join(b.snaps, other)); err == nil {
		t.Errorf("the snapshot of %s, pruned, is still there", other)
	}
	if _, err := os.Stat(orphan); err == nil || !strings.Contains(out, "a snapshot without its backup") {
		t.Errorf("the snapshot a killed run left is still there, or not named:\n%s", out)
	}
	b.restoreAndCheck(t, filepath.Join(b.snaps, labels[0]), filepath.Join(st, labels[0]))
}

// TestExampleCron runs the line of examples/cron/pgfbb-backup as cron
// would: its variables as written, through sh -c, with cron's minimal
// environment, two nights keeping one. Only the paths are moved to the
// test's (the snapshot directories, the staging directory, the installed
// binary), the connection to the test's cluster, and PGFBB_KEEP_LAST to 1.
func TestExampleCron(t *testing.T) {
	b := newBench(t, pgtest.DefaultInstall(t), pgtest.Options{})
	st := filepath.Join(t.TempDir(), "pg")
	moved := strings.NewReplacer("/srv/pgdata", b.c.PGData, "/srv/snapshots", b.snaps, "/var/backups/pg", st,
		"/usr/local/bin/pgfbb-wrap", toolBin)
	vars, line := readCron(t, example("cron/pgfbb-backup"))
	env := []string{"PATH=/usr/bin:/bin", "SHELL=/bin/sh", "HOME=/root", "LOGNAME=root"} // cron's own
	for _, v := range vars {
		name, _, _ := strings.Cut(v, "=")
		if name != "MAILTO" && name != "PGHOST" && name != "PGUSER" {
			env = append(env, moved.Replace(v))
		}
	}
	env = append(env, b.c.Env()...)
	run := func() {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", moved.Replace(line))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Fatalf("the cron line: %v; cron would mail:\n%s", err, out)
		}
	}
	// Two nights keeping one: the second prunes the first, and cron still
	// has nothing to mail.
	env = append(env, "PGFBB_KEEP_LAST=1")
	run()
	time.Sleep(1100 * time.Millisecond) // distinct default labels
	stop := b.load(t, 300*time.Millisecond)
	run()
	stop()
	labels := completeLabels(t, st)
	if snaps, _ := os.ReadDir(b.snaps); len(labels) != 1 || len(snaps) != 1 {
		t.Fatalf("backups after two nights keeping one: %v, snapshots %v", labels, snaps)
	}
	b.restoreAndCheck(t, filepath.Join(b.snaps, labels[0]), filepath.Join(st, labels[0]))
}

// readCron reads a cron.d file: its variable assignments, and the command
// of its one job line (after the five time fields and the user).
func readCron(t *testing.T, path string) (vars []string, command string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case len(fields) > 6 && !strings.Contains(fields[0], "="):
			if command != "" {
				t.Fatalf("%s: more than one job line", path)
			}
			command = line
			for range 6 { // as written: quotes and spaces in the command stay
				command = strings.TrimLeft(command, " \t")
				command = command[strings.IndexAny(command, " \t"):]
			}
			command = strings.TrimSpace(command)
		default:
			vars = append(vars, line)
		}
	}
	if command == "" {
		t.Fatalf("%s: no job line", path)
	}
	return vars, command
}

// TestExampleRestic runs examples/restic-backup.sh as shipped, three
// nights into a local repository, then the README's restore steps.
func TestExampleRestic(t *testing.T) {
	repo := t.TempDir()
	env := []string{"RESTIC_REPOSITORY=" + repo, "RESTIC_PASSWORD=test", "RESTIC_CACHE_DIR=" + t.TempDir()}
	restic(t, env, "init")
	var snaps []struct {
		Parent string   `json:"parent"`
		Paths  []string `json:"paths"`
		Tags   []string `json:"tags"`
	}
	testShipping(t, "restic-backup.sh", env, func() int {
		if err := json.Unmarshal([]byte(restic(t, env, "snapshots", "--json")), &snaps); err != nil {
			t.Fatal(err)
		}
		return len(snaps)
	}, 1, "RESTIC_PASSWORD=wrong") // forget's rules all keep the newest
	// The kept snapshot, the last night's, was read against the night
	// before's: restic found it as its parent by the fixed paths.
	if len(snaps) != 1 || snaps[0].Parent == "" || len(snaps[0].Paths) != 1 || !strings.HasSuffix(snaps[0].Paths[0], "/run/pgfbb-ship/pgfbb") ||
		len(snaps[0].Tags) != 2 || snaps[0].Tags[0] != "pgfbb" || !strings.HasPrefix(snaps[0].Tags[1], "label=pgfbb-") {
		t.Errorf("restic snapshots: %+v, want one with a parent, the fixed path and the label as a tag", snaps)
	}
}

func restic(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("restic", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic %s: %v (restic is Debian's restic: scripts/install-deps.sh installs it)", strings.Join(args, " "), err)
	}
	return string(out)
}

// TestExampleBorg runs examples/borg-backup.sh as shipped, three nights
// into a local repository, then the README's restore steps. A borg that
// records its calls before it runs the real one shows that compact runs:
// without it, borg 1.2's prune frees no space.
func TestExampleBorg(t *testing.T) {
	real, err := exec.LookPath("borg")
	if err != nil {
		t.Fatal("borg not found: install Debian's borgbackup (scripts/install-deps.sh does)")
	}
	bin, calls := t.TempDir(), filepath.Join(t.TempDir(), "calls")
	stub := "#!/bin/sh\necho \"$1\" >> " + calls + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "borg"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"BORG_REPO=" + filepath.Join(t.TempDir(), "repo"), "BORG_PASSPHRASE=test", "BORG_BASE_DIR=" + t.TempDir(),
		"PATH=" + bin + ":" + os.Getenv("PATH")}
	borg := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(real, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("borg %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	borg("init", "--encryption=repokey")
	// prune's weekly rule keeps the newest of those the daily rule left.
	testShipping(t, "borg-backup.sh", env, func() int { return len(strings.Fields(borg("list", "--short"))) }, 2, "BORG_PASSPHRASE=wrong")
	if data, _ := os.ReadFile(calls); strings.Count(string(data), "prune\n") != 5 || strings.Count(string(data), "prune\ncompact\n") != 5 {
		t.Errorf("borg subcommands run: %q, want compact after every prune, one each successful night", data)
	}
	// Under the fixed paths borg's files cache knows unchanged files.
	last := strings.TrimSpace(borg("list", "--short", "--last", "1"))
	if files := borg("list", "--short", "::"+last); !strings.Contains(files, "/run/pgfbb-ship/pgfbb/staged/"+staged.LabelFile+"\n") {
		t.Errorf("archive %s does not hold the fixed paths:\n%s", last, files)
	}
}

// testShipping runs a shipping example with env (the repository's) added:
// three nights, a fourth with failShip added (its backup stays), and a fifth
// under load that ships both. count says how many backups the repository
// holds, kept how many retention keeps of those of one day. No local copy
// is left, and the README's restore steps for the tool, run with the test's
// paths, give a data directory that recovers.
func testShipping(t *testing.T, script string, env []string, count func() int, kept int, failShip string) {
	b := newBench(t, pgtest.DefaultInstall(t), pgtest.Options{})
	st := filepath.Join(t.TempDir(), "var", "backups", "pg")
	path := toolPath(t)
	if i := slices.IndexFunc(env, func(v string) bool { return strings.HasPrefix(v, "PATH=") }); i >= 0 {
		path = strings.TrimPrefix(env[i], "PATH=") + ":" + path
	}
	shipFrom := filepath.Join(t.TempDir(), "run", "pgfbb-ship", "pgfbb")
	env = append(append(env, b.c.Env()...), "PATH="+path, "PGDATA_SUBVOL="+b.c.PGData, "SNAPDIR="+b.snaps, "STAGING="+st,
		"SHIP_FROM="+shipFrom)
	night := func(extra ...string) (int, string) {
		t.Helper()
		return runScript(t, append(env, extra...), script)
	}
	for i := range 3 {
		if code, out := night(); code != 0 {
			t.Fatalf("night %d: exit %d:\n%s", i, code, out)
		}
	}
	// A night whose shipping fails (failShip breaks the repository's
	// password) fails and keeps its good backup, snapshot and staged files.
	code, out := night(failShip)
	unshipped := completeLabels(t, st)
	if snaps, _ := os.ReadDir(b.snaps); code == 0 || len(unshipped) != 1 || len(snaps) != 1 || snaps[0].Name() != unshipped[0] ||
		!strings.Contains(out, "backup "+unshipped[0]+" is made but not shipped: the next run ships it") {
		t.Fatalf("a night whose shipping failed: exit %d, backups %v, snapshots %v\n%s", code, unshipped, snaps, out)
	}
	// The next night, under load, ships it first, then its own.
	stop := b.load(t, 300*time.Millisecond)
	code, out = night()
	stop()
	if code != 0 {
		t.Fatalf("the night after: exit %d:\n%s", code, out)
	}
	b.markers = "after,before" // committed when the load stopped, before the nights below
	// A night killed after its upload, before it removed the local copies
	// (here the snapshot's deletion fails): the next night neither fails on
	// the name being taken (borg) nor uploads it twice (restic).
	realBtrfs, err := exec.LookPath("btrfs")
	if err != nil {
		t.Fatal(err)
	}
	bin, once := t.TempDir(), filepath.Join(t.TempDir(), "fail-once")
	wrapper := "#!/bin/sh\nif [ \"$1 $2\" = \"subvolume delete\" ] && [ -e " + once + " ]; then rm " + once +
		"; echo 'btrfs: failing, as told' >&2; exit 1; fi\nexec " + realBtrfs + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "btrfs"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(once, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out = night("PATH=" + bin + ":" + path); code == 0 || len(completeLabels(t, st)) != 1 {
		t.Fatalf("a night whose local deletion failed: exit %d, backups %v\n%s", code, completeLabels(t, st), out)
	}
	if code, out = night(); code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("the night after the one whose local deletion failed: exit %d:\n%s", code, out)
	}
	if n := count(); n != kept {
		t.Errorf("the repository holds %d backups after retention, want %d", n, kept)
	}
	if left, _ := os.ReadDir(b.snaps); len(left) > 0 {
		t.Errorf("snapshots left behind: %v", left)
	}
	if left := completeLabels(t, st); len(left) > 0 {
		t.Errorf("staged backups left behind: %v", left)
	}

	target := filepath.Join(pgtest.TempDir(t), "restore") // the server, as postgres, goes through it
	// The longest first: a replacer takes the first of its pairs that matches.
	moved := strings.NewReplacer("/restore/run/pgfbb-ship/pgfbb", filepath.Join(target, shipFrom), "/restore", target)
	steps := moved.Replace(readmeSteps(t, strings.TrimSuffix(script, "-backup.sh")))
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", steps)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's restore steps:\n%s\n%v\n%s", steps, err, out)
	}
	b.checkRestored(t, filepath.Join(target, "pgdata"), filepath.Join(target, shipFrom, "staged"))
	if left, _ := filepath.Glob(filepath.Join(shipFrom, "*", "*")); len(left) > 0 {
		t.Errorf("the binds outlived their mount namespace: %v", left)
	}
}

// readmeSteps is the shell block of the README that follows the marker
// <!-- restore-steps NAME -->.
func readmeSteps(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- restore-steps "+name+" -->\n```sh\n")
	block, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatalf("README.md has no restore-steps block for %s", name)
	}
	return block
}

// TestLVMControlFlow runs examples/lvm-backup.sh as shipped against a real
// cluster, with stand-ins for LVM, mount and tar (no device mapper here):
// a control-flow test, not an LVM test. On every path the snapshot is
// unmounted and removed and no staged backup stays; on success one tar
// holds the snapshot's mount point and the staged label and WAL.
func TestLVMControlFlow(t *testing.T) {
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	kill := killBackups(t, c)
	for _, tc := range []struct {
		name  string
		env   []string
		code  int
		mount string // the options mount got; "" when it was not called
	}{
		{"success", nil, 0, "ro"},
		{"success on XFS", []string{"STANDIN_FSTYPE=xfs"}, 0, "ro,nouuid"},
		{"lvcreate fails", []string{"STANDIN_FAIL=lvcreate"}, 4, ""},
		{"the backup fails after lvcreate", []string{"STANDIN_AFTER_CREATE=" + kill}, 1, ""},
		{"mount fails", []string{"STANDIN_FAIL=mount"}, 1, "ro"},
		{"tar fails", []string{"STANDIN_FAIL=tar"}, 1, "ro"},
		// The lazy unmount fails too: the mount stays, never the volume.
		{"umount fails", []string{"STANDIN_FAIL=umount"}, 0, "ro"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			archive, st, mnts := filepath.Join(root, "archive"), filepath.Join(root, "var", "backups", "pg", "staging"), filepath.Join(root, "mnt")
			env, dir := standins(t, toolPath(t), "lvcreate", "lvremove", "lvs", "blkid", "mount", "umount", "mountpoint", "tar")
			env = append(append(append(env, c.Env()...), tc.env...), "LV_MOUNT="+filepath.Dir(c.PGData), "STAGING="+st,
				"ARCHIVE="+archive, "MNT_BASE="+mnts)
			code, out := runScript(t, env, "lvm-backup.sh")
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			// The sweep for a killed run's volumes lists them first.
			log := calls(t, dir)
			if len(log) < 2 || log[0] != "lvs --noheadings -o lv_name,origin vg0" ||
				!strings.HasPrefix(log[1], "lvcreate --snapshot --size 10G --name pgsnap-nightly-") || !strings.HasSuffix(log[1], " vg0/pgdata") {
				t.Fatalf("calls: %q", log)
			}
			label := strings.Fields(log[1])[5][len("pgsnap-"):]
			mnt := filepath.Join(mnts, "pgsnap-"+label) // its own: another run's mount is not its to remove
			mounted := slices.ContainsFunc(log, func(l string) bool { return l == "mount -o "+tc.mount+" /dev/vg0/pgsnap-"+label+" "+mnt })
			if tc.mount != "" && !mounted {
				t.Errorf("mount -o %s of the snapshot was not called: %q", tc.mount, log)
			}
			if left := leftovers(t, dir); len(left) > 0 && (tc.name != "umount fails" || !slices.Equal(left, []string{"mounted"})) {
				t.Errorf("left behind: %v (calls %q)", left, log)
			}
			if left := completeLabels(t, st); len(left) > 0 {
				t.Errorf("staged backups left behind: %v", left)
			}
			tars, _ := filepath.Glob(filepath.Join(archive, "*"))
			if tc.code != 0 {
				if len(tars) > 0 {
					t.Errorf("a failed run left %v", tars)
				}
				return
			}
			list, err := exec.Command("tar", "-tf", filepath.Join(archive, label+".tar")).Output()
			if err != nil || !strings.Contains(string(list), strings.TrimPrefix(filepath.Join(st, label, "backup_label"), "/")) {
				t.Errorf("the archive %v lacks the staged label: %v\n%s", tars, err, list)
			}
		})
	}
	t.Run("three nights keep two tars", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "archive")
		env, _ := standins(t, toolPath(t), "lvcreate", "lvremove", "lvs", "blkid", "mount", "umount", "mountpoint", "tar")
		env = append(append(env, c.Env()...), "LV_MOUNT="+filepath.Dir(c.PGData), "STAGING="+filepath.Join(t.TempDir(), "staging"),
			"ARCHIVE="+archive, "ARCHIVE_KEEP=2", "MNT_BASE="+t.TempDir())
		var tars [][]string
		for range 3 {
			if code, out := runScript(t, env, "lvm-backup.sh"); code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			got, _ := filepath.Glob(filepath.Join(archive, "*"))
			tars = append(tars, got)
			time.Sleep(1100 * time.Millisecond) // labels start with the second
		}
		if len(tars[2]) != 2 || slices.Contains(tars[2], tars[0][0]) {
			t.Errorf("tars after each night: %v, want the newest two at the end", tars)
		}
	})
	// A killed run left its volume mounted, its staged files and a partial
	// tar: the next run removes them all, then makes its own backup.
	t.Run("a killed run's leftovers", func(t *testing.T) {
		root := t.TempDir()
		archive, st, mnts := filepath.Join(root, "archive"), filepath.Join(root, "staging"), filepath.Join(root, "mnt")
		env, dir := standins(t, toolPath(t), "lvcreate", "lvremove", "lvs", "blkid", "mount", "umount", "mountpoint", "tar")
		env = append(append(env, c.Env()...), "LV_MOUNT="+filepath.Dir(c.PGData), "STAGING="+st, "ARCHIVE="+archive, "MNT_BASE="+mnts)
		// Another cluster's snapshot, of another volume in the group, stays.
		const killed, others = "nightly-20260101T000000Z-1", "pgsnap-nightly-20260101T000000Z-2"
		for _, d := range []string{filepath.Join(st, killed), filepath.Join(mnts, "pgsnap-"+killed), archive} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for f, content := range map[string]string{filepath.Join(dir, "state", "lv-pgsnap-"+killed): "pgdata\n",
			filepath.Join(dir, "state", "lv-"+others): "pg16\n", filepath.Join(dir, "state", "mounted"): "",
			filepath.Join(archive, killed+".tar.partial"): ""} {
			if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		code, out := runScript(t, env, "lvm-backup.sh")
		if code != 0 || !strings.Contains(out, "removing vg0/pgsnap-"+killed+", a snapshot volume a killed run left") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		log := calls(t, dir)
		if !slices.Contains(log, "umount "+filepath.Join(mnts, "pgsnap-"+killed)) || !slices.Contains(log, "lvremove -y vg0/pgsnap-"+killed) {
			t.Errorf("calls: %q", log)
		}
		if left := leftovers(t, dir); !slices.Equal(left, []string{"lv-" + others}) {
			t.Errorf("left behind: %v, want only the other cluster's snapshot", left)
		}
		for _, p := range []string{filepath.Join(st, killed), filepath.Join(mnts, "pgsnap-"+killed), filepath.Join(archive, killed+".tar.partial")} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s is left", p)
			}
		}
		if tars, _ := filepath.Glob(filepath.Join(archive, "nightly-*.tar")); len(tars) != 1 {
			t.Errorf("tars %v, want the run's own", tars)
		}
	})
}

// killBackups is a shell command that terminates the sessions of running
// backups of c: run after a snapshot, it fails the backup that took it.
func killBackups(t *testing.T, c *pgtest.Cluster) string {
	return shellquote.Join(c.ClientBin(t, "psql"), "-Atc",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgfbb-wrap'")
}

// TestZFSControlFlow runs examples/zfs-backup.sh as shipped against a real
// cluster, with a stand-in for zfs (no ZFS module here): a control-flow
// test, not a ZFS test. It covers every dataset zfs list names, keeps KEEP
// snapshots through the wrapper's prune, ships complete files only, and
// leaves no snapshot of a failed backup.
func TestZFSControlFlow(t *testing.T) {
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	setup := func(t *testing.T, extra ...string) (env []string, dir, st, ship string) {
		root := t.TempDir()
		st, ship = filepath.Join(root, "staging"), filepath.Join(root, "ship")
		if err := os.Mkdir(ship, 0o755); err != nil {
			t.Fatal(err)
		}
		env, dir = standins(t, toolPath(t), "zfs", "tar")
		env = append(append(append(env, c.Env()...), extra...), "STANDIN_ZFS_MOUNTS="+filepath.Dir(c.PGData)+" legacy",
			"STAGING="+st, "KEEP=2", "SHIP_DIR="+ship, "SHIP_KEEP=2")
		return env, dir, st, ship
	}
	t.Run("three nights keeping two", func(t *testing.T) {
		env, dir, st, ship := setup(t)
		for range 3 {
			if code, out := runScript(t, env, "zfs-backup.sh"); code != 0 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
		}
		labels := completeLabels(t, st)
		left := leftovers(t, dir)
		if len(labels) != 2 || len(left) != 2 || left[0] != "zfs-tank_pgdata@"+labels[1] || left[1] != "zfs-tank_pgdata@"+labels[0] {
			t.Errorf("backups %v, snapshots %v, want the same two", labels, left)
		}
		shipped, _ := filepath.Glob(filepath.Join(ship, "*", "*"))
		want := []string{filepath.Join(ship, labels[1], "staged.tar"), filepath.Join(ship, labels[1], "tank_pgdata.zfs"),
			filepath.Join(ship, labels[0], "staged.tar"), filepath.Join(ship, labels[0], "tank_pgdata.zfs")}
		if slices.Sort(shipped); !slices.Equal(shipped, want) {
			t.Errorf("shipped: %v, want a stream and a tar of each of the 2 newest nights (SHIP_KEEP=2): %v", shipped, want)
		}
		if log := calls(t, dir); !slices.ContainsFunc(log, func(l string) bool { return strings.HasPrefix(l, "zfs snapshot -r tank/pgdata@pgfbb-") }) {
			t.Errorf("calls: %q", log)
		}
	})
	for _, tc := range []struct {
		name string
		env  []string
		code int
	}{
		{"zfs snapshot fails", []string{"STANDIN_FAIL=zfs:snapshot"}, 4},
		{"the backup fails after the snapshot", []string{"STANDIN_AFTER_CREATE=" + killBackups(t, c)}, 1},
		{"zfs send fails", []string{"STANDIN_FAIL=zfs:send"}, 1},
		// Before anything is made: the script never runs without --covers.
		{"zfs list fails", []string{"STANDIN_FAIL=zfs:list"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, dir, st, ship := setup(t, tc.env...)
			if code, out := runScript(t, env, "zfs-backup.sh"); code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			left, labels := leftovers(t, dir), completeLabels(t, st)
			if len(left) != len(labels) {
				t.Errorf("snapshots %v for backups %v: a snapshot without its label and WAL", left, labels)
			}
			if shipped, _ := filepath.Glob(filepath.Join(ship, "pgfbb-*")); len(shipped) > 0 {
				t.Errorf("a failed run shipped %v", shipped)
			}
		})
	}
	// A killed run's snapshot, without its backup, goes; one whose backup a
	// live run is making stays.
	t.Run("a killed run's snapshot and shipment", func(t *testing.T) {
		env, dir, st, ship := setup(t)
		if err := os.Mkdir(filepath.Join(ship, "pgfbb-20260101T000000Z-1.partial"), 0o700); err != nil {
			t.Fatal(err)
		}
		orphan, making := backup.DefaultLabel(time.Now().Add(-2*time.Hour)), backup.DefaultLabel(time.Now().Add(-time.Hour))
		for _, label := range []string{orphan, making} {
			if err := os.WriteFile(filepath.Join(dir, "state", "zfs-tank_pgdata@"+label), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(st, "."+making+".partial-1"), 0o700); err != nil {
			t.Fatal(err)
		}
		code, out := runScript(t, env, "zfs-backup.sh")
		if code != 0 || !strings.Contains(out, "destroying tank/pgdata@"+orphan+", a snapshot without its backup") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		left := leftovers(t, dir)
		if slices.Contains(left, "zfs-tank_pgdata@"+orphan) || !slices.Contains(left, "zfs-tank_pgdata@"+making) || len(left) != 2 {
			t.Errorf("snapshots %v: want the one being made and the new one", left)
		}
		if shipped, _ := filepath.Glob(filepath.Join(ship, "pgfbb-*")); len(shipped) != 1 || strings.HasSuffix(shipped[0], ".partial") {
			t.Errorf("shipped %v: want the run's own, and no partial", shipped)
		}
	})
}

// TestAWSEBSControlFlow runs examples/aws-ebs-backup.sh as shipped against
// a real cluster, with a stand-in for the AWS CLI: a control-flow test, not
// an AWS test. Snapshots are tagged with their label and kept KEEP deep by
// the prune, which finds them by that tag; a backup that fails after its
// snapshot leaves none.
func TestAWSEBSControlFlow(t *testing.T) {
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	for _, tc := range []struct {
		name            string
		env             []string
		nights, code    int
		snapshots, kept int
	}{
		{"three nights keeping two", nil, 3, 0, 2, 2},
		{"create-snapshot fails", []string{"STANDIN_FAIL=aws:ec2"}, 1, 4, 0, 0},
		{"create-snapshot makes the snapshot, then fails", []string{"STANDIN_FAIL_AFTER_CREATE=1"}, 1, 4, 0, 0},
		{"the backup fails after create-snapshot", []string{"STANDIN_AFTER_CREATE=" + killBackups(t, c)}, 1, 1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := filepath.Join(t.TempDir(), "staging")
			env, dir := standins(t, toolPath(t), "aws")
			env = append(append(append(env, c.Env()...), tc.env...), "VOLUME_ID=vol-test", "PGDATA_MOUNT="+filepath.Dir(c.PGData),
				"STAGING="+st, "KEEP=2", "S3_URI=s3://bucket/pg")
			for range tc.nights {
				if code, out := runScript(t, env, "aws-ebs-backup.sh"); code != tc.code {
					t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
				}
			}
			left, labels := leftovers(t, dir), completeLabels(t, st)
			if len(left) != tc.snapshots || len(labels) != tc.kept {
				t.Fatalf("snapshots %v, backups %v", left, labels)
			}
			for _, l := range labels {
				if !slices.Contains(left, "aws-"+l) {
					t.Errorf("backup %s has no snapshot: %v", l, left)
				}
			}
			log := calls(t, dir)
			if !slices.ContainsFunc(log, func(l string) bool { return strings.HasPrefix(l, "aws ec2 create-snapshot --volume-id vol-test ") }) {
				t.Errorf("calls: %q", log)
			}
			if tc.code == 0 && !slices.ContainsFunc(log, func(l string) bool { return strings.HasPrefix(l, "aws s3 cp --quiet --recursive ") }) {
				t.Errorf("the staged files were not copied to S3: %q", log)
			}
		})
	}
}

// TestExampleSystemd checks every unit under examples/systemd with
// systemd-analyze verify (the templates as an instance), and runs the
// ExecStart lines as systemd would split them: the single-cluster service's
// against a btrfs cluster, the template's with an instance config. The
// paths are moved to the test's; the hardening is systemd's to apply, and
// no systemd runs here.
func TestExampleSystemd(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze not found: install Debian's systemd (scripts/install-deps.sh does)")
	}
	b := newBench(t, pgtest.DefaultInstall(t), pgtest.Options{})
	st, conf := filepath.Join(t.TempDir(), "pg"), t.TempDir()
	moved := strings.NewReplacer("/usr/local/bin/pgfbb-wrap", toolBin, "/srv/pgdata", b.c.PGData, "/srv/snapshots", b.snaps,
		"/var/backups/pg", st, "/etc/pgfbb-wrap", conf)
	units := t.TempDir()
	var files []string
	for _, name := range []string{"pgfbb-backup.service", "pgfbb-backup.timer", "pgfbb-wrap@.service", "pgfbb-wrap@.timer"} {
		data, err := os.ReadFile(example("systemd/" + name))
		if err != nil {
			t.Fatal(err)
		}
		// A cluster stopped on purpose must stay stopped: After= only.
		if strings.Contains(string(data), "Wants=postgresql") || strings.Contains(string(data), "Requires=postgresql") {
			t.Errorf("%s pulls in postgresql.service", name)
		}
		p := filepath.Join(units, strings.Replace(name, "@.", "@main.", 1))
		if err := os.WriteFile(p, []byte(moved.Replace(string(data))), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify"}, files...)...).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "pgfbb") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	run := func(unit string, env ...string) {
		t.Helper()
		argv := execStart(t, filepath.Join(units, unit))
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(append(os.Environ(), b.c.Env()...), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s's ExecStart %q: %v\n%s", unit, argv, err, out)
		}
	}
	run("pgfbb-backup.service", "PGFBB_FAST=true") // not a spread checkpoint of pgbench's writes: a minute
	labels := completeLabels(t, st)
	if len(labels) != 1 {
		t.Fatalf("backups after pgfbb-backup.service: %v", labels)
	}
	b.restoreAndCheck(t, filepath.Join(b.snaps, labels[0]), filepath.Join(st, labels[0]))

	metrics := filepath.Join(t.TempDir(), "pgfbb.prom")
	config := "staging: " + filepath.Join(t.TempDir(), "main") + "\nfast: true\ncommand: \"true\"\nmetrics-file: " + metrics + "\n"
	if err := os.WriteFile(filepath.Join(conf, "main.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	run("pgfbb-wrap@main.service")
	if data, _ := os.ReadFile(metrics); !strings.Contains(string(data), `pgfbb_last_exit_code{cluster="main"} 0`) {
		t.Errorf("the instance's metrics:\n%s", data)
	}
}

// execStart is a unit's ExecStart split as systemd splits it: lines joined
// at a trailing backslash, %i the instance, $$ a dollar, quotes as a shell's.
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	instance, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(unit), "pgfbb-wrap@"), ".")
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			argv, err := shellquote.Split(strings.NewReplacer("%i", instance, "$$", "$").Replace(v))
			if err != nil {
				t.Fatal(err)
			}
			return argv
		}
	}
	t.Fatalf("%s has no ExecStart", unit)
	return nil
}

// TestVeleroControlFlow runs the hooks of examples/prepost/velero-annotations.yaml
// as Velero would (their argv, as exec), around a btrfs snapshot of the
// data volume in place of the CSI snapshot, with a stand-in for the AWS CLI:
// a control-flow test, not a Velero test. The backup's label and WAL leave
// with its own post hook, and the restore the file's comment describes
// (the label from the volume, the files from S3) recovers.
func TestVeleroControlFlow(t *testing.T) {
	b := newBenchAt(t, pgtest.DefaultInstall(t), pgtest.Options{}, "vol/pgdata")
	vol := filepath.Dir(b.c.PGData)
	data, err := os.ReadFile(example("prepost/velero-annotations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pod struct {
		Metadata struct{ Annotations map[string]string }
	}
	if err := yaml.Unmarshal(data, &pod); err != nil {
		t.Fatal(err)
	}
	moved := strings.NewReplacer("/var/lib/postgresql/data", vol, "/usr/local/bin/pgfbb-wrap", toolBin)
	env, dir := standins(t, os.Getenv("PATH"), "aws")
	env = append(env, b.c.Env()...)
	hook := func(when string) {
		t.Helper()
		var argv []string
		if err := json.Unmarshal([]byte(moved.Replace(pod.Metadata.Annotations[when+".hook.backup.velero.io/command"])), &argv); err != nil {
			t.Fatalf("%s hook: %v", when, err)
		}
		// In the pod, as the container's user, who owns the volume.
		cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--"}, argv...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		t.Logf("%s hook %q:\n%s", when, argv, out)
		if err != nil {
			t.Fatalf("%s hook: %v", when, err)
		}
	}
	killHolders(t, filepath.Join(vol, "staging"))
	stop := b.load(t, 300*time.Millisecond)
	hook("pre")
	time.Sleep(time.Second)
	csi := filepath.Join(b.snaps, "csi")
	btrfstest.Snapshot(t, vol, csi, true)
	hook("post")
	stop()

	if left := completeLabels(t, filepath.Join(vol, "staging")); len(left) > 0 {
		t.Errorf("staged backups left on the volume: %v", left)
	}
	uploaded, _ := filepath.Glob(filepath.Join(s3(dir), "backups", "pg", "*"))
	states, _ := filepath.Glob(filepath.Join(csi, "staging", ".pgfbb-run", "*.state"))
	if len(uploaded) != 1 || len(states) != 1 || filepath.Base(uploaded[0])+".state" != filepath.Base(states[0]) {
		t.Fatalf("uploaded %v, states on the volume snapshot %v: want the one label", uploaded, states)
	}

	// The restore, as the file's comment says.
	restored := filepath.Join(b.fs.Mount, "restored")
	btrfstest.Snapshot(t, csi, restored, false)
	label := strings.TrimSuffix(filepath.Base(states[0]), ".state")
	stagedDir := filepath.Join(restored, "staging", label)
	if out, err := exec.Command("cp", "-a", uploaded[0], stagedDir).CombinedOutput(); err != nil {
		t.Fatalf("fetch from s3: %v %s", err, out)
	}
	runTool(t, nil, "restore", "--staged", stagedDir, "--pgdata", filepath.Join(restored, "pgdata")).want(t, 0)
	b.checkRestored(t, filepath.Join(restored, "pgdata"), stagedDir)
}

// TestPrePostShipFails runs examples/prepost/pre.sh and post.sh as shipped
// with a shipping target that cannot be written: post.sh says the backup is
// made (exit 10: keep the snapshot) and keeps it, and the next pair runs.
func TestPrePostShipFails(t *testing.T) {
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	st := filepath.Join(t.TempDir(), "staging")
	killHolders(t, st)
	env := append(c.Env(), "PATH="+toolPath(t), "PGFBB_STAGING="+st)
	night := func(shipTo string, want int, extra ...string) string {
		t.Helper()
		if code, out := runScript(t, append(env, extra...), "prepost/pre.sh"); code != 0 {
			t.Fatalf("pre.sh: exit %d\n%s", code, out)
		}
		code, out := runScript(t, append(append(env, extra...), "SHIP_TO="+shipTo), "prepost/post.sh")
		if code != want {
			t.Fatalf("post.sh: exit %d, want %d\n%s", code, want, out)
		}
		return out
	}
	out := night("/dev/null/shipped", 10)
	kept := completeLabels(t, st)
	if len(kept) != 1 || !strings.Contains(out, "backup "+kept[0]+" is made, but shipping it failed: it stays in "+filepath.Join(st, kept[0])) {
		t.Fatalf("after a failed shipment: backups %v\n%s", kept, out)
	}
	runTool(t, nil, "verify", filepath.Join(st, kept[0])).want(t, 0)
	time.Sleep(1100 * time.Millisecond) // a new default label
	shipped := t.TempDir()
	night(shipped, 0)
	if got, _ := os.ReadDir(shipped); len(got) != 1 || got[0].Name() == kept[0] || !slices.Equal(completeLabels(t, st), kept) {
		t.Errorf("the next night shipped %v; staged %v", got, completeLabels(t, st))
	}
	// A fixed LABEL ships to the same place: each night's copy replaces the
	// last one whole, also over what a killed copy left.
	fixed := t.TempDir()
	var starts []string
	for i := range 2 {
		if i == 1 {
			if err := os.MkdirAll(filepath.Join(fixed, "nightly.partial", "junk"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		night(fixed, 0, "LABEL=nightly", "PGFBB_JSON=true") // the summary goes to stdout whatever the environment says
		starts = append(starts, readManifest(t, filepath.Join(fixed, "nightly")).StartLSN.String())
	}
	if got, _ := os.ReadDir(fixed); len(got) != 1 || starts[0] == starts[1] {
		t.Errorf("a fixed label shipped %v, backups starting at %v: want one directory, the second night's", got, starts)
	}
	if _, err := os.Stat(filepath.Join(fixed, "nightly", "nightly.partial")); err == nil {
		t.Error("the second night's copy went into the first's")
	}
}
