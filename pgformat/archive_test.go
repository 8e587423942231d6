package pgformat

import (
	"os"
	"path/filepath"
	"testing"
)

func TestArchiveDone(t *testing.T) {
	const seg = "000000010000000000000003"
	tests := []struct {
		name  string
		files []string // under pg_wal
		want  bool
	}{
		{"done", []string{seg, "archive_status/" + seg + ".done"}, true},
		{"ready", []string{seg, "archive_status/" + seg + ".ready"}, false},
		{"present, not yet marked", []string{seg}, false},
		{"archived and recycled", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pgwal := t.TempDir()
			os.Mkdir(filepath.Join(pgwal, "archive_status"), 0o700)
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(pgwal, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ArchiveDone(pgwal, seg)
			if err != nil || got != tt.want {
				t.Fatalf("ArchiveDone = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
