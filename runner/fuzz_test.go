package runner

import (
	"strings"
	"testing"
)

// FuzzSplit: splitting never runs anything and never yields an empty argv.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"lvcreate -s -n 'snap x' vg/lv", `a "b c" d\ e`, "'unterminated", "a; rm -rf /", "$(id)", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		argv, err := Split(s)
		if err == nil && len(argv) == 0 {
			t.Fatalf("Split(%q) = empty argv", s)
		}
	})
}

// FuzzExpand: after expansion no known ${PGFBB_...} reference is left, and
// an unknown one is an error, never an empty string.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"snap-${PGFBB_LABEL}", "${PGFBB_NOPE}", "$PGFBB_LABEL", "${PGFBB_LABEL${PGFBB_LABEL}}", "${"} {
		f.Add(s)
	}
	vars := map[string]string{"PGFBB_LABEL": "nightly", "PGFBB_START_LSN": "0/3000028"}
	f.Fuzz(func(t *testing.T, arg string) {
		out, err := Expand([]string{arg}, vars)
		if err != nil {
			return
		}
		for name := range vars {
			if strings.Contains(out[0], "${"+name+"}") && !strings.Contains(arg, "${"+name+"}") {
				t.Fatalf("Expand(%q) = %q made a reference", arg, out[0])
			}
		}
		if varRE.MatchString(arg) && strings.Count(out[0], "${PGFBB_") >= strings.Count(arg, "${PGFBB_") && arg != out[0] {
			t.Fatalf("Expand(%q) = %q left references", arg, out[0])
		}
	})
}
