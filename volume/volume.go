// Package volume finds the file systems a cluster's files live on, so that
// a DBA and the snapshot command know every volume a snapshot must cover:
// the data directory, pg_wal (often a link to its own volume) and each
// tablespace.
package volume

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	Point  string `json:"mount_point"`
	Device string `json:"device"` // major:minor
	FSType string `json:"fstype"`
	Source string `json:"source"`
}

// ParseMountInfo reads the mountinfo format of proc(5). Mount points come
// with spaces and other bytes escaped as octal, which is undone.
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var mounts []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 6 || len(fields) < sep+3 {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		mounts = append(mounts, Mount{Point: unescape(fields[4]), Device: fields[2], FSType: fields[sep+1], Source: unescape(fields[sep+2])})
	}
	return mounts, sc.Err()
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// Place is where one of the cluster's directories lives.
type Place struct {
	Role string `json:"role"` // data_directory, pg_wal, tablespace NAME
	Path string `json:"path"` // as PostgreSQL knows it
	Real string `json:"real"` // with every link resolved
	// Dev is the st_dev of Real. It tells btrfs subvolumes apart, which
	// share a mount but are snapshotted one by one.
	Dev   string `json:"st_dev"`
	Mount Mount  `json:"mount"`
}

// Locate resolves each path (role to path) to its real path, st_dev and the
// mount that holds it: the mount whose point is the longest prefix of the
// real path. mounts is the content of /proc/self/mountinfo.
func Locate(paths [][2]string, mounts []Mount) ([]Place, error) {
	var places []Place
	var errs []error
	for _, rp := range paths {
		p := Place{Role: rp[0], Path: rp[1]}
		real, err := filepath.EvalSymlinks(rp[1])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", rp[0], rp[1], err))
			continue
		}
		p.Real = real
		if p.Dev, err = dev(real); err != nil {
			errs = append(errs, fmt.Errorf("%s %w", rp[0], err))
			continue
		}
		best := -1
		for i, m := range mounts {
			if within(real, m.Point) && (best < 0 || len(m.Point) >= len(mounts[best].Point)) {
				best = i // later lines mount over earlier ones
			}
		}
		if best < 0 {
			errs = append(errs, fmt.Errorf("%s %s: no mount holds it", rp[0], real))
			continue
		}
		p.Mount = mounts[best]
		places = append(places, p)
	}
	return places, errors.Join(errs...)
}

func dev(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)), nil
}

// Uncovered lists the places that none of covers holds. A path holds a
// place under it on the same st_dev only: a snapshot of a file system, a
// btrfs subvolume or a ZFS dataset stops at the mounts, subvolumes and
// datasets nested in it.
func Uncovered(places []Place, covers []string) ([]Place, error) {
	type root struct{ real, dev string }
	var roots []root
	for _, c := range covers {
		real, err := filepath.EvalSymlinks(c)
		if err != nil {
			return nil, err
		}
		d, err := dev(real)
		if err != nil {
			return nil, err
		}
		roots = append(roots, root{real, d})
	}
	var out []Place
	for _, p := range places {
		if !slices.ContainsFunc(roots, func(r root) bool { return r.dev == p.Dev && within(p.Real, r.real) }) {
			out = append(out, p)
		}
	}
	return out, nil
}

func within(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// MountPoints lists the distinct mount points of places, in order.
func MountPoints(places []Place) []string {
	var points []string
	for _, p := range places {
		if !slices.Contains(points, p.Mount.Point) {
			points = append(points, p.Mount.Point)
		}
	}
	return points
}

// Units counts what separate snapshots must cover: distinct file systems,
// and on btrfs distinct subvolumes (distinct st_dev under one mount).
func Units(places []Place) int {
	var seen []string
	for _, p := range places {
		if k := p.Mount.Point + " " + p.Dev; !slices.Contains(seen, k) {
			seen = append(seen, k)
		}
	}
	return len(seen)
}

// ReadMounts reads this process's mount table.
func ReadMounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountInfo(f)
}
