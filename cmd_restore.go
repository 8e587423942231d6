package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/restore"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/urfave/cli/v2"
)

func restoreCommand(command []string) *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "lay out a staged backup in a data directory recovered from its snapshot",
		Description: "Verifies the staged backup, then in the target data directory: places backup_label and\n" +
			"tablespace_map, removes postmaster.pid and postmaster.opts, empties pg_wal (keeping archive_status)\n" +
			"and copies the staged WAL in, and writes recovery.conf (10, 11) or recovery.signal plus\n" +
			"postgresql.auto.conf settings (12+). Start the server afterwards; it recovers and promotes.\n\n" +
			"Refuses (exit 3), before changing anything, a target with a running postmaster (however it is reached),\n" +
			"of another major, of another cluster or already holding a backup_label, a --wal-dir holding other files\n" +
			"(these three unless --force), links PostgreSQL never makes, a staged backup that does not verify, and a\n" +
			"--target before the backup's end. Exit 0 done, 1 failed, 2 usage, 130/143 interrupted.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "staged", Usage: "the staged backup `DIR` (STAGING/LABEL)"},
			&cli.StringFlag{Name: "pgdata", Usage: "the data `DIR` recovered from the snapshot"},
			&cli.StringFlag{Name: "wal-dir", Usage: "when the target's pg_wal links to another volume: put the WAL in `DIR` and link pg_wal to it"},
			&cli.StringSliceFlag{Name: "tablespace-mapping", Usage: "relocate the tablespace at OLD to NEW (`OLD=NEW`, both absolute; repeatable)"},
			&cli.StringFlag{Name: "target", Value: "immediate", Usage: "stop recovery at: immediate (end of backup), latest, a `TIME` or an LSN"},
			&cli.StringFlag{Name: "restore-command", Usage: "restore_command `CMD` for WAL from an archive (needed past the staged WAL)"},
			&cli.BoolFlag{Name: "force", Usage: "restore into a target of another cluster or with a backup_label, or with a --wal-dir holding other files"},
			&cli.BoolFlag{Name: "rehearse", Usage: "restore into a throwaway copy, start a private server, wait for consistency, query, remove"},
			&cli.StringFlag{Name: "pg-bin", Usage: "with --rehearse: the server's program `DIR` (default /usr/lib/postgresql/MAJOR/bin)"},
			&cli.StringFlag{Name: "scratch", Usage: "with --rehearse: put the copy in `DIR`; on the target's file system the copy is a reflink"},
			&cli.DurationFlag{Name: "rehearse-timeout", Value: 30 * time.Minute, Usage: "with --rehearse: give recovery this long"},
		},
		Action: func(c *cli.Context) error {
			o := restore.Options{Staged: c.String("staged"), PGData: c.String("pgdata"), WALDir: c.String("wal-dir"),
				Target: c.String("target"), RestoreCommand: c.String("restore-command"), Force: c.Bool("force")}
			for _, m := range c.StringSlice("tablespace-mapping") {
				old, new, ok := strings.Cut(m, "=")
				if !ok || !filepath.IsAbs(old) || !filepath.IsAbs(new) {
					return report(c.App.ErrWriter, backup.UsageError(fmt.Errorf("--tablespace-mapping %q: want OLD=NEW, both absolute paths", m)))
				}
				o.TablespaceMapping = append(o.TablespaceMapping, [2]string{old, new})
			}
			if o.Staged == "" || o.PGData == "" || c.NArg() > 0 || len(command) > 0 {
				return report(c.App.ErrWriter, backup.UsageError(errors.New("restore takes --staged DIR and --pgdata DIR and no arguments")))
			}
			if err := o.Validate(); err != nil {
				return report(c.App.ErrWriter, backup.UsageError(err))
			}
			if c.Bool("rehearse") {
				return rehearse(c, restore.RehearseOptions{Options: o, BinDir: c.String("pg-bin"),
					Scratch: c.String("scratch"), Timeout: c.Duration("rehearse-timeout")})
			}
			m, err := restore.Prepare(c.Context, o)
			if err != nil {
				return report(c.App.ErrWriter, restoreError(err))
			}
			stops := "stops at " + o.Target
			if m.BackupFrom == staged.FromStandby && o.Target == "immediate" {
				stops = "ends with the staged WAL, just past the end of this backup from a standby"
			}
			fmt.Fprintf(c.App.Writer, "restore of %s laid out in %s: start the server; recovery replays %s..%s and %s\n",
				m.Label, o.PGData, m.StartWAL, m.StopWAL, stops)
			return nil
		},
	}
}

func rehearse(c *cli.Context, o restore.RehearseOptions) error {
	r, err := restore.Rehearse(c.Context, o)
	if err != nil {
		return report(c.App.ErrWriter, restoreError(err))
	}
	fmt.Fprintf(c.App.Writer, "rehearsal of %s ok: consistent after %s, recovery finished after %s, %d databases answer; the copy is removed\n",
		r.Label, r.ToConsistency.Round(time.Millisecond), r.ToReady.Round(time.Millisecond), r.Databases)
	return nil
}

// restoreError gives a refused restore, which changed nothing, exit code 3;
// any other failure is 1.
func restoreError(err error) error {
	if errors.Is(err, restore.ErrRefused) {
		return &backup.PhaseError{Phase: backup.PhasePreflight, Err: err}
	}
	return err
}
