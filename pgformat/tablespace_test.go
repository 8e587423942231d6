package pgformat

import (
	"slices"
	"testing"
)

func TestParseTablespaceMap(t *testing.T) {
	tests := []struct {
		in      string
		want    []Tablespace
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "16400 /srv/ts1\n", want: []Tablespace{{OID: 16400, Location: "/srv/ts1"}}},
		{in: "16400 /srv/ts 1\n16401 /b\n", want: []Tablespace{{OID: 16400, Location: "/srv/ts 1"}, {OID: 16401, Location: "/b"}}},
		{in: "16400 /a", want: []Tablespace{{OID: 16400, Location: "/a"}}},
		{in: "x /a\n", wantErr: true},
		{in: "-1 /a\n", wantErr: true},
		{in: "99999999999 /a\n", wantErr: true},
		{in: "16400\n", wantErr: true},
		{in: "16400 /a\n\n", wantErr: true},
		{in: "16400 relative\n", wantErr: true},
		{in: "16400 /a/../../etc\n", wantErr: true},
		{in: "16400 \n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTablespaceMap([]byte(tt.in))
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseTablespaceMap(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err == nil && tt.in != "" && string(FormatTablespaceMap(got)) != tt.in && tt.in[len(tt.in)-1] == '\n' {
				t.Errorf("round trip: %q", FormatTablespaceMap(got))
			}
		})
	}
}
