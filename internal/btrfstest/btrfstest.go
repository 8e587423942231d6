// Package btrfstest gives tests a real btrfs file system on a loop device,
// so that snapshots in tests are the snapshots users take.
package btrfstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FS is a mounted btrfs file system backed by an image file.
type FS struct {
	Image string
	Mount string
}

// New creates a size-byte image (sparse), formats and loop-mounts it, and
// unmounts and removes it when the test ends, also when the test fails. It
// needs root and btrfs-progs, and fails the test saying so when they are
// missing.
func New(t testing.TB, size int64) *FS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("btrfs snapshot tests need root to mount a loop device: run scripts/test.sh as root")
	}
	for _, tool := range []string{"mkfs.btrfs", "btrfs", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install btrfs-progs (scripts/test.sh does)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "pgfbb-btrfs-")
	if err != nil {
		t.Fatal(err)
	}
	fs := &FS{Image: filepath.Join(dir, "fs.img"), Mount: filepath.Join(dir, "mnt")}
	t.Cleanup(func() { fs.remove(t, dir) })
	// The server's OS user must reach data directories below the mount.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(fs.Mount, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(fs.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "mkfs.btrfs", "-q", fs.Image)
	// -o loop sets up the loop device with autoclear: umount frees it.
	run(t, "mount", "-o", "loop", fs.Image, fs.Mount)
	if err := os.Chmod(fs.Mount, 0o755); err != nil {
		t.Fatal(err)
	}
	return fs
}

func (fs *FS) remove(t testing.TB, dir string) {
	// A server or a child still holding files open keeps the mount busy for
	// a moment after it was told to stop.
	var out []byte
	var err error
	for i := 0; i < 50; i++ {
		if out, err = exec.Command("umount", fs.Mount).CombinedOutput(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("umount %s: %v %s; detaching lazily", fs.Mount, err, out)
		exec.Command("umount", "-l", fs.Mount).Run()
	}
	os.RemoveAll(dir)
}

// Subvolume creates a subvolume at path (relative to the mount).
func (fs *FS) Subvolume(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(fs.Mount, rel)
	run(t, "btrfs", "subvolume", "create", p)
	return p
}

// Snapshot snapshots src to dst, read-only or writable.
func Snapshot(t testing.TB, src, dst string, readOnly bool) {
	t.Helper()
	args := []string{"subvolume", "snapshot"}
	if readOnly {
		args = append(args, "-r")
	}
	run(t, "btrfs", append(args, src, dst)...)
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Delete deletes the subvolume or snapshot at path.
func Delete(t testing.TB, path string) {
	t.Helper()
	run(t, "btrfs", "subvolume", "delete", path)
}

// Rollback replaces the subvolume at path with a writable snapshot of
// snapshot: a volume restored from its snapshot, in place.
func Rollback(t testing.TB, snapshot, path string) {
	t.Helper()
	Delete(t, path)
	Snapshot(t, snapshot, path, false)
}
