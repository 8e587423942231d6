package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// TestWALRetention proves that the temporary slot is what keeps the WAL a
// backup needs: under a small max_wal_size, with no archiving, checkpoints
// during a slow snapshot remove every segment nothing holds.
func TestWALRetention(t *testing.T) {
	b := newBench(t, pgtest.DefaultInstall(t), pgtest.Options{Conf: []string{"max_wal_size = 32MB", "min_wal_size = 32MB"}})
	db := b.c.DB(t)
	pgtest.Exec(t, db, "CREATE TABLE churn (i int)")
	psql := b.c.ClientBin(t, "psql")
	// Each round writes, switches to a new segment and checkpoints, so that
	// the checkpoint may remove every older segment no one holds.
	churn := func(rounds int) string {
		return `for i in $(seq ` + strconv.Itoa(rounds) + `); do ` + psql +
			` -Atq -c "INSERT INTO churn SELECT generate_series(1, 10000)" -c "SELECT pg_switch_wal()" -c "CHECKPOINT" >/dev/null || exit 1; done`
	}
	walFile := func(name string) bool {
		_, err := os.Stat(filepath.Join(b.c.PGData, "pg_wal", name))
		return err == nil
	}

	t.Run("control: a backup without a slot loses its start segment", func(t *testing.T) {
		// The low-level API alone, as a home-made script calls it: backup
		// mode forces full-page writes but holds no WAL.
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start, stop := b.c.StartBackup(t, conn, "noslot")
		defer stop()
		cmd := exec.Command("sh", "-c", churn(4))
		cmd.Env = append(os.Environ(), b.c.Env()...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("churn: %v\n%s", err, out)
		}
		if walFile(start) {
			t.Fatalf("%s survived four checkpoints during a backup without a slot: the next test proves nothing", start)
		}
	})

	t.Run("with the slot every segment is staged and the backup restores", func(t *testing.T) {
		stop := b.load(t, time.Second)
		st := filepath.Join(t.TempDir(), "staging")
		r := runTool(t, b.c.Env(), "--staging", st, "--label", "pressure", "--fast", "--", "sh", "-c",
			`btrfs subvolume snapshot -r "$PGFBB_PGDATA" `+b.snaps+`/${PGFBB_LABEL} && `+churn(4))
		stop()
		r.want(t, 0)
		backupDir := filepath.Join(st, "pressure")
		readManifest(t, backupDir)
		// Four checkpoints ran while these segments were needed.
		if list, _ := os.ReadFile(filepath.Join(backupDir, staged.WALListFile)); len(strings.Fields(string(list))) < 5 {
			t.Errorf("staged WAL %q: want the four switched segments and more", list)
		}
		runTool(t, nil, "verify", backupDir).want(t, 0)
		b.restoreAndCheck(t, filepath.Join(b.snaps, "pressure"), backupDir)
	})

	t.Run("max_slot_wal_keep_size invalidates the slot: the run fails", func(t *testing.T) {
		pgtest.Exec(t, db, "ALTER SYSTEM SET max_slot_wal_keep_size = '32MB'")
		pgtest.Exec(t, db, "SELECT pg_reload_conf()")
		t.Cleanup(func() {
			pgtest.Exec(t, db, "ALTER SYSTEM RESET max_slot_wal_keep_size")
			pgtest.Exec(t, db, "SELECT pg_reload_conf()")
		})
		st := filepath.Join(t.TempDir(), "staging")
		r := runTool(t, b.c.Env(), "--staging", st, "--label", "lost", "--fast", "--", "sh", "-c", churn(6))
		// The server ends the session of the slot it invalidates.
		r.want(t, 1, "stop: ", "exceed max_slot_wal_keep_size (32 MB)", "invalidated the WAL-retention slot", "nothing was published")
		assertNothingPublished(t, st)
		waitClean(t, db)
	})
}
