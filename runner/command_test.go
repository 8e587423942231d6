package runner

import (
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "lvcreate --snapshot --size 10G --name pgsnap /dev/vg0/pgdata",
			want: []string{"lvcreate", "--snapshot", "--size", "10G", "--name", "pgsnap", "/dev/vg0/pgdata"}},
		{in: `btrfs subvolume snapshot -r /data "/snap/my dir"`,
			want: []string{"btrfs", "subvolume", "snapshot", "-r", "/data", "/snap/my dir"}},
		{in: `zfs snapshot 'tank/pg@${PGFBB_LABEL}'`, want: []string{"zfs", "snapshot", "tank/pg@${PGFBB_LABEL}"}},
		{in: `echo a\ b "c\"d" 'e'"f"`, want: []string{"echo", "a b", `c"d`, "ef"}},
		{in: `sh -c 'fsfreeze -f /data && lvcreate -s ... ; fsfreeze -u /data'`,
			want: []string{"sh", "-c", "fsfreeze -f /data && lvcreate -s ... ; fsfreeze -u /data"}},
		{in: "cmd $(rm -rf /) `x` *", want: []string{"cmd", "$(rm", "-rf", "/)", "`x`", "*"}},
		{in: "", wantErr: true},
		{in: "   ", wantErr: true},
		{in: `echo "unterminated`, wantErr: true},
		{in: `echo 'unterminated`, wantErr: true},
		{in: `echo trailing\`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Split(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Split(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Split(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"PGFBB_LABEL": "nightly", "PGFBB_START_LSN": "0/3000028", "PGFBB_PGDATA": "/var/lib/pg"}
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "whole word", in: []string{"echo", "${PGFBB_LABEL}"}, want: []string{"echo", "nightly"}},
		{name: "inside a word", in: []string{"/snap/${PGFBB_LABEL}-at-${PGFBB_START_LSN}"},
			want: []string{"/snap/nightly-at-0/3000028"}},
		{name: "unbraced and foreign variables stay", in: []string{"$PGFBB_LABEL", "${HOME}", "$$", "${PGFBB_LABEL"},
			want: []string{"$PGFBB_LABEL", "${HOME}", "$$", "${PGFBB_LABEL"}},
		{name: "no recursion", in: []string{"${PGFBB_PGDATA}"}, want: []string{"/var/lib/pg"}},
		{name: "unknown", in: []string{"x", "${PGFBB_NOPE}", "${PGFBB_ALSO}"},
			wantErr: "unknown variable ${PGFBB_NOPE}, ${PGFBB_ALSO} in command (known: PGFBB_LABEL PGFBB_PGDATA PGFBB_START_LSN)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.in, vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Expand error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	// A value that looks like a reference is not expanded again.
	got, err := Expand([]string{"${PGFBB_LABEL}"}, map[string]string{"PGFBB_LABEL": "${PGFBB_X}"})
	if err != nil || got[0] != "${PGFBB_X}" {
		t.Fatalf("expanded a value: %q %v", got, err)
	}
}
