package walcollect

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

const (
	testSysID = 7300000000000000001
	mb        = 1 << 20
)

// writeSegment fabricates segment segNo of a cluster with a valid long page
// header, as PostgreSQL writes it.
func writeSegment(t *testing.T, dir string, segNo uint64, segSize uint64, sysID uint64) string {
	t.Helper()
	b := make([]byte, segSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], 0x0002) // xlp_info: XLP_LONG_HEADER
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], segNo*segSize)
	le.PutUint64(b[24:], sysID)
	le.PutUint32(b[32:], uint32(segSize))
	name := pgformat.SegmentFileName(1, segNo, segSize)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func testPlan(t *testing.T) *Plan {
	t.Helper()
	bl := &pgformat.BackupLabel{StartLSN: 0x300028, StartWALFile: "000000010000000000000003", StartTimeline: 1}
	p, err := NewPlan(bl, 1, 0x500010, mb, testSysID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pgWAL returns a directory holding segments 3..5 and the backup history file.
func pgWAL(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for n := uint64(3); n <= 5; n++ {
		writeSegment(t, dir, n, mb, testSysID)
	}
	if err := os.WriteFile(filepath.Join(dir, "000000010000000000000003.00000028.backup"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStagePublish(t *testing.T) {
	root := filepath.Join(t.TempDir(), "staging")
	s, err := staged.Prepare(root, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile(staged.LabelFile, []byte("START WAL LOCATION: 0/300028 (file 000000010000000000000003)\n")); err != nil {
		t.Fatal(err)
	}
	var copied atomic.Int64
	plan := testPlan(t)
	if err := Collect(context.Background(), s, DirSource(pgWAL(t)), plan, &copied); err != nil {
		t.Fatal(err)
	}
	if copied.Load() != int64(plan.Files()) || plan.Files() != 4 {
		t.Errorf("copied %d of %d files, want 4 of 4", copied.Load(), plan.Files())
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backup visible before Publish: %v", err)
	}
	if err := s.Publish(&staged.Manifest{Label: "nightly", Status: staged.StatusComplete}); err != nil {
		t.Fatal(err)
	}

	list, err := os.ReadFile(filepath.Join(root, "nightly", staged.WALListFile))
	if err != nil {
		t.Fatal(err)
	}
	wantList := "000000010000000000000003\n000000010000000000000003.00000028.backup\n" +
		"000000010000000000000004\n000000010000000000000005\n"
	if string(list) != wantList {
		t.Errorf("wal_list = %q, want %q", list, wantList)
	}
	var m staged.Manifest
	data, err := os.ReadFile(filepath.Join(root, "nightly", staged.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 6 {
		t.Errorf("manifest lists %d files, want label, 3 segments, backup history, wal_list: %+v", len(m.Files), m.Files)
	}
	for _, f := range m.Files {
		fi, err := os.Stat(filepath.Join(root, "nightly", f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != f.Size || len(f.SHA256) != 64 {
			t.Errorf("%s: manifest says %d bytes sha %q, file has %d", f.Path, f.Size, f.SHA256, fi.Size())
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f.Path, fi.Mode().Perm())
		}
	}
	for _, d := range []string{root, filepath.Join(root, "nightly"), filepath.Join(root, "nightly", staged.WALDir)} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", d, fi.Mode(), err)
		}
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 2 || entries[0].Name() != staged.LockFile || entries[1].Name() != "nightly" {
		t.Errorf("staging root holds %v, want only the published backup and the lock", entries)
	}
}

func TestStageWALFaults(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"missing segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "000000010000000000000004"))
		}, []string{"000000010000000000000004", "no such file"}},
		{"two missing segments are both reported", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "000000010000000000000004"))
			os.Remove(filepath.Join(dir, "000000010000000000000005"))
		}, []string{"000000010000000000000004", "000000010000000000000005"}},
		{"short segment", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "000000010000000000000005"), mb-8192)
		}, []string{"000000010000000000000005", "size is 1040384 bytes, want 1048576"}},
		{"recycled segment", func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, writeSegment(t, dir, 1, mb, testSysID)), filepath.Join(dir, "000000010000000000000004"))
		}, []string{"000000010000000000000004", "recycled or foreign"}},
		{"segment of another cluster", func(t *testing.T, dir string) {
			writeSegment(t, dir, 5, mb, testSysID+1)
		}, []string{"000000010000000000000005", "another cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := pgWAL(t)
			tt.damage(t, dir)
			s, err := staged.Prepare(t.TempDir(), "x")
			if err != nil {
				t.Fatal(err)
			}
			err = Collect(context.Background(), s, DirSource(dir), testPlan(t), nil)
			if err == nil {
				t.Fatal("StageWAL succeeded on damaged WAL")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, f := range s.Files() {
				if strings.Contains(err.Error(), filepath.Base(f.Path)) {
					t.Errorf("%s is reported damaged but listed as staged", f.Path)
				}
			}
			if _, err := os.Stat(filepath.Join(s.TempDir(), staged.WALListFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("wal_list written for an incomplete WAL set")
			}
		})
	}
}

func TestStageWALOptionalBackupHistory(t *testing.T) {
	dir := pgWAL(t)
	os.Remove(filepath.Join(dir, "000000010000000000000003.00000028.backup"))
	s, err := staged.Prepare(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := Collect(context.Background(), s, DirSource(dir), testPlan(t), nil); err != nil {
		t.Fatalf("a missing *.backup file must not fail staging: %v", err)
	}
}

func TestStageWALCancelled(t *testing.T) {
	s, err := staged.Prepare(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Collect(ctx, s, DirSource(pgWAL(t)), testPlan(t), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("StageWAL with a cancelled context = %v", err)
	}
}

// TestStageWALZeroFrom stages a standby's last segment, still being filled,
// with zeros after what the standby received.
func TestStageWALZeroFrom(t *testing.T) {
	dir := pgWAL(t)
	last := filepath.Join(dir, pgformat.SegmentFileName(1, 5, mb))
	data, _ := os.ReadFile(last)
	for i := 100; i < len(data); i++ {
		data[i] = 0xAB // what a recycled segment still holds
	}
	os.WriteFile(last, data, 0o600)
	p := testPlan(t)
	p.ZeroFrom = pgformat.LSN(5*mb + 0x2000)
	s, err := staged.Prepare(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := Collect(context.Background(), s, DirSource(dir), p, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(s.TempDir(), staged.WALDir, pgformat.SegmentFileName(1, 5, mb)))
	if err != nil || len(got) != mb {
		t.Fatalf("staged segment: %d bytes, %v", len(got), err)
	}
	if string(got[:0x2000]) != string(data[:0x2000]) {
		t.Error("the received part changed")
	}
	if strings.Trim(string(got[0x2000:]), "\x00") != "" {
		t.Error("bytes after ZeroFrom are not zero")
	}
	// Earlier segments are staged whole.
	if prev, _ := os.ReadFile(filepath.Join(s.TempDir(), staged.WALDir, pgformat.SegmentFileName(1, 4, mb))); len(prev) != mb {
		t.Errorf("segment 4: %d bytes", len(prev))
	}
}
