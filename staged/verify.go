package staged

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
)

// Verification is what Verify found.
type Verification struct {
	Manifest *Manifest
	Segments int      // WAL segments checked
	Problems []string // each one makes the backup unusable
	Notes    []string // what could not be checked, and why
}

func (v *Verification) problem(format string, args ...any) {
	v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
}

// Verify checks that the staged backup in dir is complete and intact:
// manifest, every file's size and SHA-256, backup_label against the
// manifest, and for staged WAL every segment from the start LSN's to the stop
// LSN's, page by page, and then pg_waldump over the range when one for the
// server's major is installed.
func Verify(ctx context.Context, dir string) *Verification {
	v := &Verification{}
	m, err := ReadManifest(dir)
	if err != nil {
		v.problem("%v", err)
		return v
	}
	v.Manifest = m
	if m.Status != StatusComplete {
		v.problem("manifest: status %q, want %q", m.Status, StatusComplete)
	}
	if err := pgformat.ValidateSegmentSize(m.WALSegmentSize); err != nil {
		v.problem("manifest: %v", err)
		return v
	}
	v.checkFiles(ctx, dir)
	v.checkLabel(dir)
	if m.WALMode == WALCopy {
		v.checkWAL(ctx, dir)
	} else {
		v.Notes = append(v.Notes, fmt.Sprintf("no WAL staged (wal_mode %s): a restore needs %s..%s from the WAL archive", m.WALMode, m.StartWAL, m.StopWAL))
	}
	return v
}

func (v *Verification) checkFiles(ctx context.Context, dir string) {
	listed := map[string]bool{ManifestFile: true}
	for _, f := range v.Manifest.Files {
		listed[f.Path] = true
		if ctx.Err() != nil {
			return
		}
		size, sum, err := hashFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		switch {
		case err != nil:
			v.problem("%s: %v", f.Path, err)
		case size != f.Size:
			v.problem("%s: %d bytes, manifest says %d", f.Path, size, f.Size)
		case sum != f.SHA256:
			v.problem("%s: SHA-256 %s, manifest says %s", f.Path, sum, f.SHA256)
		}
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !listed[filepath.ToSlash(rel)] {
			v.problem("%s: not in the manifest", filepath.ToSlash(rel))
		}
		return nil
	})
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

func (v *Verification) checkLabel(dir string) {
	m := v.Manifest
	data, err := os.ReadFile(filepath.Join(dir, LabelFile))
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

func (v *Verification) checkWAL(ctx context.Context, dir string) {
	m := v.Manifest
	walDir := filepath.Join(dir, WALDir)
	listed, err := WALList(dir)
	if err != nil {
		v.problem("%v", err)
	}
	if m.StopLSN <= m.StartLSN {
		v.problem("manifest: stop %s is not after start %s", m.StopLSN, m.StartLSN)
		return
	}
	sysID, _ := strconv.ParseUint(m.SystemIdentifier, 10, 64)
	major, known := pgformat.LookupMajor(pgformat.MajorOf(m.ServerVersionNum))
	if !known {
		v.Notes = append(v.Notes, fmt.Sprintf("page magic of server version %d unknown: not checked", m.ServerVersionNum))
	}
	segSize := m.WALSegmentSize
	first, last := pgformat.SegmentNo(m.StartLSN, segSize), pgformat.SegmentNo(m.StopLSN-1, segSize)
	for n := first; n <= last && ctx.Err() == nil; n++ {
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
		if err := checkSegment(filepath.Join(walDir, name), n, segSize, need, m.Timeline, sysID, major.PageMagic); err != nil {
			v.problem("%s: %v", name, err)
		}
		v.Segments++
	}
	if len(v.Problems) > 0 {
		v.Notes = append(v.Notes, "pg_waldump not run: the segments are already known to be damaged")
		return
	}
	v.waldump(ctx, walDir)
}

// checkSegment checks the size of a segment and the header of every page
// that holds WAL, up to need bytes into it. A segment ended by a WAL switch
// is zero-filled after the switch record: zero pages may end a segment, but
// not precede a written page, and not lie within the WAL the backup needs
// when that ends inside this segment. pg_waldump checks the records.
func checkSegment(path string, segNo, segSize, need uint64, tli uint32, sysID uint64, magic uint16) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if uint64(fi.Size()) != segSize {
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
