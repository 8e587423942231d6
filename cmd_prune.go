package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/hook"
	"github.com/pgfbb/pgfbb-wrap/prune"
	"github.com/pgfbb/pgfbb-wrap/runner"
	"github.com/urfave/cli/v2"
)

// keepFlags are prune's retention flags, which the wrapper takes too.
func keepFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "keep-last", Usage: "keep the newest `N` complete backups"},
		&cli.DurationFlag{Name: "keep-within", Usage: "keep backups started within `DURATION` (168h: a week)"},
		&cli.StringFlag{Name: "delete-command", Usage: "deletes one backup's snapshot, as one `STRING` split like a shell would " +
			"(${PGFBB_LABEL} is its label)"},
		&cli.BoolFlag{Name: "staged-only", Usage: "remove staged directories without a delete command: the snapshots are deleted " +
			"by other means (without either, prune refuses: a snapshot without its label and WAL is useless)"},
	}
}

// wrapperPrune reads the wrapper's keep flags: the prune to run after a
// successful backup, nil without a keep rule. One cron line for both, as
// borgmatic does.
func wrapperPrune(c *cli.Context, label string) (*prune.Options, error) {
	if c.Int("keep-last") == 0 && c.Duration("keep-within") == 0 {
		if c.Bool("staged-only") {
			return nil, backup.UsageError(errors.New("--staged-only is a rule of the prune after the backup: give --keep-last or --keep-within"))
		}
		return nil, nil
	}
	o := &prune.Options{Staging: c.String("staging"), Policy: prune.Policy{KeepLast: c.Int("keep-last"), KeepWithin: c.Duration("keep-within"),
		Protect: label},
		Log: func(format string, args ...any) {
			// Silent in cron, like the backup before it; failures are errors.
			if c.Bool("verbose") {
				fmt.Fprintf(c.App.ErrWriter, "pgfbb-wrap: prune: "+format+"\n", args...)
			}
		}}
	if err := pruneUsage(c, o); err != nil {
		return nil, backup.UsageError(err)
	}
	return o, nil
}

func pruneCommand(command []string) *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "remove old staged backups and, with --delete-command, their snapshots",
		Description: "Keeps the newest --keep-last backups and those started within --keep-within, and always the newest\n" +
			"complete one; never touches a backup being made or held. For each other complete backup it runs the\n" +
			"delete command (no shell; ${PGFBB_LABEL} is the label), then removes the staged directory. A delete\n" +
			"command that fails keeps that staged directory and makes prune exit 1. Partial directories of dead\n" +
			"runs are removed too. The delete command goes after -- or in --delete-command:\n" +
			"   pgfbb-wrap prune --staging DIR --keep-last 7 -- btrfs subvolume delete '/snap/${PGFBB_LABEL}'",
		Flags: append([]cli.Flag{stagingFlag, runDirFlag,
			&cli.DurationFlag{Name: "timeout", Usage: "stop a delete command after `DURATION` (0: no limit)"},
			&cli.StringFlag{Name: "cluster", Usage: "prune the backups of the cluster with this system `IDENTIFIER` only " +
				"(needed when the staging directory holds several clusters' backups)"}}, append(keepFlags(),
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be removed, remove nothing"}, quietFlag)...),
		Action: func(c *cli.Context) error {
			o := prune.Options{Staging: c.String("staging"), DryRun: c.Bool("dry-run"), Timeout: c.Duration("timeout"),
				Policy:        prune.Policy{KeepLast: c.Int("keep-last"), KeepWithin: c.Duration("keep-within"), Cluster: c.String("cluster")},
				DeleteCommand: command,
				Log:           func(format string, args ...any) { fmt.Fprintf(c.App.Writer, format+"\n", args...) }}
			err := pruneUsage(c, &o)
			if err == nil {
				// The wrapper's prune has its backup's checks of the
				// staging directory, which it may create.
				if _, err = beneath.CheckPrivate(o.Staging); err != nil {
					err = fmt.Errorf("staging directory: %w", err)
				}
			}
			if err != nil {
				return report(c.App.ErrWriter, backup.UsageError(err))
			}
			res, err := prune.Run(c.Context, o)
			if res != nil {
				for _, n := range res.Notes {
					if !c.Bool("quiet") {
						fmt.Fprintf(c.App.ErrWriter, "pgfbb-wrap: %s\n", n)
					}
				}
				fmt.Fprintf(c.App.Writer, "kept %d: %s\n", len(res.Kept), strings.Join(res.Kept, " "))
			}
			if errors.Is(err, prune.ErrSeveralClusters) {
				err = backup.UsageError(err)
			}
			if err != nil {
				return report(c.App.ErrWriter, err)
			}
			if o.DryRun || res.OldestKept.IsZero() {
				return nil
			}
			dir, err := runDir(c)
			if err == nil {
				var forgotten []string
				forgotten, err = hook.Forget(dir, res.OldestKept)
				for _, label := range forgotten {
					fmt.Fprintf(c.App.Writer, "forgot %s, a held backup that ended without a post\n", label)
				}
			}
			if err != nil {
				return report(c.App.ErrWriter, err)
			}
			return nil
		},
	}
}

// pruneUsage checks prune's flags and reads --delete-command.
func pruneUsage(c *cli.Context, o *prune.Options) error {
	switch {
	case o.Staging == "" || c.NArg() > 0:
		return errors.New("prune takes --staging DIR, a keep rule, and the delete command after -- or in --delete-command")
	case o.Policy.KeepLast < 0 || o.Policy.KeepWithin < 0 || o.Timeout < 0:
		return errors.New("--keep-last, --keep-within and --timeout must not be negative")
	case o.Policy.KeepLast == 0 && o.Policy.KeepWithin == 0:
		return errors.New("give --keep-last N or --keep-within DURATION (or both): prune keeps nothing else but the newest backup")
	case c.String("delete-command") != "" && len(o.DeleteCommand) > 0 && onCommandLine("delete-command"):
		return errors.New("give the delete command either after -- or with --delete-command, not both")
	case c.String("delete-command") == "" && len(o.DeleteCommand) == 0 && !c.Bool("staged-only"):
		return errors.New("prune removes old backups' labels and WAL, without which their snapshots cannot be restored: " +
			"give --delete-command (or the command after --) that deletes a backup's snapshot, or --staged-only when " +
			"the snapshots are deleted by other means")
	case c.Bool("staged-only") && (c.String("delete-command") != "" || len(o.DeleteCommand) > 0):
		return errors.New("give a delete command or --staged-only, not both")
	}
	argv, err := deleteCommand(c, o.DeleteCommand)
	o.DeleteCommand = argv
	return err
}

// deleteCommand is the command that deletes a backup's snapshot: argv
// when given after --, else --delete-command split. It is checked as
// much as it can be before it runs (a dry run checks as much as a real
// one).
func deleteCommand(c *cli.Context, argv []string) ([]string, error) {
	if s := c.String("delete-command"); s != "" && len(argv) == 0 {
		var err error
		if argv, err = runner.Split(s); err != nil {
			return nil, err
		}
	}
	if _, err := runner.Expand(argv, map[string]string{"PGFBB_LABEL": ""}); err != nil {
		return nil, err
	}
	if len(argv) > 0 && !strings.Contains(argv[0], "${") {
		if _, err := exec.LookPath(argv[0]); err != nil {
			return nil, fmt.Errorf("delete command: %w", err)
		}
	}
	return argv, nil
}

// deleteFailedSnapshot runs the delete command for a backup that failed
// after its snapshot command succeeded: nothing was published, so the
// snapshot, without its label and WAL, is of no use and would stay for
// good, since prune goes by staged backups.
func deleteFailedSnapshot(ctx context.Context, c *cli.Context, argv []string, rep *backup.Report, err error) error {
	if err == nil || rep.Path != "" || rep.Command == nil || rep.Command.ExitCode != 0 || len(argv) == 0 {
		return err
	}
	// A signal ended the run: the deletion still runs, within its bounds.
	derr := prune.DeleteSnapshot(context.WithoutCancel(ctx), argv, rep.Label, c.Duration("timeout"), c.App.ErrWriter)
	if derr != nil {
		rep.Err = multierror.Append(rep.Err, &backup.PhaseError{Phase: backup.PhaseCleanup,
			Err: fmt.Errorf("the snapshot of this failed backup, useless without its label and WAL, was not deleted: %w", derr)})
		return rep.Err
	}
	rep.Notes = append(rep.Notes, "the snapshot of this failed backup was deleted with the delete command: it was useless without its label and WAL")
	return err
}
