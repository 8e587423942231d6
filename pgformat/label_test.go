package pgformat

import (
	"strings"
	"testing"
)

const label15 = `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-11-25 08:00:00 UTC
LABEL: nightly
START TIMELINE: 1
`

// PostgreSQL 10 writes no START TIMELINE line and says "master".
const label10 = `START WAL LOCATION: 1/A2000028 (file 0000000300000001000000A2)
CHECKPOINT LOCATION: 1/A2000060
BACKUP METHOD: streamed
BACKUP FROM: master
START TIME: 2026-11-25 08:00:00 UTC
LABEL: old
`

func TestParseBackupLabel(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    BackupLabel
		wantErr string
	}{
		{name: "15", in: label15, want: BackupLabel{StartLSN: 0x2000028, StartWALFile: "000000010000000000000002",
			Checkpoint: 0x2000060, Method: "streamed", From: "primary", StartTime: "2026-11-25 08:00:00 UTC",
			Label: "nightly", StartTimeline: 1}},
		{name: "10", in: label10, want: BackupLabel{StartLSN: 0x1_A2000028, StartWALFile: "0000000300000001000000A2",
			Checkpoint: 0x1_A2000060, Method: "streamed", From: "master", StartTime: "2026-11-25 08:00:00 UTC",
			Label: "old", StartTimeline: 3}},
		{name: "timelines disagree", in: strings.Replace(label15, "START TIMELINE: 1", "START TIMELINE: 2", 1),
			wantErr: "disagrees"},
		{name: "no start", in: "LABEL: x\n", wantErr: "no START WAL LOCATION"},
		{name: "bad lsn", in: "START WAL LOCATION: zz (file 000000010000000000000002)\n", wantErr: "START WAL LOCATION"},
		{name: "bad file", in: "START WAL LOCATION: 0/2000028 (file 0001)\n", wantErr: "unexpected WAL file name"},
		{name: "file not hex", in: "START WAL LOCATION: 0/0 (file 00000010000000000000000X)\n", wantErr: "unexpected WAL file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBackupLabel([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Fatalf("got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}
