package beneath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tree makes a directory with a file, a subdirectory, links in and out of
// it, a FIFO, and a victim file outside.
func tree(t *testing.T) (*Dir, string, string) {
	t.Helper()
	base := t.TempDir()
	root, victim := filepath.Join(base, "root"), filepath.Join(base, "victim")
	for _, d := range []string{root, filepath.Join(root, "sub"), filepath.Join(base, "outside")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(victim, []byte("victim"), 0o600))
	must(os.WriteFile(filepath.Join(base, "outside", "f"), []byte("outside"), 0o600))
	must(os.WriteFile(filepath.Join(root, "file"), []byte("data"), 0o600))
	must(os.WriteFile(filepath.Join(root, "sub", "file"), []byte("sub"), 0o600))
	must(os.Symlink(victim, filepath.Join(root, "out")))
	must(os.Symlink("file", filepath.Join(root, "in")))
	must(os.Symlink(filepath.Join(base, "outside"), filepath.Join(root, "outdir")))
	must(os.Symlink("sub", filepath.Join(root, "indir")))
	must(os.Symlink(filepath.Join(base, "nowhere"), filepath.Join(root, "dangling")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	d, err := Open(root)
	must(err)
	t.Cleanup(func() { d.Close() })
	return d, root, victim
}

func TestOpenRegular(t *testing.T) {
	d, _, _ := tree(t)
	tests := []struct {
		name string
		want string // "" for success
	}{
		{"file", ""},
		{"sub/file", ""},
		{"out", "symbolic link"},
		{"in", "symbolic link"},
		{"indir/file", "symbolic link"},
		{"outdir/f", "symbolic link"},
		{"../victim", "not a clean relative path"},
		{"sub/../file", "not a clean relative path"},
		{"/etc/passwd", "not a clean relative path"},
		{"", "not a clean relative path"},
		{"fifo", "a FIFO"},
		{"sub", "a directory"},
		{"missing", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				f, _, err := d.OpenRegular(tt.name)
				if err == nil {
					f.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
					t.Fatalf("OpenRegular(%q) = %v, want %q", tt.name, err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("OpenRegular(%q) blocked", tt.name)
			}
		})
	}
}

func TestReadFileLimit(t *testing.T) {
	d, _, _ := tree(t)
	if data, err := d.ReadFile("file", 4); err != nil || string(data) != "data" {
		t.Fatalf("ReadFile within the limit = %q, %v", data, err)
	}
	if _, err := d.ReadFile("file", 3); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadFile over the limit = %v, want ErrTooLarge", err)
	}
}

func TestCreateNeverFollows(t *testing.T) {
	d, root, victim := tree(t)
	for _, name := range []string{"out", "dangling", "outdir/new", "file"} {
		if f, err := d.Create(name, 0o600); err == nil {
			f.Close()
			t.Errorf("Create(%q) succeeded", name)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "nowhere")); !errors.Is(err, os.ErrNotExist) {
		t.Error("Create followed a dangling link")
	}
	if data, _ := os.ReadFile(victim); string(data) != "victim" {
		t.Errorf("victim changed: %q", data)
	}
}

func TestEmptyRemovesLinksNotTargets(t *testing.T) {
	d, root, victim := tree(t)
	if err := d.Empty(".", "file"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 || entries[0].Name() != "file" {
		t.Errorf("left %v, want only the kept file", entries)
	}
	if data, _ := os.ReadFile(victim); string(data) != "victim" {
		t.Errorf("victim changed: %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(filepath.Dir(root), "outside", "f")); string(data) != "outside" {
		t.Error("Empty emptied a directory a link points to")
	}
}

func TestLinks(t *testing.T) {
	d, _, victim := tree(t)
	if fi, err := d.Lstat("out"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("Lstat(out) = %v, %v", fi, err)
	}
	if got, err := d.Readlink("out"); err != nil || got != victim {
		t.Fatalf("Readlink(out) = %q, %v", got, err)
	}
	if err := d.Remove("out"); err != nil {
		t.Fatal(err)
	}
	if err := d.Symlink("/x", "sub/link"); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Readlink("sub/link"); got != "/x" {
		t.Fatalf("Readlink(sub/link) = %q", got)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("Remove of a link removed its target: %v", err)
	}
}

func TestCheckPrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test gives directories to another user: run it as root (see README, Development)")
	}
	base := t.TempDir()
	mk := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const other = 65534
	tests := []struct {
		name, dir, want string
	}{
		{"own", mk("own", 0o700, 0), ""},
		{"own, readable", mk("readable", 0o755, 0), ""},
		{"another user's", mk("theirs", 0o700, other), "chown 0"},
		{"world-writable", mk("open", 0o777, 0), "chmod go-w"},
		{"sticky but world-writable", mk("sticky", os.ModeSticky|0o777, 0), "chmod go-w"},
		{"group-writable", mk("group", 0o770, 0), "chmod go-w"},
		{"under a world-writable parent", filepath.Join(mk("openparent", 0o777, 0), "x"), "above"},
		{"under a sticky parent", filepath.Join(mk("tmp", os.ModeSticky|0o777, 0), "x"), ""},
		{"under another user's parent", filepath.Join(mk("theirparent", 0o755, other), "x"), "owned by uid 65534"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if filepath.Base(tt.dir) == "x" {
				if err := os.Mkdir(tt.dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			_, err := CheckPrivate(tt.dir)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckPrivate(%s) = %v, want %q", tt.dir, err, tt.want)
			}
		})
	}
}
