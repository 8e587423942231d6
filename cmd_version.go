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
