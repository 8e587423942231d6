// Package pgformat knows PostgreSQL's own formats, and nothing of databases
// or staging directories: LSNs, WAL segment names and their arithmetic, WAL
// page headers, backup_label and tablespace_map, pg_control's system
// identifier, archive_status, and what differs between majors in them.
package pgformat

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead log location (XLogRecPtr).
type LSN uint64

// ParseLSN parses PostgreSQL's textual LSN form "HI/LO", where each half is
// one to eight hex digits ("0/3000028", "00000000/03000028").
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: missing '/'", s)
	}
	h, err := parseHex32(hi)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: high part: %w", s, err)
	}
	l, err := parseHex32(lo)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: low part: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

func parseHex32(s string) (uint64, error) {
	if len(s) == 0 || len(s) > 8 {
		return 0, fmt.Errorf("want 1 to 8 hex digits, got %d", len(s))
	}
	// ParseUint would accept a leading "+" or "0x"; PostgreSQL does not.
	for _, c := range s {
		if !isHex(c) {
			return 0, fmt.Errorf("invalid hex digit %q", c)
		}
	}
	return strconv.ParseUint(s, 16, 32)
}

func isHex(c rune) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// String formats the LSN as PostgreSQL does ("0/3000028").
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// MarshalText makes an LSN appear in its PostgreSQL form in JSON.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses the PostgreSQL form.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
