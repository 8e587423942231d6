package staged

import (
	"strings"
	"testing"
)

func TestValidateLabel(t *testing.T) {
	tests := []struct {
		label string
		ok    bool
	}{
		{"nightly", true},
		{"pgfbb-20261125T080000Z", true},
		{"a", true},
		{"0.b_c-D", true},
		{strings.Repeat("x", 100), true},
		{strings.Repeat("x", 101), false},
		{"", false},
		{"../x", false},
		{"a/b", false},
		{".hidden", false},
		{"-flag", false},
		{"_x", false},
		{"two words", false},
		{"line\nbreak", false},
		{"nightly\n", false},
		{"tab\t", false},
		{"ü", false},
		{"$(id)", false},
	}
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			if err := ValidateLabel(tt.label); (err == nil) != tt.ok {
				t.Fatalf("ValidateLabel(%q) = %v, want ok=%v", tt.label, err, tt.ok)
			}
		})
	}
}
