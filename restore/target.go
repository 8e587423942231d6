package restore

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// TargetKind is which of PostgreSQL's recovery targets a Target is.
type TargetKind string

// The recovery targets.
const (
	TargetImmediate TargetKind = "immediate" // the end of the backup, as soon as it is consistent
	TargetLatest    TargetKind = "latest"    // the end of the WAL the archive holds
	TargetTime      TargetKind = "time"      // recovery_target_time
	TargetLSN       TargetKind = "lsn"       // recovery_target_lsn
	TargetXID       TargetKind = "xid"       // recovery_target_xid
	TargetName      TargetKind = "name"      // recovery_target_name, a pg_create_restore_point
)

// Target is where recovery stops and what the server does there, as
// pgBackRest's restore --type, --target, --target-exclusive,
// --target-action and --target-timeline say it. The zero value is the end
// of the backup, then promote.
type Target struct {
	Kind  TargetKind
	Value string // the time, LSN, xid or restore point name, as given
	// Exclusive stops just before the target (time, xid, LSN) instead of
	// just after it.
	Exclusive bool
	Action    string // promote (""), pause or shutdown
	// Timeline is current, latest or a timeline ID; "" leaves the major's
	// default (current up to 11, latest from 12).
	Timeline string
}

// timeFormats are the recovery_target_time forms accepted, as the usage
// error lists them.
const timeFormats = "2026-11-28 04:17:49.025677+00 (as psql prints now()), 2026-11-28 04:17:49+05:30, " +
	"2026-11-28T04:17:49Z, 2026-11-28 04:17:49 Europe/Berlin, or 2026-11-28 04:17:49 (the server's TimeZone)"

// Time layouts with a numeric zone or Z: the instant is known here.
var zonedLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07", "2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999Z07", "2006-01-02T15:04:05.999999999Z0700",
}

// Local layouts: followed by a zone name, or by nothing.
var localLayouts = []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"}

// ParseTarget reads --target: immediate, latest, an LSN or a time.
func ParseTarget(s string) (Target, error) {
	switch TargetKind(s) {
	case "", TargetImmediate:
		return Target{Kind: TargetImmediate}, nil
	case TargetLatest:
		return Target{Kind: TargetLatest}, nil
	}
	if lsn, err := pgformat.ParseLSN(s); err == nil {
		return Target{Kind: TargetLSN, Value: lsn.String()}, nil
	}
	// Go reads a comma before the fraction, PostgreSQL does not.
	if _, _, ok := parseTime(s); ok && !strings.Contains(s, ",") {
		return Target{Kind: TargetTime, Value: s}, nil
	}
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return Target{}, fmt.Errorf("--target %q: want immediate, latest, an LSN (0/3000028) or a time: %s", s, timeFormats)
}

// parseTime reads a time in a form recovery_target_time takes; known is
// false when the server's TimeZone decides its instant.
func parseTime(s string) (at time.Time, known, ok bool) {
	for _, layout := range zonedLayouts {
		if at, err := time.Parse(layout, s); err == nil {
			return at, true, true
		}
	}
	rest, loc, known := s, time.UTC, false
	if i := strings.LastIndexByte(s, ' '); i > 0 && strings.IndexFunc(s[i+1:], unicode.IsLetter) >= 0 {
		zone := s[i+1:]
		l, err := time.LoadLocation(zone) // names only: no paths, nothing outside the zone database
		if err != nil || zone == "Local" {
			return time.Time{}, false, false
		}
		rest, loc, known = s[:i], l, true
	}
	for _, layout := range localLayouts {
		if at, err := time.ParseInLocation(layout, rest, loc); err == nil {
			return at, known, true
		}
	}
	return time.Time{}, false, false
}

// NameTarget is a restore point made by pg_create_restore_point.
func NameTarget(name string) (Target, error) {
	// PostgreSQL keeps restore point names in MAXFNAMELEN (64) bytes.
	if name == "" || len(name) >= 64 || strings.IndexFunc(name, unicode.IsControl) >= 0 || !utf8.ValidString(name) {
		return Target{}, fmt.Errorf("--target-name %q: want a restore point name of 1 to 63 bytes without control characters", name)
	}
	return Target{Kind: TargetName, Value: name}, nil
}

// XIDTarget is a transaction ID, as txid_current() or pg_current_xact_id()
// return it.
func XIDTarget(xid string) (Target, error) {
	// An epoch-qualified ID is the epoch times 2^32 plus the 32-bit ID,
	// which is 3 or more. It is written back in decimal: PostgreSQL reads a
	// leading zero as octal.
	n, err := strconv.ParseUint(xid, 10, 64)
	if err != nil || uint32(n) < 3 {
		return Target{}, fmt.Errorf("--target-xid %q: want a transaction ID, a decimal number whose low 32 bits are 3 or more", xid)
	}
	return Target{Kind: TargetXID, Value: strconv.FormatUint(n, 10)}, nil
}

// check checks the target's values and the flags that go with it.
func (t Target) check() error {
	var err error
	switch t.kind() {
	case TargetImmediate, TargetLatest:
		if t.Value != "" {
			err = fmt.Errorf("a %s target takes no value, not %q", t.Kind, t.Value)
		}
	case TargetTime, TargetLSN:
		_, err = ParseTarget(t.Value)
	case TargetXID:
		var x Target
		if x, err = XIDTarget(t.Value); err == nil && x.Value != t.Value {
			err = fmt.Errorf("--target-xid %q: write it without leading zeros, as %s", t.Value, x.Value)
		}
	case TargetName:
		_, err = NameTarget(t.Value)
	default:
		err = fmt.Errorf("recovery target kind %q: want immediate, latest, time, lsn, xid or name", t.Kind)
	}
	if err != nil {
		return err
	}
	switch t.Action {
	case "", "promote", "pause", "shutdown":
	default:
		return fmt.Errorf("--target-action %q: want promote, pause or shutdown", t.Action)
	}
	if t.Exclusive && t.Kind != TargetTime && t.Kind != TargetXID && t.Kind != TargetLSN {
		return fmt.Errorf("--target-exclusive applies to a time, xid or LSN target, not to %s", t.kind())
	}
	if t.action() != "promote" && t.kind() == TargetLatest {
		// PostgreSQL ignores recovery_target_action without a target.
		return fmt.Errorf("--target-action %s needs a target to act at: latest replays all the WAL there is, then promotes", t.Action)
	}
	switch t.Timeline {
	case "", "current", "latest":
	default:
		// Written as given: PostgreSQL reads a leading zero as octal.
		if n, err := strconv.ParseUint(t.Timeline, 10, 32); err != nil || n == 0 || t.Timeline != strconv.FormatUint(n, 10) {
			return fmt.Errorf("--target-timeline %q: want current, latest or a timeline ID (1, 2, ...) without leading zeros", t.Timeline)
		}
	}
	return nil
}

// Immediate tells whether the target is the end of the backup.
func (t Target) Immediate() bool { return t.kind() == TargetImmediate }

func (t Target) kind() TargetKind {
	if t.Kind == "" {
		return TargetImmediate
	}
	return t.Kind
}

// NeedsArchive tells whether recovery to the target reads WAL past the
// backup's end, which only an archive has.
func (t Target) NeedsArchive() bool { return t.kind() != TargetImmediate }

// checkAfter refuses a target before the backup's end, where recovery
// would fail late: it cannot stop before it is consistent. A time in the
// server's TimeZone, a name or an xid cannot be placed here.
func (t Target) checkAfter(m *staged.Manifest) error {
	before := false
	switch t.kind() {
	case TargetLSN:
		lsn, _ := pgformat.ParseLSN(t.Value)
		before = lsn < m.StopLSN
	case TargetTime:
		at, known, _ := parseTime(t.Value)
		before = known && at.Before(m.StoppedAt)
	}
	if before {
		return fmt.Errorf("--target %s is before the end of backup %s (LSN %s, %s): recovery cannot stop before it is consistent",
			t.Value, m.Label, m.StopLSN, m.StoppedAt.UTC().Format("2006-01-02 15:04:05.999999Z07"))
	}
	return nil
}

// settings are the recovery settings for the target on the given major.
// Values are quoted as the configuration file reads them. From 12 they are
// appended to postgresql.auto.conf, where a cluster that was itself
// restored keeps its own recovery settings, and postgresql.conf may hold
// some: every target setting is written, the others blank, the chosen one
// last, so that none is inherited (two targets refuse to start; an old
// time target would stop recovery early without a word). recovery.conf (10,
// 11) is written whole, and takes no blank target.
func (t Target) settings(major pgformat.Major) []string {
	var lines []string
	if !major.RecoveryConf {
		for _, k := range []string{"recovery_target", "recovery_target_time", "recovery_target_xid", "recovery_target_name", "recovery_target_lsn"} {
			lines = append(lines, k+" = ''")
		}
	}
	switch t.kind() {
	case TargetImmediate:
		lines = append(lines, "recovery_target = 'immediate'")
	case TargetTime, TargetLSN, TargetXID, TargetName:
		lines = append(lines, "recovery_target_"+string(t.Kind)+" = "+quoteSetting(t.Value))
	}
	lines = append(lines, fmt.Sprintf("recovery_target_inclusive = %v", !t.Exclusive))
	switch timeline := cmp.Or(t.Timeline, major.DefaultTimeline); {
	case timeline == "current" && major.RecoveryConf:
		// the default of 10 and 11, which have no word for it
	default:
		lines = append(lines, "recovery_target_timeline = "+quoteSetting(timeline))
	}
	return append(lines, "recovery_target_action = "+quoteSetting(t.action()))
}

func (t Target) action() string {
	if t.Action == "" {
		return "promote"
	}
	return t.Action
}

// String says where recovery stops, for the summary.
func (t Target) String() string {
	var s string
	switch t.kind() {
	case TargetImmediate:
		s = "stops at the end of the backup"
	case TargetLatest:
		return "replays all the WAL the archive holds, then promotes"
	case TargetTime:
		s = "stops at the last commit at or before " + t.Value
		if t.Exclusive {
			s = "stops at the last commit before " + t.Value
		}
		if _, known, _ := parseTime(t.Value); !known {
			s += " (in the server's TimeZone)"
		}
	case TargetLSN:
		s = "stops after the first record at or after " + t.Value
		if t.Exclusive {
			s = "stops before the first record at or after " + t.Value
		}
	case TargetXID:
		s = "stops after transaction " + t.Value + " commits or aborts"
		if t.Exclusive {
			s = "stops just before transaction " + t.Value + " commits or aborts"
		}
	case TargetName:
		s = "stops at restore point " + strconv.Quote(t.Value)
	}
	switch t.action() {
	case "pause":
		return s + ", then pauses (resume with pg_wal_replay_resume(), or promote)"
	case "shutdown":
		return s + ", then shuts down"
	}
	return s + ", then promotes"
}
