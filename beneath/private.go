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
// error says the chown or chmod that fixes it.
func CheckPrivate(dir string) error {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return err
	}
	euid := os.Geteuid()
	for p, top := abs, true; ; p, top = filepath.Dir(p), false {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", p)
		}
		uid := int(fi.Sys().(*syscall.Stat_t).Uid)
		mode := fi.Mode()
		switch {
		case top && uid != euid:
			return fmt.Errorf("%s is owned by uid %d, not by this process's user (uid %d), who could not trust what it finds there: "+
				"chown %d %s, or use a directory of your own", p, uid, euid, euid, p)
		case top && mode.Perm()&0o022 != 0:
			return fmt.Errorf("%s is writable by group or others (mode %04o), who could change backups in it: chmod go-w %s", p, mode.Perm(), p)
		case !top && uid != euid && uid != 0:
			return fmt.Errorf("%s, above %s, is owned by uid %d, who could move it away: use a directory whose parents belong to you or root",
				p, abs, uid)
		case !top && mode.Perm()&0o022 != 0 && mode&os.ModeSticky == 0:
			return fmt.Errorf("%s, above %s, is writable by group or others (mode %04o), who could move it away: chmod go-w %s (or +t)",
				p, abs, mode.Perm(), p)
		}
		if p == "/" {
			return nil
		}
	}
}
