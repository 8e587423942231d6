// Package beneath opens, creates and removes files beneath a directory the
// caller trusts, inside a tree someone else may control (a snapshot's data
// directory, a staged backup): every path is resolved by the kernel with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so no symbolic link is ever
// followed and no path leaves the directory, however the tree changes
// meanwhile. Symbolic links themselves can be read, made and removed.
package beneath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// ErrNotRegular means a file expected to be a regular file is something
// else: a directory, a FIFO, a device or a socket.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge means a file is larger than its reader allows.
var ErrTooLarge = errors.New("larger than allowed")

// Dir is an open directory. Names given to its methods are relative,
// "/"-separated and clean ("wal/000000010000000000000003").
type Dir struct {
	f    *os.File
	name string // for messages
}

// Open opens the directory at path. Symbolic links in path itself are
// followed: it is what the user named; nothing beneath it is.
func Open(path string) (*Dir, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	return &Dir{f: f, name: path}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.f.Close() }

// Name is the path the directory was opened by, for messages.
func (d *Dir) Name() string { return d.name }

// Fd is the directory's descriptor, valid until Close.
func (d *Dir) Fd() int { return int(d.f.Fd()) }

// Join names a file beneath the directory in messages.
func (d *Dir) Join(name string) string { return filepath.Join(d.name, filepath.FromSlash(name)) }

// ValidName reports whether name can name a file beneath a directory:
// relative, clean, not empty, no "..".
func ValidName(name string) bool {
	return name != "" && name != "." && path.Clean(name) == name && filepath.IsLocal(name) && !path.IsAbs(name)
}

func (d *Dir) openat(name string, flags int, mode uint32) (*os.File, error) {
	if !ValidName(name) {
		return nil, &fs.PathError{Op: "open", Path: d.Join(name), Err: fmt.Errorf("%q is not a clean relative path", name)}
	}
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(d.Fd(), name, how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // EAGAIN: a concurrent rename; the kernel asks for a retry
		}
		if errors.Is(err, unix.ELOOP) {
			err = errSymlink
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: d.Join(name), Err: err}
		}
		return os.NewFile(uintptr(fd), d.Join(name)), nil
	}
}

// errSymlink is what a symbolic link on the way gives: ELOOP is too
// cryptic for a DBA.
var errSymlink = errors.New("a symbolic link is in the way (refused: links are never followed here)")

// Sub opens the directory name beneath d.
func (d *Dir) Sub(name string) (*Dir, error) {
	f, err := d.openat(name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	return &Dir{f: f, name: d.Join(name)}, nil
}

// OpenRegular opens name for reading. It never blocks on a FIFO or a
// device and refuses anything but a regular file.
func (d *Dir) OpenRegular(name string) (*os.File, fs.FileInfo, error) {
	f, err := d.openat(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &fs.PathError{Op: "open", Path: d.Join(name), Err: fmt.Errorf("%w (%s)", ErrNotRegular, Kind(fi.Mode()))}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// ReadFile reads the regular file name, refusing one over limit bytes
// before reading it.
func (d *Dir) ReadFile(name string, limit int64) ([]byte, error) {
	f, fi, err := d.OpenRegular(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > limit {
		return nil, &fs.PathError{Op: "read", Path: d.Join(name), Err: fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, fi.Size(), limit)}
	}
	// The file may grow while it is read: read one byte more than allowed.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = &fs.PathError{Op: "read", Path: d.Join(name), Err: fmt.Errorf("%w: it grew past %d bytes", ErrTooLarge, limit)}
	}
	return data, err
}

// Create creates name, which must not exist, for writing.
func (d *Dir) Create(name string, perm os.FileMode) (*os.File, error) {
	return d.openat(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, uint32(perm.Perm()))
}

// Lstat describes name itself: a symbolic link is described, not followed.
func (d *Dir) Lstat(name string) (fs.FileInfo, error) {
	f, err := d.openat(name, unix.O_PATH, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// parent opens the directory holding name and returns it with name's last
// element.
func (d *Dir) parent(name string) (*Dir, string, error) {
	if !ValidName(name) {
		return nil, "", &fs.PathError{Op: "open", Path: d.Join(name), Err: fmt.Errorf("%q is not a clean relative path", name)}
	}
	dir, base := path.Split(name)
	if dir == "" {
		f, err := unix.Dup(d.Fd())
		if err != nil {
			return nil, "", err
		}
		unix.CloseOnExec(f)
		return &Dir{f: os.NewFile(uintptr(f), d.name), name: d.name}, base, nil
	}
	p, err := d.Sub(path.Clean(dir))
	return p, base, err
}

// Readlink reads the symbolic link name.
func (d *Dir) Readlink(name string) (string, error) {
	p, base, err := d.parent(name)
	if err != nil {
		return "", err
	}
	defer p.Close()
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(p.Fd(), base, buf)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: d.Join(name), Err: err}
	}
	return string(buf[:n]), nil
}

// Symlink makes name a symbolic link to target.
func (d *Dir) Symlink(target, name string) error {
	p, base, err := d.parent(name)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := unix.Symlinkat(target, p.Fd(), base); err != nil {
		return &fs.PathError{Op: "symlink", Path: d.Join(name), Err: err}
	}
	return nil
}

// Lchown gives name itself (a link is not followed) to uid and gid.
func (d *Dir) Lchown(name string, uid, gid int) error {
	p, base, err := d.parent(name)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := unix.Fchownat(p.Fd(), base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "chown", Path: d.Join(name), Err: err}
	}
	return nil
}

// Rename renames the file from to to, replacing what to names; both stay
// beneath d and no link on the way is followed.
func (d *Dir) Rename(from, to string) error {
	fp, fbase, err := d.parent(from)
	if err != nil {
		return err
	}
	defer fp.Close()
	tp, tbase, err := d.parent(to)
	if err != nil {
		return err
	}
	defer tp.Close()
	if err := unix.Renameat(fp.Fd(), fbase, tp.Fd(), tbase); err != nil {
		return &fs.PathError{Op: "rename", Path: d.Join(from), Err: err}
	}
	return nil
}

// Remove removes the file, link or empty directory name; a missing one is
// no error.
func (d *Dir) Remove(name string) error {
	p, base, err := d.parent(name)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.unlink(base)
}

func (d *Dir) unlink(base string) error {
	err := unix.Unlinkat(d.Fd(), base, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(d.Fd(), base, unix.AT_REMOVEDIR)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "remove", Path: d.Join(base), Err: err}
	}
	return nil
}

// ReadDir lists the directory name ("." for d itself).
func (d *Dir) ReadDir(name string) ([]fs.DirEntry, error) {
	sub := d
	if name != "." {
		var err error
		if sub, err = d.Sub(name); err != nil {
			return nil, err
		}
		defer sub.Close()
	}
	if _, err := sub.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return sub.f.ReadDir(-1)
}

// Empty removes everything in the directory name ("." for d itself),
// except the entries keep names, and never follows a link: a link is
// removed, not what it points to.
func (d *Dir) Empty(name string, keep ...string) error {
	sub := d
	if name != "." {
		var err error
		if sub, err = d.Sub(name); err != nil {
			return err
		}
		defer sub.Close()
	}
	entries, err := d.ReadDir(name)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if slices.Contains(keep, e.Name()) {
			continue
		}
		if e.Type().IsDir() {
			if err := sub.Empty(e.Name()); err != nil {
				return err
			}
		}
		if err := sub.unlink(e.Name()); err != nil {
			return err
		}
	}
	return nil
}

// Sync flushes the directory's entries to disk.
func (d *Dir) Sync() error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", d.name, err)
	}
	return nil
}

// Stat describes d itself.
func (d *Dir) Stat() (fs.FileInfo, error) { return d.f.Stat() }

// Kind names what a file is, for messages: "a FIFO", "a symbolic link".
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}
