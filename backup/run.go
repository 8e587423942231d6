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
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/pgbackup"
	"github.com/pgfbb/pgfbb-wrap/runner"
	"github.com/pgfbb/pgfbb-wrap/volume"
	"github.com/pgfbb/pgfbb-wrap/walcollect"
)

// WAL modes.
const (
	WALCopy    = "copy"    // stage every WAL file the restore needs
	WALArchive = "archive" // stage label and map; the WAL is in the archive, which is checked
	WALSkip    = "skip"    // stage label and map only, check nothing: the site handles WAL
)

// Where --wal=copy reads WAL from.
const (
	SourceAuto  = "auto"  // the local pg_wal when readable, else SQL
	SourceLocal = "local" // the data directory's pg_wal, read by this process
	SourceSQL   = "sql"   // pg_read_binary_file over the backup's session
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
	Staging      string
	Label        string
	Fast         bool
	StartTimeout time.Duration
	Argv         []string // the snapshot command, before ${PGFBB_...} expansion
	Timeout      time.Duration
	Grace        time.Duration
	DBName       string // conninfo, URL or database name; "" uses the environment
	PGData       string // overrides the server's data_directory
	WAL          string
	WALSource    string // SourceAuto, SourceLocal or SourceSQL
	// ArchiveTimeout bounds the wait for the archiver when archive_mode
	// is on (and the WAL mode is not skip).
	ArchiveTimeout time.Duration
	Stdout         io.Writer       `json:"-"` // the command's output goes here
	Stderr         io.Writer       `json:"-"`
	Force          <-chan struct{} `json:"-"` // closed by a second signal
	Log            *slog.Logger    `json:"-"`
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
	sess    *pgbackup.Session
}

// Ping checks that the backup's session is still alive: when it is not,
// PostgreSQL has already aborted the backup.
func (b *Running) Ping(ctx context.Context) error { return b.sess.Ping(ctx) }

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
	if err := walcollect.ValidateLabel(o.Label); err != nil {
		return UsageError(err)
	}
	if o.WAL != WALCopy && o.WAL != WALArchive && o.WAL != WALSkip {
		return UsageError(fmt.Errorf("--wal=%q: want copy, archive or skip", o.WAL))
	}
	if o.WALSource != SourceAuto && o.WALSource != SourceLocal && o.WALSource != SourceSQL {
		return UsageError(fmt.Errorf("--wal-source=%q: want auto, local or sql", o.WALSource))
	}
	if o.ArchiveTimeout <= 0 && o.WAL != WALSkip {
		return UsageError(errors.New("--archive-timeout must be positive"))
	}
	if o.StartTimeout <= 0 {
		return UsageError(errors.New("--start-timeout must be positive"))
	}
	return nil
}

// validate is Validate plus the snapshot command, unless a HoldFunc
// takes its place.
func (o *Options) validate() error {
	if err := o.Validate(); err != nil || o.Hold != nil {
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
	staging *walcollect.Staging
	sess    *pgbackup.Session
	pgdata  string
	source  walcollect.Source // where --wal=copy reads WAL
	volumes []volume.Place    // where the data directory, pg_wal and tablespaces live
}

func (r *run) fail(phase Phase, err error) {
	if err != nil {
		r.errs = multierror.Append(r.errs, &PhaseError{Phase: phase, Err: err})
	}
}

func (r *run) enter(p Phase) {
	r.report.Reached = p
	r.log.Info("phase", "phase", p)
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
	r.enter(PhaseStaging)
	var err error
	if r.staging, err = walcollect.Prepare(r.opts.Staging, r.opts.Label); err != nil {
		r.fail(PhaseStaging, err)
		return
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
	if r.sess, err = pgbackup.Connect(ctx, cfg); err != nil {
		var pe *pgbackup.PreflightError
		if errors.As(err, &pe) {
			r.fail(PhasePreflight, err)
		} else {
			r.fail(PhaseConnect, err)
		}
		return
	}
	defer func() { r.fail(PhaseCleanup, r.sess.Close()) }()

	r.enter(PhasePreflight)
	if err := r.preflight(ctx); err != nil {
		r.fail(PhasePreflight, err)
		return
	}
	r.backup(ctx)
}

// preflight adds the checks that need the local file system to the server's.
func (r *run) preflight(ctx context.Context) error {
	srv := r.sess.Server()
	r.log.Info("connected", "version", srv.Version, "user", srv.User, "wal_level", srv.WALLevel,
		"wal_segment_size", srv.SegmentSize, "data_directory", srv.DataDirectory)
	var problems []string
	if err := r.sess.Preflight(); err != nil {
		var pe *pgbackup.PreflightError
		if !errors.As(err, &pe) {
			return err
		}
		problems = pe.Problems
	}
	r.pgdata = r.opts.PGData
	if r.pgdata == "" {
		r.pgdata = srv.DataDirectory
	}
	if err := r.locate(ctx); err != nil {
		return err
	}
	if r.opts.WAL == WALCopy {
		if p := r.chooseSource(srv); p != "" {
			problems = append(problems, p)
		}
	}
	if r.opts.WAL == WALArchive && !archiving(srv) {
		problems = append(problems, fmt.Sprintf("--wal=archive relies on the WAL archive, but archive_mode is %s on this server: "+
			"enable archiving, or use --wal=copy", srv.ArchiveMode))
	}
	if len(problems) > 0 {
		return &pgbackup.PreflightError{Problems: problems}
	}
	return nil
}

// locate finds the file systems the data directory, pg_wal and every
// tablespace live on, for the DBA, the snapshot command and the manifest.
// Not seeing them (a tool on another host) is said, not fatal.
func (r *run) locate(ctx context.Context) error {
	tablespaces, err := r.sess.Tablespaces(ctx)
	if err != nil {
		return err
	}
	var paths [][2]string
	if r.pgdata != "" {
		paths = append(paths, [2]string{"data_directory", r.pgdata}, [2]string{"pg_wal", filepath.Join(r.pgdata, "pg_wal")})
	}
	for _, ts := range tablespaces {
		paths = append(paths, [2]string{"tablespace " + ts.Name, ts.Location})
	}
	mounts, err := volume.ReadMounts()
	if err == nil {
		r.volumes, err = volume.Locate(paths, mounts)
	}
	if err != nil {
		r.note(fmt.Sprintf("cannot tell which volumes the snapshot must cover: %v", err))
	}
	for _, p := range r.volumes {
		r.log.Info("volume", "role", p.Role, "path", p.Real, "mount", p.Mount.Point, "fstype", p.Mount.FSType, "source", p.Mount.Source, "st_dev", p.Dev)
	}
	if n := volume.Units(r.volumes); n > 1 {
		var where []string
		for _, p := range r.volumes {
			where = append(where, fmt.Sprintf("%s on %s (%s %s)", p.Role, p.Mount.Point, p.Mount.FSType, p.Dev))
		}
		r.note(fmt.Sprintf("the cluster spans %d file systems or subvolumes, and the snapshot must cover every one: %s; "+
			"separate snapshots are not atomic, which backup mode and the staged WAL make safe", n, strings.Join(where, ", ")))
	}
	return nil
}

// chooseSource picks where --wal=copy reads WAL, or says why it cannot.
func (r *run) chooseSource(srv *pgbackup.Server) string {
	local := r.checkWALDir(srv)
	sql := ""
	if !srv.CanReadFiles() {
		sql = "cannot read WAL over SQL: " + srv.ReadFilesRemedy()
	}
	want := r.opts.WALSource
	if want == SourceAuto && r.opts.PGData != "" {
		// --pgdata says where the files are: a mistake there must not
		// be papered over by reading WAL another way.
		want = SourceLocal
	}
	switch {
	case want != SourceSQL && local == "":
		r.source = walcollect.DirSource(filepath.Join(r.pgdata, "pg_wal"))
	case want != SourceLocal && sql == "":
		if r.opts.WALSource == SourceAuto {
			r.note("reading WAL over SQL (pg_read_binary_file): " + local)
		}
		r.source = r.sess.WALSource()
	case want == SourceLocal:
		return local
	case want == SourceSQL:
		return sql
	default:
		return local + "; " + sql
	}
	return ""
}

func (r *run) checkWALDir(srv *pgbackup.Server) string {
	if r.pgdata == "" {
		return "cannot learn the data directory (the role lacks superuser or pg_read_all_settings): pass --pgdata, or --wal=skip"
	}
	if _, err := os.ReadDir(filepath.Join(r.pgdata, "pg_wal")); err != nil {
		return fmt.Sprintf("WAL directory not readable for staging: %v", err)
	}
	id, err := walcollect.ControlSystemID(r.pgdata)
	if err != nil {
		return err.Error()
	}
	if srv.SystemID != 0 && id != srv.SystemID {
		return fmt.Sprintf("data directory %s belongs to another cluster (system identifier %d, server has %d)", r.pgdata, id, srv.SystemID)
	}
	return ""
}

// backup runs from slot creation to publishing. Once the backup has started
// it is always stopped, on a context signals cannot cancel.
func (r *run) backup(ctx context.Context) {
	db := context.WithoutCancel(ctx)
	r.enter(PhaseSlot)
	slot, err := r.sess.CreateSlot(ctx, r.opts.Label)
	if err != nil {
		r.fail(PhaseSlot, err)
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
	started, err := r.sess.Start(sctx, r.opts.Label, r.opts.Fast)
	if err != nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("backup did not start within --start-timeout %s (checkpoint too slow? try --fast): %w", r.opts.StartTimeout, err)
	}
	cancel()
	if err != nil {
		// A failed or cancelled start may have ended the session; the
		// deferred close aborts whatever the server began.
		r.fail(PhaseStart, err)
		return
	}
	r.report.StartLSN, r.report.Timeline, r.report.StartedAt = started.LSN, started.Timeline, started.At
	r.log.Info("backup started", "lsn", started.LSN, "timeline", started.Timeline)

	vars := map[string]string{
		EnvLabel:    r.opts.Label,
		EnvStartLSN: started.LSN.String(),
		EnvStartWAL: walcollect.SegmentFileName(started.Timeline, walcollect.SegmentNo(started.LSN, r.sess.Server().SegmentSize), r.sess.Server().SegmentSize),
		EnvTimeline: strconv.FormatUint(uint64(started.Timeline), 10),
		EnvPGData:   r.pgdata,
		EnvStaging:  r.opts.Staging,
		EnvVolumes:  strings.Join(volume.MountPoints(r.volumes), "\n"),
	}
	var snapErr error
	if r.opts.Hold != nil {
		snapErr = r.hold(ctx, vars)
	} else {
		snapErr = r.snapshot(ctx, vars)
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
func (r *run) hold(ctx context.Context, vars map[string]string) error {
	r.enter(PhaseHold)
	err := r.opts.Hold(ctx, &Running{Vars: vars, Partial: r.staging.TempDir(), sess: r.sess})
	if errors.Is(err, ErrAborted) {
		r.report.Aborted = err.Error()
		r.log.Warn("backup aborted, nothing will be published", "reason", err)
		return err
	}
	r.fail(PhaseHold, err)
	return err
}

func (r *run) snapshot(ctx context.Context, vars map[string]string) error {
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
	res, err := runner.Run(ctx, runner.Spec{
		Argv: argv, Env: env, Timeout: r.opts.Timeout, Grace: r.opts.Grace,
		Stdout: r.opts.Stdout, Stderr: r.opts.Stderr, TailBytes: stderrTail, Force: r.opts.Force,
	})
	r.report.Command = &walcollect.Command{Argv: argv, ExitCode: res.ExitCode, DurationSec: res.Duration.Seconds()}
	r.report.StderrTail = res.StderrTail
	r.fail(PhaseSnapshot, err)
	return err
}

// explainLost asks the server over a new connection whether
// max_slot_wal_keep_size explains a lost session: invalidating the slot,
// the server ends the session holding it, and the backup with it.
func (r *run) explainLost(ctx context.Context, start walcollect.LSN) {
	cfg, err := pgbackup.Config(r.opts.DBName)
	if err != nil {
		return
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	written, limit, err := pgbackup.SlotPressure(qctx, cfg, start)
	if err != nil || limit < 0 || written <= limit {
		return
	}
	r.fail(PhaseStop, fmt.Errorf("%d MB of WAL since the backup started exceed max_slot_wal_keep_size (%d MB): the server most likely "+
		"invalidated the WAL-retention slot and ended the session, and the backup, with it; raise max_slot_wal_keep_size "+
		"(or set it to -1) or make the snapshot faster", written>>20, limit>>20))
}

// stageWAL copies the plan's WAL while the slot holds it. A slot that
// max_slot_wal_keep_size invalidated, before or during the copy, lets the
// server remove or recycle segments under us: the copy is then worthless
// however it went, and the slot's state says so more clearly than a
// missing file would.
func (r *run) stageWAL(ctx context.Context, plan *walcollect.Plan) error {
	checkSlot := func() error {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		return r.sess.CheckSlot(qctx)
	}
	if err := checkSlot(); err != nil {
		return err
	}
	err := r.staging.StageWAL(ctx, r.source, plan)
	if serr := checkSlot(); serr != nil {
		return serr
	}
	return err
}

// standbyTail handles the one thing a standby cannot do: switch WAL
// segments. Its last segment is complete only once the primary has moved
// past it; until then the segment is staged up to what the standby has
// received, which covers the stop LSN, and zeros after it.
func (r *run) standbyTail(ctx context.Context, plan *walcollect.Plan, stop walcollect.LSN) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	received, err := r.sess.ReceivedLSN(qctx)
	if err != nil {
		return err
	}
	end := walcollect.LSN((plan.LastSegment + 1) * plan.SegmentSize)
	if received >= end {
		return nil
	}
	plan.ZeroFrom = max(received, stop)
	r.note(fmt.Sprintf("backup from a standby: its last WAL segment %s is still being filled, so it is staged up to %s, "+
		"all the standby had received (the backup ends at %s), and zeros after it",
		walcollect.SegmentFileName(plan.Timeline, plan.LastSegment, plan.SegmentSize), plan.ZeroFrom, stop))
	return nil
}

// note records something the DBA must see even though the run succeeds.
func (r *run) note(n string) {
	r.report.Notes = append(r.report.Notes, n)
	r.log.Warn(n)
}

// stage writes label, map and WAL into the staging directory and publishes it.
func (r *run) stage(ctx context.Context, started *pgbackup.Started, stopped *pgbackup.Stopped) {
	srv := r.sess.Server()
	r.enter(PhaseCollect)
	bl, err := walcollect.ParseBackupLabel(stopped.Label)
	if err != nil {
		r.fail(PhaseCollect, err)
		return
	}
	if bl.StartLSN != started.LSN {
		r.fail(PhaseCollect, fmt.Errorf("backup_label starts at %s, but the backup started at %s", bl.StartLSN, started.LSN))
		return
	}
	if err := r.staging.WriteFile(walcollect.LabelFile, stopped.Label); err != nil {
		r.fail(PhaseCollect, err)
		return
	}
	if len(stopped.TablespaceMap) > 0 {
		if err := r.staging.WriteFile(walcollect.MapFile, stopped.TablespaceMap); err != nil {
			r.fail(PhaseCollect, err)
			return
		}
	}
	stopTLI := started.Timeline
	if stopped.Timeline != 0 {
		stopTLI = stopped.Timeline
	}
	plan, err := walcollect.NewPlan(bl, stopTLI, stopped.LSN, srv.SegmentSize, srv.SystemID)
	if err != nil {
		r.fail(PhaseCollect, err)
		return
	}
	from := "primary"
	if srv.InRecovery {
		from = "standby"
		if err := r.standbyTail(ctx, plan, stopped.LSN); err != nil {
			r.fail(PhaseCollect, err)
			return
		}
	}
	m := &walcollect.Manifest{
		FormatVersion: 1, Tool: "pgfbb-wrap " + Version, Label: r.opts.Label, Status: walcollect.StatusComplete,
		ServerVersionNum: srv.VersionNum, SystemIdentifier: strconv.FormatUint(srv.SystemID, 10),
		Timeline: plan.Timeline, StartLSN: started.LSN, StopLSN: stopped.LSN,
		StartWAL:       walcollect.SegmentFileName(plan.Timeline, plan.FirstSegment, plan.SegmentSize),
		StopWAL:        walcollect.SegmentFileName(plan.Timeline, plan.LastSegment, plan.SegmentSize),
		WALSegmentSize: srv.SegmentSize, WALMode: r.opts.WAL, PGData: r.pgdata, BackupFrom: from, WALZeroedFrom: plan.ZeroFrom,
		StartedAt: started.At.UTC(), StoppedAt: stopped.At.UTC(),
		BackupModeSecs: stopped.At.Sub(started.At).Seconds(), Command: r.report.Command,
		Volumes: r.volumes,
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	m.Tablespaces, err = r.sess.Tablespaces(qctx)
	cancel()
	if err != nil {
		r.fail(PhaseCollect, err)
		return
	}
	switch r.opts.WAL {
	case WALCopy:
		m.WALSource, r.report.WALSource = r.source.String(), r.source.String()
		if err := r.stageWAL(ctx, plan); err != nil {
			r.fail(PhaseCollect, err)
			return
		}
	case WALSkip:
		r.note(fmt.Sprintf("WAL not staged and archiving not checked (--wal=skip): a restore needs %s..%s from your WAL archive", m.StartWAL, m.StopWAL))
	}
	switch {
	case r.opts.WAL == WALCopy && plan.ZeroFrom != 0 && archiving(srv):
		r.note(fmt.Sprintf("archiving not checked: the standby archives %s only once it is complete", m.StopWAL))
	case r.opts.WAL != WALSkip && archiving(srv):
		r.enter(PhaseArchive)
		check, err := r.waitArchived(ctx, plan)
		m.Archive, r.report.Archive = check, check
		var intr *runner.Interrupted
		switch {
		case err == nil:
		case r.opts.WAL == WALArchive || errors.As(err, &intr):
			r.fail(PhaseArchive, err)
			return
		default:
			// The staged WAL makes this backup whole; what is broken is
			// the archive every other restore depends on.
			r.note(fmt.Sprintf("the backup is complete with its staged WAL, but archiving is failing: %v", err))
		}
	}
	r.enter(PhasePublish)
	if err := ctx.Err(); err != nil {
		r.fail(PhasePublish, context.Cause(ctx))
		return
	}
	if err := r.staging.Publish(m); err != nil {
		r.fail(PhasePublish, err)
		return
	}
	r.report.Path = r.staging.Path()
	for _, f := range r.staging.Files() {
		r.report.StagedBytes += f.Size
		if strings.HasPrefix(f.Path, walcollect.WALDir+"/") {
			r.report.WALFiles++
		}
	}
	r.log.Info("published", "path", r.report.Path)
}
