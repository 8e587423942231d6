package pgformat

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Tablespace is a user tablespace: its OID and location as tablespace_map
// records them, and its name where known.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"`
}

// ParseTablespaceMap parses a tablespace_map file: one "OID LOCATION" line
// per tablespace, as pg_backup_stop returns it. Locations must be clean
// absolute paths, as CREATE TABLESPACE makes them.
func ParseTablespaceMap(data []byte) ([]Tablespace, error) {
	text := strings.TrimSuffix(string(data), "\n")
	if text == "" {
		return nil, nil
	}
	var out []Tablespace
	for i, line := range strings.Split(text, "\n") {
		oid, loc, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("tablespace_map line %d: want \"OID LOCATION\", got %q", i+1, line)
		}
		n, err := strconv.ParseUint(oid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("tablespace_map line %d: OID %q: %w", i+1, oid, err)
		}
		if !filepath.IsAbs(loc) || filepath.Clean(loc) != loc {
			return nil, fmt.Errorf("tablespace_map line %d: location %q is not a clean absolute path", i+1, loc)
		}
		out = append(out, Tablespace{OID: uint32(n), Location: loc})
	}
	return out, nil
}

// FormatTablespaceMap writes tablespaces as PostgreSQL reads tablespace_map.
func FormatTablespaceMap(ts []Tablespace) []byte {
	var b strings.Builder
	for _, t := range ts {
		fmt.Fprintf(&b, "%d %s\n", t.OID, t.Location)
	}
	return []byte(b.String())
}
