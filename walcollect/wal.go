// Package walcollect plans which WAL files a backup needs from its LSNs and
// copies them into a backup being staged: from the local pg_wal or another
// Source, checking each segment's header, with a standby's unfinished last
// segment zero-filled past what it received.
package walcollect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// SourceMode says where --wal=copy reads WAL from.
type SourceMode string

// The WAL source modes.
const (
	SourceAuto  SourceMode = "auto"  // the local pg_wal when readable, else SQL
	SourceLocal SourceMode = "local" // the data directory's pg_wal, read by this process
	SourceSQL   SourceMode = "sql"   // pg_read_binary_file over the backup's session
)

// ParseSourceMode checks a --wal-source value.
func ParseSourceMode(s string) (SourceMode, error) {
	switch m := SourceMode(s); m {
	case SourceAuto, SourceLocal, SourceSQL:
		return m, nil
	}
	return "", fmt.Errorf("--wal-source=%q: want auto, local or sql", s)
}

// Source opens a cluster's WAL files by name.
type Source interface {
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	String() string
}

// DirSource reads WAL files from a local pg_wal directory.
type DirSource string

// Open opens a file in the directory; a missing file wraps fs.ErrNotExist.
func (d DirSource) Open(_ context.Context, name string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(string(d), name))
}

func (d DirSource) String() string { return "local:" + string(d) }

// Plan lists the WAL files a restore of one backup needs.
type Plan struct {
	Timeline     uint32
	FirstSegment uint64 // segment number holding the start LSN
	LastSegment  uint64 // segment number holding the last byte before the stop LSN
	SegmentSize  uint64
	SystemID     uint64 // checked against each segment's long page header; 0 skips

	History       []string // required timeline history files
	BackupHistory string   // the server's *.backup file: staged when present

	// ZeroFrom, when set, is where a standby's last segment stops holding
	// WAL it has received: the segment is still being filled, and the bytes
	// from here on are staged as zeros, which recovery reads as the end of
	// WAL. It is never before the stop LSN.
	ZeroFrom pgformat.LSN
}

// NewPlan computes the WAL files for a backup whose label is bl and that
// stopped at stop on timeline stopTLI. The names come from arithmetic alone:
// nothing is guessed from file times.
func NewPlan(bl *pgformat.BackupLabel, stopTLI uint32, stop pgformat.LSN, segSize, systemID uint64) (*Plan, error) {
	if stopTLI != bl.StartTimeline {
		return nil, fmt.Errorf("timeline changed during the backup (%d to %d): not supported", bl.StartTimeline, stopTLI)
	}
	segs, err := pgformat.RequiredSegments(stopTLI, bl.StartLSN, stop, segSize)
	if err != nil {
		return nil, err
	}
	if segs[0] != bl.StartWALFile {
		return nil, fmt.Errorf("computed start segment %s, but backup_label names %s", segs[0], bl.StartWALFile)
	}
	p := &Plan{
		Timeline:      stopTLI,
		FirstSegment:  pgformat.SegmentNo(bl.StartLSN, segSize),
		LastSegment:   pgformat.SegmentNo(stop-1, segSize),
		SegmentSize:   segSize,
		SystemID:      systemID,
		BackupHistory: pgformat.BackupHistoryFileName(stopTLI, bl.StartLSN, segSize),
	}
	if stopTLI > 1 {
		p.History = []string{pgformat.HistoryFileName(stopTLI)}
	}
	return p, nil
}

// Segments names the plan's segments, oldest first.
func (p *Plan) Segments() []string {
	names := make([]string, 0, p.LastSegment-p.FirstSegment+1)
	for n := p.FirstSegment; n <= p.LastSegment; n++ {
		names = append(names, pgformat.SegmentFileName(p.Timeline, n, p.SegmentSize))
	}
	return names
}

// Files counts the files Collect copies for the plan, at most: the
// segments, the history files and the backup history file.
func (p *Plan) Files() int {
	return int(p.LastSegment-p.FirstSegment+1) + len(p.History) + 1
}

// Collect copies every file of the plan from src into the wal/ directory of
// the backup being staged in dst and writes its wal_list. Every missing or
// damaged file is reported, not only the first; a context cancellation
// stops at once. copied, when not nil, is counted up by one per file
// handled, for a progress line. From a local pg_wal two files are copied
// at a time: one is hashed while the other waits for the disk.
func Collect(ctx context.Context, dst *staged.Staging, src Source, p *Plan, copied *atomic.Int64) error {
	type file struct {
		name     string
		size     int64 // -1: any
		check    func([]byte) error
		zeroFrom *pgformat.LSN
	}
	var files []file
	for _, name := range p.History {
		files = append(files, file{name: name, size: -1})
	}
	for n := p.FirstSegment; n <= p.LastSegment; n++ {
		f := file{name: pgformat.SegmentFileName(p.Timeline, n, p.SegmentSize), size: int64(p.SegmentSize),
			check: segmentCheck(n, p.SegmentSize, p.SystemID)}
		if n == p.LastSegment && p.ZeroFrom != 0 {
			f.zeroFrom = &p.ZeroFrom
		}
		files = append(files, f)
	}
	files = append(files, file{name: p.BackupHistory, size: -1})

	errs, ok := make([]error, len(files)), make([]bool, len(files))
	stage := func(i int) {
		f := files[i]
		if copied != nil {
			defer copied.Add(1)
		}
		if ctx.Err() != nil {
			return
		}
		r, err := src.Open(ctx, f.name)
		if f.name == p.BackupHistory && errors.Is(err, fs.ErrNotExist) {
			return // optional
		}
		if err == nil {
			var in io.Reader = r
			if f.zeroFrom != nil {
				in = &zeroAfter{r: r, n: int64(uint64(*f.zeroFrom) % p.SegmentSize)}
			}
			_, err = dst.Put(ctx, path.Join(staged.WALDir, f.name), in, f.size, f.check)
			r.Close()
		}
		if err != nil {
			errs[i] = fmt.Errorf("WAL file %s from %s: %w", f.name, src, err)
			return
		}
		ok[i] = true
	}
	workers := 1
	if _, local := src.(DirSource); local {
		workers = 2
	}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i := range files {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			stage(i)
		})
	}
	wg.Wait()

	var merr *multierror.Error
	var done []string
	for i, f := range files {
		merr = multierror.Append(merr, errs[i])
		if ok[i] {
			done = append(done, f.name)
		}
	}
	if err := ctx.Err(); err != nil {
		return multierror.Append(merr, err)
	}
	if err := merr.ErrorOrNil(); err != nil {
		return err
	}
	slices.Sort(done) // PostgreSQL's WAL file names sort oldest first
	return dst.WriteFile(staged.WALListFile, []byte(strings.Join(done, "\n")+"\n"))
}

// zeroAfter passes the first n bytes of r and replaces the rest with zeros.
type zeroAfter struct {
	r io.Reader
	n int64
}

func (z *zeroAfter) Read(p []byte) (int, error) {
	k, err := z.r.Read(p)
	if z.n < int64(k) {
		clear(p[max(z.n, 0):k])
	}
	z.n -= int64(k)
	return k, err
}

// segmentCheck verifies the header of segment segNo as it is read.
func segmentCheck(segNo, segSize, systemID uint64) func([]byte) error {
	return func(b []byte) error { return pgformat.CheckSegmentHeader(b, segNo, segSize, systemID) }
}
