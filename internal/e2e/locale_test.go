package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// germanLocale is the translated locale the tests run a server in.
const germanLocale = "de_DE.UTF-8"

// TestTranslatedServer runs what used to depend on the server's English: a
// standby promoted during its backup, and a restore rehearsal, against a
// server whose messages are German.
func TestTranslatedServer(t *testing.T) {
	out, _ := exec.Command("locale", "-a").Output()
	if !strings.Contains(strings.ToLower(string(out)), "de_de.utf8") {
		t.Fatalf("locale %s is not installed: scripts/install-deps.sh generates it (Debian package locales)", germanLocale)
	}
	in := pgtest.DefaultInstall(t)
	b := newBench(t, in, pgtest.Options{Conf: []string{"lc_messages = '" + germanLocale + "'"}})
	if _, err := b.c.DB(t).Exec("SELECT 1/0"); err == nil || !strings.Contains(err.Error(), "Division durch Null") {
		t.Fatalf("the server does not speak German: %v", err)
	}

	t.Run("rehearsal", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "staging")
		runTool(t, b.c.Env(), "--staging", st, "--label", "de", "--fast", "--", "btrfs", "subvolume", "snapshot", "-r",
			b.c.PGData, filepath.Join(b.snaps, "de")).want(t, 0)
		runTool(t, nil, "restore", "--rehearse", "--staged", filepath.Join(st, "de"), "--pgdata", filepath.Join(b.snaps, "de"),
			"--pg-bin", in.BinDir, "--scratch", b.fs.Mount, "--rehearse-timeout", "2m").want(t, 0, "rehearsal of de ok: consistent after")
	})

	t.Run("standby promoted during the backup", func(t *testing.T) {
		dir := b.fs.Subvolume(t, "standby")
		pgtest.Chown(t, dir)
		s := b.c.Standby(t, dir)
		b.c.WaitReplayed(t, s)
		promotedDuringBackup(t, s)
	})
}
