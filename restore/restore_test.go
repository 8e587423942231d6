package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

const mb = 1 << 20

// publish stages a backup without WAL holding files, and opens it.
func publish(t *testing.T, files map[string]string) *staged.Backup {
	t.Helper()
	root := t.TempDir()
	s, err := staged.Prepare(root, "b")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := s.WriteFile(name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	m := &staged.Manifest{Label: "b", Status: staged.StatusComplete, ServerVersionNum: 150004, SystemIdentifier: "1",
		Timeline: 1, StartLSN: 0x3000028, StopLSN: 0x3000100, StartWAL: "000000010000000000000003", StopWAL: "000000010000000000000003",
		WALSegmentSize: 16 * mb, WALMode: staged.WALSkip}
	if err := s.Publish(m); err != nil {
		t.Fatal(err)
	}
	b, err := staged.Open(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestTablespaceMap(t *testing.T) {
	root := t.TempDir()
	dir := func(name string) string {
		p := filepath.Join(root, name)
		os.MkdirAll(p, 0o700)
		return p
	}
	a, b, newA := dir("a"), dir("b"), dir("new-a")
	withMap := publish(t, map[string]string{staged.MapFile: "16400 " + a + "\n16401 " + b + "\n"})
	noMap := publish(t, nil)
	tests := []struct {
		name    string
		backup  *staged.Backup
		mapping [][2]string
		want    string // the map, or the error's text
		wantErr bool
	}{
		{"as staged", withMap, nil, "16400 " + a + "\n16401 " + b + "\n", false},
		{"one relocated", withMap, [][2]string{{a, newA}}, "16400 " + newA + "\n16401 " + b + "\n", false},
		{"unknown old location", withMap, [][2]string{{"/nowhere", newA}}, "no tablespace of the backup is at /nowhere", true},
		{"new location missing", withMap, [][2]string{{a, filepath.Join(root, "missing")}}, "tablespace 16400 at " + filepath.Join(root, "missing") + ": not a directory", true},
		{"no map", noMap, nil, "", false},
		{"mapping without a map", noMap, [][2]string{{a, newA}}, "the backup has no tablespace_map", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tablespaceMap(context.Background(), tt.backup, Options{TablespaceMapping: tt.mapping})
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want one containing %q", err, tt.want)
				}
				return
			}
			if err != nil || string(pgformat.FormatTablespaceMap(got)) != tt.want {
				t.Fatalf("map %+v, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCheckWALDir(t *testing.T) {
	elsewhere := t.TempDir()
	plain, linked := t.TempDir(), t.TempDir()
	os.Mkdir(filepath.Join(plain, "pg_wal"), 0o700)
	os.Symlink(elsewhere, filepath.Join(linked, "pg_wal"))
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("keep me"), 0o600)
	otherCluster := t.TempDir()
	header := make([]byte, mb)
	header[2], header[24] = 2, 9 // XLP_LONG_HEADER, system identifier 9
	os.WriteFile(filepath.Join(otherCluster, "000000010000000000000003"), header, 0o600)
	sameCluster := t.TempDir()
	header[24] = 1
	os.WriteFile(filepath.Join(sameCluster, "000000010000000000000003"), header, 0o600)
	os.WriteFile(filepath.Join(sameCluster, "000000010000000000000004"), make([]byte, mb), 0o600) // preallocated
	os.Mkdir(filepath.Join(sameCluster, "archive_status"), 0o700)
	statusLink := t.TempDir()
	os.Mkdir(filepath.Join(statusLink, "pg_wal"), 0o700)
	os.Symlink(elsewhere, filepath.Join(statusLink, "pg_wal", "archive_status"))
	tests := []struct {
		name, pgdata, walDir, want string
		force                      bool
	}{
		{"directory", plain, "", "", false},
		{"directory with --wal-dir", plain, elsewhere, "this one's is a directory", false},
		{"link without --wal-dir", linked, "", "is a link to " + elsewhere, false},
		{"link with --wal-dir", linked, t.TempDir(), "", false},
		{"link with a missing --wal-dir", linked, filepath.Join(elsewhere, "x"), "no such file", false},
		{"--wal-dir holding other files", linked, foreign, "holds notes.txt, which is not WAL", false},
		{"--wal-dir holding other files, forced", linked, foreign, "", true},
		{"--wal-dir holding another cluster's WAL", linked, otherCluster, "not WAL of cluster 1", false},
		{"--wal-dir holding this cluster's WAL", linked, sameCluster, "", false},
		{"archive_status a link", statusLink, "", "archive_status is", false},
		{"no pg_wal", t.TempDir(), "", "target has no pg_wal", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := beneath.Open(tt.pgdata)
			if err != nil {
				t.Fatal(err)
			}
			p := &plan{o: Options{PGData: tt.pgdata, WALDir: tt.walDir, Force: tt.force}, pgdata: d,
				m: &staged.Manifest{SystemIdentifier: "1", WALSegmentSize: mb}}
			defer p.close()
			err = p.checkWALDir()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("checkWALDir = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Target: Target{Kind: TargetTime, Value: "2026-11-25 08:00:00+00"}}, ""},
		{Options{Target: Target{Kind: TargetTime, Value: "yesterday"}}, "--target"},
		{Options{Target: Target{Kind: TargetName, Value: "x", Exclusive: true}}, "--target-exclusive"},
		{Options{RestoreCommand: "cp /a/%f %p"}, ""},
		{Options{RestoreCommand: "cp /a/%f %p\nrecovery_target = 'immediate'"}, "control character"},
		{Options{RestoreCommand: "cp\t/a"}, "control character"},
		{Options{TablespaceMapping: [][2]string{{"/a", "b"}}}, "clean absolute"},
		{Options{TablespaceMapping: [][2]string{{"/a", "/b/../c"}}}, "clean absolute"},
	}
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate(%+v) = %v, want %q", tt.o, err, tt.want)
			}
		})
	}
}

func TestQuoteSetting(t *testing.T) {
	for in, want := range map[string]string{
		`cp /a/%f "%p"`:             `'cp /a/%f "%p"'`,
		`cp /mnt/my\ archive/%f %p`: `'cp /mnt/my\\ archive/%f %p'`,
		`trailing\`:                 `'trailing\\'`,
		`it's`:                      `'it''s'`,
	} {
		if got := quoteSetting(in); got != want {
			t.Errorf("quoteSetting(%s) = %s, want %s", in, got, want)
		}
	}
}
