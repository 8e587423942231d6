package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/btrfstest"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// stripWAL removes the WAL files restore placed in pg_wal: the control case
// of a snapshot restored without the backupDir WAL.
func stripWAL(t *testing.T, dataDir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "pg_wal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			os.Remove(filepath.Join(dataDir, "pg_wal", e.Name()))
		}
	}
}

// load runs pgbench against c until the returned stop is called.
func load(t *testing.T, c *pgtest.Cluster) (stop func()) {
	t.Helper()
	cmd := exec.Command(c.ClientBin(t, "pgbench"), "-n", "-c", "2", "-T", "600", "postgres")
	cmd.Env = append(os.Environ(), c.Env()...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

// switchWAL forces segment switches while pgbench writes, so that the backup
// spans several segments whatever the machine's speed.
func switchWAL(t *testing.T, c *pgtest.Cluster, every time.Duration) (stop func()) {
	db := c.DB(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			db.ExecContext(ctx, "SELECT pg_switch_wal()")
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// amcheck verifies every table and index of the restored cluster: with
// pg_amcheck where the server has verify_heapam (14+), else with amcheck's
// bt_index_check, which 11+ can run with heapallindexed.
func amcheck(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	if c.Major >= 14 {
		out := c.Client(t, "pg_amcheck", "--all", "--heapallindexed", "--install-missing")
		t.Logf("pg_amcheck --all --heapallindexed: clean %s", out)
		return
	}
	db := c.DB(t)
	pgtest.Exec(t, db, "CREATE EXTENSION IF NOT EXISTS amcheck")
	check := "bt_index_check(c.oid, true)"
	if c.Major < 11 {
		check = "bt_index_check(c.oid)"
	}
	n := pgtest.QueryString(t, db, `SELECT count(`+check+`) FROM pg_class c JOIN pg_am am ON am.oid = c.relam
		WHERE c.relkind = 'i' AND am.amname = 'btree' AND c.relpersistence <> 't'`)
	t.Logf("amcheck: %s btree indexes checked clean", n)
}

// restoreAndCheck restores a backupDir backup into a writable snapshot of
// snapshot and proves it: recovery reaches consistency and stops there, the
// marker row committed before the backup is present and the one after is
// not, pgbench's accounts are all there, and amcheck is clean.
func (b *bench) restoreAndCheck(t *testing.T, snapshot, backupDir string, restoreArgs ...string) {
	t.Helper()
	dir := filepath.Join(b.fs.Mount, "restore-"+filepath.Base(backupDir))
	btrfstest.Snapshot(t, snapshot, dir, false)
	b.restoreInto(t, dir, backupDir, restoreArgs...)
}

// restoreInto restores a backupDir backup into the data directory dir and
// proves it as restoreAndCheck does; it returns the running restored cluster.
func (b *bench) restoreInto(t *testing.T, dir, backupDir string, restoreArgs ...string) *pgtest.Cluster {
	t.Helper()
	runTool(t, nil, append([]string{"restore", "--staged", backupDir, "--pgdata", dir}, restoreArgs...)...).
		want(t, 0, "restore of "+readManifest(t, backupDir).Label+" laid out")
	return b.checkRestored(t, dir, backupDir)
}

// checkRestored starts a server on dir, where the backup backupDir was
// restored, and proves it as restoreAndCheck does.
func (b *bench) checkRestored(t *testing.T, dir, backupDir string) *pgtest.Cluster {
	t.Helper()
	rc := pgtest.Existing(t, b.c.Install, dir)
	rdb := rc.StartRecovered(t)
	log := rc.LogTail(1 << 20)
	wants := []string{"consistent recovery state reached", "recovery stopping after reaching consistency"}
	if readManifest(t, backupDir).BackupFrom == "standby" {
		// Recovery ends with the backupDir WAL, just past the backup's end.
		wants[1] = "redo done at"
	}
	for _, want := range wants {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q", want)
		}
	}
	if got := pgtest.QueryString(t, rdb, "SELECT string_agg(phase, ',' ORDER BY phase) FROM marker"); got != b.markers {
		t.Errorf("marker rows %q, want %q: the rows committed before the backup and not those after", got, b.markers)
	}
	if got := pgtest.QueryString(t, rdb, "SELECT count(*) FROM pgbench_accounts"); got != strconv.Itoa(scale*100000) {
		t.Errorf("pgbench_accounts has %s rows, want %d", got, scale*100000)
	}
	amcheck(t, rc)
	return rc
}

// scale is pgbench's scale factor for the clusters backed up under load.
const scale = 3

// bench is a cluster on a btrfs subvolume, initialised for pgbench, with a
// marker table that says whether a row was committed before the backup.
type bench struct {
	fs      *btrfstest.FS
	c       *pgtest.Cluster
	snaps   string // a directory for snapshots on the same file system
	markers string // the marker rows a restore of a backup taken now must have
}

func newBench(t *testing.T, in pgtest.Install, opts pgtest.Options) *bench {
	return newBenchAt(t, in, opts, "pgdata")
}

// newBenchAt is newBench with the data directory at rel in the mount: a
// subvolume of its own, or, as "vol/pgdata", a directory in subvolume vol.
func newBenchAt(t *testing.T, in pgtest.Install, opts pgtest.Options, rel string) *bench {
	t.Helper()
	fs := btrfstest.New(t, 4<<30) // sparse; small btrfs file systems run out of metadata space early
	vol, _, nested := strings.Cut(rel, "/")
	pgdata := fs.Subvolume(t, vol)
	pgtest.Chown(t, pgdata)
	if nested {
		pgdata = filepath.Join(fs.Mount, rel)
	}
	snaps := filepath.Join(fs.Mount, "snaps")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	opts.PGData = pgdata
	c := pgtest.New(t, in, opts)
	c.Client(t, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "postgres")
	db := c.DB(t)
	pgtest.Exec(t, db, "CREATE TABLE marker (phase text PRIMARY KEY)")
	pgtest.Exec(t, db, "INSERT INTO marker VALUES ('before')")
	return &bench{fs: fs, c: c, snaps: snaps, markers: "before"}
}

// load runs pgbench and switches WAL segments every switchEvery, so that a
// backup spans several segments whatever the machine's speed. The returned
// stop ends both and commits the marker row that a restore must not have.
func (b *bench) load(t *testing.T, switchEvery time.Duration) (stop func()) {
	stopLoad := load(t, b.c)
	stopSwitch := switchWAL(t, b.c, switchEvery)
	time.Sleep(time.Second) // pgbench is writing before the backup starts
	return func() {
		stopSwitch()
		pgtest.Exec(t, b.c.DB(t), "INSERT INTO marker VALUES ('after')")
		stopLoad()
	}
}

// matrixResult is one row of the table printed after the tests.
type matrixResult struct {
	target   string
	segSize  string
	walFiles int
	restored bool
}

// matrixResults are the rows of the table printMatrix prints; each parallel
// subtest fills its own.
var matrixResults []matrixResult

func TestEndToEndRestore(t *testing.T) {
	targets := pgtest.Matrix(t)
	matrixResults = make([]matrixResult, len(targets))
	row := map[string]*matrixResult{}
	for i, tg := range targets {
		matrixResults[i] = matrixResult{target: tg.Name(), segSize: fmt.Sprintf("%d MB", tg.SegmentSize()>>20)}
		row[tg.Name()] = &matrixResults[i]
	}
	pgtest.Each(t, targets, func(t *testing.T, tg pgtest.Target) { endToEnd(t, tg, row[tg.Name()]) })
}

func endToEnd(t *testing.T, tg pgtest.Target, row *matrixResult) {
	in := tg.Install
	b := newBench(t, in, pgtest.Options{InitArgs: tg.InitArgs()})
	fs, snaps := b.fs, b.snaps
	// About the same WAL volume per second whatever the segment size.
	stop := b.load(t, time.Duration(tg.SegmentSize()>>20)*25*time.Millisecond)
	staging := filepath.Join(t.TempDir(), "staging")
	r := runTool(t, b.c.Env(), "--staging", staging, "--label", "e2e", "--fast", "--",
		"sh", "-c", `btrfs subvolume snapshot -r "$PGFBB_PGDATA" `+snaps+`/${PGFBB_LABEL} && sleep 4`)
	stop()
	r.want(t, 0)

	backupDir := filepath.Join(staging, "e2e")
	m := readManifest(t, backupDir)
	list, _ := os.ReadFile(filepath.Join(backupDir, staged.WALListFile))
	var segments int
	for _, name := range strings.Fields(string(list)) {
		if len(name) == 24 {
			segments++
		}
	}
	if segments < 3 {
		t.Fatalf("staged %d segments (%s..%s), want the backup to span several", segments, m.StartWAL, m.StopWAL)
	}
	t.Logf("staged %d segments %s..%s, %.1fs in backup mode", segments, m.StartWAL, m.StopWAL, m.BackupModeSecs)
	row.walFiles = len(strings.Fields(string(list)))
	if m.WALSegmentSize != tg.SegmentSize() || m.ServerVersionNum/10000 != in.Major {
		t.Errorf("manifest says segment size %d and version %d", m.WALSegmentSize, m.ServerVersionNum)
	}
	snapshot := filepath.Join(snaps, "e2e")
	runTool(t, nil, "verify", backupDir).want(t, 0, "ok: backup e2e")

	t.Run("restore with the staged WAL", func(t *testing.T) {
		b.restoreAndCheck(t, snapshot, backupDir)
		row.restored = !t.Failed()
	})

	t.Run("restore to an LSN target", func(t *testing.T) {
		dir := filepath.Join(fs.Mount, "lsn")
		btrfstest.Snapshot(t, snapshot, dir, false)
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", dir, "--target", m.StopLSN.String(),
			"--restore-command", "false").want(t, 0)
		rc := pgtest.Existing(t, in, dir)
		rdb := rc.StartRecovered(t)
		checkStoppedAtLSN(t, rc.LogTail(1<<20), m.StopLSN)
		if got := pgtest.QueryString(t, rdb, "SELECT string_agg(phase, ',') FROM marker"); got != "before" {
			t.Errorf("marker rows %q", got)
		}
	})

	t.Run("rehearsal on the read-only snapshot", func(t *testing.T) {
		// The scratch directory on the same btrfs makes the copy a reflink.
		r := runTool(t, nil, "restore", "--rehearse", "--staged", backupDir, "--pgdata", snapshot,
			"--pg-bin", in.BinDir, "--scratch", fs.Mount)
		r.want(t, 0, "rehearsal of e2e ok: consistent after")
		leftovers, _ := filepath.Glob(filepath.Join(fs.Mount, "pgfbb-rehearse-*"))
		if len(leftovers) > 0 {
			t.Errorf("rehearsal left %v", leftovers)
		}
	})

	t.Run("control: the same restore without the staged WAL fails", func(t *testing.T) {
		dir := filepath.Join(fs.Mount, "nowal")
		btrfstest.Snapshot(t, snapshot, dir, false)
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", dir).want(t, 0)
		stripWAL(t, dir)
		rc := pgtest.Existing(t, in, dir)
		if err := rc.TryStart(t); err == nil {
			t.Fatal("a restore without the staged WAL started: the test proves nothing")
		}
		if log := rc.LogTail(8000); !strings.Contains(log, "checkpoint record") {
			t.Errorf("server refused to start for another reason:\n%s", log)
		}
	})
}

// checkStoppedAtLSN checks that recovery stopped after the first record at or
// past target. A target on a WAL page boundary (the backup's end often is)
// names no record: the first one starts behind the page header, 24 bytes in,
// or 40 at a segment's first page.
func checkStoppedAtLSN(t *testing.T, log string, target pgformat.LSN) {
	t.Helper()
	m := regexp.MustCompile(`recovery stopping after WAL location \(LSN\) "([0-9A-F]+/[0-9A-F]+)"`).FindStringSubmatch(log)
	if m == nil {
		t.Errorf("recovery did not stop at the LSN target %s", target)
		return
	}
	got, err := pgformat.ParseLSN(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if got < target || got > target+40 {
		t.Errorf("recovery stopped after %s, want the first record at or after the LSN target %s", got, target)
	}
}
