package pgformat

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// BackupLabel is what a restore reads from backup_label, as returned by
// pg_backup_stop / pg_stop_backup.
type BackupLabel struct {
	StartLSN      LSN
	StartWALFile  string
	Checkpoint    LSN
	Method        string
	From          string // "master" (10-13), "primary" (14+) or "standby"
	StartTime     string
	Label         string
	StartTimeline uint32
}

// ParseBackupLabel parses the contents of a backup_label file. The timeline
// comes from "START TIMELINE" (11+) or else from the start WAL file name,
// which every version writes; when both are present they must agree.
func ParseBackupLabel(content []byte) (*BackupLabel, error) {
	var bl BackupLabel
	sc := bufio.NewScanner(strings.NewReader(string(content)))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		var err error
		switch key {
		case "START WAL LOCATION":
			err = bl.parseStartWAL(val)
		case "CHECKPOINT LOCATION":
			bl.Checkpoint, err = ParseLSN(val)
		case "BACKUP METHOD":
			bl.Method = val
		case "BACKUP FROM":
			bl.From = val
		case "START TIME":
			bl.StartTime = val
		case "LABEL":
			bl.Label = val
		case "START TIMELINE":
			var tli uint64
			tli, err = strconv.ParseUint(val, 10, 32)
			if err == nil && bl.StartTimeline != 0 && uint32(tli) != bl.StartTimeline {
				err = fmt.Errorf("timeline %d disagrees with start WAL file %s", tli, bl.StartWALFile)
			}
			bl.StartTimeline = uint32(tli)
		}
		if err != nil {
			return nil, fmt.Errorf("parse backup_label: %s: %w", key, err)
		}
	}
	if bl.StartWALFile == "" {
		return nil, fmt.Errorf("parse backup_label: no START WAL LOCATION line")
	}
	return &bl, nil
}

// parseStartWAL reads "0/2000028 (file 000000010000000000000002)".
func (bl *BackupLabel) parseStartWAL(val string) error {
	lsn, rest, ok := strings.Cut(val, " (file ")
	if !ok || !strings.HasSuffix(rest, ")") {
		return fmt.Errorf("unexpected form %q", val)
	}
	var err error
	if bl.StartLSN, err = ParseLSN(lsn); err != nil {
		return err
	}
	bl.StartWALFile = strings.TrimSuffix(rest, ")")
	if !IsSegmentName(bl.StartWALFile) {
		return fmt.Errorf("unexpected WAL file name %q", bl.StartWALFile)
	}
	tli, err := strconv.ParseUint(bl.StartWALFile[:8], 16, 32)
	if err != nil || tli == 0 {
		return fmt.Errorf("unexpected WAL file name %q", bl.StartWALFile)
	}
	if bl.StartTimeline != 0 && uint32(tli) != bl.StartTimeline {
		return fmt.Errorf("WAL file %s disagrees with START TIMELINE %d", bl.StartWALFile, bl.StartTimeline)
	}
	bl.StartTimeline = uint32(tli)
	return nil
}
