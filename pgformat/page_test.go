package pgformat

import (
	"encoding/binary"
	"strings"
	"testing"
)

// page fabricates the WAL page at addr as PostgreSQL writes it, with a long
// header when it starts a segment.
func page(addr LSN, segSize uint64, tli uint32, sysID uint64) []byte {
	b := make([]byte, XLogBlockSize)
	le := binary.LittleEndian
	le.PutUint16(b[xlpMagic:], 0xD110)
	le.PutUint32(b[xlpTimeline:], tli)
	le.PutUint64(b[xlpPageAddr:], uint64(addr))
	if uint64(addr)%segSize == 0 {
		le.PutUint16(b[xlpInfo:], xlpLongHeader)
		le.PutUint64(b[xlpSysID:], sysID)
		le.PutUint32(b[xlpSegSize:], uint32(segSize))
		le.PutUint32(b[xlpXLogBlcksz:], XLogBlockSize)
	}
	return b
}

func TestCheckSegmentHeader(t *testing.T) {
	const sysID = 7300000000000000001
	tests := []struct {
		name  string
		b     []byte
		segNo uint64
		sysID uint64
		want  string // "" for no error
	}{
		{"valid", page(3*mb, mb, 1, sysID), 3, sysID, ""},
		{"system identifier not known", page(3*mb, mb, 1, sysID), 3, 0, ""},
		{"too short", page(3*mb, mb, 1, sysID)[:39], 3, sysID, "too short"},
		{"recycled", page(1*mb, mb, 1, sysID), 3, sysID, "recycled or foreign"},
		{"another cluster", page(3*mb, mb, 1, sysID+1), 3, sysID, "another cluster"},
		{"no long header", page(3*mb+XLogBlockSize, mb, 1, sysID), 3, sysID, "no long header"},
		{"other segment size", page(48*mb, 16*mb, 1, sysID), 48, sysID, "segment size in header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSegmentHeader(tt.b, tt.segNo, mb, tt.sysID)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckSegmentHeader = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCheckPage(t *testing.T) {
	addr := LSN(3*mb + 2*XLogBlockSize)
	tests := []struct {
		name  string
		page  []byte
		addr  LSN
		tli   uint32
		magic uint16
		want  string
	}{
		{"valid", page(addr, mb, 1, 0), addr, 1, 0xD110, ""},
		{"magic unknown", page(addr, mb, 1, 0), addr, 1, 0, ""},
		{"first page", page(3*mb, mb, 1, 9), 3 * mb, 1, 0xD110, ""},
		{"earlier timeline", page(addr, mb, 1, 0), addr, 2, 0xD110, ""},
		{"other major", page(addr, mb, 1, 0), addr, 1, 0xD097, "magic 0xD110, want 0xD097"},
		{"later timeline", page(addr, mb, 2, 0), addr, 1, 0xD110, "timeline 2"},
		{"timeline 0", page(addr, mb, 0, 0), addr, 1, 0xD110, "timeline 0"},
		{"misplaced", page(addr, mb, 1, 0), addr + XLogBlockSize, 1, 0xD110, "page address is"},
		{"short", page(addr, mb, 1, 0)[:100], addr, 1, 0xD110, "100 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckPage(tt.page, tt.addr, mb, tt.tli, tt.magic)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckPage = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLookupMajor(t *testing.T) {
	for num := 10; num <= 18; num++ {
		m, ok := LookupMajor(num)
		if !ok || m.Num != num || m.PageMagic == 0 || m.RecoveryConf != (num < 12) {
			t.Errorf("LookupMajor(%d) = %+v, %v", num, m, ok)
		}
	}
	if m, ok := LookupMajor(99); ok || m.PageMagic != 0 {
		t.Errorf("LookupMajor(99) = %+v, %v: want unknown", m, ok)
	}
	if got := MajorOf(150004); got != 15 {
		t.Errorf("MajorOf(150004) = %d", got)
	}
}

func TestHeaderSystemID(t *testing.T) {
	if id, ok := HeaderSystemID(page(3*mb, mb, 1, 42)); !ok || id != 42 {
		t.Errorf("long header: %d, %v", id, ok)
	}
	if _, ok := HeaderSystemID(page(3*mb+XLogBlockSize, mb, 1, 42)); ok {
		t.Error("a short header has no system identifier")
	}
	if _, ok := HeaderSystemID(make([]byte, 10)); ok {
		t.Error("10 bytes have no system identifier")
	}
}
