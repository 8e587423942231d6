package main

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/pgfbb/pgfbb-wrap/backup"
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
			if c.NArg() > 0 {
				return report(c.App.ErrWriter, backup.UsageError(errors.New("version takes no arguments")))
			}
			fmt.Fprintln(c.App.Writer, "pgfbb-wrap", c.App.Version)
			return nil
		},
	}
}

// docsCommands print the man page and completion scripts, all made
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
			Name:      "completion",
			Usage:     "print a completion script for bash (the default), zsh or fish",
			ArgsUsage: "[bash|zsh|fish]",
			Description: "bash: pgfbb-wrap completion > /etc/bash_completion.d/pgfbb-wrap\n" +
				"zsh:  pgfbb-wrap completion zsh > \"${fpath[1]}/_pgfbb-wrap\"\n" +
				"fish: pgfbb-wrap completion fish > ~/.config/fish/completions/pgfbb-wrap.fish",
			Action: func(c *cli.Context) error {
				switch shell := c.Args().First(); {
				case c.NArg() > 1:
					return report(c.App.ErrWriter, backup.UsageError(errors.New("completion takes one shell: bash, zsh or fish")))
				case shell == "" || shell == "bash":
					fmt.Fprint(c.App.Writer, bashCompletion)
				case shell == "zsh":
					fmt.Fprint(c.App.Writer, zshCompletion)
				case shell == "fish":
					script, err := c.App.ToFishCompletion()
					if err != nil {
						return report(c.App.ErrWriter, err)
					}
					fmt.Fprint(c.App.Writer, script)
				default:
					return report(c.App.ErrWriter, backup.UsageError(fmt.Errorf("completion %q: want bash, zsh or fish", shell)))
				}
				return nil
			},
		},
	}
}

// bashCompletion asks pgfbb-wrap itself for the words that may follow; a
// word being typed that starts with "-" is passed on, which asks for flags.
const bashCompletion = `_pgfbb_wrap() {
	local cur=${COMP_WORDS[COMP_CWORD]} words
	local -a args=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
	[[ $cur == -* ]] && args+=("$cur")
	words=$("${COMP_WORDS[0]}" "${args[@]}" --generate-bash-completion 2>/dev/null)
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _pgfbb_wrap pgfbb-wrap
`

// zshCompletion asks pgfbb-wrap itself, as bashCompletion does.
const zshCompletion = `#compdef pgfbb-wrap
_pgfbb_wrap() {
	local -a args words_
	args=("${(@)words[2,CURRENT-1]}")
	[[ ${words[CURRENT]} == -* ]] && args+=("${words[CURRENT]}")
	words_=("${(@f)$(${words[1]} "${(@)args}" --generate-bash-completion 2>/dev/null)}")
	compadd -a words_
}
compdef _pgfbb_wrap pgfbb-wrap
`
