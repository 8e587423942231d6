package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/pgbackup"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/runner"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/pgfbb/pgfbb-wrap/volume"
	"github.com/pgfbb/pgfbb-wrap/walcollect"
)

// Bounds for the database calls made after the backup started; they run on
// a context no signal can cancel, because cancelling a query ends the session.
const (
	stopTimeout    = 10 * time.Minute
	cleanupTimeout = time.Minute
	stderrTail     = 4096
)

// Version is the tool version written into manifests.
var Version = "dev"

// Options configure one run.
type Options struct {
	Staging string
	Label   string
	// AutoLabel: Label is DefaultLabel's, and a run that finds it taken
	// (another cluster's backup started in the same second) takes the
	// next free one of Label-2 ... Label-9.
	AutoLabel    bool
	Fast         bool
	StartTimeout time.Duration
	Argv         []string // the snapshot command, before ${PGFBB_...} expansion
	Timeout      time.Duration
	Grace        time.Duration
	DBName       string // conninfo, URL or database name; "" uses the environment
	PGData       string // overrides the server's data_directory
	WAL          staged.WALMode
	WALSource    walcollect.SourceMode
	// ArchiveTimeout bounds the wait for the archiver when archive_mode
	// is on (and the WAL mode is not skip).
	ArchiveTimeout time.Duration
	// Progress, a terminal, gets a progress line during long waits; nil
	// shows none.
	Progress io.Writer `json:"-"`
	// CheckOnly stops the run after the checks that precede a backup:
	// nothing is started and nothing staged.
	CheckOnly bool
	// LockWait is how long to wait for another backup of the same cluster
	// into the same staging directory to end; 0 refuses at once.
	LockWait time.Duration
	// NetworkTimeout is how long a silent network may hold the session
	// (over TCP) before the backup counts as lost; 0 is the default.
	NetworkTimeout time.Duration
	// MaxWALRetained ends the backup when the WAL written since it
	// started, which its slot keeps in pg_wal, passes this many bytes:
	// AutoWALRetained derives it from pg_wal's free space, 0 is no limit.
	MaxWALRetained int64
	// Covers are the absolute paths the snapshot covers (mount points,
	// btrfs subvolumes, ZFS datasets). When given, a cluster with files
	// outside them is refused instead of warned about.
	Covers []string
	Stdout io.Writer       `json:"-"` // the command's output goes here
	Stderr io.Writer       `json:"-"`
	Force  <-chan struct{} `json:"-"` // closed by a second signal
	Log    *slog.Logger    `json:"-"`
	// Hold, when set, takes the place of the snapshot command: the backup
	// stays started until it returns. Argv, Timeout and Grace are unused.
	Hold HoldFunc `json:"-"`
}

// HoldFunc keeps a started backup open until something outside the process
// (a post hook) says it is done. It returns nil to stop and publish the
// backup, an error wrapping ErrAborted to stop it and publish nothing, and
// any other error to fail the run.
type HoldFunc func(ctx context.Context, b *Running) error

// ErrAborted is what a HoldFunc returns, wrapped, when the backup is to be
// stopped without publishing: a requested abort, not a failure.
var ErrAborted = errors.New("aborted on request")

// Running is a started backup as a HoldFunc sees it.
type Running struct {
	// Vars are the values a snapshot command would see as PGFBB_* variables.
	Vars map[string]string
	// Partial is the temporary directory the backup is staged in; it
	// is left behind only if the process dies before cleaning up.
	Partial string
	// Notes are the warnings of the run so far (preflight), for whoever
	// started a held backup and sees nothing of the log.
	Notes []string
	sess  *pgbackup.Session
	guard func(context.Context) error // the WAL-retention budget
}

// Ping checks that the backup's session is still alive (when it is not,
// PostgreSQL has already aborted the backup) and that the WAL its slot
// keeps is within --max-wal-retained (a *WALBudgetError when it is not).
func (b *Running) Ping(ctx context.Context) error {
	if err := b.sess.Ping(ctx); err != nil {
		return err
	}
	return b.guard(ctx)
}

// DefaultLabel names a backup after its UTC start time.
func DefaultLabel(t time.Time) string { return "pgfbb-" + t.UTC().Format("20060102T150405Z") }

// Child environment variables, set for the command and expandable in its
// arguments as ${NAME}.
const (
	EnvLabel    = "PGFBB_LABEL"
	EnvStartLSN = "PGFBB_START_LSN"
	EnvStartWAL = "PGFBB_START_WAL"
	EnvTimeline = "PGFBB_TIMELINE"
	EnvPGData   = "PGFBB_PGDATA"
	EnvStaging  = "PGFBB_STAGING_DIR"
	EnvVolumes  = "PGFBB_VOLUMES" // mount points holding the cluster's files, one per line
)

var childVars = []string{EnvLabel, EnvStartLSN, EnvStartWAL, EnvTimeline, EnvPGData, EnvStaging, EnvVolumes}

// Validate checks the options a wrapped run and a held one share, needing
// neither the disk nor the database; Run checks the snapshot command too.
func (o *Options) Validate() error {
	if o.Staging == "" {
		return UsageError(errors.New("--staging is required"))
	}
	if err := staged.ValidateLabel(o.Label); err != nil {
		return UsageError(err)
	}
	if _, err := staged.ParseWALMode(string(o.WAL)); err != nil {
		return UsageError(err)
	}
	if _, err := walcollect.ParseSourceMode(string(o.WALSource)); err != nil {
		return UsageError(err)
	}
	if o.ArchiveTimeout <= 0 && o.WAL != staged.WALSkip {
		return UsageError(errors.New("--archive-timeout must be positive"))
	}
	if o.StartTimeout <= 0 {
		return UsageError(errors.New("--start-timeout must be positive"))
	}
	if o.Timeout < 0 {
		return UsageError(errors.New("--timeout must not be negative (0: no limit)"))
	}
	if o.Grace < 0 {
		return UsageError(errors.New("--kill-grace must not be negative"))
	}
	if o.NetworkTimeout != 0 && o.NetworkTimeout < time.Second {
		return UsageError(errors.New("--network-timeout must be at least 1s"))
	}
	if o.LockWait < 0 {
		return UsageError(errors.New("--lock-wait must not be negative"))
	}
	if o.MaxWALRetained < AutoWALRetained {
		return UsageError(errors.New("--max-wal-retained must not be negative"))
	}
	for _, c := range o.Covers {
		if !filepath.IsAbs(c) {
			return UsageError(fmt.Errorf("--covers %q: want an absolute path", c))
		}
	}
	return nil
}

// validate is Validate plus the snapshot command, unless a HoldFunc
// takes its place.
func (o *Options) validate() error {
	if err := o.Validate(); err != nil || o.Hold != nil || (o.CheckOnly && len(o.Argv) == 0) {
		return err
	}
	return o.validateCommand()
}

func (o *Options) validateCommand() error {
	if len(o.Argv) == 0 {
		return UsageError(errors.New("no snapshot command: give it after -- or with --command"))
	}
	names := map[string]string{}
	for _, v := range childVars {
		names[v] = ""
	}
	if _, err := runner.Expand(o.Argv, names); err != nil {
		return UsageError(err)
	}
	if !strings.Contains(o.Argv[0], "${") {
		if _, err := exec.LookPath(o.Argv[0]); err != nil {
			return UsageError(fmt.Errorf("snapshot command: %w", err))
		}
	}
	return nil
}

// run carries the state of one run between its steps.
type run struct {
	opts    Options
	log     *slog.Logger
	report  *Report
	errs    *multierror.Error
	staging *staged.Staging
	sess    *pgbackup.Session
	pgdata  string
	source  walcollect.Source // where --wal=copy reads WAL
	budget  int64             // the WAL-retention budget in bytes, 0: none
	volumes []volume.Place    // where the data directory, pg_wal and tablespaces live
	entered time.Time         // when the current phase began
}

func (r *run) fail(phase Phase, err error) {
	if err == nil {
		return
	}
	if len(pgbackup.Passwords(r.opts.DBName)) > 0 {
		err = &redactedError{err: err, dsn: r.opts.DBName}
	}
	r.errs = multierror.Append(r.errs, &PhaseError{Phase: phase, Err: err})
}

// redactedError keeps the password of --dbname out of an error's text,
// whatever the error quotes, and its meaning for errors.Is and As.
type redactedError struct {
	err error
	dsn string
}

func (e *redactedError) Error() string { return pgbackup.Redact(e.err.Error(), e.dsn) }
func (e *redactedError) Unwrap() error { return e.err }

func (r *run) enter(p Phase) {
	r.endPhase()
	r.report.Reached = p
	r.report.Phases = append(r.report.Phases, PhaseTime{Phase: p})
	r.log.Info("phase", "phase", p)
}

// endPhase gives the current phase its duration.
func (r *run) endPhase() {
	now := time.Now()
	if n := len(r.report.Phases); n > 0 {
		r.report.Phases[n-1].Duration = now.Sub(r.entered)
	}
	r.entered = now
}

// Run performs one wrapped backup. ctx is the signal context: it interrupts
// the start, the snapshot command and the staging, never the stop. The
// returned report is complete whatever happened; the error combines every
// failure of the run.
func Run(ctx context.Context, opts Options) (*Report, error) {
	began := time.Now()
	r := &run{opts: opts, log: opts.Log, report: &Report{Label: opts.Label, WALMode: opts.WAL}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.execute(ctx)
	r.endPhase()
	if intr := interruption(ctx); intr != nil && !errors.As(r.errs.ErrorOrNil(), new(*runner.Interrupted)) {
		r.fail(r.report.Reached, intr)
	}
	r.report.Elapsed = time.Since(began)
	r.report.Err = r.errs.ErrorOrNil()
	return r.report, r.report.Err
}

func interruption(ctx context.Context) *runner.Interrupted {
	var intr *runner.Interrupted
	if errors.As(context.Cause(ctx), &intr) {
		return intr
	}
	return nil
}

func (r *run) execute(ctx context.Context) {
	r.enter(PhaseUsage)
	if err := r.opts.validate(); err != nil {
		r.errs = multierror.Append(r.errs, err)
		return
	}
	if len(r.opts.Argv) > 0 && r.opts.Hold == nil {
		r.ok(fmt.Sprintf("snapshot command %s found", r.opts.Argv[0]))
	}
	r.enter(PhaseStaging)
	var err error
	base := r.opts.Label
	for n := 2; ; n++ {
		r.staging, err = staged.Prepare(r.opts.Staging, r.opts.Label)
		if !r.opts.AutoLabel || !errors.Is(err, staged.ErrExists) || n > 9 {
			break
		}
		r.opts.Label = fmt.Sprintf("%s-%d", base, n)
		r.report.Label = r.opts.Label
	}
	if err != nil {
		r.fail(PhaseStaging, err)
		return
	}
	r.ok(fmt.Sprintf("staging directory %s: private, writable, %s", r.staging.Root(), r.staging.Describe()))
	for _, n := range r.staging.Notes() {
		r.note(n)
	}
	defer func() {
		if r.report.Path == "" {
			r.fail(PhaseCleanup, r.staging.Discard())
		}
	}()

	r.enter(PhaseConnect)
	cfg, err := pgbackup.Config(r.opts.DBName)
	if err != nil {
		r.fail(PhaseUsage, err)
		return
	}
	if len(pgbackup.Passwords(r.opts.DBName)) > 0 {
		r.note("--dbname holds a password, which every user of this host can read in the process list: " +
			"keep it in a password file (PGPASSFILE, ~/.pgpass) or in PGPASSWORD instead")
	}
	if r.sess, err = pgbackup.Connect(ctx, cfg, r.opts.NetworkTimeout); err != nil {
		var pe *pgbackup.PreflightError
		if errors.As(err, &pe) || errors.Is(err, pgbackup.ErrTransactionPooled) {
			r.fail(PhasePreflight, err)
		} else {
			r.fail(PhaseConnect, err)
		}
		return
	}
	defer func() { r.fail(PhaseCleanup, r.sess.Close()) }()
	srv := r.sess.Server()
	r.report.SystemID = srv.SystemID
	r.ok(fmt.Sprintf("connected: PostgreSQL %s, role %s (superuser %v, replication %v), backend pid %d",
		srv.Version, srv.User, srv.Superuser, srv.Replication, srv.BackendPID))

	r.enter(PhasePreflight)
	pinned := r.sess.PinCheck()
	switch {
	case pinned != nil && r.opts.CheckOnly:
		r.note(fmt.Sprintf("could not check for a transaction-pooling proxy (the check needs three connections): %v; "+
			"a backup still refuses to start when one of its statements reaches another server session", pinned))
	case pinned != nil:
		// Not worth a nightly warning: the backup's statements are
		// guarded by the backend pid.
		r.log.Info("could not check for a transaction-pooling proxy", "error", pinned)
	default:
		r.ok("one server session: no transaction-pooling proxy in the way")
	}
	if err := r.preflight(ctx); err != nil {
		r.fail(PhasePreflight, err)
		return
	}
	r.ok("settings and privileges allow the backup")
	if r.source != nil {
		r.ok("WAL source: " + r.source.String())
	}
	if r.opts.CheckOnly {
		// A running backup is no fault of the setup: a warning. The
		// lock goes with the staging directory's discard.
		if err := r.staging.LockCluster(ctx, r.sess.Server().SystemID, 0); errors.Is(err, staged.ErrClusterBusy) {
			r.note(fmt.Sprintf("%v: a backup now would exit 2, unless --lock-wait outlasts it", err))
		} else if err == nil {
			r.ok("no other backup of this cluster into this staging directory is running")
		}
		return
	}
	if err := r.staging.LockCluster(ctx, r.sess.Server().SystemID, r.opts.LockWait); err != nil {
		r.fail(PhaseStaging, err)
		return
	}
	r.backup(ctx)
}

// backup runs from slot creation to publishing. Once the backup has started
// it is always stopped, on a context signals cannot cancel.
func (r *run) backup(ctx context.Context) {
	db := context.WithoutCancel(ctx)
	r.enter(PhaseSlot)
	slot, err := r.sess.CreateSlot(ctx, r.opts.Label)
	if err != nil {
		r.fail(preflightIfMoved(PhaseSlot, err), err)
		return
	}
	r.log.Info("slot created", "slot", slot)
	defer func() {
		cctx, cancel := context.WithTimeout(db, cleanupTimeout)
		defer cancel()
		r.fail(PhaseCleanup, r.sess.DropSlot(cctx))
	}()

	r.enter(PhaseStart)
	sctx, cancel := context.WithTimeout(ctx, r.opts.StartTimeout)
	hint := "(an immediate checkpoint)"
	if !r.opts.Fast {
		hint = fmt.Sprintf("of up to about %s (a spread checkpoint: checkpoint_timeout × checkpoint_completion_target; --fast starts at once)",
			r.sess.Server().SpreadCheckpoint.Round(time.Second))
	}
	shown := r.progress("waiting for the backup to start", fixed(hint))
	started, err := r.sess.Start(sctx, r.opts.Label, r.opts.Fast)
	shown()
	if err != nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("backup did not start within --start-timeout %s (checkpoint too slow? try --fast): %w", r.opts.StartTimeout, err)
	}
	cancel()
	if err != nil {
		// A failed or cancelled start may have ended the session; the
		// deferred close aborts whatever the server began.
		r.fail(preflightIfMoved(PhaseStart, err), err)
		return
	}
	r.report.StartLSN, r.report.Timeline, r.report.StartedAt = started.LSN, started.Timeline, started.At
	r.log.Info("backup started", "lsn", started.LSN, "timeline", started.Timeline)

	vars := map[string]string{
		EnvLabel:    r.opts.Label,
		EnvStartLSN: started.LSN.String(),
		EnvStartWAL: pgformat.SegmentFileName(started.Timeline, pgformat.SegmentNo(started.LSN, r.sess.Server().SegmentSize), r.sess.Server().SegmentSize),
		EnvTimeline: strconv.FormatUint(uint64(started.Timeline), 10),
		EnvPGData:   r.pgdata,
		EnvStaging:  r.opts.Staging,
		EnvVolumes:  strings.Join(volume.MountPoints(r.volumes), "\n"),
	}
	var snapErr error
	if r.opts.Hold != nil {
		snapErr = r.hold(ctx, vars, started.LSN)
	} else {
		snapErr = r.snapshot(ctx, vars, started.LSN)
	}

	r.enter(PhaseStop)
	stopCtx, cancel := context.WithTimeout(db, stopTimeout)
	stopped, err := r.sess.Stop(stopCtx)
	cancel()
	if err != nil {
		r.fail(PhaseStop, err)
		if errors.Is(err, pgbackup.ErrSessionLost) {
			r.explainLost(ctx, started.LSN)
		}
		return
	}
	r.report.StopLSN, r.report.StoppedAt = stopped.LSN, stopped.At
	r.log.Info("backup stopped", "lsn", stopped.LSN)
	if snapErr != nil || ctx.Err() != nil {
		return
	}
	r.stage(ctx, started, stopped)
}

// hold hands the started backup to the HoldFunc. An abort is recorded in
// the report, not as an error, and stops the run before staging.
func (r *run) hold(ctx context.Context, vars map[string]string, start pgformat.LSN) error {
	r.enter(PhaseHold)
	err := r.opts.Hold(ctx, &Running{Vars: vars, Partial: r.staging.TempDir(), Notes: slices.Clone(r.report.Notes), sess: r.sess,
		guard: func(ctx context.Context) error { return r.overBudget(ctx, start) }})
	if errors.Is(err, ErrAborted) {
		r.report.Aborted = err.Error()
		r.log.Warn("backup aborted, nothing will be published", "reason", err)
		return err
	}
	r.fail(PhaseHold, err)
	return err
}

func (r *run) snapshot(ctx context.Context, vars map[string]string, start pgformat.LSN) error {
	r.enter(PhaseSnapshot)
	argv, err := runner.Expand(r.opts.Argv, vars)
	if err != nil {
		r.fail(PhaseSnapshot, err)
		return err
	}
	env := make([]string, 0, len(os.Environ())+len(vars))
	for _, kv := range os.Environ() {
		// The snapshot command needs no database password.
		if !strings.HasPrefix(kv, "PGPASSWORD=") && !strings.HasPrefix(kv, "PGFBB_") {
			env = append(env, kv)
		}
	}
	for _, k := range childVars {
		env = append(env, k+"="+vars[k])
	}
	r.log.Info("running snapshot command", "argv", argv)
	// The budget ends the command as a signal would, with its own cause.
	sctx, end := context.WithCancelCause(ctx)
	defer end(nil)
	stopWatch := r.watchWAL(ctx, start, end)
	res, err := runner.Run(sctx, runner.Spec{
		Argv: argv, Env: env, Timeout: r.opts.Timeout, Grace: r.opts.Grace,
		Stdout: r.opts.Stdout, Stderr: r.opts.Stderr, TailBytes: stderrTail, Force: r.opts.Force,
	})
	stopWatch()
	r.report.Command = &staged.Command{Argv: argv, ExitCode: res.ExitCode, DurationSec: res.Duration.Seconds()}
	r.report.StderrTail = res.StderrTail
	r.fail(PhaseSnapshot, err)
	return err
}

// ok records a check that passed, for check to print.
func (r *run) ok(what string) {
	r.report.Checks = append(r.report.Checks, what)
	r.log.Info(what)
}

// note records something the DBA must see even though the run succeeds.
func (r *run) note(n string) {
	r.report.Notes = append(r.report.Notes, n)
	r.log.Warn(n)
}

// preflightIfMoved counts a statement that found a pooling proxy before
// the backup started as a preflight refusal (exit 3): nothing was started.
func preflightIfMoved(phase Phase, err error) Phase {
	if errors.Is(err, pgbackup.ErrSessionMoved) {
		return PhasePreflight
	}
	return phase
}
