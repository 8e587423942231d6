// Package runner runs the user's snapshot command as a child process: split
// without a shell, in its own process group, with a timeout, forwarded
// signals and a bounded capture of what it wrote to stderr.
package runner

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/kballard/go-shellquote"
)

// Split turns a command string into argv the way a POSIX shell would quote
// it, but runs nothing: no expansion, no globbing, no pipes.
func Split(command string) ([]string, error) {
	argv, err := shellquote.Split(command)
	if err != nil {
		return nil, fmt.Errorf("split command %q: %w", command, err)
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	return argv, nil
}

var varRE = regexp.MustCompile(`\$\{(PGFBB_[A-Za-z0-9_]*)\}`)

// Expand replaces every ${PGFBB_NAME} in argv with vars[PGFBB_NAME], so that
// a command line from cron or a config file can name the snapshot after the
// backup without a shell. Only the braced form of PGFBB_ variables is
// touched; naming one that vars lacks is an error, not an empty string.
func Expand(argv []string, vars map[string]string) ([]string, error) {
	var unknown []string
	out := make([]string, len(argv))
	for i, arg := range argv {
		out[i] = varRE.ReplaceAllStringFunc(arg, func(ref string) string {
			name := varRE.FindStringSubmatch(ref)[1]
			v, ok := vars[name]
			if !ok {
				unknown = append(unknown, ref)
			}
			return v
		})
	}
	if len(unknown) > 0 {
		known := make([]string, 0, len(vars))
		for k := range vars {
			known = append(known, k)
		}
		slices.Sort(known)
		return nil, fmt.Errorf("unknown variable %s in command (known: %s)",
			strings.Join(unknown, ", "), strings.Join(known, " "))
	}
	return out, nil
}
