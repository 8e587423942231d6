package pgbackup

import (
	"strings"
	"testing"
	"time"
)

func TestArchiverArchived(t *testing.T) {
	a := &Archiver{LastArchivedWAL: "000000010000000000000005"}
	for name, want := range map[string]bool{
		"000000010000000000000004":                 true,
		"000000010000000000000004.00000028.backup": true,
		"000000010000000000000005":                 true,
		"000000010000000000000005.00000028.backup": false, // sorts after its segment
		"000000010000000000000006":                 false,
		"000000020000000000000001":                 false, // a later timeline
	} {
		if got := a.Archived(name); got != want {
			t.Errorf("Archived(%s) = %v, want %v", name, got, want)
		}
	}
	if (&Archiver{}).Archived("000000010000000000000001") {
		t.Error("an archiver that never archived is past a file")
	}
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	s := (&Archiver{FailedCount: 3, LastFailedWAL: "000000010000000000000006", LastFailedTime: at}).String()
	if !strings.Contains(s, "failed_count 3, last_failed_wal 000000010000000000000006 at 2026-11-25T08:00:00Z") ||
		!strings.Contains(s, `last_archived_wal "" at never`) {
		t.Errorf("String = %q", s)
	}
}
