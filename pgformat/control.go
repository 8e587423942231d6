package pgformat

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ReadSystemID reads the system identifier from the start of a
// global/pg_control file, whose first field it is (ControlFileData in
// pg_control.h), so that a data directory can be matched to a server or a
// backup.
func ReadSystemID(r io.Reader) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("read system identifier from pg_control: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// ControlSystemID reads the system identifier of the data directory pgdata.
func ControlSystemID(pgdata string) (uint64, error) {
	f, err := os.Open(filepath.Join(pgdata, "global", "pg_control"))
	if err != nil {
		return 0, fmt.Errorf("read system identifier: %w", err)
	}
	defer f.Close()
	id, err := ReadSystemID(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return id, nil
}
