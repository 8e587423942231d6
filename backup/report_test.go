package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/pgfbb/pgfbb-wrap/walcollect"
)

func TestReportFormat(t *testing.T) {
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	failed := &Report{
		Label: "nightly", Reached: PhaseStop, Timeline: 1, StartLSN: 0x3000028, StopLSN: 0x3000138,
		StartedAt: at, StoppedAt: at.Add(2500 * time.Millisecond), Elapsed: 3 * time.Second,
		Command:    &staged.Command{Argv: []string{"lvcreate", "--snapshot", "x"}, ExitCode: 5, DurationSec: 2.25},
		StderrTail: "  Volume group \"vg0\" has insufficient free space\n",
		WALMode:    staged.WALCopy,
		Err: multierror.Append(&PhaseError{Phase: PhaseSnapshot, Err: errors.New("lvcreate: exit status 5")},
			&PhaseError{Phase: PhaseStop, Err: errors.New("stop backup: database session lost")}),
	}
	want := `pgfbb-wrap: backup nightly FAILED, nothing was published
  reached:        stop
  start:          0/3000028 on timeline 1 at 2026-11-25T08:00:00Z
  stop:           0/3000138 at 2026-11-25T08:00:02Z (2.5s in backup mode)
  command:        lvcreate --snapshot x
  command exit:   5 after 2.25s
  wal:            copy
  elapsed:        3s
  2 error(s):
  - snapshot: lvcreate: exit status 5
  - stop: stop backup: database session lost
  command stderr (tail):
    |   Volume group "vg0" has insufficient free space
`
	var b strings.Builder
	failed.Format(&b)
	if b.String() != want {
		t.Errorf("Format:\n%s\nwant:\n%s", b.String(), want)
	}

	ok := &Report{Label: "nightly", Path: "/var/backups/pg/nightly", Reached: PhasePublish, Timeline: 1,
		StartLSN: 0x3000028, StopLSN: 0x5000100, StartedAt: at, StoppedAt: at.Add(4 * time.Second),
		Elapsed: 5 * time.Second, WALFiles: 4, StagedBytes: 3*16<<20 + 4096, WALMode: staged.WALCopy}
	wantSummary := "pgfbb-wrap: backup nightly complete: /var/backups/pg/nightly, WAL 0/3000028..0/5000100 on timeline 1, " +
		"4 WAL files, 48.0 MiB staged, 4s in backup mode, 5s total"
	if got := ok.Summary(); got != wantSummary {
		t.Errorf("Summary:\n%s\nwant:\n%s", got, wantSummary)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 16 << 20: "16.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	base := Options{Staging: "/x", Label: "l", WAL: staged.WALCopy, WALSource: walcollect.SourceAuto, Argv: []string{"true"},
		StartTimeout: time.Hour, ArchiveTimeout: time.Minute}
	held := func(context.Context, *Running) error { return nil }
	tests := []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"ok", func(*Options) {}, ""},
		{"no staging", func(o *Options) { o.Staging = "" }, "--staging is required"},
		{"bad label", func(o *Options) { o.Label = "a/b" }, "invalid label"},
		{"bad wal", func(o *Options) { o.WAL = "stream" }, "want copy, archive or skip"},
		{"bad wal source", func(o *Options) { o.WALSource = "nfs" }, "want auto, local or sql"},
		{"archive timeout", func(o *Options) { o.ArchiveTimeout = 0 }, "--archive-timeout must be positive"},
		{"skip needs no archive timeout", func(o *Options) { o.WAL, o.ArchiveTimeout = staged.WALSkip, 0 }, ""},
		{"no command", func(o *Options) { o.Argv = nil }, "no snapshot command"},
		{"unknown var", func(o *Options) { o.Argv = []string{"echo", "${PGFBB_X}"} }, "unknown variable"},
		{"known var", func(o *Options) { o.Argv = []string{"echo", "${PGFBB_START_WAL}"} }, ""},
		{"not found", func(o *Options) { o.Argv = []string{"no-such-snapshot-tool"} }, "executable file not found"},
		{"start timeout", func(o *Options) { o.StartTimeout = 0 }, "--start-timeout"},
		{"a hold needs no command", func(o *Options) { o.Argv, o.Hold = nil, held }, ""},
		{"a hold still needs a label", func(o *Options) { o.Hold, o.Label = held, "" }, "invalid label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.modify(&o)
			err := o.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || ExitCode(err) != ExitUsage {
				t.Fatalf("Validate = %v (exit %d), want a usage error containing %q", err, ExitCode(err), tt.want)
			}
		})
	}
}

func TestDefaultLabel(t *testing.T) {
	at := time.Date(2026, 11, 25, 8, 1, 2, 0, time.FixedZone("CET", 3600))
	if got := DefaultLabel(at); got != "pgfbb-20261125T070102Z" {
		t.Fatalf("DefaultLabel = %q", got)
	}
	if err := staged.ValidateLabel(DefaultLabel(at)); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsSplitsCombinedPhaseErrors(t *testing.T) {
	wal := multierror.Append(errors.New("WAL file A: missing"), errors.New("WAL file B: short"))
	err := multierror.Append(&PhaseError{Phase: PhaseSnapshot, Err: errors.New("exit status 1")},
		&PhaseError{Phase: PhaseCollect, Err: wal},
		&PhaseError{Phase: PhaseStop, Err: fmt.Errorf("context: %w", multierror.Append(errors.New("kept whole")))})
	var got []string
	for _, e := range Errors(err) {
		got = append(got, e.Error())
	}
	want := []string{"snapshot: exit status 1", "collect-wal: WAL file A: missing", "collect-wal: WAL file B: short"}
	if len(got) != 4 || strings.Join(got[:3], "|") != strings.Join(want, "|") || !strings.HasPrefix(got[3], "stop: context: ") {
		t.Fatalf("Errors = %q", got)
	}
	if got := Errors(errors.New("single")); len(got) != 1 {
		t.Fatalf("Errors(single) = %v", got)
	}
}

func TestPrint(t *testing.T) {
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	started := Report{Label: "n", Reached: PhaseStop, Timeline: 1, StartLSN: 0x3000028, StopLSN: 0x3000138,
		StartedAt: at, StoppedAt: at.Add(time.Second), WALMode: staged.WALCopy}
	aborted := started
	aborted.Aborted = "aborted on request by pgfbb-wrap abort"
	early := &PhaseError{Phase: PhaseConnect, Err: errors.New("no server")}
	tests := []struct {
		name    string
		rep     *Report
		err     error
		verbose bool
		want    []string // lines that must appear; none means no output
	}{
		{"success is silent", &started, nil, false, nil},
		{"verbose success is one line", &started, nil, true, []string{"pgfbb-wrap: backup n complete:"}},
		{"an abort is always reported", &aborted, nil, false, []string{"backup n ABORTED, nothing was published", "aborted:        aborted on request by pgfbb-wrap abort"}},
		{"failure before start is one line", &Report{Label: "n"}, multierror.Append(nil, early), false, []string{"pgfbb-wrap: error: connect: no server\n"}},
		{"failure without a report", nil, early, false, []string{"pgfbb-wrap: error: connect: no server\n"}},
		{"failure after start is the full report", &started, multierror.Append(nil, &PhaseError{Phase: PhaseHold, Err: errors.New("timeout")}), false, []string{"FAILED", "- hold: timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rep != nil {
				tt.rep.Err = tt.err
			}
			var b strings.Builder
			Print(&b, tt.rep, tt.err, tt.verbose)
			if len(tt.want) == 0 && b.Len() > 0 {
				t.Fatalf("printed %q", b.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
