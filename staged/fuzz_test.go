package staged

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
)

const fuzzManifest = `{"format_version":1,"label":"nightly","status":"complete","server_version_num":150004,
"system_identifier":"7300000000000000001","timeline":1,"start_lsn":"0/3000028","stop_lsn":"0/3000100",
"start_wal":"000000010000000000000003","stop_wal":"000000010000000000000003","wal_segment_size":16777216,
"wal_mode":"copy","files":[{"path":"backup_label","size":10,"sha256":"` + zeros + `"},
{"path":"wal/000000010000000000000003","size":16777216,"sha256":"` + zeros + `"}]}`

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"

// FuzzManifest: whatever a manifest holds, a checked one names only files
// of the layout, bounded in size, and LSNs whose segments are all listed.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(fuzzManifest))
	f.Add([]byte(strings.Replace(fuzzManifest, `"0/3000100"`, `"FFFFFFFF/FFFFFFFF"`, 1)))
	f.Add([]byte(strings.Replace(fuzzManifest, `"backup_label"`, `"../../etc/shadow"`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		files, err := m.check()
		if err != nil {
			return
		}
		for p, file := range files {
			limit, ok := m.sizeLimit(p)
			if !ok || !beneath.ValidName(p) || filepath.IsAbs(p) || strings.Contains(p, "..") || file.Size > limit {
				t.Fatalf("checked manifest lists %q (%d bytes)", p, file.Size)
			}
		}
		if m.WALMode == WALCopy {
			first, last := pgformat.SegmentNo(m.StartLSN, m.WALSegmentSize), pgformat.SegmentNo(m.StopLSN-1, m.WALSegmentSize)
			if last-first >= uint64(len(files)) {
				t.Fatalf("checked manifest spans %d segments with %d files", last-first+1, len(files))
			}
		}
	})
}

// FuzzWALList: a checked wal_list holds only WAL file names the manifest
// lists.
func FuzzWALList(f *testing.F) {
	files := map[string]File{"wal/000000010000000000000003": {}, "wal/00000002.history": {}}
	f.Add([]byte("000000010000000000000003\n00000002.history\n"))
	f.Add([]byte("../../../../tmp/x\n"))
	f.Add([]byte("000000010000000000000003\x00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := parseWALList(data, files)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Fatalf("checked wal_list names %q twice", n)
			}
			seen[n] = true
			if _, ok := files[WALDir+"/"+n]; !ok || !pgformat.IsWALFileName(n) {
				t.Fatalf("checked wal_list names %q", n)
			}
		}
	})
}

// FuzzValidateLabel: a valid label is one plain, visible file name.
func FuzzValidateLabel(f *testing.F) {
	for _, s := range []string{"nightly", "../x", ".hidden", "a/b", "x\n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, label string) {
		if ValidateLabel(label) != nil {
			return
		}
		if filepath.Base(label) != label || strings.HasPrefix(label, ".") || strings.HasPrefix(label, "-") ||
			strings.ContainsAny(label, "/\\\n\r\t '\"$`") || len(label) > 100 {
			t.Fatalf("ValidateLabel accepted %q", label)
		}
	})
}
