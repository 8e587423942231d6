package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
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
			"postgresql.auto.conf settings (12+). Start the server afterwards; it recovers to the target, then\n" +
			"promotes (or pauses or shuts down, as --target-action says).\n\n" +
			"Refuses (exit 3), before changing anything, a target with a running postmaster (however it is reached),\n" +
			"of another major, of another cluster or already holding a backup_label, a --wal-dir holding other files\n" +
			"(these three unless --force), links PostgreSQL never makes, a staged backup that does not verify, and a\n" +
			"--target before the backup's end. Exit 0 done, 1 failed, 2 usage, 3 refused, 130/143 interrupted.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "staged", Usage: "the staged backup `DIR` (STAGING/LABEL)"},
			&cli.StringFlag{Name: "pgdata", Usage: "the data `DIR` recovered from the snapshot"},
			&cli.StringFlag{Name: "wal-dir", Usage: "when the target's pg_wal links to another volume: put the WAL in `DIR` and link pg_wal to it"},
			&cli.StringSliceFlag{Name: "tablespace-mapping", Usage: "relocate the tablespace at OLD to NEW (`OLD=NEW`, both absolute; repeatable)"},
			&cli.StringFlag{Name: "target", Value: "immediate", Usage: "stop recovery at: immediate (end of backup), latest, a `TIME` (2026-11-28 04:17:49.025677+00, as psql prints now(); ISO 8601; or DATE TIME Zone/Name) or an LSN"},
			&cli.StringFlag{Name: "target-name", Usage: "stop recovery at the restore point `NAME` (pg_create_restore_point)"},
			&cli.StringFlag{Name: "target-xid", Usage: "stop recovery at transaction `XID` (txid_current())"},
			&cli.BoolFlag{Name: "target-exclusive", Usage: "stop just before a time, xid or LSN target instead of just after it"},
			&cli.StringFlag{Name: "target-action", Value: "promote", Usage: "what the server does at the target, `ACTION`: promote, pause (a read-only hot standby until pg_wal_replay_resume() or a promotion) or shutdown"},
			&cli.StringFlag{Name: "target-timeline", Usage: "follow timeline current, latest or `ID` (default: PostgreSQL's, current up to 11, latest from 12)"},
			&cli.StringFlag{Name: "restore-command", Usage: "restore_command `CMD` for WAL from an archive (needed past the staged WAL)"},
			&cli.BoolFlag{Name: "force", Usage: "restore into a target of another cluster or with a backup_label, or with a --wal-dir holding other files"},
			&cli.BoolFlag{Name: "rehearse", Usage: "restore into a throwaway copy, start a private server, wait for consistency, query, remove"},
			&cli.StringFlag{Name: "pg-bin", Usage: "with --rehearse: the server's program `DIR` (default /usr/lib/postgresql/MAJOR/bin)"},
			&cli.StringFlag{Name: "scratch", Usage: "with --rehearse: put the copy in `DIR`; on the target's file system the copy is a reflink"},
			&cli.DurationFlag{Name: "rehearse-timeout", Value: 30 * time.Minute, Usage: "with --rehearse: give recovery this long"},
			&cli.StringFlag{Name: "rehearse-user", Usage: "with --rehearse: connect as superuser `ROLE` (default: the data directory's OS owner, as initdb names it)"},
		},
		Action: func(c *cli.Context) error {
			target, err := restoreTarget(c)
			if err != nil {
				return report(c.App.ErrWriter, backup.UsageError(err))
			}
			o := restore.Options{Staged: c.String("staged"), PGData: c.String("pgdata"), WALDir: c.String("wal-dir"),
				Target: target, RestoreCommand: c.String("restore-command"), Force: c.Bool("force")}
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
					Scratch: c.String("scratch"), Timeout: c.Duration("rehearse-timeout"), User: c.String("rehearse-user")})
			}
			m, err := restore.Prepare(c.Context, o)
			if err != nil {
				return report(c.App.ErrWriter, restoreError(err))
			}
			fmt.Fprintln(c.App.Writer, restoreSummary(o, m))
			return nil
		},
	}
}

// restoreTarget reads the target flags. --target, --target-name and
// --target-xid exclude each other; one given on the command line wins over
// one from the environment or the config file, as every flag does.
func restoreTarget(c *cli.Context) (restore.Target, error) {
	var set, typed []string
	for _, name := range []string{"target", "target-name", "target-xid"} {
		if c.IsSet(name) {
			set = append(set, name)
			if onCommandLine(name) {
				typed = append(typed, name)
			}
		}
	}
	if len(typed) > 0 {
		set = typed
	}
	if len(set) > 1 {
		return restore.Target{}, fmt.Errorf("--%s: give one target", strings.Join(set, " and --"))
	}
	var t restore.Target
	var err error
	switch {
	case slices.Contains(set, "target-name"):
		t, err = restore.NameTarget(c.String("target-name"))
	case slices.Contains(set, "target-xid"):
		t, err = restore.XIDTarget(c.String("target-xid"))
	default:
		t, err = restore.ParseTarget(c.String("target"))
	}
	if c.IsSet("target-action") {
		t.Action = c.String("target-action")
	}
	t.Exclusive, t.Timeline = c.Bool("target-exclusive"), c.String("target-timeline")
	return t, err
}

// restoreSummary says where the restored server's recovery will read WAL
// and where it stops.
func restoreSummary(o restore.Options, m *staged.Manifest) string {
	from := "the staged WAL"
	if m.WALMode != staged.WALCopy {
		from = "the archive (--restore-command)"
	}
	stops := o.Target.String()
	switch {
	case m.BackupFrom == staged.FromStandby && o.Target.Immediate():
		stops = "ends with the staged WAL, just past the end of this backup from a standby, then promotes"
	case o.Target.NeedsArchive() && m.WALMode == staged.WALCopy:
		stops = "reads what follows " + m.StopWAL + " from the archive (--restore-command); it " + stops
	}
	return fmt.Sprintf("restore of %s laid out in %s: start the server; recovery replays %s..%s from %s and %s",
		m.Label, o.PGData, m.StartWAL, m.StopWAL, from, stops)
}

func rehearse(c *cli.Context, o restore.RehearseOptions) error {
	r, err := restore.Rehearse(c.Context, o)
	if err != nil {
		return report(c.App.ErrWriter, restoreError(err))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rehearsal of %s ok: consistent after %s", r.Label, r.ToConsistency.Round(time.Millisecond))
	if r.Stopped != "" {
		fmt.Fprintf(&b, ", %s", r.Stopped)
	}
	if r.LastCommit != "" {
		fmt.Fprintf(&b, ", last transaction at %s", r.LastCommit)
	}
	fmt.Fprintf(&b, "; %s after %s", rehearsalEnd[o.Target.Action], r.ToReady.Round(time.Millisecond))
	if o.RestoreCommand != "" {
		fmt.Fprintf(&b, ", %d files from the archive", r.FromArchive)
	}
	if r.Databases >= 0 {
		fmt.Fprintf(&b, ", %d databases answer", r.Databases)
	}
	fmt.Fprintln(c.App.Writer, b.String()+"; the copy is removed")
	if o.Target.NeedsArchive() && r.FromArchive == 0 {
		fmt.Fprintln(c.App.ErrWriter, "pgfbb-wrap: warning: recovery read nothing from the archive, so it went no further than the staged WAL: "+
			"check --restore-command")
	}
	return nil
}

// rehearsalEnd names how recovery ended, by --target-action.
var rehearsalEnd = map[string]string{"": "recovery finished", "promote": "recovery finished",
	"pause": "paused at the target", "shutdown": "shut down at the target"}

// restoreError gives a refused restore, which changed nothing, exit code 3;
// any other failure is 1.
func restoreError(err error) error {
	if errors.Is(err, restore.ErrRefused) {
		return &backup.PhaseError{Phase: backup.PhasePreflight, Err: err}
	}
	return err
}
