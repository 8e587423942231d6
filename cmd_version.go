package main

import (
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// toolVersion is the version, commit and Go version from the build info:
// "v1.2.3 (commit 0123456789ab, go1.26.8)", "devel" for a build from a
// work tree, with "+dirty" when it had uncommitted changes.
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel (no build info)"
	}
	version, commit, dirty := bi.Main.Version, "unknown", ""
	if version == "" || version == "(devel)" {
		version = "devel"
	}
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			commit = s.Value[:min(12, len(s.Value))]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	return fmt.Sprintf("%s (commit %s%s, %s)", version, commit, dirty, bi.GoVersion)
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, commit and Go version (also --version)",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.Writer, "pgfbb-wrap", c.App.Version)
			return nil
		},
	}
}

// docsCommands print the man page and a bash completion script, both made
// from the flags and commands themselves.
func docsCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "man",
			Usage: "print the man page (pgfbb-wrap man > /usr/local/share/man/man1/pgfbb-wrap.1)",
			Action: func(c *cli.Context) error {
				page, err := c.App.ToManWithSection(1)
				if err != nil {
					return report(c.App.ErrWriter, err)
				}
				fmt.Fprint(c.App.Writer, page)
				return nil
			},
		},
		{
			Name:  "completion",
			Usage: "print a bash completion script (pgfbb-wrap completion > /etc/bash_completion.d/pgfbb-wrap)",
			Action: func(c *cli.Context) error {
				fmt.Fprint(c.App.Writer, bashCompletion)
				return nil
			},
		},
	}
}

// bashCompletion asks pgfbb-wrap itself for the words that may follow.
const bashCompletion = `_pgfbb_wrap() {
	local words
	words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:COMP_CWORD-1}" --generate-bash-completion 2>/dev/null)
	COMPREPLY=($(compgen -W "$words" -- "${COMP_WORDS[COMP_CWORD]}"))
}
complete -o default -F _pgfbb_wrap pgfbb-wrap
`
