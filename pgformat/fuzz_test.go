package pgformat

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseLSN: an LSN that parses prints as one that parses to it again.
func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/3000028", "FFFFFFFF/FFFFFFFF", "0/0", "+1/2", "0x1/2", "1/", "/1", "1//2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lsn, err := ParseLSN(s)
		if err != nil {
			return
		}
		again, err := ParseLSN(lsn.String())
		if err != nil || again != lsn {
			t.Fatalf("%q parsed to %s, which parses to %v, %v", s, lsn, again, err)
		}
	})
}

// FuzzWALFileName: what passes as a WAL file name is a plain file name.
func FuzzWALFileName(f *testing.F) {
	for _, s := range []string{"000000010000000000000003", "00000002.history", "000000010000000000000003.00000028.backup", "../x", "0000000100000000000000030"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if IsWALFileName(s) && (strings.ContainsAny(s, "/\\\x00 \n") || strings.HasPrefix(s, ".") || len(s) > 40) {
			t.Fatalf("%q passes as a WAL file name", s)
		}
	})
}

// FuzzParseBackupLabel: a label that parses names a start segment on its
// timeline.
func FuzzParseBackupLabel(f *testing.F) {
	f.Add([]byte(label15))
	f.Add([]byte(label10))
	f.Add([]byte("START WAL LOCATION: 0/2000028 (file 00000000000000000000000Z)\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		bl, err := ParseBackupLabel(data)
		if err != nil {
			return
		}
		if !IsSegmentName(bl.StartWALFile) || bl.StartTimeline == 0 {
			t.Fatalf("parsed label: start file %q, timeline %d", bl.StartWALFile, bl.StartTimeline)
		}
	})
}

// FuzzTablespaceMap: a map that parses holds clean absolute locations and
// survives a round trip.
func FuzzTablespaceMap(f *testing.F) {
	for _, s := range []string{"16400 /srv/ts\n", "16400 /a b\n16401 /c\n", "x /a\n", "16400 rel\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := ParseTablespaceMap(data)
		if err != nil {
			return
		}
		for _, x := range ts {
			if !strings.HasPrefix(x.Location, "/") || strings.Contains(x.Location, "/../") || strings.Contains(x.Location, "\n") {
				t.Fatalf("location %q", x.Location)
			}
		}
		again, err := ParseTablespaceMap(FormatTablespaceMap(ts))
		if err != nil || !slices.Equal(again, ts) {
			t.Fatalf("round trip of %+v: %+v, %v", ts, again, err)
		}
	})
}
