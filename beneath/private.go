package beneath

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// CheckPrivate refuses a directory that someone other than this process's
// user could change under it, as OpenSSH's StrictModes refuses a key file:
// the directory must be owned by the effective user and not writable by
// group or others, and every directory above it owned by that user or
// root and writable by others only with the sticky bit (as /tmp is). The
// error says the chown or chmod that fixes it. It returns the directory's
// path with every link resolved: use that, not dir, from then on, since a
// link on the way may belong to someone else.
func CheckPrivate(dir string) (string, error) {
	abs, err := resolve(dir)
	if err != nil {
		return "", err
	}
	if err := check(abs, true); err != nil {
		return "", err
	}
	return abs, CheckAncestors(abs)
}

// CheckAncestors refuses a path whose parent directories someone other
// than this process's user or root could change (see CheckPrivate); call
// it before creating the directory path names.
func CheckAncestors(path string) error {
	abs, err := resolve(filepath.Dir(path))
	if err != nil {
		return err
	}
	for p := abs; ; p = filepath.Dir(p) {
		if err := check(p, false); err != nil {
			return fmt.Errorf("%w (above %s)", err, path)
		}
		if p == "/" {
			return nil
		}
	}
}

func resolve(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// check checks the directory p: the one to use (top) or one above it.
func check(p string, top bool) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", p)
	}
	uid, euid := int(fi.Sys().(*syscall.Stat_t).Uid), os.Geteuid()
	mode := fi.Mode()
	switch {
	case top && uid != euid:
		return fmt.Errorf("%s is owned by uid %d, not by this process's user (uid %d), who could not trust what it finds there: "+
			"chown %d %s, or use a directory of your own", p, uid, euid, euid, p)
	case top && mode.Perm()&0o022 != 0:
		return fmt.Errorf("%s is writable by group or others (mode %04o), who could change backups in it: chmod go-w %s", p, mode.Perm(), p)
	case !top && uid != euid && uid != 0:
		return fmt.Errorf("%s is owned by uid %d, who could move what is in it away: use a directory whose parents belong to you or root", p, uid)
	case !top && mode.Perm()&0o022 != 0 && mode&os.ModeSticky == 0:
		return fmt.Errorf("%s is writable by group or others (mode %04o), who could move what is in it away: chmod go-w %s (or +t)",
			p, mode.Perm(), p)
	}
	return nil
}
