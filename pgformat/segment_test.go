package pgformat

import (
	"fmt"
	"slices"
	"testing"
)

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in      string
		want    LSN
		wantErr bool
	}{
		{in: "0/0", want: 0},
		{in: "0/3000028", want: 0x3000028},
		{in: "00000000/03000028", want: 0x3000028},
		{in: "16/B374D848", want: 0x16_B374D848},
		{in: "ffffffff/ffffffff", want: 0xFFFFFFFF_FFFFFFFF},
		{in: "0000001A/0000000F", want: 0x1A_0000000F},
		{in: "", wantErr: true},
		{in: "0", wantErr: true},
		{in: "/0", wantErr: true},
		{in: "0/", wantErr: true},
		{in: "1/2/3", wantErr: true},
		{in: "000000001/0", wantErr: true},
		{in: "0/123456789", wantErr: true},
		{in: "0x1/0", wantErr: true},
		{in: "+1/0", wantErr: true},
		{in: "g/0", wantErr: true},
		{in: " 0/0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLSN(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseLSN(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("ParseLSN(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestLSNStringRoundTrip(t *testing.T) {
	for _, l := range []LSN{0, 0x3000028, 0x1_00000000, 0xFFFFFFFF_FFFFFFFF} {
		got, err := ParseLSN(l.String())
		if err != nil || got != l {
			t.Errorf("ParseLSN(%q) = %s, %v; want %s", l.String(), got, err, l)
		}
	}
	if s := LSN(0x16_0B374D84).String(); s != "16/B374D84" {
		t.Errorf("String() = %q, want PostgreSQL's unpadded form 16/B374D84", s)
	}
}

const (
	mb = 1 << 20
	gb = 1 << 30
)

func TestSegmentFileName(t *testing.T) {
	tests := []struct {
		tli     uint32
		lsn     LSN
		segSize uint64
		want    string
	}{
		{1, 0x3000028, 16 * mb, "000000010000000000000003"},
		{1, 0xFFFFFFFF, 16 * mb, "0000000100000000000000FF"},
		{1, 0x1_00000000, 16 * mb, "000000010000000100000000"},
		{1, 0x1_00FFFFFF, 16 * mb, "000000010000000100000000"},
		{1, 0x1_01000000, 16 * mb, "000000010000000100000001"},
		{0x1A, 0x2_0B000000, 16 * mb, "0000001A000000020000000B"},
		{1, 0xFFFFF, 1 * mb, "000000010000000000000000"},
		{1, 0x100000, 1 * mb, "000000010000000000000001"},
		{1, 0xFFFFFFFF, 1 * mb, "000000010000000000000FFF"},
		{1, 0x1_00100000, 1 * mb, "000000010000000100000001"},
		{1, 0x3FFFFFF, 64 * mb, "000000010000000000000000"},
		{1, 0x4000000, 64 * mb, "000000010000000000000001"},
		{1, 0xFC000000, 64 * mb, "00000001000000000000003F"},
		{1, 0x3FFFFFFF, 1 * gb, "000000010000000000000000"},
		{1, 0xC0000000, 1 * gb, "000000010000000000000003"},
		{1, 0x2_40000000, 1 * gb, "000000010000000200000001"},
		{2, 0xFFFFFFFF_FFFFFFFF, 1 * gb, "00000002FFFFFFFF00000003"},
	}
	for _, tt := range tests {
		t.Run(tt.want+"/"+tt.lsn.String(), func(t *testing.T) {
			got := SegmentFileName(tt.tli, SegmentNo(tt.lsn, tt.segSize), tt.segSize)
			if got != tt.want {
				t.Fatalf("segment of %s with %d MiB segments = %s, want %s", tt.lsn, tt.segSize/mb, got, tt.want)
			}
		})
	}
}

func TestValidateSegmentSize(t *testing.T) {
	for size := uint64(mb); size <= gb; size *= 2 {
		if err := ValidateSegmentSize(size); err != nil {
			t.Errorf("ValidateSegmentSize(%d) = %v", size, err)
		}
	}
	for _, size := range []uint64{0, 8192, mb / 2, 3 * mb, 2 * gb} {
		if ValidateSegmentSize(size) == nil {
			t.Errorf("ValidateSegmentSize(%d) accepted an invalid size", size)
		}
	}
}

func TestRequiredSegments(t *testing.T) {
	tests := []struct {
		name        string
		start, stop LSN
		segSize     uint64
		want        []string
		wantErr     bool
	}{
		{name: "within one segment", start: 0x3000028, stop: 0x3000138, segSize: 16 * mb,
			want: []string{"000000010000000000000003"}},
		{name: "stop on a boundary stays in the segment before", start: 0x3000028, stop: 0x4000000, segSize: 16 * mb,
			want: []string{"000000010000000000000003"}},
		{name: "stop one past a boundary", start: 0x3000028, stop: 0x4000001, segSize: 16 * mb,
			want: []string{"000000010000000000000003", "000000010000000000000004"}},
		{name: "start on a boundary", start: 0x4000000, stop: 0x6000010, segSize: 16 * mb,
			want: []string{"000000010000000000000004", "000000010000000000000005", "000000010000000000000006"}},
		{name: "crossing the 4 GiB log id", start: 0xFF000028, stop: 0x1_01000000, segSize: 16 * mb,
			want: []string{"0000000100000000000000FF", "000000010000000100000000"}},
		{name: "1 MiB segments", start: 0xFFF00028, stop: 0x1_00100001, segSize: mb,
			want: []string{"000000010000000000000FFF", "000000010000000100000000", "000000010000000100000001"}},
		{name: "1 GiB segments", start: 0xC0000028, stop: 0x1_40000000, segSize: gb,
			want: []string{"000000010000000000000003", "000000010000000100000000"}},
		{name: "stop equals start", start: 0x3000028, stop: 0x3000028, segSize: 16 * mb, wantErr: true},
		{name: "stop before start", start: 0x3000028, stop: 0x2000000, segSize: 16 * mb, wantErr: true},
		{name: "invalid segment size", start: 0x3000028, stop: 0x4000000, segSize: 3 * mb, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RequiredSegments(1, tt.start, tt.stop, tt.segSize)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("RequiredSegments(%s, %s) = %v, want %v", tt.start, tt.stop, got, tt.want)
			}
		})
	}
}

func TestHistoryFileNames(t *testing.T) {
	if got := HistoryFileName(0x1A); got != "0000001A.history" {
		t.Errorf("HistoryFileName = %s", got)
	}
	if got := BackupHistoryFileName(1, 0x3000028, 16*mb); got != "000000010000000000000003.00000028.backup" {
		t.Errorf("BackupHistoryFileName = %s", got)
	}
	if got := BackupHistoryFileName(2, 0x1_00100060, mb); got != "000000020000000100000001.00000060.backup" {
		t.Errorf("BackupHistoryFileName = %s", got)
	}
}

// TestSegmentBoundariesAllSizes walks every segment size PostgreSQL allows
// across a segment boundary and across the 4 GiB "log id" boundary.
func TestSegmentBoundariesAllSizes(t *testing.T) {
	for size := uint64(mb); size <= gb; size *= 2 {
		perID := uint64(1<<32) / size
		for _, boundary := range []LSN{LSN(5 * size), LSN(1 << 32), LSN(3<<32 + 2*size)} {
			before, at := SegmentNo(boundary-1, size), SegmentNo(boundary, size)
			if at != before+1 || uint64(boundary)%size != 0 {
				t.Fatalf("size %d: %s is not the first byte of a segment", size, boundary)
			}
			got, err := RequiredSegments(1, boundary-1, boundary+1, size)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{SegmentFileName(1, before, size), SegmentFileName(1, at, size)}
			if !slices.Equal(got, want) {
				t.Fatalf("size %d around %s: %v, want %v", size, boundary, got, want)
			}
			// A stop exactly on the boundary does not need the next segment.
			got, _ = RequiredSegments(1, boundary-1, boundary, size)
			if len(got) != 1 || got[0] != want[0] {
				t.Fatalf("size %d, stop on %s: %v", size, boundary, got)
			}
		}
		// The last segment of a log id and the first of the next.
		if got := SegmentFileName(1, perID-1, size); got != fmt.Sprintf("0000000100000000%08X", perID-1) {
			t.Errorf("size %d: last segment of log 0 is %s", size, got)
		}
		if got := SegmentFileName(1, perID, size); got != "000000010000000100000000" {
			t.Errorf("size %d: first segment of log 1 is %s", size, got)
		}
	}
}

func TestWALFileNames(t *testing.T) {
	tests := []struct {
		name                      string
		segment, history, backups bool
	}{
		{"000000010000000000000003", true, false, false},
		{"00000002.history", false, true, false},
		{"000000010000000000000003.00000028.backup", false, false, true},
		{"00000001000000000000000a", false, false, false}, // PostgreSQL writes upper case
		{"00000001000000000000003", false, false, false},
		{"0000000100000000000000033", false, false, false},
		{"../../../../tmp/x", false, false, false},
		{"000000010000000000000003/../x", false, false, false},
		{"0000002.history", false, false, false},
		{"00000002.history.x", false, false, false},
		{"000000010000000000000003.0000028.backup", false, false, false},
		{"000000010000000000000003..backup", false, false, false},
		{"", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if IsSegmentName(tt.name) != tt.segment || IsHistoryName(tt.name) != tt.history || IsBackupHistoryName(tt.name) != tt.backups ||
				IsWALFileName(tt.name) != (tt.segment || tt.history || tt.backups) {
				t.Errorf("%q: segment %v history %v backup %v", tt.name, IsSegmentName(tt.name), IsHistoryName(tt.name), IsBackupHistoryName(tt.name))
			}
		})
	}
}

// BenchmarkRequiredSegments plans the WAL of a backup that spans 1 GiB of
// 16 MiB segments.
func BenchmarkRequiredSegments(b *testing.B) {
	start, stop := LSN(0x1_0000_0028), LSN(0x1_4000_0100)
	for b.Loop() {
		if segs, err := RequiredSegments(1, start, stop, 16<<20); err != nil || len(segs) != 65 {
			b.Fatal(segs, err)
		}
	}
}

// BenchmarkParseLSN reads an LSN as pg_backup_stop prints it.
func BenchmarkParseLSN(b *testing.B) {
	for b.Loop() {
		if _, err := ParseLSN("3F/A1B2C3D8"); err != nil {
			b.Fatal(err)
		}
	}
}
