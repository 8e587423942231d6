package volume

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseMountInfo(t *testing.T) {
	in := `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
90 27 0:55 /pgdata /srv/pg\040data rw,relatime shared:40 master:3 - btrfs /dev/loop0 rw,space_cache=v2
`
	got, err := ParseMountInfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{Point: "/proc", Device: "0:21", FSType: "proc", Source: "proc"},
		{Point: "/", Device: "259:2", FSType: "ext4", Source: "/dev/nvme0n1p2"},
		{Point: "/srv/pg data", Device: "0:55", FSType: "btrfs", Source: "/dev/loop0"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mounts: %+v", len(got), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := ParseMountInfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("a malformed line was accepted")
	}
}

func TestLocate(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	wal := filepath.Join(root, "walvol", "wal")
	for _, d := range []string{data, wal} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// pg_wal is a link to another "volume", as initdb --waldir makes it.
	if err := os.Symlink(wal, filepath.Join(data, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	mounts := []Mount{{Point: "/", Device: "8:1"}, {Point: filepath.Join(root, "walvol"), Device: "8:2"}, {Point: root + "v", Device: "8:3"}}
	places, err := Locate([][2]string{{"data_directory", data}, {"pg_wal", filepath.Join(data, "pg_wal")}}, mounts)
	if err != nil {
		t.Fatal(err)
	}
	if places[0].Mount.Device != "8:1" || places[1].Mount.Device != "8:2" || places[1].Real != wal {
		t.Fatalf("places %+v", places)
	}
	if got := MountPoints(places); len(got) != 2 || got[1] != filepath.Join(root, "walvol") {
		t.Errorf("MountPoints = %v", got)
	}
	if Units(places) != 2 {
		t.Errorf("Units = %d", Units(places))
	}
	if _, err := Locate([][2]string{{"tablespace gone", filepath.Join(root, "nope")}}, mounts); err == nil || !strings.Contains(err.Error(), "tablespace gone") {
		t.Errorf("a missing path: %v", err)
	}
}

func TestUncovered(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, wal := filepath.Join(root, "data"), filepath.Join(root, "walvol", "wal")
	places := make([]Place, 0, 3)
	for role, path := range map[string]string{"data_directory": data, "pg_wal": wal} {
		if err := os.MkdirAll(path, 0o700); err != nil {
			t.Fatal(err)
		}
		d, err := dev(path)
		if err != nil {
			t.Fatal(err)
		}
		places = append(places, Place{Role: role, Real: path, Dev: d})
	}
	// Under the data directory's path, but another file system or subvolume.
	places = append(places, Place{Role: "tablespace nested", Real: filepath.Join(data, "ts"), Dev: "999:999"})
	tests := []struct {
		covers []string
		want   []string // uncovered roles
	}{
		{[]string{root}, []string{"tablespace nested"}},
		{[]string{data}, []string{"pg_wal", "tablespace nested"}},
		{[]string{data, filepath.Join(root, "walvol")}, []string{"tablespace nested"}},
		{[]string{filepath.Join(root, "walvol", "wal", "..", "..", "data")}, []string{"pg_wal", "tablespace nested"}},
		{nil, []string{"data_directory", "pg_wal", "tablespace nested"}},
	}
	for _, tt := range tests {
		got, err := Uncovered(places, tt.covers)
		if err != nil {
			t.Fatal(err)
		}
		var roles []string
		for _, p := range got {
			roles = append(roles, p.Role)
		}
		slices.Sort(roles)
		if !slices.Equal(roles, tt.want) {
			t.Errorf("Uncovered(%q) = %q, want %q", tt.covers, roles, tt.want)
		}
	}
	if _, err := Uncovered(places, []string{filepath.Join(root, "missing")}); err == nil {
		t.Error("a missing --covers path was accepted")
	}
}
