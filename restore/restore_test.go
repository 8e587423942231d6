package restore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

func TestTablespaceMap(t *testing.T) {
	root := t.TempDir()
	dir := func(name string) string {
		p := filepath.Join(root, name)
		os.MkdirAll(p, 0o700)
		return p
	}
	a, b, newA := dir("a"), dir("b"), dir("new-a")
	withMap := t.TempDir()
	if err := os.WriteFile(filepath.Join(withMap, staged.MapFile), []byte("16400 "+a+"\n16401 "+b+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noMap := t.TempDir()
	tests := []struct {
		name    string
		staged  string
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
			got, err := tablespaceMap(Options{Staged: tt.staged, TablespaceMapping: tt.mapping})
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
	tests := []struct {
		name, pgdata, walDir, want string
	}{
		{"directory", plain, "", ""},
		{"directory with --wal-dir", plain, elsewhere, "this one's is a directory"},
		{"link without --wal-dir", linked, "", "is a link to " + elsewhere},
		{"link with --wal-dir", linked, t.TempDir(), ""},
		{"link with a missing --wal-dir", linked, filepath.Join(elsewhere, "x"), "not a directory"},
		{"no pg_wal", t.TempDir(), "", "target has no pg_wal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkWALDir(Options{PGData: tt.pgdata, WALDir: tt.walDir})
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("checkWALDir = %v, want %q", err, tt.want)
			}
		})
	}
}
