// Package restore turns a data directory recovered from a snapshot into one
// that PostgreSQL recovers to a consistent state, using the staged label,
// tablespace map and WAL of the same backup.
//
// Neither the target nor the staged backup is trusted: the target was
// written by the database's OS user, the staged backup by whoever can
// write the staging area. Every check runs before anything is written, so
// a refused restore leaves the target as it was; files in the target are
// opened beneath it without following links (pg_wal is replaced only by a
// link to the --wal-dir the user named); names and sizes read from the
// backup are validated before use.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/pgfbb/pgfbb-wrap/beneath"
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
	// required and pg_wal is linked to it. It must be empty or hold WAL
	// of the same cluster.
	WALDir string
	// TablespaceMapping relocates tablespaces: a tablespace_map location
	// OLD becomes NEW, like pg_basebackup --tablespace-mapping OLD=NEW.
	// PostgreSQL re-creates the pg_tblspc links from the map.
	TablespaceMapping [][2]string
	// Target is where recovery stops and what the server does there; the
	// zero value stops at the end of the backup and promotes.
	Target Target
	// RestoreCommand fetches WAL from an archive; required to recover past
	// the staged WAL or when none was staged.
	RestoreCommand string
	// Force accepts a target whose system identifier differs from the
	// backup's or that already holds a backup_label, and a --wal-dir that
	// holds other files.
	Force bool
}

// ErrRefused marks a restore refused before anything in the target changed.
var ErrRefused = errors.New("restore refused")

// Validate checks the options' own values, before any file is read.
func (o Options) Validate() error {
	if err := o.Target.check(); err != nil {
		return err
	}
	if i := strings.IndexFunc(o.RestoreCommand, unicode.IsControl); i >= 0 {
		return fmt.Errorf("--restore-command holds the control character %q: it would break the recovery configuration", o.RestoreCommand[i])
	}
	for _, m := range o.TablespaceMapping {
		for _, p := range m {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				return fmt.Errorf("--tablespace-mapping %s=%s: want clean absolute paths", m[0], m[1])
			}
		}
	}
	return nil
}

// postgresql.auto.conf, which takes the recovery settings from 12 on, and
// the most of it restore reads.
const (
	autoConf    = "postgresql.auto.conf"
	maxAutoConf = 16 << 20
)

// Files PostgreSQL would misread in a restored data directory: a server's
// run files and earlier recovery or backup state.
var stale = []string{"postmaster.pid", "postmaster.opts", "recovery.signal", "standby.signal", "recovery.conf", staged.LabelFile, staged.MapFile}

// plan is a checked restore: what Prepare writes, all decided before it
// writes anything.
type plan struct {
	o           Options
	backup      *staged.Backup
	m           *staged.Manifest
	pgdata      *beneath.Dir
	uid, gid    int // the data directory's owner, who gets every file written
	major       pgformat.Major
	label       []byte
	tablespaces []pgformat.Tablespace // nil: no tablespace_map
	walDir      *beneath.Dir          // pg_wal, or --wal-dir
	walFiles    []string
	autoConf    bool // postgresql.auto.conf exists
}

func (p *plan) close() {
	for _, d := range []*beneath.Dir{p.walDir, p.pgdata} {
		if d != nil {
			d.Close()
		}
	}
	if p.backup != nil {
		p.backup.Close()
	}
}

// Check refuses a restore that would be wrong or unsafe, before anything in
// the target is changed, and returns the verified manifest. Its errors wrap
// ErrRefused, but for an interruption.
func Check(ctx context.Context, o Options) (*staged.Manifest, error) {
	p, err := check(ctx, o)
	if err != nil {
		return nil, err
	}
	p.close()
	return p.m, nil
}

func check(ctx context.Context, o Options) (*plan, error) {
	p := &plan{o: o}
	err := p.check(ctx)
	if err == nil {
		return p, nil
	}
	p.close()
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	return nil, fmt.Errorf("%w: %w", ErrRefused, err)
}

func (p *plan) check(ctx context.Context) error {
	o := p.o
	if err := o.Validate(); err != nil {
		return err
	}
	var err error
	if p.backup, err = staged.Open(o.Staged); err != nil {
		return fmt.Errorf("staged backup %s is not usable (pgfbb-wrap verify lists why): %w", o.Staged, err)
	}
	v, err := p.backup.Verify(ctx)
	if err != nil {
		return err
	}
	if len(v.Problems) > 0 {
		return fmt.Errorf("staged backup %s is not usable (pgfbb-wrap verify lists why): %s", o.Staged, strings.Join(v.Problems, "; "))
	}
	m := v.Manifest
	p.m = m
	p.major, _ = pgformat.LookupMajor(pgformat.MajorOf(m.ServerVersionNum))
	if m.WALMode != staged.WALCopy && o.RestoreCommand == "" {
		return fmt.Errorf("backup %s has no staged WAL: give --restore-command to fetch %s..%s from your archive", m.Label, m.StartWAL, m.StopWAL)
	}
	if o.Target.NeedsArchive() && o.RestoreCommand == "" {
		return fmt.Errorf("recovery that %s needs WAL past the backup: give --restore-command", o.Target)
	}
	if endsAtWALEnd(o, m) && o.RestoreCommand != "" {
		return fmt.Errorf("backup %s is from a standby: --target immediate replays its staged WAL to the end, "+
			"and with --restore-command that would be the whole archive; give an LSN or time target instead", m.Label)
	}
	if err := o.Target.checkAfter(m); err != nil {
		return err
	}
	if p.label, err = p.backup.ReadFile(ctx, staged.LabelFile); err != nil {
		return err
	}
	if m.WALMode == staged.WALCopy {
		if p.walFiles, err = p.backup.WALList(ctx); err != nil {
			return err
		}
	}
	if err := p.checkTarget(); err != nil {
		return err
	}
	if err := p.checkWALDir(); err != nil {
		return err
	}
	if p.tablespaces, err = tablespaceMap(ctx, p.backup, o); err != nil {
		return err
	}
	return p.checkInUse()
}

// checkTarget checks the data directory and every file in it that the
// restore will replace or write.
func (p *plan) checkTarget() error {
	o, m := p.o, p.m
	var err error
	if p.pgdata, err = beneath.Open(o.PGData); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	fi, err := p.pgdata.Stat()
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	p.uid, p.gid = int(st.Uid), int(st.Gid)
	version, err := p.pgdata.ReadFile("PG_VERSION", 64)
	if err != nil {
		return fmt.Errorf("target is not a data directory: %w", err)
	}
	if got, want := strings.TrimSpace(string(version)), strconv.Itoa(pgformat.MajorOf(m.ServerVersionNum)); got != want {
		return fmt.Errorf("target is a PostgreSQL %s data directory, the backup is of PostgreSQL %s", got, want)
	}
	if who, ok := usedBy()[idOf(fi)]; ok {
		return fmt.Errorf("target %s is in use: %s: stop it first", o.PGData, who)
	}
	control, _, err := p.pgdata.OpenRegular("global/pg_control")
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	id, err := pgformat.ReadSystemID(control)
	control.Close()
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	var problems []string
	if strconv.FormatUint(id, 10) != m.SystemIdentifier {
		problems = append(problems, fmt.Sprintf("target belongs to cluster %d, the backup to %s (--force to restore anyway)", id, m.SystemIdentifier))
	}
	for _, name := range stale {
		fi, err := p.pgdata.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("target: %w", err)
		case !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0:
			return fmt.Errorf("target: %s is %s, which PostgreSQL never makes: refused", name, beneath.Kind(fi.Mode()))
		case name == staged.LabelFile:
			problems = append(problems, "target already holds a backup_label (--force to replace it)")
		}
	}
	if len(problems) > 0 && !o.Force {
		return errors.New(strings.Join(problems, "; "))
	}
	if !p.major.RecoveryConf {
		fi, err := p.pgdata.Lstat(autoConf)
		switch {
		case err == nil && !fi.Mode().IsRegular():
			return fmt.Errorf("target: %s is %s, which PostgreSQL never makes: refused", autoConf, beneath.Kind(fi.Mode()))
		case err == nil:
			p.autoConf = true
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("target: %w", err)
		}
	}
	return nil
}

// checkWALDir refuses to touch a pg_wal that links out of the target
// unless --wal-dir says where the restored WAL goes instead, and a
// --wal-dir that holds anything but this cluster's WAL.
func (p *plan) checkWALDir() error {
	o := p.o
	fi, err := p.pgdata.Lstat("pg_wal")
	if err != nil {
		return fmt.Errorf("target has no pg_wal: %w", err)
	}
	isLink := fi.Mode()&fs.ModeSymlink != 0
	switch {
	case isLink && o.WALDir == "":
		dest, _ := p.pgdata.Readlink("pg_wal")
		return fmt.Errorf("the target's pg_wal is a link to %s, most likely the original cluster's WAL directory, which a restore "+
			"never empties: restore that volume's snapshot somewhere and give --wal-dir DIR; pg_wal is then linked to DIR", dest)
	case !isLink && o.WALDir != "":
		return errors.New("--wal-dir is for a target whose pg_wal is a link to another volume; this one's is a directory")
	case !isLink && !fi.IsDir():
		return fmt.Errorf("the target's pg_wal is %s", beneath.Kind(fi.Mode()))
	case !isLink:
		if p.walDir, err = p.pgdata.Sub("pg_wal"); err != nil {
			return err
		}
	default:
		if p.walDir, err = beneath.Open(o.WALDir); err != nil {
			return fmt.Errorf("--wal-dir: %w", err)
		}
		if err := p.checkForeignWAL(); err != nil && !o.Force {
			return fmt.Errorf("--wal-dir %s %w: give an empty directory (or --force)", o.WALDir, err)
		}
	}
	if fi, err := p.walDir.Lstat("archive_status"); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s is %s, which PostgreSQL never makes: refused", p.walDir.Join("archive_status"), beneath.Kind(fi.Mode()))
	}
	return nil
}

// checkForeignWAL says what in --wal-dir a restore, which empties it,
// would lose: files PostgreSQL does not keep in a WAL directory, WAL of
// another cluster, and WAL written after the backup (the original
// cluster's newer WAL, an archive). A recycled segment still holds an
// older one of the cluster and a preallocated one zeros: both go.
func (p *plan) checkForeignWAL() error {
	entries, err := p.walDir.ReadDir(".")
	if err != nil {
		return err
	}
	m := p.m
	sysID, _ := strconv.ParseUint(m.SystemIdentifier, 10, 64)
	stop := pgformat.SegmentNo(m.StopLSN-1, m.WALSegmentSize)
	for _, e := range entries {
		name := e.Name()
		seg := strings.TrimSuffix(name, ".partial")
		switch {
		case e.IsDir() && (name == "archive_status" || name == "summaries"):
			continue
		case !e.Type().IsRegular():
			return fmt.Errorf("holds %s, %s", name, beneath.Kind(e.Type()))
		case strings.HasPrefix(name, "xlogtemp."), pgformat.IsHistoryName(name), pgformat.IsBackupHistoryName(name):
			continue
		case !pgformat.IsSegmentName(seg):
			return fmt.Errorf("holds %s, which is not WAL", name)
		}
		f, _, err := p.walDir.OpenRegular(name)
		if err != nil {
			return err
		}
		header := make([]byte, pgformat.LongHeaderSize)
		n, _ := io.ReadFull(f, header)
		f.Close()
		if strings.Trim(string(header[:n]), "\x00") == "" {
			continue
		}
		if id, ok := pgformat.HeaderSystemID(header[:n]); !ok || id != sysID {
			return fmt.Errorf("holds %s, which is not WAL of cluster %s", name, m.SystemIdentifier)
		}
		tli, segNo := segmentOf(seg, m.WALSegmentSize)
		written := pgformat.CheckSegmentHeader(header[:n], segNo, m.WALSegmentSize, sysID) == nil
		if written && (segNo > stop || tli > m.Timeline) {
			return fmt.Errorf("holds %s, WAL written after the backup (which ends in %s), that emptying it would lose", name, m.StopWAL)
		}
	}
	return nil
}

// segmentOf is the timeline and segment number a valid segment name names.
func segmentOf(name string, segSize uint64) (tli uint32, segNo uint64) {
	t, _ := strconv.ParseUint(name[:8], 16, 32)
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:24], 16, 32)
	return uint32(t), log*(1<<32/segSize) + seg
}

// checkInUse refuses a WAL directory or tablespace location that a running
// server uses: restoring "in place" while the original cluster still runs
// would let two servers write to one directory. Directories are compared
// by device and inode, so no other path to them slips through.
func (p *plan) checkInUse() error {
	used := usedBy()
	// The WAL directory restore empties: pg_wal may be a mount point of
	// another cluster's, which no link check sees.
	if fi, err := p.walDir.Stat(); err == nil && used[idOf(fi)] != "" {
		return fmt.Errorf("%s is in use: %s: stop it, or restore elsewhere", p.walDir.Name(), used[idOf(fi)])
	}
	var mine []string
	if p.o.WALDir != "" {
		mine = append(mine, p.o.WALDir)
	}
	for _, t := range p.tablespaces {
		mine = append(mine, t.Location)
	}
	for _, path := range mine {
		if id, ok := statID(path); ok && used[id] != "" {
			return fmt.Errorf("%s is in use: %s: stop it, or restore elsewhere (--tablespace-mapping, --wal-dir)", path, used[id])
		}
	}
	return nil
}

// tablespaceMap returns the staged tablespace_map with --tablespace-mapping
// applied, nil when the backup has none. Each mapping must match a
// tablespace, and every location the map ends up with must exist: that is
// where the tablespace's snapshot has to be restored.
func tablespaceMap(ctx context.Context, b *staged.Backup, o Options) ([]pgformat.Tablespace, error) {
	ts, ok, err := b.TablespaceMap(ctx)
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

// Prepare checks the restore and then lays it out in the target: label and
// map in place, no postmaster.pid, pg_wal emptied and filled with the staged
// WAL, and the recovery settings the target's version reads, every file and
// directory synced. Files it writes belong to the owner of the data
// directory.
func Prepare(ctx context.Context, o Options) (*staged.Manifest, error) {
	p, err := check(ctx, o)
	if err != nil {
		return nil, err
	}
	defer p.close()
	if err := p.write(ctx); err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("%w: %s is half restored: restore its snapshot again", err, o.PGData)
	}
	return p.m, nil
}

func (p *plan) write(ctx context.Context) error {
	for _, name := range stale {
		if err := p.pgdata.Remove(name); err != nil {
			return err
		}
	}
	if err := p.create(p.pgdata, staged.LabelFile, p.label); err != nil {
		return err
	}
	if p.tablespaces != nil {
		if err := p.create(p.pgdata, staged.MapFile, pgformat.FormatTablespaceMap(p.tablespaces)); err != nil {
			return err
		}
	}
	if p.o.WALDir != "" {
		if err := p.relinkWAL(); err != nil {
			return err
		}
	}
	if err := p.walDir.Empty(".", "archive_status"); err != nil {
		return fmt.Errorf("empty WAL directory: %w", err)
	}
	if err := p.walDir.Empty("archive_status"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("empty WAL directory: %w", err)
	}
	for _, name := range p.walFiles {
		if err := p.copyWAL(ctx, name); err != nil {
			return err
		}
	}
	if err := p.walDir.Sync(); err != nil {
		return err
	}
	if err := p.writeRecovery(); err != nil {
		return err
	}
	return p.pgdata.Sync()
}

// create writes a new file durably and gives it to the data directory's owner.
func (p *plan) create(dir *beneath.Dir, name string, data []byte) error {
	return p.createFrom(dir, name, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func (p *plan) createFrom(dir *beneath.Dir, name string, fill func(io.Writer) error) error {
	f, err := dir.Create(name, 0o600)
	if err != nil {
		return fmt.Errorf("place %s: %w", name, err)
	}
	err = fill(f)
	if err == nil {
		err = p.finish(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("place %s: %w", dir.Join(name), err)
	}
	return nil
}

// finish makes a written file durable and the data directory owner's; only
// root can give it away, and only root needs to.
func (p *plan) finish(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return f.Chown(p.uid, p.gid)
	}
	return nil
}

func (p *plan) copyWAL(ctx context.Context, name string) error {
	return p.createFrom(p.walDir, name, func(w io.Writer) error {
		return p.backup.CopyTo(ctx, w, staged.WALDir+"/"+name)
	})
}

// relinkWAL points the target's pg_wal at --wal-dir.
func (p *plan) relinkWAL() error {
	dir, err := filepath.Abs(p.o.WALDir)
	if err != nil {
		return err
	}
	if cur, _ := p.pgdata.Readlink("pg_wal"); cur == dir {
		return nil
	}
	if err := p.pgdata.Remove("pg_wal"); err != nil {
		return fmt.Errorf("re-link pg_wal: %w", err)
	}
	if err := p.pgdata.Symlink(dir, "pg_wal"); err != nil {
		return fmt.Errorf("re-link pg_wal: %w", err)
	}
	if os.Geteuid() == 0 {
		return p.pgdata.Lchown("pg_wal", p.uid, p.gid)
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
	return o.Target.kind() == TargetImmediate && m.BackupFrom == staged.FromStandby
}

// writeRecovery writes recovery.conf (10, 11) or recovery.signal plus
// settings appended to postgresql.auto.conf (12+), which override earlier
// lines of the same name.
// quoteSetting quotes a value for postgresql.conf as ALTER SYSTEM does:
// the configuration parser reads backslash escapes in quoted values.
func quoteSetting(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(v) + "'"
}

func (p *plan) writeRecovery() error {
	target := p.o.Target.settings(p.major)
	if endsAtWALEnd(p.o, p.m) {
		target = Target{Kind: TargetLatest}.settings(p.major)
	}
	cmd := p.o.RestoreCommand
	if cmd == "" {
		cmd = "false" // the WAL is in pg_wal; archive recovery still wants a command
	}
	lines := append([]string{
		"# written by pgfbb-wrap restore at " + time.Now().UTC().Format(time.RFC3339),
		"restore_command = " + quoteSetting(cmd),
	}, target...)
	text := []byte(strings.Join(lines, "\n") + "\n")
	if p.major.RecoveryConf {
		return p.create(p.pgdata, "recovery.conf", text)
	}
	if err := p.create(p.pgdata, "recovery.signal", nil); err != nil {
		return err
	}
	// A new file renamed over the old one: the old one may be a hard link
	// to a file outside the target, which appending would change.
	var old []byte
	if p.autoConf {
		var err error
		if old, err = p.pgdata.ReadFile(autoConf, maxAutoConf); err != nil {
			return err
		}
		old = append(old, '\n')
	}
	const tmp = autoConf + ".pgfbb-new"
	if err := p.pgdata.Remove(tmp); err != nil {
		return err
	}
	if err := p.create(p.pgdata, tmp, append(old, text...)); err != nil {
		return err
	}
	return p.pgdata.Rename(tmp, autoConf)
}
