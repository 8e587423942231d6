package walcollect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-multierror"
)

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
	ZeroFrom LSN
}

// NewPlan computes the WAL files for a backup whose label is bl and that
// stopped at stop on timeline stopTLI. The names come from arithmetic alone:
// nothing is guessed from file times.
func NewPlan(bl *BackupLabel, stopTLI uint32, stop LSN, segSize, systemID uint64) (*Plan, error) {
	if stopTLI != bl.StartTimeline {
		return nil, fmt.Errorf("timeline changed during the backup (%d to %d): not supported", bl.StartTimeline, stopTLI)
	}
	segs, err := RequiredSegments(stopTLI, bl.StartLSN, stop, segSize)
	if err != nil {
		return nil, err
	}
	if segs[0] != bl.StartWALFile {
		return nil, fmt.Errorf("computed start segment %s, but backup_label names %s", segs[0], bl.StartWALFile)
	}
	p := &Plan{
		Timeline:      stopTLI,
		FirstSegment:  SegmentNo(bl.StartLSN, segSize),
		LastSegment:   SegmentNo(stop-1, segSize),
		SegmentSize:   segSize,
		SystemID:      systemID,
		BackupHistory: BackupHistoryFileName(stopTLI, bl.StartLSN, segSize),
	}
	if stopTLI > 1 {
		p.History = []string{HistoryFileName(stopTLI)}
	}
	return p, nil
}

// Segments names the plan's segments, oldest first.
func (p *Plan) Segments() []string {
	names := make([]string, 0, p.LastSegment-p.FirstSegment+1)
	for n := p.FirstSegment; n <= p.LastSegment; n++ {
		names = append(names, SegmentFileName(p.Timeline, n, p.SegmentSize))
	}
	return names
}

// StageWAL copies every file of the plan from src into the staging's wal/
// directory and writes wal_list. Every missing or damaged file is reported,
// not only the first; a context cancellation stops at once.
func (s *Staging) StageWAL(ctx context.Context, src Source, p *Plan) error {
	var merr *multierror.Error
	var staged []string
	stage := func(name string, wantSize int64, check func([]byte) error, zeroFrom *LSN) {
		if ctx.Err() != nil {
			return
		}
		r, err := src.Open(ctx, name)
		optional := name == p.BackupHistory
		if optional && errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err == nil {
			var in io.Reader = r
			if zeroFrom != nil {
				in = &zeroAfter{r: r, n: int64(uint64(*zeroFrom) % p.SegmentSize)}
			}
			_, err = s.put(ctx, path.Join(WALDir, name), in, check, wantSize)
			r.Close()
		}
		if err != nil {
			merr = multierror.Append(merr, fmt.Errorf("WAL file %s from %s: %w", name, src, err))
			return
		}
		staged = append(staged, name)
	}
	for _, name := range p.History {
		stage(name, -1, nil, nil)
	}
	for n := p.FirstSegment; n <= p.LastSegment; n++ {
		var partial *LSN
		if n == p.LastSegment && p.ZeroFrom != 0 {
			partial = &p.ZeroFrom
		}
		stage(SegmentFileName(p.Timeline, n, p.SegmentSize), int64(p.SegmentSize), segmentCheck(n, p.SegmentSize, p.SystemID), partial)
	}
	stage(p.BackupHistory, -1, nil, nil)
	if err := ctx.Err(); err != nil {
		return multierror.Append(merr, err)
	}
	if err := merr.ErrorOrNil(); err != nil {
		return err
	}
	slices.Sort(staged) // PostgreSQL's WAL file names sort oldest first
	return s.WriteFile(WALListFile, []byte(strings.Join(staged, "\n")+"\n"))
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

// Offsets in XLogLongPageHeaderData (xlog_internal.h), which starts every
// segment. PostgreSQL writes it in the server's byte order; like the server,
// this tool runs on a little-endian host.
const (
	xlpInfo        = 2
	xlpPageAddr    = 8
	xlpSysID       = 24
	xlpSegSize     = 32
	longHeaderSize = 40
	xlpLongHeader  = 0x0002
)

// segmentCheck verifies the first page of segment segNo: a segment that was
// recycled but not yet rewritten, or that belongs to another cluster, has a
// different page address or system identifier.
func segmentCheck(segNo, segSize, systemID uint64) func([]byte) error {
	return func(b []byte) error {
		if len(b) < longHeaderSize {
			return fmt.Errorf("only %d bytes: too short for a WAL segment", len(b))
		}
		le := binary.LittleEndian
		if le.Uint16(b[xlpInfo:])&xlpLongHeader == 0 {
			return errors.New("first page has no long header")
		}
		if got, want := le.Uint64(b[xlpPageAddr:]), segNo*segSize; got != want {
			return fmt.Errorf("first page address is %s, want %s (recycled or foreign segment)", LSN(got), LSN(want))
		}
		if got := le.Uint32(b[xlpSegSize:]); uint64(got) != segSize {
			return fmt.Errorf("segment size in header is %d, want %d", got, segSize)
		}
		if got := le.Uint64(b[xlpSysID:]); systemID != 0 && got != systemID {
			return fmt.Errorf("system identifier in header is %d, want %d (segment of another cluster)", got, systemID)
		}
		return nil
	}
}
