package walcollect

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testSysID = 7300000000000000001

// writeSegment fabricates segment segNo of a cluster with a valid long page
// header, as PostgreSQL writes it.
func writeSegment(t *testing.T, dir string, segNo uint64, segSize uint64, sysID uint64) string {
	t.Helper()
	b := make([]byte, segSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[xlpInfo:], xlpLongHeader)
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[xlpPageAddr:], segNo*segSize)
	le.PutUint64(b[xlpSysID:], sysID)
	le.PutUint32(b[xlpSegSize:], uint32(segSize))
	name := SegmentFileName(1, segNo, segSize)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func testPlan(t *testing.T) *Plan {
	t.Helper()
	bl := &BackupLabel{StartLSN: 0x300028, StartWALFile: "000000010000000000000003", StartTimeline: 1}
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

func TestPrepareRefuses(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(base, "staging", "taken"), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, root, label, want string
	}{
		{"missing parent", filepath.Join(base, "no", "such"), "x", "create staging directory"},
		{"not a directory", file, "x", "not a directory"},
		{"label taken", filepath.Join(base, "staging"), "taken", "already exists"},
		{"bad label", filepath.Join(base, "staging"), "../x", "invalid label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Prepare(tt.root, tt.label)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Prepare(%s, %s) = %v, %v; want error containing %q", tt.root, tt.label, s, err, tt.want)
			}
		})
	}
	if _, err := Prepare(filepath.Join(base, "staging"), "taken"); !errors.Is(err, ErrExists) {
		t.Errorf("existing label: error %v does not wrap ErrExists", err)
	}
}

func TestStagePublish(t *testing.T) {
	root := filepath.Join(t.TempDir(), "staging")
	s, err := Prepare(root, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile(LabelFile, []byte(label15)); err != nil {
		t.Fatal(err)
	}
	if err := s.StageWAL(context.Background(), DirSource(pgWAL(t)), testPlan(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backup visible before Publish: %v", err)
	}
	if err := s.Publish(&Manifest{Label: "nightly", Status: StatusComplete}); err != nil {
		t.Fatal(err)
	}

	list, err := os.ReadFile(filepath.Join(root, "nightly", WALListFile))
	if err != nil {
		t.Fatal(err)
	}
	wantList := "000000010000000000000003\n000000010000000000000003.00000028.backup\n" +
		"000000010000000000000004\n000000010000000000000005\n"
	if string(list) != wantList {
		t.Errorf("wal_list = %q, want %q", list, wantList)
	}
	var m Manifest
	data, err := os.ReadFile(filepath.Join(root, "nightly", ManifestFile))
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
	for _, d := range []string{root, filepath.Join(root, "nightly"), filepath.Join(root, "nightly", WALDir)} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", d, fi.Mode(), err)
		}
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 2 || entries[0].Name() != LockFile || entries[1].Name() != "nightly" {
		t.Errorf("staging root holds %v, want only the published backup and the lock", entries)
	}
}

// TestPrepareSweeps removes the partial backups of dead runs, and only those.
func TestPrepareSweeps(t *testing.T) {
	root := t.TempDir()
	live, err := Prepare(root, "live")
	if err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(root, ".dead"+partialInfix+"123")
	keep := []string{live.TempDir(), filepath.Join(root, ".pgfbb-run"), filepath.Join(root, "published")}
	for _, d := range append(keep, filepath.Join(dead, WALDir)) {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	next, err := Prepare(root, "next")
	if err != nil {
		t.Fatal(err)
	}
	want := "removed " + filepath.Base(dead) + " from the staging directory: a partial backup left by a run that died"
	if got := next.Notes(); !slices.Equal(got, []string{want}) {
		t.Errorf("Prepare notes %q, want the dead run's directory alone removed", got)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead run's partial backup: %v", err)
	}
	for _, d := range append(keep, next.TempDir()) {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("swept what it must keep: %v", err)
		}
	}
	// Runs that end cleanly leave nothing for a later sweep.
	for _, s := range []*Staging{live, next} {
		if err := s.Discard(); err != nil {
			t.Fatal(err)
		}
	}
	third, err := Prepare(root, "third")
	if err != nil {
		t.Fatal(err)
	}
	if got := third.Notes(); len(got) != 0 {
		t.Errorf("Prepare after clean discards: %q", got)
	}
}

func TestPublishNeverReplaces(t *testing.T) {
	root := t.TempDir()
	s, err := Prepare(root, "x")
	if err != nil {
		t.Fatal(err)
	}
	// A concurrent run took the name after Prepare checked it; an empty
	// directory is what rename(2) would silently replace.
	if err := os.Mkdir(filepath.Join(root, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	err = s.Publish(&Manifest{Label: "x", Status: StatusComplete})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Publish over an existing directory = %v, want ErrExists", err)
	}
	if _, err := os.Stat(filepath.Join(root, "x", ManifestFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("manifest appeared in the other run's directory: %v", err)
	}
	if err := s.Discard(); err != nil {
		t.Fatal(err)
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
			s, err := Prepare(t.TempDir(), "x")
			if err != nil {
				t.Fatal(err)
			}
			err = s.StageWAL(context.Background(), DirSource(dir), testPlan(t))
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
			if _, err := os.Stat(filepath.Join(s.dir, WALListFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("wal_list written for an incomplete WAL set")
			}
		})
	}
}

func TestStageWALOptionalBackupHistory(t *testing.T) {
	dir := pgWAL(t)
	os.Remove(filepath.Join(dir, "000000010000000000000003.00000028.backup"))
	s, err := Prepare(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StageWAL(context.Background(), DirSource(dir), testPlan(t)); err != nil {
		t.Fatalf("a missing *.backup file must not fail staging: %v", err)
	}
}

func TestStageWALCancelled(t *testing.T) {
	s, err := Prepare(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.StageWAL(ctx, DirSource(pgWAL(t)), testPlan(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("StageWAL with a cancelled context = %v", err)
	}
}

// TestStageWALZeroFrom stages a standby's last segment, still being filled,
// with zeros after what the standby received.
func TestStageWALZeroFrom(t *testing.T) {
	dir := pgWAL(t)
	last := filepath.Join(dir, SegmentFileName(1, 5, mb))
	data, _ := os.ReadFile(last)
	for i := 100; i < len(data); i++ {
		data[i] = 0xAB // what a recycled segment still holds
	}
	os.WriteFile(last, data, 0o600)
	p := testPlan(t)
	p.ZeroFrom = LSN(5*mb + 0x2000)
	s, err := Prepare(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StageWAL(context.Background(), DirSource(dir), p); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(s.TempDir(), WALDir, SegmentFileName(1, 5, mb)))
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
	if prev, _ := os.ReadFile(filepath.Join(s.TempDir(), WALDir, SegmentFileName(1, 4, mb))); len(prev) != mb {
		t.Errorf("segment 4: %d bytes", len(prev))
	}
}
