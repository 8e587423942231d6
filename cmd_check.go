package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/pgbackup"
	"github.com/urfave/cli/v2"
)

func checkCommand(force <-chan struct{}, command []string) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "run every check a backup makes before it starts, and start nothing",
		ArgsUsage: "[-- COMMAND [ARG...]]",
		Description: "Takes the wrapper's flags. Checks the staging directory (private, writable, how it publishes, free\n" +
			"space), the connection and version, privileges, wal_level, archiving, a transaction-pooling proxy in the\n" +
			"way, the WAL source, --covers, what bounds WAL retention and, when given, the snapshot command. Prints\n" +
			"one line each: ok, warn or fail, with the fix. Exit 0 when a backup would start, 3 when it would not,\n" +
			"2 on usage errors.",
		Flags: append(append(backupFlags(), commandFlags()...), jsonFlag),
		Action: func(c *cli.Context) error {
			opts, err := options(c, force, command)
			if err != nil {
				return fail(c, err)
			}
			opts.CheckOnly = true
			if !c.Bool("verbose") {
				opts.Log = nil // the warnings are check's own lines
			}
			rep, err := backup.Run(c.Context, opts)
			if c.Bool("json") {
				backup.WriteJSON(c.App.Writer, rep, err)
			} else {
				printChecks(c.App.Writer, rep, err)
			}
			if err == nil || backup.ExitCode(err) == backup.ExitUsage && rep.Reached == backup.PhaseUsage {
				return err
			}
			return &backup.PhaseError{Phase: backup.PhasePreflight, Err: errors.New("a backup would not start")}
		},
	}
}

// printChecks prints one line per check: ok, warn or fail.
func printChecks(w io.Writer, rep *backup.Report, err error) {
	for _, ok := range rep.Checks {
		fmt.Fprintf(w, "ok    %s\n", ok)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "warn  %s\n", n)
	}
	if err == nil {
		return
	}
	for _, e := range backup.Errors(err) {
		var pe *pgbackup.PreflightError
		if errors.As(e, &pe) {
			for _, p := range pe.Problems {
				fmt.Fprintf(w, "fail  %s\n", p)
			}
			continue
		}
		fmt.Fprintf(w, "fail  %v\n", e)
	}
}
