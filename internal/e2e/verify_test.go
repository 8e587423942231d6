package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// copyDir copies a staged backup so that each fault damages its own copy.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

func TestVerify(t *testing.T) {
	in := pgtest.DefaultInstall(t)
	c := pgtest.New(t, in, pgtest.Options{})
	c.Client(t, "pgbench", "-i", "-q", "-s", "1", "postgres")
	staging := filepath.Join(t.TempDir(), "staging")
	stopLoad := load(t, c)
	stopSwitch := switchWAL(t, c, 300*time.Millisecond)
	runTool(t, c.Env(), "--staging", staging, "--label", "v", "--fast", "--", "sleep", "2").want(t, 0)
	stopSwitch()
	stopLoad()
	pristine := filepath.Join(staging, "v")
	m := readManifest(t, pristine)
	segs, err := pgformat.RequiredSegments(m.Timeline, m.StartLSN, m.StopLSN, m.WALSegmentSize)
	if err != nil || len(segs) < 3 {
		t.Fatalf("want a backup over several segments, got %v %v", segs, err)
	}
	middle := filepath.Join("wal", segs[1])

	t.Run("pristine", func(t *testing.T) {
		r := runTool(t, nil, "verify", pristine)
		r.want(t, 0, "ok: backup v")
		if in.Major == 15 {
			r.want(t, 0, "pg_waldump decoded every record")
		}
	})

	// A segment of another cluster, at the same position as ours.
	other := pgtest.New(t, in, pgtest.Options{})
	odb := other.DB(t)
	pgtest.Exec(t, odb, "CREATE TABLE w (i int)")
	for pgtest.QueryString(t, odb, "SELECT pg_walfile_name(pg_current_wal_lsn())") <= segs[1] {
		pgtest.Exec(t, odb, "INSERT INTO w VALUES (1)")
		pgtest.Exec(t, odb, "SELECT pg_switch_wal()")
	}
	foreign, err := os.ReadFile(filepath.Join(other.PGData, "pg_wal", segs[1]))
	if err != nil {
		t.Fatal(err)
	}

	faults := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"flipped byte in a segment", func(t *testing.T, dir string) {
			p := filepath.Join(dir, middle)
			b, _ := os.ReadFile(p)
			b[len(b)/3] ^= 0xFF
			os.WriteFile(p, b, 0o600)
		}, []string{middle + ": SHA-256"}},
		{"truncated segment", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, middle), 8192*3)
		}, []string{middle + ": 24576 bytes, manifest says", segs[1] + ": 24576 bytes, want"}},
		{"missing segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, middle))
		}, []string{segs[1] + ": open", "no such file"}},
		{"segment of another cluster", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, middle), foreign, 0o600)
		}, []string{middle + ": SHA-256", "segment of another cluster"}},
		{"edited label", func(t *testing.T, dir string) {
			p := filepath.Join(dir, staged.LabelFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), "LABEL: v\n", "LABEL: w\n", 1)), 0o600)
		}, []string{"backup_label: SHA-256", `backup_label: LABEL "w", manifest says "v"`}},
		{"extra file", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "wal", "00000002.history"), []byte("1\t0/0\tno\n"), 0o600)
		}, []string{"wal/00000002.history: not in the manifest"}},
		{"no manifest", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, staged.ManifestFile))
		}, []string{"manifest: open"}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			dir := copyDir(t, pristine)
			f.damage(t, dir)
			runTool(t, nil, "verify", dir).want(t, 1, append(f.want, "not usable")...)
		})
	}
}
