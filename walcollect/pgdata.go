package walcollect

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ControlSystemID reads the system identifier from pgdata/global/pg_control,
// whose first field it is (ControlFileData in pg_control.h), so a data
// directory can be matched to the server a session is connected to.
func ControlSystemID(pgdata string) (uint64, error) {
	f, err := os.Open(filepath.Join(pgdata, "global", "pg_control"))
	if err != nil {
		return 0, fmt.Errorf("read system identifier: %w", err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return 0, fmt.Errorf("read system identifier from %s: %w", f.Name(), err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}
