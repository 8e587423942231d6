package staged

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
)

// Size limits for what a backup's files may hold, checked before reading:
// a staged directory may have been edited by anyone with write access to
// the staging area.
const (
	maxManifest = 64 << 20 // a manifest lists one entry per WAL file
	maxSmall    = 1 << 20  // backup_label, tablespace_map, history files
	maxWALList  = 64 << 20
)

// Backup is a published backup opened for reading. Every file is read
// beneath its directory, never through a symbolic link, and only when it
// is a regular file of a size the manifest allows.
type Backup struct {
	dir      *beneath.Dir
	Manifest *Manifest
	files    map[string]File // the manifest's files by path
}

// Open opens the backup in dir and reads its manifest, refusing one that
// names a file the layout does not have or that is not self-consistent.
func Open(dir string) (*Backup, error) {
	d, err := beneath.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("staged backup: %w", err)
	}
	b := &Backup{dir: d}
	data, err := d.ReadFile(ManifestFile, maxManifest)
	if err == nil {
		b.Manifest, err = ParseManifest(data)
	} else {
		err = fmt.Errorf("manifest: %w", err)
	}
	if err == nil {
		b.files, err = b.Manifest.check()
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return b, nil
}

// Close releases the backup's directory.
func (b *Backup) Close() error { return b.dir.Close() }

// Path is the backup's directory as it was named.
func (b *Backup) Path() string { return b.dir.Name() }

// check refuses a manifest whose values a reader would have to trust
// blindly: its label, version, LSNs and segment size drive which files are
// read and how many, and its file list which paths are opened.
func (m *Manifest) check() (map[string]File, error) {
	bad := func(format string, args ...any) (map[string]File, error) {
		return nil, fmt.Errorf("manifest: "+format, args...)
	}
	if err := ValidateLabel(m.Label); err != nil {
		return bad("%v", err)
	}
	if m.ServerVersionNum < 100000 || m.ServerVersionNum >= 1000000 {
		return bad("server_version_num %d is not a PostgreSQL 10 or later", m.ServerVersionNum)
	}
	if err := pgformat.ValidateSegmentSize(m.WALSegmentSize); err != nil {
		return bad("%v", err)
	}
	if m.Timeline == 0 {
		return bad("timeline 0")
	}
	if m.StopLSN <= m.StartLSN {
		return bad("stop %s is not after start %s", m.StopLSN, m.StartLSN)
	}
	if _, err := ParseWALMode(string(m.WALMode)); err != nil {
		return bad("wal_mode: %v", err)
	}
	// Names from arithmetic alone: the LSNs may span billions of segments.
	first, last := pgformat.SegmentNo(m.StartLSN, m.WALSegmentSize), pgformat.SegmentNo(m.StopLSN-1, m.WALSegmentSize)
	if m.StartWAL != pgformat.SegmentFileName(m.Timeline, first, m.WALSegmentSize) ||
		m.StopWAL != pgformat.SegmentFileName(m.Timeline, last, m.WALSegmentSize) {
		return bad("start_wal %s and stop_wal %s do not match the LSNs %s..%s", m.StartWAL, m.StopWAL, m.StartLSN, m.StopLSN)
	}
	files := make(map[string]File, len(m.Files))
	walFiles := 0
	for _, f := range m.Files {
		limit, ok := m.sizeLimit(f.Path)
		switch {
		case !ok:
			return bad("file %q is not part of a staged backup", f.Path)
		case f.Size < 0 || f.Size > limit:
			return bad("file %s: size %d, at most %d", f.Path, f.Size, limit)
		case len(f.SHA256) != sha256.Size*2:
			return bad("file %s: sha256 %q", f.Path, f.SHA256)
		}
		if _, dup := files[f.Path]; dup {
			return bad("file %s listed twice", f.Path)
		}
		files[f.Path] = f
		if strings.HasPrefix(f.Path, WALDir+"/") {
			walFiles++
		}
	}
	// Every segment from start to stop must be staged: a stop LSN far
	// beyond the files would otherwise make a reader check millions.
	if m.WALMode == WALCopy && last-first >= uint64(walFiles) {
		return bad("the LSNs %s..%s span %d WAL segments, but %d WAL files are listed", m.StartLSN, m.StopLSN, last-first+1, walFiles)
	}
	return files, nil
}

// sizeLimit is the largest a file of the layout may be; ok is false for a
// path the layout does not have.
func (m *Manifest) sizeLimit(p string) (limit int64, ok bool) {
	switch p {
	case LabelFile, MapFile:
		return maxSmall, true
	case WALListFile:
		return maxWALList, true
	}
	dir, name := path.Split(p)
	switch {
	case dir != WALDir+"/":
		return 0, false
	case pgformat.IsSegmentName(name):
		return int64(m.WALSegmentSize), true
	case pgformat.IsHistoryName(name), pgformat.IsBackupHistoryName(name):
		return maxSmall, true
	}
	return 0, false
}

// open opens a file the manifest lists, checking its size against it.
func (b *Backup) open(name string) (*os.File, File, error) {
	want, ok := b.files[name]
	if !ok {
		return nil, File{}, fmt.Errorf("%s: not in the manifest", name)
	}
	f, fi, err := b.dir.OpenRegular(name)
	if err != nil {
		return nil, want, err
	}
	if fi.Size() != want.Size {
		f.Close()
		return nil, want, fmt.Errorf("%s: %d bytes, manifest says %d", name, fi.Size(), want.Size)
	}
	return f, want, nil
}

// ReadFile reads a small file the manifest lists, checking its hash.
func (b *Backup) ReadFile(ctx context.Context, name string) ([]byte, error) {
	f, want, err := b.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if err := copyFile(ctx, &buf, name, f, want); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CopyTo copies a file the manifest lists into w, checking the context as
// it goes, and fails when what it copied is not what the manifest says:
// the backup may change while it is read.
func (b *Backup) CopyTo(ctx context.Context, w io.Writer, name string) error {
	f, want, err := b.open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return copyFile(ctx, w, name, f, want)
}

// copyFile copies f, the backup's file name, into w and checks it against
// the manifest's entry want.
func copyFile(ctx context.Context, w io.Writer, name string, f io.Reader, want File) error {
	size, sum, err := copyHashed(ctx, w, io.LimitReader(f, want.Size+1))
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", name, err)
	case size != want.Size:
		return fmt.Errorf("%s: %d bytes, manifest says %d", name, size, want.Size)
	case sum != want.SHA256:
		return fmt.Errorf("%s: SHA-256 %s, manifest says %s", name, sum, want.SHA256)
	}
	return nil
}

// copyHashed copies r into w in chunks, hashing it, and stops as soon as
// ctx is done.
func copyHashed(ctx context.Context, w io.Writer, r io.Reader) (int64, string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, "", context.Cause(ctx)
		}
		k, rerr := r.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			if _, err := w.Write(buf[:k]); err != nil {
				return n, "", err
			}
			n += int64(k)
		}
		if errors.Is(rerr, io.EOF) {
			return n, hex.EncodeToString(h.Sum(nil)), nil
		}
		if rerr != nil {
			return n, "", rerr
		}
	}
}

// TablespaceMap reads the backup's tablespace_map; ok is false when the
// backup has none (the cluster had no user tablespaces).
func (b *Backup) TablespaceMap(ctx context.Context) (ts []pgformat.Tablespace, ok bool, err error) {
	if _, listed := b.files[MapFile]; !listed {
		return nil, false, nil
	}
	data, err := b.ReadFile(ctx, MapFile)
	if err != nil {
		return nil, false, err
	}
	ts, err = pgformat.ParseTablespaceMap(data)
	return ts, err == nil, err
}

// HasTablespaceMap tells whether the backup staged a tablespace_map.
func (b *Backup) HasTablespaceMap() bool {
	_, ok := b.files[MapFile]
	return ok
}

// WALList reads the names of the backup's staged WAL files, oldest first,
// each a WAL file name that the manifest lists under wal/.
func (b *Backup) WALList(ctx context.Context) ([]string, error) {
	data, err := b.ReadFile(ctx, WALListFile)
	if err != nil {
		return nil, err
	}
	return parseWALList(data, b.files)
}

// parseWALList reads wal_list: WAL file names that files lists under wal/.
func parseWALList(data []byte, files map[string]File) ([]string, error) {
	names := strings.Fields(string(data))
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if seen[name] {
			return nil, fmt.Errorf("%s: %s is listed twice", WALListFile, name)
		}
		seen[name] = true
		if !pgformat.IsWALFileName(name) {
			return nil, fmt.Errorf("%s: %q is not a WAL file name", WALListFile, name)
		}
		if _, ok := files[WALDir+"/"+name]; !ok {
			return nil, fmt.Errorf("%s: %s is not in the manifest", WALListFile, name)
		}
	}
	return names, nil
}
