package restore

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		kind TargetKind // "" when refused
	}{
		{"", TargetImmediate},
		{"immediate", TargetImmediate},
		{"latest", TargetLatest},
		{"0/3000028", TargetLSN},
		{"2026-11-28 04:17:49.025677+00", TargetTime}, // psql's now()
		{"2026-11-25 08:00:00+00", TargetTime},
		{"2026-11-28 04:17:49+05:30", TargetTime},
		{"2026-11-28 04:17:49.5-0800", TargetTime},
		{"2026-11-28T04:17:49Z", TargetTime},
		{"2026-11-28T04:17:49.123+01:00", TargetTime},
		{"2026-11-28 04:17:49 Europe/Berlin", TargetTime},
		{"2026-11-28 04:17:49.1 UTC", TargetTime},
		{"2026-11-28 04:17:49", TargetTime},
		{"yesterday", ""},
		{"2026-11-28", ""},
		{"2026-11-28 04:17:49 Nowhere/Atlantis", ""},
		{"2026-11-28 04:17:49 ../../etc/passwd", ""},
		{"2026-11-28 04:17:49 Local", ""},
		{"2026-11-28 04:17:49'", ""},
		{"2026-11-28 04:17:49+00\nrecovery_target = 'immediate'", ""},
		{"2026-11-28 11:32:23,08+00", ""}, // Go reads the comma, PostgreSQL does not
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if tt.kind == "" {
			if err == nil || !strings.Contains(err.Error(), "2026-11-28 04:17:49.025677+00 (as psql prints now())") {
				t.Errorf("ParseTarget(%q) = %+v, %v; want a refusal listing the formats", tt.in, got, err)
			}
			continue
		}
		if err != nil || got.kind() != tt.kind {
			t.Errorf("ParseTarget(%q) = %+v, %v; want kind %s", tt.in, got, err, tt.kind)
		}
	}
}

func TestTargetValues(t *testing.T) {
	for _, tt := range []struct {
		target Target
		want   string // "" when accepted
	}{
		{Target{Kind: TargetName, Value: "before-upgrade"}, ""},
		{Target{Kind: TargetName, Value: ""}, "--target-name"},
		{Target{Kind: TargetName, Value: strings.Repeat("n", 64)}, "--target-name"},
		{Target{Kind: TargetName, Value: "a\nb"}, "--target-name"},
		{Target{Kind: TargetXID, Value: "747"}, ""},
		{Target{Kind: TargetXID, Value: "12884902635"}, ""}, // epoch-qualified, as txid_current() returns it
		{Target{Kind: TargetXID, Value: "2"}, "--target-xid"},
		{Target{Kind: TargetXID, Value: "-1"}, "--target-xid"},
		{Target{Kind: TargetXID, Value: "0x10"}, "--target-xid"},
		{Target{Kind: TargetXID, Value: "0726"}, "without leading zeros"}, // PostgreSQL would read octal
		{Target{Kind: TargetXID, Value: "4294967296"}, "--target-xid"},    // epoch 1, xid 0
		{Target{Kind: TargetName, Value: "\xff\xfe"}, "--target-name"},
		{Target{Kind: TargetLatest, Value: "x"}, "takes no value"},
		{Target{Kind: "someday"}, "kind"},
		{Target{Kind: TargetXID, Value: "747", Exclusive: true}, ""},
		{Target{Kind: TargetLSN, Value: "0/3000028", Exclusive: true}, ""},
		{Target{Kind: TargetImmediate, Exclusive: true}, "--target-exclusive"},
		{Target{Kind: TargetName, Value: "p", Action: "pause"}, ""},
		{Target{Kind: TargetName, Value: "p", Action: "shutdown"}, ""},
		{Target{Kind: TargetName, Value: "p", Action: "stop"}, "--target-action"},
		{Target{Kind: TargetLatest, Action: "pause"}, "needs a target"},
		{Target{Kind: TargetLatest, Timeline: "2"}, ""},
		{Target{Kind: TargetLatest, Timeline: "current"}, ""},
		{Target{Kind: TargetLatest, Timeline: "0"}, "--target-timeline"},
		{Target{Kind: TargetLatest, Timeline: "two"}, "--target-timeline"},
		{Target{Kind: TargetLatest, Timeline: "010"}, "leading zeros"},
	} {
		err := tt.target.check()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("check(%+v) = %v, want %q", tt.target, err, tt.want)
		}
	}
}

// TestTargetSettings pins what each target writes, per major. From 12 every
// target setting is written, the others blank, so that none is inherited
// from the configuration of a cluster that was itself restored.
func TestTargetSettings(t *testing.T) {
	pg := func(n int) pgformat.Major { m, _ := pgformat.LookupMajor(n); return m }
	blanks := []string{"recovery_target = ''", "recovery_target_time = ''", "recovery_target_xid = ''", "recovery_target_name = ''", "recovery_target_lsn = ''"}
	from12 := func(lines ...string) []string { return append(slices.Clone(blanks), lines...) }
	for _, tt := range []struct {
		target Target
		major  int
		want   []string
	}{
		{Target{}, 15, from12("recovery_target = 'immediate'", "recovery_target_inclusive = true", "recovery_target_timeline = 'latest'",
			"recovery_target_action = 'promote'")},
		{Target{Kind: TargetLatest}, 15, from12("recovery_target_inclusive = true", "recovery_target_timeline = 'latest'",
			"recovery_target_action = 'promote'")},
		{Target{Kind: TargetTime, Value: "2026-11-28 04:17:49.025677+00"}, 12,
			from12("recovery_target_time = '2026-11-28 04:17:49.025677+00'", "recovery_target_inclusive = true",
				"recovery_target_timeline = 'latest'", "recovery_target_action = 'promote'")},
		{Target{Kind: TargetName, Value: "it's"}, 18, from12("recovery_target_name = 'it''s'", "recovery_target_inclusive = true",
			"recovery_target_timeline = 'latest'", "recovery_target_action = 'promote'")},
		{Target{Kind: TargetLSN, Value: "0/3000028", Action: "shutdown", Timeline: "current"}, 14,
			from12("recovery_target_lsn = '0/3000028'", "recovery_target_inclusive = true", "recovery_target_timeline = 'current'",
				"recovery_target_action = 'shutdown'")},
		// recovery.conf is written whole: no blanks. current is 10 and 11's
		// default, and a word they do not know.
		{Target{Kind: TargetXID, Value: "747", Exclusive: true, Action: "pause"}, 10,
			[]string{"recovery_target_xid = '747'", "recovery_target_inclusive = false", "recovery_target_action = 'pause'"}},
		{Target{Kind: TargetLatest, Timeline: "current"}, 11, []string{"recovery_target_inclusive = true", "recovery_target_action = 'promote'"}},
		{Target{Kind: TargetLatest, Timeline: "latest"}, 10,
			[]string{"recovery_target_inclusive = true", "recovery_target_timeline = 'latest'", "recovery_target_action = 'promote'"}},
		{Target{Kind: TargetLatest, Timeline: "2"}, 16, from12("recovery_target_inclusive = true", "recovery_target_timeline = '2'",
			"recovery_target_action = 'promote'")},
	} {
		if got := tt.target.settings(pg(tt.major)); !slices.Equal(got, tt.want) {
			t.Errorf("PostgreSQL %d, %+v: settings\n%q, want\n%q", tt.major, tt.target, got, tt.want)
		}
	}
}

func TestTargetAfterEnd(t *testing.T) {
	m := &staged.Manifest{Label: "b", StopLSN: 0x3000100}
	m.StoppedAt, _ = time.Parse(time.RFC3339, "2026-11-25T08:00:00Z")
	tests := []struct {
		target Target
		ok     bool
	}{
		{Target{}, true},
		{Target{Kind: TargetLatest}, true},
		{Target{Kind: TargetLSN, Value: "0/0"}, false},
		{Target{Kind: TargetLSN, Value: "0/30000FF"}, false},
		{Target{Kind: TargetLSN, Value: "0/3000100"}, true},
		{Target{Kind: TargetTime, Value: "2026-11-25 07:59:59.999+00"}, false},
		{Target{Kind: TargetTime, Value: "2026-11-25 08:59:59 Europe/Berlin"}, false}, // 07:59:59 UTC, in winter
		{Target{Kind: TargetTime, Value: "2026-11-25 09:00:01 Europe/Berlin"}, true},
		{Target{Kind: TargetTime, Value: "2026-11-25T08:00:01Z"}, true},
		{Target{Kind: TargetTime, Value: "2026-11-25 07:00:00"}, true}, // the server's time zone decides
		{Target{Kind: TargetXID, Value: "3"}, true},                    // unknown here
	}
	for _, tt := range tests {
		if err := tt.target.checkAfter(m); (err == nil) != tt.ok {
			t.Errorf("checkAfter(%+v) = %v, want ok=%v", tt.target, err, tt.ok)
		}
	}
}

// TestXIDTargetDecimal writes back what PostgreSQL would read as octal.
func TestXIDTargetDecimal(t *testing.T) {
	if x, err := XIDTarget("0726"); err != nil || x.Value != "726" {
		t.Errorf("XIDTarget(0726) = %+v, %v; want 726", x, err)
	}
}
