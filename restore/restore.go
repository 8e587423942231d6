// Package restore turns a data directory recovered from a snapshot into one
// that PostgreSQL recovers to a consistent state, using the staged label,
// tablespace map and WAL of the same backup.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// Options describe one restore.
type Options struct {
	Staged string // the staged backup directory
	PGData string // the data directory recovered from the snapshot
	// WALDir receives the WAL when the target's pg_wal is a link to
	// another volume: the link still points at the original cluster's WAL
	// directory, which a restore must never empty, so WALDir is then
	// required and pg_wal is linked to it.
	WALDir string
	// TablespaceMapping relocates tablespaces: a tablespace_map location
	// OLD becomes NEW, like pg_basebackup --tablespace-mapping OLD=NEW.
	// PostgreSQL re-creates the pg_tblspc links from the map.
	TablespaceMapping [][2]string
	// Target is where recovery stops: "immediate" (the end of the backup,
	// the default), "latest", a timestamp or an LSN.
	Target string
	// RestoreCommand fetches WAL from an archive; required to recover past
	// the staged WAL or when none was staged.
	RestoreCommand string
	// Force accepts a target whose system identifier differs from the
	// backup's or that already holds a backup_label.
	Force bool
}

// ErrRefused marks a restore refused before anything in the target changed.
var ErrRefused = errors.New("restore refused")

// ValidateTarget checks a --target value.
func ValidateTarget(target string) error {
	_, err := recoveryTarget(target)
	return err
}

// recoveryTarget renders Target as recovery settings.
func recoveryTarget(target string) ([]string, error) {
	switch target {
	case "", "immediate":
		return []string{"recovery_target = 'immediate'"}, nil
	case "latest":
		return nil, nil
	}
	if _, err := pgformat.ParseLSN(target); err == nil {
		return []string{"recovery_target_lsn = '" + target + "'"}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05 MST", "2006-01-02 15:04:05"} {
		if _, err := time.Parse(layout, target); err == nil {
			return []string{"recovery_target_time = '" + target + "'"}, nil
		}
	}
	return nil, fmt.Errorf("--target %q: want immediate, latest, an LSN (0/3000028) or a time (2026-11-25 08:00:00+00)", target)
}

// Check refuses a restore that would be wrong or unsafe, before anything in
// the target is changed, and returns the verified manifest. Its errors wrap
// ErrRefused.
func Check(ctx context.Context, o Options) (*staged.Manifest, error) {
	m, err := check(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return m, nil
}

func check(ctx context.Context, o Options) (*staged.Manifest, error) {
	if _, err := recoveryTarget(o.Target); err != nil {
		return nil, err
	}
	v := staged.Verify(ctx, o.Staged)
	if len(v.Problems) > 0 {
		return nil, fmt.Errorf("staged backup %s is not usable (pgfbb-wrap verify lists why): %s", o.Staged, strings.Join(v.Problems, "; "))
	}
	m := v.Manifest
	if m.WALMode != staged.WALCopy && o.RestoreCommand == "" {
		return nil, fmt.Errorf("backup %s has no staged WAL: give --restore-command to fetch %s..%s from your archive", m.Label, m.StartWAL, m.StopWAL)
	}
	if o.Target != "" && o.Target != "immediate" && o.RestoreCommand == "" {
		return nil, fmt.Errorf("--target %s needs WAL past the backup: give --restore-command", o.Target)
	}
	if endsAtWALEnd(o, m) && o.RestoreCommand != "" {
		return nil, fmt.Errorf("backup %s is from a standby: --target immediate replays its staged WAL to the end, "+
			"and with --restore-command that would be the whole archive; give an LSN or time target instead", m.Label)
	}
	if err := checkWALDir(o); err != nil {
		return nil, err
	}
	spcmap, err := tablespaceMap(o)
	if err != nil {
		return nil, err
	}
	if err := checkInUse(o, spcmap); err != nil {
		return nil, err
	}
	version, err := os.ReadFile(filepath.Join(o.PGData, "PG_VERSION"))
	if err != nil {
		return nil, fmt.Errorf("target is not a data directory: %w", err)
	}
	if got, want := strings.TrimSpace(string(version)), strconv.Itoa(pgformat.MajorOf(m.ServerVersionNum)); got != want {
		return nil, fmt.Errorf("target is a PostgreSQL %s data directory, the backup is of PostgreSQL %s", got, want)
	}
	if pid := runningPostmaster(o.PGData); pid != 0 {
		return nil, fmt.Errorf("a postmaster (pid %d) is running on %s: stop it first", pid, o.PGData)
	}
	var problems []string
	if id, err := pgformat.ControlSystemID(o.PGData); err != nil {
		return nil, err
	} else if strconv.FormatUint(id, 10) != m.SystemIdentifier {
		problems = append(problems, fmt.Sprintf("target belongs to cluster %d, the backup to %s (--force to restore anyway)", id, m.SystemIdentifier))
	}
	if _, err := os.Stat(filepath.Join(o.PGData, staged.LabelFile)); err == nil {
		problems = append(problems, "target already holds a backup_label (--force to replace it)")
	}
	if len(problems) > 0 && !o.Force {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return m, nil
}

// runningPostmaster returns the pid in postmaster.pid when that process is
// alive and its working directory is pgdata. A snapshot taken from a running
// server carries a stale postmaster.pid whose pid may be alive on this host,
// serving the original data directory.
func runningPostmaster(pgdata string) int {
	data, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return 0
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return 0
	}
	abs, _ := filepath.Abs(pgdata)
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if cwd == abs {
		return pid
	}
	return 0
}

// Prepare checks the restore and then lays it out in the target: label and
// map in place, no postmaster.pid, pg_wal emptied and filled with the staged
// WAL, and the recovery settings the target's version reads. Files it writes
// belong to the owner of the data directory.
func Prepare(ctx context.Context, o Options) (*staged.Manifest, error) {
	m, err := Check(ctx, o)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(o.PGData)
	if err != nil {
		return nil, err
	}
	owner := fi.Sys().(*syscall.Stat_t)
	place := func(src, dst string) error { return copyOwned(src, dst, owner) }

	for _, f := range []string{"postmaster.pid", "postmaster.opts", "recovery.signal", "standby.signal", "recovery.conf", staged.LabelFile, staged.MapFile} {
		if err := os.Remove(filepath.Join(o.PGData, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if err := place(filepath.Join(o.Staged, staged.LabelFile), filepath.Join(o.PGData, staged.LabelFile)); err != nil {
		return nil, err
	}
	if ts, err := tablespaceMap(o); err != nil {
		return nil, err
	} else if ts != nil {
		if err := writeOwned(filepath.Join(o.PGData, staged.MapFile), string(pgformat.FormatTablespaceMap(ts)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, owner); err != nil {
			return nil, err
		}
	}
	walDir := filepath.Join(o.PGData, "pg_wal")
	if o.WALDir != "" {
		if walDir, err = relinkWAL(o, owner); err != nil {
			return nil, err
		}
	}
	if err := emptyWAL(walDir); err != nil {
		return nil, err
	}
	if m.WALMode == staged.WALCopy {
		list, err := staged.WALList(o.Staged)
		if err != nil {
			return nil, err
		}
		for _, name := range list {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := place(filepath.Join(o.Staged, staged.WALDir, name), filepath.Join(walDir, name)); err != nil {
				return nil, err
			}
		}
	}
	return m, writeRecovery(o, m, owner)
}

// checkWALDir refuses to touch a pg_wal that links out of the target
// unless --wal-dir says where the restored WAL goes instead.
func checkWALDir(o Options) error {
	link := filepath.Join(o.PGData, "pg_wal")
	fi, err := os.Lstat(link)
	if err != nil {
		return fmt.Errorf("target has no pg_wal: %w", err)
	}
	isLink := fi.Mode()&os.ModeSymlink != 0
	switch {
	case isLink && o.WALDir == "":
		dest, _ := os.Readlink(link)
		return fmt.Errorf("the target's pg_wal is a link to %s, most likely the original cluster's WAL directory, which a restore "+
			"never empties: restore that volume's snapshot somewhere and give --wal-dir DIR; pg_wal is then linked to DIR", dest)
	case !isLink && o.WALDir != "":
		return errors.New("--wal-dir is for a target whose pg_wal is a link to another volume; this one's is a directory")
	case o.WALDir != "":
		if fi, err := os.Stat(o.WALDir); err != nil || !fi.IsDir() {
			return fmt.Errorf("--wal-dir %s: not a directory (%v)", o.WALDir, err)
		}
	}
	return nil
}

// checkInUse refuses a WAL directory or tablespace location that a running
// server uses: restoring "in place" while the original cluster still runs
// would let two servers write to one directory.
func checkInUse(o Options, ts []pgformat.Tablespace) error {
	used := map[string]string{} // real path -> the running data directory using it
	for _, dir := range runningDataDirs() {
		used[dir] = dir
		links, _ := filepath.Glob(filepath.Join(dir, "pg_tblspc", "*"))
		for _, l := range append(links, filepath.Join(dir, "pg_wal")) {
			if real, err := filepath.EvalSymlinks(l); err == nil {
				used[real] = dir
			}
		}
	}
	var mine []string
	if o.WALDir != "" {
		mine = append(mine, o.WALDir)
	}
	for _, t := range ts {
		mine = append(mine, t.Location)
	}
	for _, p := range mine {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		if dir, ok := used[real]; ok {
			return fmt.Errorf("%s is in use by the server running on %s: stop it, or restore elsewhere (--tablespace-mapping, --wal-dir)", p, dir)
		}
	}
	return nil
}

// runningDataDirs lists the data directories of running servers on this
// host: a server process's working directory is its data directory.
func runningDataDirs() []string {
	var dirs []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, p := range procs {
		cwd, err := os.Readlink(p)
		if err != nil || slices.Contains(dirs, cwd) {
			continue
		}
		if _, err := os.Stat(filepath.Join(cwd, "postmaster.pid")); err == nil && runningPostmaster(cwd) != 0 {
			dirs = append(dirs, cwd)
		}
	}
	return dirs
}

// relinkWAL points the target's pg_wal at --wal-dir and returns that.
func relinkWAL(o Options, owner *syscall.Stat_t) (string, error) {
	dir, err := filepath.Abs(o.WALDir)
	if err != nil {
		return "", err
	}
	link := filepath.Join(o.PGData, "pg_wal")
	if cur, _ := os.Readlink(link); cur == dir {
		return dir, nil
	}
	if err := os.Remove(link); err != nil {
		return "", fmt.Errorf("re-link pg_wal: %w", err)
	}
	if err := os.Symlink(dir, link); err != nil {
		return "", fmt.Errorf("re-link pg_wal: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(link, int(owner.Uid), int(owner.Gid)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// tablespaceMap returns the staged tablespace_map with --tablespace-mapping
// applied, nil when the backup has none. Each mapping must match a
// tablespace, and every location the map ends up with must exist: that is
// where the tablespace's snapshot has to be restored.
func tablespaceMap(o Options) ([]pgformat.Tablespace, error) {
	ts, ok, err := staged.ReadTablespaceMap(o.Staged)
	if err != nil {
		return nil, err
	}
	if !ok {
		if len(o.TablespaceMapping) > 0 {
			return nil, errors.New("--tablespace-mapping given, but the backup has no tablespace_map")
		}
		return nil, nil
	}
	for _, m := range o.TablespaceMapping {
		found := false
		for i := range ts {
			if ts[i].Location == m[0] {
				ts[i].Location, found = m[1], true
			}
		}
		if !found {
			return nil, fmt.Errorf("--tablespace-mapping %s=%s: no tablespace of the backup is at %s", m[0], m[1], m[0])
		}
	}
	var missing []string
	for _, t := range ts {
		if fi, err := os.Stat(t.Location); err != nil || !fi.IsDir() {
			missing = append(missing, fmt.Sprintf("tablespace %d at %s", t.OID, t.Location))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: not a directory; restore each tablespace's snapshot there, or elsewhere with --tablespace-mapping OLD=NEW",
			strings.Join(missing, ", "))
	}
	return ts, nil
}

// emptyWAL removes everything from pg_wal but the archive_status directory,
// which it empties: WAL the snapshot caught mid-write must not be replayed.
func emptyWAL(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("empty WAL directory: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.Name() == "archive_status" {
			status, _ := os.ReadDir(p)
			for _, s := range status {
				os.Remove(filepath.Join(p, s.Name()))
			}
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("empty WAL directory: %w", err)
		}
	}
	return nil
}

// endsAtWALEnd tells whether the immediate target is reached by replaying
// the staged WAL to its end rather than by recovery_target = 'immediate'.
// That target stops before the first record after consistency, so it needs
// one more record; a primary's backup has it (the WAL switch after its end
// record), a standby's may not: it cannot write WAL, and its last record may
// be exactly where the backup ends. Its staged WAL ends just past the
// backup's end anyway.
func endsAtWALEnd(o Options, m *staged.Manifest) bool {
	return (o.Target == "" || o.Target == "immediate") && m.BackupFrom == staged.FromStandby
}

// writeRecovery writes recovery.conf (10, 11) or recovery.signal plus
// settings appended to postgresql.auto.conf (12+), which override earlier
// lines of the same name.
func writeRecovery(o Options, m *staged.Manifest, owner *syscall.Stat_t) error {
	major, _ := pgformat.LookupMajor(pgformat.MajorOf(m.ServerVersionNum))
	target, _ := recoveryTarget(o.Target)
	if endsAtWALEnd(o, m) {
		target = nil
	}
	cmd := o.RestoreCommand
	if cmd == "" {
		cmd = "false" // the WAL is in pg_wal; archive recovery still wants a command
	}
	lines := append([]string{
		"# written by pgfbb-wrap restore at " + time.Now().UTC().Format(time.RFC3339),
		"restore_command = '" + strings.ReplaceAll(cmd, "'", "''") + "'",
	}, target...)
	lines = append(lines, "recovery_target_action = 'promote'")
	text := strings.Join(lines, "\n") + "\n"
	if major.RecoveryConf {
		return writeOwned(filepath.Join(o.PGData, "recovery.conf"), text, os.O_CREATE|os.O_EXCL|os.O_WRONLY, owner)
	}
	if err := writeOwned(filepath.Join(o.PGData, "recovery.signal"), "", os.O_CREATE|os.O_EXCL|os.O_WRONLY, owner); err != nil {
		return err
	}
	return writeOwned(filepath.Join(o.PGData, "postgresql.auto.conf"), "\n"+text, os.O_CREATE|os.O_APPEND|os.O_WRONLY, owner)
}

func writeOwned(path, text string, flag int, owner *syscall.Stat_t) error {
	return writeFrom(path, strings.NewReader(text), flag, owner)
}

func copyOwned(src, dst string, owner *syscall.Stat_t) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := writeFrom(dst, in, os.O_CREATE|os.O_EXCL|os.O_WRONLY, owner); err != nil {
		return fmt.Errorf("place %s: %w", filepath.Base(dst), err)
	}
	return nil
}

// writeFrom writes r to path durably and gives it to the data directory's owner.
func writeFrom(path string, r io.Reader, flag int, owner *syscall.Stat_t) error {
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = chown(path, owner)
	}
	return err
}

// chown gives path to the data directory's owner; only root can, and only
// root needs to.
func chown(path string, owner *syscall.Stat_t) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(path, int(owner.Uid), int(owner.Gid))
}
