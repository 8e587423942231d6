package staged

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

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

// TestPublishWithoutRenameNoReplace publishes where the file system cannot
// rename without replacing (Linux NFS: EINVAL), found out by Prepare.
func TestPublishWithoutRenameNoReplace(t *testing.T) {
	root := t.TempDir()
	nfs := func(from, to string) error { return unix.EINVAL }
	s, err := prepare(root, "x", nfs)
	if err != nil {
		t.Fatal(err)
	}
	if s.rename != nil {
		t.Fatal("the probe did not notice that rename without replace fails")
	}
	if err := s.Publish(&Manifest{Label: "x", Status: StatusComplete}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "x", ManifestFile)); err != nil {
		t.Fatal(err)
	}
	// The name is taken: the check under the lock refuses, as
	// RENAME_NOREPLACE would.
	s, err = prepare(root, "y", nfs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "y"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(&Manifest{Label: "y", Status: StatusComplete}); !errors.Is(err, ErrExists) {
		t.Fatalf("Publish over an existing directory = %v, want ErrExists", err)
	}
	if err := s.Discard(); err != nil {
		t.Fatal(err)
	}
}

// TestPublishedThoughSyncFailed: when the rename succeeded and the sync
// after it failed, the backup is where it was put, and says so.
func TestPublishedThoughSyncFailed(t *testing.T) {
	root := t.TempDir()
	s, err := Prepare(root, "x")
	if err != nil {
		t.Fatal(err)
	}
	s.syncDir = func(string) error { return errors.New("EIO") }
	err = s.Publish(&Manifest{Label: "x", Status: StatusComplete})
	if err == nil || !strings.Contains(err.Error(), "published "+filepath.Join(root, "x")+", but EIO") || !s.Published() {
		t.Fatalf("Publish = %v, Published %v", err, s.Published())
	}
	if err := s.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "x", ManifestFile)); err != nil {
		t.Errorf("Discard removed a published backup: %v", err)
	}
}

// TestPutSparse stages files whose zero blocks must become holes, while
// what is read back, the size and the hash stay those of the input.
func TestPutSparse(t *testing.T) {
	const seg = 16 << 20
	data := func(spans ...[2]int) []byte { // non-zero bytes at [from, to)
		b := make([]byte, seg)
		for _, s := range spans {
			for i := s[0]; i < s[1]; i++ {
				b[i] = byte(i%251 + 1)
			}
		}
		return b
	}
	for _, tt := range []struct {
		name      string
		in        []byte
		maxOnDisk int64 // bytes of blocks the file may occupy
	}{
		{"a segment after the stop's switch: one page, then zeros", data([2]int{0, 8192}), 64 << 10},
		{"all zeros", data(), 0},
		{"data across the 1 MiB read buffer, a hole, data at the end", data([2]int{1<<20 - 100, 1<<20 + 100}, [2]int{seg - 5, seg}), 64 << 10},
		{"a block with a single non-zero byte", data([2]int{3 * 4096, 3*4096 + 1}), 64 << 10},
		{"no zeros at all", data([2]int{0, seg}), seg + 1<<20},
		{"a short file, not block-aligned", []byte("backup_label\n"), 64 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "staging")
			s, err := Prepare(root, "sparse")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Discard()
			f, err := s.Put(context.Background(), "wal/f", bytes.NewReader(tt.in), int64(len(tt.in)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(tt.in); f.SHA256 != hex.EncodeToString(sum[:]) || f.Size != int64(len(tt.in)) {
				t.Errorf("recorded %+v, want the input's size and hash", f)
			}
			path := filepath.Join(s.TempDir(), "wal", "f")
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, tt.in) {
				t.Fatalf("read back %d bytes (%v), differing from the %d staged", len(got), err, len(tt.in))
			}
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil {
				t.Fatal(err)
			}
			if onDisk := st.Blocks * 512; onDisk > tt.maxOnDisk {
				t.Errorf("%d bytes on disk, want at most %d", onDisk, tt.maxOnDisk)
			}
		})
	}
}

// BenchmarkPut stages a 16 MiB segment: one full of WAL, and one that is a
// page of WAL and zeros, as after the stop's segment switch.
func BenchmarkPut(b *testing.B) {
	full, switched := make([]byte, 16<<20), make([]byte, 16<<20)
	for i := range full {
		full[i] = byte(i%251 + 1)
	}
	copy(switched, full[:8192])
	for _, bc := range []struct {
		name string
		data []byte
	}{{"full", full}, {"switched", switched}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Prepare(filepath.Join(b.TempDir(), "staging"), "bench")
			if err != nil {
				b.Fatal(err)
			}
			defer s.Discard()
			b.SetBytes(int64(len(bc.data)))
			n := 0
			for b.Loop() {
				n++
				if _, err := s.Put(context.Background(), fmt.Sprintf("wal/%d", n), bytes.NewReader(bc.data), int64(len(bc.data)), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
