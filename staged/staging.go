package staged

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/pgfbb/pgfbb-wrap/beneath"
	"golang.org/x/sys/unix"
)

// ErrExists is returned by Prepare when a backup with the label is already staged.
var ErrExists = errors.New("already exists")

// Staging is a backup being assembled under a temporary name inside the
// staging directory. Nothing under the final name exists until Publish, so a
// run that fails or dies can never be mistaken for a complete backup.
type Staging struct {
	root  string
	label string
	dir   string
	lock  *os.File // flock on dir while this run owns it
	notes []string
	mu    sync.Mutex // guards files: Put runs in parallel
	files []File
	// rename is how Publish renames without replacing; nil where the
	// file system cannot, and Publish checks under the staging lock.
	rename  func(from, to string) error
	syncDir func(path string) error
	// clusterLock is held from LockCluster to Publish or Discard.
	clusterLock *os.File
}

// unlockCluster releases the cluster lock, if taken.
func (s *Staging) unlockCluster() {
	if s.clusterLock != nil {
		s.clusterLock.Close()
		s.clusterLock = nil
	}
}

// Partial backups are assembled in ".LABEL.partial-RANDOM". Their creator
// holds a flock on the directory until it publishes or discards it, so a
// partial directory nobody holds was left by a run that died (SIGKILL, power
// loss) and only wastes space.
const partialInfix = ".partial-"

// LockFile, in the staging directory, serializes creating and sweeping
// partial backups. It stays: removing a lock file races with its next user.
const LockFile = ".pgfbb-staging.lock"

// Prepare makes sure root exists (creating it, but not its parents), that
// no one but this user can change it (beneath.CheckPrivate) and that
// label is free there, and creates the run's temporary directory, which
// proves root is writable before any database work begins.
func Prepare(root, label string) (*Staging, error) { return prepare(root, label, renameNoReplace) }

// prepare is Prepare with the rename a test can replace.
func prepare(root, label string, rename func(from, to string) error) (*Staging, error) {
	if err := ValidateLabel(label); err != nil {
		return nil, err
	}
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := beneath.CheckAncestors(root); err != nil {
			return nil, fmt.Errorf("create staging directory: %w", err)
		}
		if err := os.Mkdir(root, 0o700); err != nil {
			return nil, fmt.Errorf("create staging directory: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("staging directory: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("staging directory %s: not a directory", root)
	}
	if root, err = beneath.CheckPrivate(root); err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	final := filepath.Join(root, label)
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("staged backup %s: %w", final, ErrExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("staged backup %s: %w", final, err)
	}
	guard, err := lockStaging(root)
	if err != nil {
		return nil, err
	}
	defer guard.Close()
	notes := sweep(root)
	// What the sweep left is alive: another run making this label would
	// snapshot to the same name and lose the race to publish.
	if taken, err := labelTaken(root, label); err != nil || taken {
		return nil, errors.Join(fmt.Errorf("backup %s is being made by another run or held: %w", label, ErrExists), err)
	}
	dir, err := os.MkdirTemp(root, "."+label+partialInfix)
	if err != nil {
		return nil, fmt.Errorf("staging directory not writable: %w", err)
	}
	lock, err := lockDir(dir, unix.LOCK_EX)
	if err != nil {
		return nil, errors.Join(err, os.Remove(dir))
	}
	s := &Staging{root: root, label: label, dir: dir, lock: lock, notes: notes, rename: rename, syncDir: syncDir}
	if err := s.probeRename(); err != nil {
		return nil, errors.Join(fmt.Errorf("staging directory: %w", err), s.Discard())
	}
	return s, nil
}

// renameNoReplace renames a directory unless the new name exists.
func renameNoReplace(from, to string) error {
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
}

// probeRename finds out, before any database work, whether the staging
// file system can rename without replacing (Linux NFS cannot: EINVAL), by
// renaming the partial directory there and back. Where it cannot, Publish
// renames under the staging lock after checking that the name is free.
func (s *Staging) probeRename() error {
	probe := s.dir + ".probe"
	err := s.rename(s.dir, probe)
	switch {
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP):
		s.rename = nil
		return nil
	case err != nil:
		return fmt.Errorf("rename in %s: %w", s.root, err)
	}
	if err := s.rename(probe, s.dir); err != nil {
		return fmt.Errorf("rename in %s: %w", s.root, err)
	}
	return nil
}

// publishRename renames the partial directory to the backup's name, never
// over an existing one.
func (s *Staging) publishRename() error {
	if s.rename != nil {
		err := s.rename(s.dir, s.Path())
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			err = ErrExists
		}
		return err
	}
	// Every run takes the lock to check a name or create a partial
	// directory: none can take the name between the check and the rename.
	guard, err := lockStaging(s.root)
	if err != nil {
		return err
	}
	defer guard.Close()
	if _, err := os.Lstat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		if err == nil {
			err = ErrExists
		}
		return err
	}
	return os.Rename(s.dir, s.Path())
}

// Root is the staging directory, links resolved.
func (s *Staging) Root() string { return s.root }

// Describe says what the staging file system offers a backup: how it
// publishes and how much space is free.
func (s *Staging) Describe() string {
	how := "publishes with rename(RENAME_NOREPLACE)"
	if s.rename == nil {
		how = "publishes with a checked rename under the staging lock (no RENAME_NOREPLACE here)"
	}
	var fs unix.Statfs_t
	if unix.Statfs(s.root, &fs) == nil {
		how += fmt.Sprintf(", %d MiB free", int64(fs.Bavail)*fs.Bsize>>20)
	}
	return how
}

// Published tells whether the backup has its final name, whatever Publish
// returned: a rename can succeed and the sync after it fail.
func (s *Staging) Published() bool { return s.dir == s.Path() }

// lockStaging takes LockFile in root. It is held for a directory listing
// and a few unlinks at most.
func lockStaging(root string) (*os.File, error) {
	guard, err := os.OpenFile(filepath.Join(root, LockFile), os.O_RDONLY|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("staging directory not writable: %w", err)
	}
	if err := unix.Flock(int(guard.Fd()), unix.LOCK_EX); err != nil {
		guard.Close()
		return nil, fmt.Errorf("lock staging directory: %w", err)
	}
	return guard, nil
}

// Sweep removes the partial backups in the staging directory root that no
// live run holds, and says what it removed or could not remove.
func Sweep(root string) []string {
	root, err := beneath.CheckPrivate(root)
	if err != nil {
		return []string{fmt.Sprintf("could not look for partial backups of dead runs: %v", err)}
	}
	guard, err := lockStaging(root)
	if err != nil {
		return []string{fmt.Sprintf("could not look for partial backups of dead runs: %v", err)}
	}
	defer guard.Close()
	return sweep(root)
}

// lockDir opens dir and flocks it (add LOCK_NB to fail rather than wait).
func lockDir(dir string, how int) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// labelTaken tells whether root has a backup labelled label, published or
// being made. The caller holds the staging lock and has swept.
func labelTaken(root, label string) (bool, error) {
	if _, err := os.Lstat(filepath.Join(root, label)); !errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if l, ok := partialLabel(e.Name()); ok && l == label {
			return true, nil
		}
	}
	return false, nil
}

// sweep removes the partial backups in root that no live run holds, and
// says what it removed or failed to remove: leftovers must never fail the
// backup at hand. The caller holds LockFile.
func sweep(root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return []string{fmt.Sprintf("could not look for partial backups of dead runs: %v", err)}
	}
	var notes []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ".") || !strings.Contains(e.Name(), partialInfix) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		lock, err := lockDir(dir, unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			continue // a run in progress, or a held backup
		}
		if err == nil {
			err = os.RemoveAll(dir)
			lock.Close()
		}
		if err != nil {
			notes = append(notes, fmt.Sprintf("could not remove %s, a partial backup left by a run that died: %v", e.Name(), err))
			continue
		}
		notes = append(notes, fmt.Sprintf("removed %s from the staging directory: a partial backup left by a run that died", e.Name()))
	}
	return notes
}

// Notes says what Prepare did about the partial backups of dead runs.
func (s *Staging) Notes() []string { return slices.Clone(s.notes) }

// Path is where the backup will be once published.
func (s *Staging) Path() string { return filepath.Join(s.root, s.label) }

// TempDir is the temporary directory the backup is assembled in until Publish.
func (s *Staging) TempDir() string { return s.dir }

// Files lists what has been staged so far, in staging order.
func (s *Staging) Files() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.files)
}

// WriteFile stages a small file from memory.
func (s *Staging) WriteFile(name string, data []byte) error {
	_, err := s.Put(context.Background(), name, bytes.NewReader(data), -1, nil)
	return err
}

// Put streams r into the staged file name (relative, "/"-separated), hashing
// it, calling check on the first bytes read and, unless wantSize is negative,
// insisting on that size; then it makes the file durable. Blocks of zeros
// become holes (see writeSparse). A partial or wrong file is removed. Puts
// of different files may run in parallel.
func (s *Staging) Put(ctx context.Context, name string, r io.Reader, wantSize int64, check func(first []byte) error) (_ File, err error) {
	path := filepath.Join(s.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return File{}, fmt.Errorf("stage %s: %w", name, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return File{}, fmt.Errorf("stage %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			// errors.Join keeps a lone error on one line of the report.
			err = errors.Join(err, f.Close(), os.Remove(path))
			err = fmt.Errorf("stage %s: %w", name, err)
		}
	}()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var size int64
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return File{}, err
		}
		n, rerr := io.ReadFull(r, buf)
		if first && check != nil {
			if err := check(buf[:n]); err != nil {
				return File{}, err
			}
		}
		if n > 0 {
			if err := writeSparse(f, buf[:n], size); err != nil {
				return File{}, err
			}
			h.Write(buf[:n])
			size += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return File{}, rerr
		}
	}
	if wantSize >= 0 && size != wantSize {
		return File{}, fmt.Errorf("size is %d bytes, want %d", size, wantSize)
	}
	if err := f.Truncate(size); err != nil { // the size past a trailing hole
		return File{}, err
	}
	if err := f.Sync(); err != nil {
		return File{}, err
	}
	if err := f.Close(); err != nil {
		return File{}, err
	}
	file := File{Path: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
	s.mu.Lock()
	s.files = append(s.files, file)
	s.mu.Unlock()
	return file, nil
}

// sparseBlock is the unit of holes: the block size of the common Linux file
// systems, and half a WAL page.
const sparseBlock = 4096

var zeroBlock [sparseBlock]byte

// writeSparse writes b at offset off (a multiple of sparseBlock) but leaves
// the blocks that are all zeros unwritten, as holes that read as zeros. A
// segment staged right after the stop's segment switch is zeros but for its
// first page: as holes it costs neither disk nor the time to write and sync
// 16 MiB. Runs of data are written with one call each.
func writeSparse(f *os.File, b []byte, off int64) error {
	// run is the length of the leading blocks of b that are zero (or not).
	run := func(zero bool) int {
		i := 0
		for i < len(b) {
			end := min(i+sparseBlock, len(b))
			if bytes.Equal(b[i:end], zeroBlock[:end-i]) != zero {
				break
			}
			i = end
		}
		return i
	}
	for len(b) > 0 {
		skip := run(true)
		b, off = b[skip:], off+int64(skip)
		data := run(false)
		if data > 0 {
			if _, err := f.WriteAt(b[:data], off); err != nil {
				return err
			}
			// Start writing it out now, so that the fsync at the end
			// waits for the last chunk only; a kernel that cannot is
			// no error.
			unix.SyncFileRange(int(f.Fd()), off, int64(data), unix.SYNC_FILE_RANGE_WRITE)
			b, off = b[data:], off+int64(data)
		}
	}
	return nil
}

// Publish writes the manifest, makes every directory durable and renames the
// temporary directory to its label. It never replaces an existing backup.
func (s *Staging) Publish(m *Manifest) error {
	// Sorted: parallel Puts finish in any order, and verify reports in
	// the manifest's.
	m.FormatVersion, m.Files = FormatVersion, s.Files()
	slices.SortFunc(m.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	// The manifest is written last and is not in its own file list: its
	// presence under the final name means every other file is complete.
	if _, err := s.Put(context.Background(), ManifestFile, bytes.NewReader(append(data, '\n')), -1, nil); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(s.dir, WALDir), s.dir} {
		if err := syncDir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := s.publishRename(); err != nil {
		return fmt.Errorf("publish %s: %w", s.Path(), err)
	}
	s.dir = s.Path()
	s.lock.Close()
	s.unlockCluster()
	if err := s.syncDir(s.root); err != nil {
		return fmt.Errorf("published %s, but %w: a crash may still lose it; check it with pgfbb-wrap verify", s.Path(), err)
	}
	return nil
}

// Discard removes the temporary directory of an unpublished backup.
func (s *Staging) Discard() error {
	if s.Published() {
		return nil
	}
	err := os.RemoveAll(s.dir)
	s.lock.Close()
	s.unlockCluster()
	if err != nil {
		return fmt.Errorf("remove partial backup: %w", err)
	}
	return nil
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
