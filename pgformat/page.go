package pgformat

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// XLogBlockSize is XLOG_BLCKSZ, which PostgreSQL builds with 8 kB unless
// configured otherwise; the long header records it, and CheckPage checks it.
const XLogBlockSize = 8192

// Offsets in XLogPageHeaderData and XLogLongPageHeaderData
// (xlog_internal.h). PostgreSQL writes them in the server's byte order; like
// the server, this tool runs on a little-endian host.
const (
	xlpMagic      = 0
	xlpInfo       = 2
	xlpTimeline   = 4
	xlpPageAddr   = 8
	xlpSysID      = 24
	xlpSegSize    = 32
	xlpXLogBlcksz = 36
	xlpLongHeader = 0x0002

	// LongHeaderSize is the size of the long header that starts every segment.
	LongHeaderSize = 40
)

// CheckSegmentHeader verifies the long header at the start of segment segNo:
// a segment that was recycled but not yet rewritten, or that belongs to
// another cluster, has a different page address or system identifier. A
// systemID of 0 skips that comparison.
func CheckSegmentHeader(b []byte, segNo, segSize, systemID uint64) error {
	if len(b) < LongHeaderSize {
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

// CheckPage checks the header of the XLogBlockSize page at addr, which
// holds WAL of a backup on timeline tli: its magic (unless magic is 0, for
// a major whose magic is unknown), a timeline no later than tli, its own
// address, and on a segment's first page the block size.
func CheckPage(page []byte, addr LSN, segSize uint64, tli uint32, magic uint16) error {
	le := binary.LittleEndian
	if len(page) != XLogBlockSize {
		return fmt.Errorf("page %s: %d bytes, want %d", addr, len(page), XLogBlockSize)
	}
	if magic != 0 && le.Uint16(page[xlpMagic:]) != magic {
		return fmt.Errorf("page %s: magic 0x%04X, want 0x%04X for this server version", addr, le.Uint16(page[xlpMagic:]), magic)
	}
	if got := le.Uint32(page[xlpTimeline:]); got == 0 || got > tli {
		return fmt.Errorf("page %s: timeline %d, backup is on timeline %d", addr, got, tli)
	}
	if got := LSN(le.Uint64(page[xlpPageAddr:])); got != addr {
		return fmt.Errorf("page %s: page address is %s", addr, got)
	}
	if uint64(addr)%segSize == 0 && le.Uint32(page[xlpXLogBlcksz:]) != XLogBlockSize {
		return fmt.Errorf("WAL block size %d, want %d", le.Uint32(page[xlpXLogBlcksz:]), XLogBlockSize)
	}
	return nil
}

// HeaderSystemID returns the system identifier in the long header that
// starts a segment; ok is false when b does not start with one.
func HeaderSystemID(b []byte) (id uint64, ok bool) {
	if len(b) < LongHeaderSize || binary.LittleEndian.Uint16(b[xlpInfo:])&xlpLongHeader == 0 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[xlpSysID:]), true
}
