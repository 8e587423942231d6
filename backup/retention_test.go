package backup

import (
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"auto", AutoWALRetained, true},
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"512MB", 512 << 20, true},
		{"8GB", 8 << 30, true},
		{"64kB", 64 << 10, true},
		{"2TB", 2 << 40, true},
		{"1 GB", 1 << 30, true},
		{"-1", 0, false},
		{"1.5GB", 0, false},
		{"8gb", 0, false},
		{"GB", 0, false},
		{"", 0, false},
		{"99999999999TB", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
