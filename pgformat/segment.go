package pgformat

import (
	"fmt"
	"math/bits"
	"strings"
)

// Segment sizes PostgreSQL accepts for initdb --wal-segsize (in bytes):
// powers of two from 1 MiB to 1 GiB (IsValidWalSegSize in xlog_internal.h).
const (
	MinSegmentSize = 1 << 20
	MaxSegmentSize = 1 << 30
)

// ValidateSegmentSize reports whether size is a segment size PostgreSQL can use.
func ValidateSegmentSize(size uint64) error {
	if size < MinSegmentSize || size > MaxSegmentSize || bits.OnesCount64(size) != 1 {
		return fmt.Errorf("invalid WAL segment size %d: want a power of two from 1 MiB to 1 GiB", size)
	}
	return nil
}

// SegmentNo returns the number of the segment holding lsn.
func SegmentNo(lsn LSN, segSize uint64) uint64 { return uint64(lsn) / segSize }

// SegmentFileName returns the WAL file name of segment segNo on timeline tli,
// "TTTTTTTTXXXXXXXXYYYYYYYY": the "log id" and "segment in log id" halves
// split segNo at 4 GiB of WAL (XLogFileName in xlog_internal.h).
func SegmentFileName(tli uint32, segNo, segSize uint64) string {
	perID := uint64(1<<32) / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, segNo/perID, segNo%perID)
}

// RequiredSegments names, oldest first, every WAL segment on timeline tli a
// restore of a backup from start to stop needs. stop is the end of the backup's
// last record, so the last byte needed is stop-1: a stop on a segment boundary
// must not pull in the following segment.
func RequiredSegments(tli uint32, start, stop LSN, segSize uint64) ([]string, error) {
	if err := ValidateSegmentSize(segSize); err != nil {
		return nil, err
	}
	if stop <= start {
		return nil, fmt.Errorf("stop LSN %s is not after start LSN %s", stop, start)
	}
	first, last := SegmentNo(start, segSize), SegmentNo(stop-1, segSize)
	names := make([]string, 0, last-first+1)
	for n := first; n <= last; n++ {
		names = append(names, SegmentFileName(tli, n, segSize))
	}
	return names, nil
}

// HistoryFileName names the timeline history file of tli ("00000002.history").
// Timeline 1 has none.
func HistoryFileName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// BackupHistoryFileName names the "*.backup" file the server writes into
// pg_wal when a backup that started at start on timeline tli stops
// (BackupHistoryFileName in xlog_internal.h).
func BackupHistoryFileName(tli uint32, start LSN, segSize uint64) string {
	return fmt.Sprintf("%s.%08X.backup",
		SegmentFileName(tli, SegmentNo(start, segSize), segSize), uint64(start)%segSize)
}

// IsSegmentName reports whether name is a WAL segment's file name: 24
// upper-case hex digits (IsXLogFileName in xlog_internal.h).
func IsSegmentName(name string) bool { return len(name) == 24 && upperHex(name) }

// IsHistoryName reports whether name is a timeline history file's name.
func IsHistoryName(name string) bool {
	id, ok := strings.CutSuffix(name, ".history")
	return ok && len(id) == 8 && upperHex(id)
}

// IsBackupHistoryName reports whether name is a backup history file's name.
func IsBackupHistoryName(name string) bool {
	rest, ok := strings.CutSuffix(name, ".backup")
	seg, off, dot := strings.Cut(rest, ".")
	return ok && dot && IsSegmentName(seg) && len(off) == 8 && upperHex(off)
}

// IsWALFileName reports whether name is any file a backup's WAL consists of.
func IsWALFileName(name string) bool {
	return IsSegmentName(name) || IsHistoryName(name) || IsBackupHistoryName(name)
}

func upperHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9') && !('A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
