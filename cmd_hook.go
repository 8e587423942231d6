package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/hook"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/urfave/cli/v2"
)

var (
	runDirFlag  = &cli.StringFlag{Name: "run-dir", Usage: "holders' sockets, state and logs in `DIR` (default: STAGING/.pgfbb-run)", EnvVars: []string{"PGFBB_RUN_DIR"}}
	stagingFlag = &cli.StringFlag{Name: "staging", Usage: "the staging `DIR` the backup is published in", EnvVars: []string{"PGFBB_STAGING"}}
	labelFlag   = &cli.StringFlag{Name: "label", Usage: "the backup's `LABEL` (default: the only one held)"}
)

// hookCommands are pre, post, abort, status, path and the hidden holder.
func hookCommands(command []string) []*cli.Command {
	noCommand := func(c *cli.Context) error {
		if len(command) > 0 || c.NArg() > 0 {
			return backup.UsageError(fmt.Errorf("%s takes no command or arguments", c.Command.Name))
		}
		return nil
	}
	finish := func(op string) cli.ActionFunc {
		return func(c *cli.Context) error {
			dir, err := runDir(c)
			if err == nil {
				err = noCommand(c)
			}
			if err == nil {
				err = checkLogFormat(c)
			}
			label := c.String("label")
			var notes []string
			if err == nil {
				label, notes, err = hook.Select(dir, label)
			}
			if err != nil {
				return fail(c, err)
			}
			for _, n := range notes {
				if !c.Bool("quiet") {
					fmt.Fprintf(c.App.ErrWriter, "pgfbb-wrap: warning: %s\n", n)
				}
			}
			res, err := hook.Finish(c.Context, dir, label, op)
			if err != nil {
				return fail(c, err)
			}
			newMonitoring(c).inherit(res.Monitor).finishHeld(c.Context, res)
			// The outcome is what a hook runner logs: the summary of a
			// published backup on stdout, any report on stderr.
			printResult(c, res)
			if res.Summary != "" && !c.Bool("json") {
				fmt.Fprintln(c.App.Writer, res.Summary)
			}
			writeResultJSON(c, res)
			return res.Err()
		}
	}
	finishFlags := append([]cli.Flag{stagingFlag, runDirFlag, labelFlag, jsonFlag, logFormatFlag, quietFlag}, monitorFlags()...)
	return []*cli.Command{
		{
			Name:  "pre",
			Usage: "start a backup held by a background process, for a pre-snapshot hook",
			Description: "Starts a holder process (this program, detached in its own session) that opens the database session,\n" +
				"creates the slot and starts the backup; returns once the backup has started, printing PGFBB_LABEL,\n" +
				"PGFBB_START_LSN, PGFBB_START_WAL, PGFBB_TIMELINE, PGFBB_PGDATA and PGFBB_STAGING_DIR as shell\n" +
				"assignments. Take the snapshot, then run post. The holder stops the backup and publishes nothing\n" +
				"after --hold-timeout, on SIGTERM, or when its database session ends.\n\n" + exitCodes,
			Flags: append(append(backupFlags(), monitorFlags()...), runDirFlag, jsonFlag,
				&cli.DurationFlag{Name: "hold-timeout", Value: 23 * time.Hour, Usage: "abort the backup when no post or abort came within `DURATION`"}),
			Action: func(c *cli.Context) error {
				dir, err := runDir(c)
				if err == nil {
					err = noCommand(c)
				}
				if err != nil {
					return fail(c, err)
				}
				exe, err := os.Executable()
				if err != nil {
					return fail(c, fmt.Errorf("find own executable: %w", err))
				}
				opts, err := backupOptions(c)
				if err != nil {
					return fail(c, err)
				}
				// The run directory knows the backup by the label pre
				// chose: it must not move on.
				opts.AutoLabel = false
				spec := hook.Spec{Backup: opts, RunDir: dir, HoldTimeout: c.Duration("hold-timeout"),
					Monitor: hook.Monitor{MetricsFile: c.String("metrics-file"), Name: c.String("name"), PingURL: c.String("ping-url")}}
				m := newMonitoring(c)
				m.start(c.Context)
				st, err := hook.Pre(c.Context, spec, exe)
				var failed *hook.Failed
				if errors.As(err, &failed) {
					printResult(c, failed.Result)
					m.finishHeld(c.Context, failed.Result)
					writeResultJSON(c, failed.Result)
					return err
				}
				if err != nil {
					m.finishHeld(c.Context, &hook.Result{ExitCode: backup.ExitCode(err), Report: err.Error()})
					return fail(c, err)
				}
				for _, n := range st.Notes {
					fmt.Fprintf(c.App.ErrWriter, "pgfbb-wrap: warning: %s\n", n)
				}
				if c.Bool("json") {
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					// notes is always there, [] when empty, like the
					// wrapper's warnings.
					enc.Encode(struct {
						FormatVersion int `json:"format_version"`
						*hook.State
						Notes []string `json:"notes"`
					}{backup.JSONFormatVersion, st, append([]string{}, st.Notes...)})
					return nil
				}
				for _, k := range []string{backup.EnvLabel, backup.EnvStartLSN, backup.EnvStartWAL, backup.EnvTimeline, backup.EnvPGData, backup.EnvStaging} {
					// Values are labels, LSNs and paths: quoted for eval.
					fmt.Fprintf(c.App.Writer, "%s=%s\n", k, shellQuote(st.Vars[k]))
				}
				if c.Bool("verbose") {
					fmt.Fprintf(c.App.ErrWriter, "pgfbb-wrap: backup %s started at %s, held by pid %d until post (log: %s)\n",
						st.Label, st.Vars[backup.EnvStartLSN], st.PID, st.Log)
				}
				return nil
			},
		},
		{
			Name:  "post",
			Usage: "stop the held backup and stage label, map and WAL, for a post-snapshot hook",
			Description: "Tells the holder to stop the backup in its session, stage and publish it exactly as the wrapper does,\n" +
				"and prints its report: on success one summary line on stdout, otherwise the full report on stderr.\n" +
				"Without --label it finishes the only held backup (or, with none held, the only one that ended without\n" +
				"a post), and refuses when there are several. A holder that ended on its own hands over its report;\n" +
				"one that died is exit 1.\n\n" + exitCodes,
			Flags:  finishFlags,
			Action: finish(hook.OpPost),
		},
		{
			Name:        "abort",
			Usage:       "stop the held backup and publish nothing",
			Description: "Exit 0 when the backup was stopped cleanly; otherwise the exit codes of post.",
			Flags:       finishFlags,
			Action:      finish(hook.OpAbort),
		},
		{
			Name:  "status",
			Usage: "list held backups: label, state, holder pid, start LSN, age",
			Flags: []cli.Flag{stagingFlag, runDirFlag, quietFlag},
			Action: func(c *cli.Context) error {
				dir, err := runDir(c)
				if err == nil {
					err = noCommand(c)
				}
				var entries []hook.Entry
				if err == nil {
					entries, err = hook.List(dir)
				}
				if err != nil {
					return report(c.App.ErrWriter, err)
				}
				printStatus(c.App.Writer, entries, time.Now())
				return nil
			},
		},
		{
			Name:      "path",
			Usage:     "print a staged backup's path: its directory, its backup_label or its wal_list",
			ArgsUsage: "label-file|wal-list|dir",
			Flags:     []cli.Flag{stagingFlag, &cli.StringFlag{Name: "label", Usage: "the backup's `LABEL`", Required: true}},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 || len(command) > 0 || c.String("staging") == "" {
					return report(c.App.ErrWriter, backup.UsageError(errors.New("path takes --staging DIR, --label LABEL and one of label-file, wal-list, dir")))
				}
				p, err := stagedPath(c.String("staging"), c.String("label"), c.Args().First())
				if err != nil {
					return report(c.App.ErrWriter, err)
				}
				fmt.Fprintln(c.App.Writer, p)
				return nil
			},
		},
		{
			Name:   hook.HoldCommand,
			Hidden: true,
			Action: func(c *cli.Context) error {
				spec, status := os.NewFile(3, "spec"), os.NewFile(4, "status")
				if _, err := status.Stat(); err != nil {
					return report(c.App.ErrWriter, backup.UsageError(errors.New("hold is started by pre, not by hand")))
				}
				// The holder's stderr is its log file, opened by pre.
				return &holdExit{code: hook.Hold(c.Context, spec, status, os.Stderr)}
			},
		},
	}
}

// holdExit carries a holder's exit code to main without printing anything:
// the holder has delivered its outcome already.
type holdExit struct{ code int }

func (h *holdExit) Error() string { return fmt.Sprintf("holder exit %d", h.code) }

func runDir(c *cli.Context) (string, error) {
	if d := c.String("run-dir"); d != "" {
		return d, nil
	}
	if s := c.String("staging"); s != "" {
		return hook.DefaultRunDir(s), nil
	}
	return "", backup.UsageError(errors.New("give --staging (or --run-dir)"))
}

func printStatus(w io.Writer, entries []hook.Entry, now time.Time) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "no backups held")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tSTATE\tPID\tSTART LSN\tTIMELINE\tAGE")
	for _, e := range entries {
		pid, lsn, tli, age := "-", "-", "-", "-"
		if st := e.State; st != nil {
			pid, lsn, tli = fmt.Sprint(st.PID), st.Vars[backup.EnvStartLSN], st.Vars[backup.EnvTimeline]
			age = now.Sub(st.StartedAt).Round(time.Second).String()
		}
		state := e.Status
		if e.Result != nil {
			state = fmt.Sprintf("%s (exit %d, run post)", state, e.Result.ExitCode)
		}
		if e.Problem != "" {
			state = fmt.Sprintf("%s (%s)", state, e.Problem)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Label, state, pid, lsn, tli, age)
	}
	tw.Flush()
}

// stagedPath resolves path's three kinds, the successors of the shell
// tool's pg_fbb_get_label_file and pg_fbb_get_wal_list, for a published backup.
func stagedPath(staging, label, kind string) (string, error) {
	if err := staged.ValidateLabel(label); err != nil {
		return "", backup.UsageError(err)
	}
	dir, err := filepath.Abs(filepath.Join(staging, label))
	if err != nil {
		return "", backup.UsageError(err)
	}
	names := map[string]string{"dir": staged.ManifestFile, "label-file": staged.LabelFile, "wal-list": staged.WALListFile}
	name, ok := names[kind]
	if !ok {
		return "", backup.UsageError(fmt.Errorf("unknown path kind %q: want label-file, wal-list or dir", kind))
	}
	if _, err := os.Stat(filepath.Join(dir, staged.ManifestFile)); err != nil {
		return "", fmt.Errorf("no published backup %s: %w", label, err)
	}
	if kind == "dir" {
		return dir, nil
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("backup %s has no %s (staged with --wal=skip?): %w", label, name, err)
	}
	return p, nil
}

// shellQuote quotes s for POSIX sh when it holds anything but safe characters.
func shellQuote(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '.' || r == '_' || r == '-' || r == ':') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

// writeResultJSON prints a held backup's outcome under --json: the report
// the holder wrote, or, when it wrote none (it died), the error alone.
func writeResultJSON(c *cli.Context, res *hook.Result) {
	switch {
	case !c.Bool("json"):
	case len(res.JSON) > 0:
		c.App.Writer.Write(append(res.JSON, '\n'))
	default:
		backup.WriteJSON(c.App.Writer, nil, res.Err())
	}
}

// printResult prints a held backup's outcome on stderr: the report the
// holder wrote or, under --log-format json, one record holding its JSON
// report, as the wrapper would.
func printResult(c *cli.Context, res *hook.Result) {
	if c.String("log-format") != "json" {
		fmt.Fprint(c.App.ErrWriter, res.Report)
		return
	}
	l := slog.New(slog.NewJSONHandler(c.App.ErrWriter, nil))
	var report any = json.RawMessage(res.JSON)
	if len(res.JSON) == 0 {
		report = res.Report // the holder died before writing one
	}
	switch {
	case res.ExitCode != backup.ExitOK:
		l.Error("backup failed", "report", report)
	case res.Report != "":
		l.Warn("backup aborted", "report", report)
	}
}
