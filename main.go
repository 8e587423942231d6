// Command pgfbb-wrap makes PostgreSQL file-system snapshot backups safe: it
// holds one database session across pg_backup_start and pg_backup_stop, runs
// the snapshot command in between, and stages backup_label, tablespace_map
// and exactly the WAL a restore needs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/pgbackup"
	"github.com/pgfbb/pgfbb-wrap/prune"
	"github.com/pgfbb/pgfbb-wrap/runner"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/pgfbb/pgfbb-wrap/walcollect"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

const exitCodes = `EXIT CODES:
   0    success: the backup is published under STAGING/LABEL
   1    the backup failed after it started (stop, staging, WAL); nothing was published
   2    usage or configuration error (bad flag, config key or label, staging unusable or not private,
        a backup of the same cluster running; pre of a held label, post or abort with nothing held);
        nothing was touched
   3    preflight refused (cannot connect, unsafe settings, missing privileges, a transaction-pooling proxy)
   4    the snapshot command failed or timed out (hook mode: no post within --hold-timeout);
        the backup was still stopped cleanly
   129, 130, 131, 143  interrupted by SIGHUP, SIGINT, SIGQUIT, SIGTERM: the command was signalled and nothing
        was published; the backup was stopped, or PostgreSQL aborted it with its session (the report says which)`

func main() {
	// The manifest records the version that wrote it; -v is --verbose.
	backup.Version = toolVersion()
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version, commit and Go version"}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, "pgfbb-wrap", c.App.Version) }
	// A reader of stderr or stdout that went away (| head) must not kill
	// the tool mid-backup: writes fail instead. Notify rather than Ignore,
	// so that the snapshot command gets SIGPIPE's default back.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, force, stop := runner.NotifyContext(context.Background())
	args, command := splitCommand(os.Args)
	err := newApp(force, command).RunContext(ctx, args)
	stop()
	os.Exit(exitCode(err))
}

// exitCode maps any command's error to the documented exit codes.
func exitCode(err error) int {
	var held *holdExit
	if errors.As(err, &held) {
		return held.code
	}
	return backup.ExitCode(err)
}

// splitCommand cuts the arguments at the first "--": what follows is the
// snapshot command and never reaches the flag parser, so a command that
// happens to share a subcommand's name still runs as the snapshot.
func splitCommand(args []string) (tool, command []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i], args[i+1:]
		}
	}
	return args, nil
}

func newApp(force <-chan struct{}, command []string) *cli.App {
	app := &cli.App{
		Name:      "pgfbb-wrap",
		Usage:     "online file-system snapshot backups of PostgreSQL, label and WAL included",
		UsageText: "pgfbb-wrap --staging DIR [options] -- COMMAND [ARG...]\n   pgfbb-wrap --staging DIR [options] --command 'COMMAND ARG...'",
		Description: "Opens one database session, starts a non-exclusive backup, runs the snapshot command, stops the\n" +
			"backup in the same session and stages backup_label, tablespace_map and the WAL the restore needs.\n" +
			"The connection comes from the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, ...) and --dbname.\n" +
			"The command sees PGFBB_LABEL, PGFBB_START_LSN, PGFBB_START_WAL, PGFBB_TIMELINE, PGFBB_PGDATA,\n" +
			"PGFBB_STAGING_DIR and PGFBB_VOLUMES, and ${PGFBB_...} in its arguments is replaced by their values.\n" +
			"For orchestrators that only run a command before and one after the snapshot: pre and post.\n\n" + exitCodes,
		HideHelpCommand: true,
		Version:         backup.Version,
		Commands: append([]*cli.Command{checkCommand(force, command), verifyCommand(command), restoreCommand(command), listCommand(command),
			pruneCommand(command), versionCommand()}, append(docsCommands(),
			hookCommands(command)...)...),
		EnableBashCompletion: true,
		Flags:                append(append(backupFlags(), commandFlags()...), append(append(monitorFlags(), keepFlags()...), jsonFlag)...),
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return fail(c, backup.UsageError(err))
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fail(c, backup.UsageError(fmt.Errorf("unexpected argument %q: put the snapshot command after --", c.Args().First())))
			}
			opts, err := options(c, force, command)
			if err != nil {
				return fail(c, err)
			}
			after, err := wrapperPrune(c, opts.Label)
			if err != nil {
				return fail(c, err)
			}
			del, err := deleteCommand(c, nil)
			if err != nil {
				return fail(c, backup.UsageError(err))
			}
			if c.Bool("json") {
				opts.Stdout = os.Stderr // stdout is the report's
			} else if !c.Bool("quiet") && isTerminal(os.Stderr) {
				opts.Progress = os.Stderr
			}
			m := newMonitoring(c)
			m.start(c.Context)
			rep, err := backup.Run(c.Context, opts)
			err = deleteFailedSnapshot(c.Context, c, del, rep, err)
			if err == nil && after != nil {
				// This cluster's backups only, under this run's rule and
				// delete command; a default label may have moved on.
				after.Policy.Protect, after.Policy.Cluster = rep.Label, strconv.FormatUint(rep.SystemID, 10)
				// A prune that fails leaves the disk to fill: the run
				// fails, and its one report says the backup is there.
				began := time.Now()
				_, perr := prune.Run(c.Context, *after)
				took := time.Since(began)
				rep.Phases = append(rep.Phases, backup.PhaseTime{Phase: backup.PhasePrune, Duration: took})
				rep.Elapsed += took
				if perr != nil {
					rep.Reached = backup.PhasePrune
					rep.Err = multierror.Append(nil, &backup.PhaseError{Phase: backup.PhasePrune, Err: perr})
					err = rep.Err
				}
			}
			printOutcome(c, rep, err)
			if c.Bool("json") {
				backup.WriteJSON(c.App.Writer, rep, err)
			}
			m.finish(c.Context, rep, err)
			return err
		},
	}
	// Every flag of every command has its PGFBB_ variable and can stand in
	// the --config file.
	app.Flags = withEnv(append(app.Flags, configFlag))
	app.Before = applyConfig(app, app.Flags, true)
	for _, cmd := range app.Commands {
		cmd.Flags = withEnv(append(cmd.Flags, configFlag))
		cmd.Before = applyConfig(app, cmd.Flags, false)
		// A bad flag is a usage error, exit 2, in one line: not a page
		// of help on stdout, and not exit 1, which means more for verify
		// and prune.
		cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			return fail(c, backup.UsageError(err))
		}
	}
	return app
}

// commandFlags are the wrapper's flags for the snapshot command.
func commandFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "command", Usage: "snapshot command as one `STRING`, split like a shell would but run without one"},
		&cli.DurationFlag{Name: "timeout", Usage: "stop the snapshot command after this `DURATION` (0: no limit)"},
		&cli.DurationFlag{Name: "kill-grace", Value: 10 * time.Second, Usage: "`DURATION` between SIGTERM and SIGKILL for the command's process group"},
	}
}

// backupFlags are the flags of every command that starts a backup.
func backupFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "staging", Usage: "publish the backup as `DIR`/LABEL (created if missing, parent must exist)", EnvVars: []string{"PGFBB_STAGING"}},
		&cli.StringFlag{Name: "label", Usage: "backup `LABEL`, [A-Za-z0-9][A-Za-z0-9._-]{0,99} (default: pgfbb-YYYYMMDDTHHMMSSZ)"},
		&cli.BoolFlag{Name: "fast", Usage: "start with an immediate checkpoint instead of a spread one"},
		&cli.DurationFlag{Name: "start-timeout", Value: 23 * time.Hour, Usage: "give up (`DURATION`) when the backup has not started after this long"},
		&cli.StringFlag{Name: "dbname", Aliases: []string{"d"}, Usage: "conninfo string, postgres:// URL or database `NAME`"},
		&cli.StringFlag{Name: "pgdata", Usage: "data `DIR` to read pg_wal from (default: the server's data_directory)"},
		&cli.StringFlag{Name: "wal", Value: string(staged.WALCopy), Usage: "`MODE` copy: stage the WAL the restore needs; archive: rely on the WAL archive, " +
			"stage label and map, check the archiver; skip: stage label and map, check nothing"},
		&cli.StringFlag{Name: "wal-source", Value: string(walcollect.SourceAuto), Usage: "`SOURCE` of copied WAL: local (pg_wal), sql (pg_read_binary_file " +
			"over the session) or auto (local when readable, else sql)"},
		&cli.StringSliceFlag{Name: "covers", Usage: "the snapshot covers `PATH`, a mount point, btrfs subvolume or ZFS dataset (repeat for each): " +
			"refuse (exit 3) a cluster with files outside them, instead of warning that it spans several volumes", EnvVars: []string{"PGFBB_COVERS"}},
		&cli.DurationFlag{Name: "archive-timeout", Value: 10 * time.Minute, Usage: "when archive_mode is on, wait this long (`DURATION`) for the backup's last WAL to be archived"},
		&cli.DurationFlag{Name: "lock-wait", EnvVars: []string{"PGFBB_LOCK_WAIT"}, Usage: "when a backup of the same cluster into the same " +
			"staging directory is running, wait up to `DURATION` for it instead of exiting 2"},
		&cli.DurationFlag{Name: "network-timeout", Value: pgbackup.DefaultNetworkTimeout, EnvVars: []string{"PGFBB_NETWORK_TIMEOUT"},
			Usage: "over TCP, count the session as lost when the network is silent this long (`DURATION`: keepalives and TCP_USER_TIMEOUT)"},
		&cli.StringFlag{Name: "max-wal-retained", Value: "auto", EnvVars: []string{"PGFBB_MAX_WAL_RETAINED"}, Usage: "end the backup (exit 4) when the WAL " +
			"written since it started, which its slot keeps in pg_wal, passes `SIZE` (512MB, 8GB; auto: half the free space of pg_wal's " +
			"file system, or 16GB when it is not visible; 0: no limit)"},
		verboseFlag,
		quietFlag,
		logFormatFlag,
	}
}

var logFormatFlag = &cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"PGFBB_LOG_FORMAT"},
	Usage: "`FORMAT` of log lines and the report on stderr: text or json (log/slog's records)"}

var quietFlag = &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "log errors only: no warnings"}

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print the report as one JSON object on stdout (human text stays on stderr)"}

var verboseFlag = &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log each step, and a summary line on success"}

// backupOptions reads backupFlags.
func backupOptions(c *cli.Context) (backup.Options, error) {
	level := slog.LevelWarn
	switch {
	case c.Bool("verbose") && c.Bool("quiet"):
		return backup.Options{}, backup.UsageError(errors.New("give -v or -q, not both"))
	case c.Bool("verbose"):
		level = slog.LevelInfo
	case c.Bool("quiet"):
		level = slog.LevelError
	}
	if err := checkLogFormat(c); err != nil {
		return backup.Options{}, err
	}
	var handler slog.Handler = slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})
	if c.String("log-format") == "json" {
		handler = slog.NewJSONHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})
	}
	opts := backup.Options{
		Staging: c.String("staging"), Label: c.String("label"), Fast: c.Bool("fast"),
		StartTimeout: c.Duration("start-timeout"), DBName: c.String("dbname"), PGData: c.String("pgdata"), WAL: staged.WALMode(c.String("wal")),
		ArchiveTimeout: c.Duration("archive-timeout"), NetworkTimeout: c.Duration("network-timeout"), LockWait: c.Duration("lock-wait"), WALSource: walcollect.SourceMode(c.String("wal-source")), Covers: c.StringSlice("covers"),
		Log: slog.New(handler),
	}
	if !c.IsSet("label") {
		opts.Label, opts.AutoLabel = backup.DefaultLabel(time.Now()), true
	}
	var err error
	if opts.MaxWALRetained, err = backup.ParseSize(c.String("max-wal-retained")); err != nil {
		return opts, backup.UsageError(fmt.Errorf("--max-wal-retained: %w", err))
	}
	return opts, nil
}

func checkLogFormat(c *cli.Context) error {
	if f := c.String("log-format"); f != "text" && f != "json" {
		return backup.UsageError(fmt.Errorf("--log-format %q: want text or json", f))
	}
	return nil
}

// options reads the wrapper's flags.
func options(c *cli.Context, force <-chan struct{}, command []string) (backup.Options, error) {
	opts, err := backupOptions(c)
	if err != nil {
		return opts, err
	}
	opts.Argv, opts.Timeout, opts.Grace = command, c.Duration("timeout"), c.Duration("kill-grace")
	opts.Stdout, opts.Stderr, opts.Force = os.Stdout, os.Stderr, force
	if s := c.String("command"); s != "" && (len(opts.Argv) == 0 || onCommandLine("command")) {
		if len(opts.Argv) > 0 {
			return opts, backup.UsageError(errors.New("give the snapshot command either after -- or with --command, not both"))
		}
		argv, err := runner.Split(s)
		if err != nil {
			return opts, backup.UsageError(err)
		}
		opts.Argv = argv
	}
	return opts, nil
}

// report prints the outcome of a command that failed before any backup
// started, and returns its error.
func report(w io.Writer, err error) error {
	backup.Print(w, nil, err, false)
	return err
}

// fail is report for a command that has printed nothing on stdout yet:
// under --json, stdout still gets its one object, with the error and exit
// code, so that a reader of stdout never parses an empty string.
func fail(c *cli.Context, err error) error {
	printOutcome(c, nil, err)
	if json, _ := strconv.ParseBool(given(c, "json", true)); json {
		backup.WriteJSON(c.App.Writer, nil, err)
	}
	return err
}

// given is a flag's value, also when parsing stopped before reaching it (a
// bad value earlier on the command line): from the context, else from the
// command line, else from its environment variable.
func given(c *cli.Context, name string, boolean bool) string {
	if c.IsSet(name) {
		return fmt.Sprint(c.Value(name))
	}
	args, _ := splitCommand(os.Args)
	for i, a := range args {
		for _, flag := range []string{"-" + name, "--" + name} {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v
			}
			if a == flag && boolean {
				return "true"
			}
			if a == flag && i+1 < len(args) {
				return args[i+1]
			}
		}
	}
	return os.Getenv(envName(name))
}

// onCommandLine tells whether the flag name was given on the command line,
// not by the environment or the config file: a command after -- then wins
// over --command from those, as the command line wins everywhere.
func onCommandLine(name string) bool {
	args, _ := splitCommand(os.Args)
	for _, a := range args {
		for _, flag := range []string{"-" + name, "--" + name} {
			if a == flag || strings.HasPrefix(a, flag+"=") {
				return true
			}
		}
	}
	return false
}

// printOutcome prints a run's outcome on stderr, as text or, under
// --log-format json, as one log record.
func printOutcome(c *cli.Context, rep *backup.Report, err error) {
	if given(c, "log-format", false) == "json" {
		backup.Log(slog.New(slog.NewJSONHandler(c.App.ErrWriter, nil)), rep, err, c.Bool("verbose"))
		return
	}
	backup.Print(c.App.ErrWriter, rep, err, c.Bool("verbose"))
}

// isTerminal tells whether f is a terminal, where a progress line helps.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
