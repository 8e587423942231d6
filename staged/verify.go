package staged

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
)

// Verification is what Verify found.
type Verification struct {
	Manifest *Manifest
	Segments int      // WAL segments checked
	Problems []string // each one makes the backup unusable
	Notes    []string // what could not be checked, and why
}

// maxProblems bounds the list: a forged manifest can name a million files.
const maxProblems = 100

func (v *Verification) problem(format string, args ...any) {
	switch n := len(v.Problems); {
	case n < maxProblems:
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	case n == maxProblems:
		v.Problems = append(v.Problems, "more problems not listed")
	}
}

// Verify checks that the staged backup in dir is complete and intact:
// manifest, every file's size and SHA-256, backup_label against the
// manifest, and for staged WAL every segment from the start LSN's to the stop
// LSN's, page by page, and then pg_waldump over the range when one for the
// server's major is installed. The error is not nil only when ctx ended the
// check: the Verification is then incomplete and must not be trusted.
func Verify(ctx context.Context, dir string) (*Verification, error) {
	v := &Verification{}
	b, err := Open(dir)
	if err != nil {
		v.problem("%v", err)
		return v, nil
	}
	defer b.Close()
	return v, b.verify(ctx, v)
}

// Verify is Verify of an open backup.
func (b *Backup) Verify(ctx context.Context) (*Verification, error) {
	v := &Verification{}
	return v, b.verify(ctx, v)
}

func (b *Backup) verify(ctx context.Context, v *Verification) error {
	m := b.Manifest
	v.Manifest = m
	if m.Status != StatusComplete {
		v.problem("manifest: status %q, want %q", m.Status, StatusComplete)
	}
	if err := v.checkFiles(ctx, b); err != nil {
		return err
	}
	v.checkLabel(b)
	if m.WALMode == WALCopy {
		if err := v.checkWAL(ctx, b); err != nil {
			return err
		}
	} else {
		v.Notes = append(v.Notes, fmt.Sprintf("no WAL staged (wal_mode %s): a restore needs %s..%s from the WAL archive", m.WALMode, m.StartWAL, m.StopWAL))
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// checkFiles hashes every file the manifest lists, and lists what the
// directory holds beyond them.
func (v *Verification) checkFiles(ctx context.Context, b *Backup) error {
	for _, f := range v.Manifest.Files {
		err := b.CopyTo(ctx, io.Discard, f.Path)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			v.problem("%v", err)
		}
	}
	for _, dir := range []string{".", WALDir} {
		entries, err := b.dir.ReadDir(dir)
		if err != nil {
			if dir == WALDir && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			v.problem("%v", err)
			continue
		}
		for _, e := range entries {
			name := path.Join(dir, e.Name())
			switch {
			case name == ManifestFile || (name == WALDir && e.IsDir()):
			case !e.Type().IsRegular():
				v.problem("%s: %s, not a file of a staged backup", name, beneath.Kind(e.Type()))
			case b.files[name] == (File{}):
				v.problem("%s: not in the manifest", name)
			}
		}
	}
	return nil
}

func (v *Verification) checkLabel(b *Backup) {
	m := v.Manifest
	// Read as it is, not as the manifest says: checkFiles reports a
	// mismatch, and what the label holds tells more.
	data, err := b.dir.ReadFile(LabelFile, maxSmall)
	if err != nil {
		v.problem("%s: %v", LabelFile, err)
		return
	}
	bl, err := pgformat.ParseBackupLabel(data)
	if err != nil {
		v.problem("%s: %v", LabelFile, err)
		return
	}
	if bl.Label != m.Label {
		v.problem("%s: LABEL %q, manifest says %q", LabelFile, bl.Label, m.Label)
	}
	if bl.StartLSN != m.StartLSN {
		v.problem("%s: start %s, manifest says %s", LabelFile, bl.StartLSN, m.StartLSN)
	}
	if bl.StartTimeline != m.Timeline {
		v.problem("%s: timeline %d, manifest says %d", LabelFile, bl.StartTimeline, m.Timeline)
	}
}

func (v *Verification) checkWAL(ctx context.Context, b *Backup) error {
	m := v.Manifest
	listed, err := b.WALList(ctx)
	if err != nil {
		v.problem("%v", err)
	}
	sysID, err := strconv.ParseUint(m.SystemIdentifier, 10, 64)
	if err != nil {
		v.problem("manifest: system_identifier %q: %v", m.SystemIdentifier, err)
	}
	major, known := pgformat.LookupMajor(pgformat.MajorOf(m.ServerVersionNum))
	if !known {
		v.Notes = append(v.Notes, fmt.Sprintf("page magic of server version %d unknown: not checked", m.ServerVersionNum))
	}
	segSize := m.WALSegmentSize
	first, last := pgformat.SegmentNo(m.StartLSN, segSize), pgformat.SegmentNo(m.StopLSN-1, segSize)
	for n := first; n <= last; n++ {
		name := pgformat.SegmentFileName(m.Timeline, n, segSize)
		if !slices.Contains(listed, name) {
			v.problem("%s: needed but not in %s", name, WALListFile)
		}
		// WAL up to the stop LSN must be there; the rest of the last
		// segment may hold zeros or an older segment's pages.
		need := segSize
		if n == last {
			need = uint64(m.StopLSN-1)%segSize + 1
		}
		err := b.checkSegment(ctx, WALDir+"/"+name, n, segSize, need, m.Timeline, sysID, major.PageMagic)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			v.problem("%s: %v", name, err)
		}
		v.Segments++
	}
	if len(v.Problems) > 0 {
		v.Notes = append(v.Notes, "pg_waldump not run: the segments are already known to be damaged")
		return nil
	}
	v.waldump(ctx, b.dir.Join(WALDir))
	return nil
}

// checkSegment checks the size of a segment and the header of every page
// that holds WAL, up to need bytes into it. A segment ended by a WAL switch
// is zero-filled after the switch record: zero pages may end a segment, but
// not precede a written page, and not lie within the WAL the backup needs
// when that ends inside this segment. pg_waldump checks the records.
func (b *Backup) checkSegment(ctx context.Context, name string, segNo, segSize, need uint64, tli uint32, sysID uint64, magic uint16) error {
	f, fi, err := b.dir.OpenRegular(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if uint64(fi.Size()) != segSize {
		return fmt.Errorf("%d bytes, want %d", fi.Size(), segSize)
	}
	if err := pgformat.CheckSegmentHeader(readUpTo(f, pgformat.LongHeaderSize), segNo, segSize, sysID); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	page, zero := make([]byte, pgformat.XLogBlockSize), make([]byte, pgformat.XLogBlockSize)
	var zeroFrom pgformat.LSN
	for off := uint64(0); off < need; off += pgformat.XLogBlockSize {
		if off%(1<<20) == 0 && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if _, err := io.ReadFull(f, page); err != nil {
			return fmt.Errorf("page at offset %d: %w", off, err)
		}
		addr := pgformat.LSN(segNo*segSize + off)
		if bytes.Equal(page, zero) {
			if zeroFrom == 0 {
				zeroFrom = addr
			}
			continue
		}
		if zeroFrom != 0 {
			return fmt.Errorf("page %s holds WAL after empty pages from %s", addr, zeroFrom)
		}
		if err := pgformat.CheckPage(page, addr, segSize, tli, magic); err != nil {
			return err
		}
	}
	if zeroFrom != 0 && need < segSize {
		return fmt.Errorf("empty from %s, before the backup's stop", zeroFrom)
	}
	return nil
}

// readUpTo reads n bytes, or what there is.
func readUpTo(r io.Reader, n int) []byte {
	b := make([]byte, n)
	k, _ := io.ReadFull(r, b)
	return b[:k]
}

// waldump reads every record from the start to the stop LSN with the
// server major's own pg_waldump, which checks record CRCs and links.
func (v *Verification) waldump(ctx context.Context, walDir string) {
	m := v.Manifest
	major := pgformat.MajorOf(m.ServerVersionNum)
	bin := findWaldump(major)
	if bin == "" {
		v.Notes = append(v.Notes, fmt.Sprintf("pg_waldump for PostgreSQL %d not found: records were not decoded (install postgresql-client-%d)", major, major))
		return
	}
	cmd := exec.CommandContext(ctx, bin, "--path", walDir, "--timeline", strconv.FormatUint(uint64(m.Timeline), 10),
		"--start", m.StartLSN.String(), "--end", m.StopLSN.String())
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		v.problem("pg_waldump %s..%s: %v: %s", m.StartLSN, m.StopLSN, err, strings.TrimSpace(stderr.String()))
		return
	}
	v.Notes = append(v.Notes, fmt.Sprintf("%s decoded every record from %s to %s", bin, m.StartLSN, m.StopLSN))
}

func findWaldump(major int) string {
	candidates := []string{fmt.Sprintf("/usr/lib/postgresql/%d/bin/pg_waldump", major)}
	if p, err := exec.LookPath("pg_waldump"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		out, err := exec.Command(c, "--version").Output()
		if err != nil {
			continue
		}
		// "pg_waldump (PostgreSQL) 15.18 (Debian ...)"
		if f := strings.Fields(string(out)); len(f) >= 3 && strings.Split(f[2], ".")[0] == strconv.Itoa(major) {
			return c
		}
	}
	return ""
}
