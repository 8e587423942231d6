package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/btrfstest"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestTablespaces backs up a cluster spread over three file systems: the
// data directory and tablespace ts2 (each its own subvolume) on one,
// tablespace ts1 on a second, pg_wal (initdb --waldir) on a third. pgbench
// keeps its tables in ts1 and its indexes in ts2. The backup is restored
// with both tablespaces relocated while the original runs, then in place.
func TestTablespaces(t *testing.T) {
	pgtest.Each(t, pgtest.SpotTargets(t), func(t *testing.T, tg pgtest.Target) { tablespaces(t, tg.Install) })
}

func tablespaces(t *testing.T, in pgtest.Install) {
	fs1, fs2, fs3 := btrfstest.New(t, 4<<30), btrfstest.New(t, 4<<30), btrfstest.New(t, 4<<30)
	sub := func(fs *btrfstest.FS, name string) string {
		p := fs.Subvolume(t, name)
		pgtest.Chown(t, p)
		return p
	}
	data, ts2, ts1vol, walvol := sub(fs1, "pgdata"), sub(fs1, "ts2"), sub(fs2, "pg"), sub(fs3, "pg")
	ts1, waldir := filepath.Join(ts1vol, "ts1"), filepath.Join(walvol, "wal")
	if err := os.Mkdir(ts1, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, ts1)
	for _, fs := range []*btrfstest.FS{fs1, fs2, fs3} {
		if err := os.Mkdir(filepath.Join(fs.Mount, "snaps"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := pgtest.New(t, in, pgtest.Options{PGData: data, InitArgs: []string{"--waldir=" + waldir}})
	db := c.DB(t)
	pgtest.Exec(t, db, "CREATE TABLESPACE ts1 LOCATION '"+ts1+"'")
	pgtest.Exec(t, db, "CREATE TABLESPACE ts2 LOCATION '"+ts2+"'")
	c.Client(t, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "--tablespace=ts1", "--index-tablespace=ts2", "postgres")
	pgtest.Exec(t, db, "CREATE TABLE marker (phase text PRIMARY KEY) TABLESPACE ts2")
	pgtest.Exec(t, db, "INSERT INTO marker VALUES ('before')")
	b := &bench{fs: fs1, c: c, markers: "before"}
	oid := func(name string) string {
		return pgtest.QueryString(t, db, "SELECT oid FROM pg_tablespace WHERE spcname = $1", name)
	}
	oids := map[string]string{"ts1": oid("ts1"), "ts2": oid("ts2")}

	// The snapshot command covers every volume; it also records what it
	// was told to cover.
	volumes := filepath.Join(t.TempDir(), "volumes")
	snap := func(src string, fs *btrfstest.FS, name string) string {
		return `btrfs subvolume snapshot -r ` + src + ` ` + filepath.Join(fs.Mount, "snaps", name)
	}
	stop := b.load(t, 300*time.Millisecond)
	staging := filepath.Join(t.TempDir(), "staging")
	r := runTool(t, c.Env(), "--staging", staging, "--label", "spread", "--fast", "--", "sh", "-c",
		`printf '%s\n' "$PGFBB_VOLUMES" > `+volumes+` && sleep 1 && `+snap(data, fs1, "data")+` && `+snap(ts2, fs1, "ts2")+
			` && `+snap(ts1vol, fs2, "pg")+` && `+snap(walvol, fs3, "pg")+` && sleep 1`)
	stop()
	r.want(t, 0, "the cluster spans 4 file systems or subvolumes")
	backupDir := filepath.Join(staging, "spread")

	t.Run("manifest and volumes", func(t *testing.T) {
		m := readManifest(t, backupDir)
		var got []string
		for _, ts := range m.Tablespaces {
			got = append(got, strconv.FormatUint(uint64(ts.OID), 10)+" "+ts.Name+" "+ts.Location)
		}
		want := []string{oids["ts1"] + " ts1 " + ts1, oids["ts2"] + " ts2 " + ts2}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("manifest tablespaces %q, want %q", got, want)
		}
		mounts := map[string]string{}
		for _, v := range m.Volumes {
			mounts[v.Role] = v.Mount.Point
		}
		for role, want := range map[string]string{"data_directory": fs1.Mount, "pg_wal": fs3.Mount, "tablespace ts1": fs2.Mount, "tablespace ts2": fs1.Mount} {
			if mounts[role] != want {
				t.Errorf("volume of %s: %q, want %q (all: %v)", role, mounts[role], want, mounts)
			}
		}
		told, _ := os.ReadFile(volumes)
		gotVols := strings.Fields(string(told))
		slices.Sort(gotVols)
		wantVols := []string{fs1.Mount, fs2.Mount, fs3.Mount}
		slices.Sort(wantVols)
		if !slices.Equal(gotVols, wantVols) {
			t.Errorf("PGFBB_VOLUMES %q, want %q", told, wantVols)
		}
		runTool(t, nil, "verify", backupDir).want(t, 0)
	})

	t.Run("--covers refuses what the snapshot would miss", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "staging")
		covers := func(paths ...string) []string {
			args := []string{"--staging", st, "--fast"}
			for _, p := range paths {
				args = append(args, "--covers", p)
			}
			return append(args, "--", "true")
		}
		// A snapshot of fs1's top subvolume holds neither the data
		// directory's subvolume nor ts2's.
		r := runTool(t, c.Env(), append([]string{"--label", "missed"}, covers(fs1.Mount, ts1vol, walvol)...)...)
		r.want(t, 3, "data_directory ("+data+", on "+fs1.Mount, "tablespace ts2 ("+ts2, "is outside every --covers path", "not in its parent's snapshot): the snapshot would miss it")
		if strings.Contains(r.stderr, "tablespace ts1 (") || strings.Contains(r.stderr, "pg_wal (") {
			t.Errorf("covered volumes reported as missed:\n%s", r.stderr)
		}
		assertNothingPublished(t, st)
		runTool(t, c.Env(), append([]string{"--label", "relative"}, covers("pgdata")...)...).want(t, 2, `--covers "pgdata": want an absolute path`)

		r = runTool(t, c.Env(), append([]string{"--label", "covered"}, covers(data, ts2, ts1vol, walvol)...)...)
		r.want(t, 0)
		if r.stderr != "" {
			t.Errorf("a run whose --covers holds every volume printed:\n%s", r.stderr)
		}
		if m := readManifest(t, filepath.Join(st, "covered")); len(m.Covers) != 4 || len(m.Volumes) != 4 {
			t.Errorf("manifest covers %q, volumes %d", m.Covers, len(m.Volumes))
		}
		waitClean(t, db)
	})

	t.Run("held by pre and post: pre warns of the volumes, post of what came later", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "staging")
		killHolders(t, st)
		runTool(t, c.Env(), "pre", "--staging", st, "--label", "held", "--fast", "--wal=skip").
			want(t, 0, "pgfbb-wrap: warning: the cluster spans 4 file systems or subvolumes")
		r := runTool(t, nil, "post", "--staging", st, "--label", "held")
		r.want(t, 0, "backup held complete", "pgfbb-wrap: warning: WAL not staged and archiving not checked (--wal=skip)")
		if strings.Contains(r.stderr, "spans") {
			t.Errorf("post repeated what pre said:\n%s", r.stderr)
		}
		waitClean(t, db)
	})

	t.Run("relocated while the original runs", func(t *testing.T) {
		dir := filepath.Join(fs1.Mount, "ra-data")
		btrfstest.Snapshot(t, filepath.Join(fs1.Mount, "snaps", "data"), dir, false)
		newTS2 := filepath.Join(fs1.Mount, "ra-ts2")
		btrfstest.Snapshot(t, filepath.Join(fs1.Mount, "snaps", "ts2"), newTS2, false)
		btrfstest.Snapshot(t, filepath.Join(fs2.Mount, "snaps", "pg"), filepath.Join(fs2.Mount, "ra-pg"), false)
		btrfstest.Snapshot(t, filepath.Join(fs3.Mount, "snaps", "pg"), filepath.Join(fs3.Mount, "ra-pg"), false)
		newTS1, newWAL := filepath.Join(fs2.Mount, "ra-pg", "ts1"), filepath.Join(fs3.Mount, "ra-pg", "wal")

		// The snapshot's pg_wal still links to the running cluster's WAL,
		// and its tablespace_map names the running cluster's tablespaces.
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", dir).want(t, 3, "pg_wal is a link to "+waldir, "--wal-dir")
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", dir, "--wal-dir", newWAL).want(t, 3, "is in use: the server is running on \""+data+"\"")
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", dir, "--wal-dir", newWAL, "--tablespace-mapping", "/nowhere=/x").want(t, 3, "no tablespace of the backup is at /nowhere")
		runTool(t, nil, "restore", "--rehearse", "--staged", backupDir, "--pgdata", dir).want(t, 3, "has tablespaces or pg_wal on another volume")

		rc := b.restoreInto(t, dir, backupDir, "--wal-dir", newWAL, "--tablespace-mapping", ts1+"="+newTS1, "--tablespace-mapping", ts2+"="+newTS2)
		checkLocations(t, rc, map[string]string{"ts1": newTS1, "ts2": newTS2})
		if got, _ := os.Readlink(filepath.Join(dir, "pg_wal")); got != newWAL {
			t.Errorf("restored pg_wal links to %q, want %q", got, newWAL)
		}
		rc.Stop(t)
	})

	t.Run("in place, with the staged map", func(t *testing.T) {
		c.Stop(t)
		btrfstest.Rollback(t, filepath.Join(fs1.Mount, "snaps", "data"), data)
		btrfstest.Rollback(t, filepath.Join(fs1.Mount, "snaps", "ts2"), ts2)
		btrfstest.Rollback(t, filepath.Join(fs2.Mount, "snaps", "pg"), ts1vol)
		btrfstest.Rollback(t, filepath.Join(fs3.Mount, "snaps", "pg"), walvol)
		rc := b.restoreInto(t, data, backupDir, "--wal-dir", waldir)
		checkLocations(t, rc, map[string]string{"ts1": ts1, "ts2": ts2})
		rc.Stop(t)
	})

	t.Run("in place, one tablespace moved by editing the map", func(t *testing.T) {
		btrfstest.Rollback(t, filepath.Join(fs1.Mount, "snaps", "data"), data)
		btrfstest.Rollback(t, filepath.Join(fs1.Mount, "snaps", "ts2"), ts2)
		btrfstest.Rollback(t, filepath.Join(fs3.Mount, "snaps", "pg"), walvol)
		moved := filepath.Join(fs2.Mount, "moved")
		btrfstest.Snapshot(t, filepath.Join(fs2.Mount, "snaps", "pg"), moved, false)
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", data, "--wal-dir", waldir).want(t, 0)
		// What the README tells a DBA to do: one "OID LOCATION" line each.
		mapFile := filepath.Join(data, "tablespace_map")
		text, err := os.ReadFile(mapFile)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(text), oids["ts1"]+" "+ts1+"\n", oids["ts1"]+" "+filepath.Join(moved, "ts1")+"\n", 1)
		if edited == string(text) {
			t.Fatalf("tablespace_map has no line for ts1:\n%s", text)
		}
		if err := os.WriteFile(mapFile, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		rc := pgtest.Existing(t, in, data)
		rdb := rc.StartRecovered(t)
		checkLocations(t, rc, map[string]string{"ts1": filepath.Join(moved, "ts1"), "ts2": ts2})
		if got := pgtest.QueryString(t, rdb, "SELECT count(*) FROM pgbench_accounts"); got != strconv.Itoa(scale*100000) {
			t.Errorf("pgbench_accounts has %s rows", got)
		}
		amcheck(t, rc)
	})
}

// checkLocations checks where the restored tablespaces are.
func checkLocations(t *testing.T, c *pgtest.Cluster, want map[string]string) {
	t.Helper()
	db := c.DB(t)
	for name, loc := range want {
		if got := pgtest.QueryString(t, db, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = $1", name); got != loc {
			t.Errorf("restored %s is at %q, want %q", name, got, loc)
		}
	}
}
