package backup

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pgfbb/pgfbb-wrap/pgbackup"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/runner"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/pgfbb/pgfbb-wrap/walcollect"
)

// stage writes label, map and WAL into the staging directory and publishes it.
func (r *run) stage(ctx context.Context, started *pgbackup.Started, stopped *pgbackup.Stopped) {
	srv := r.sess.Server()
	r.enter(PhaseCollect)
	bl, err := pgformat.ParseBackupLabel(stopped.Label)
	if err != nil {
		r.fail(PhaseCollect, err)
		return
	}
	if bl.StartLSN != started.LSN {
		r.fail(PhaseCollect, fmt.Errorf("backup_label starts at %s, but the backup started at %s", bl.StartLSN, started.LSN))
		return
	}
	if err := r.staging.WriteFile(staged.LabelFile, stopped.Label); err != nil {
		r.fail(PhaseCollect, err)
		return
	}
	if len(stopped.TablespaceMap) > 0 {
		if err := r.staging.WriteFile(staged.MapFile, stopped.TablespaceMap); err != nil {
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
	if bl.From != srv.BackupFrom() {
		r.fail(PhaseCollect, fmt.Errorf("backup_label says BACKUP FROM: %s, want %s for this server", bl.From, srv.BackupFrom()))
		return
	}
	from := staged.FromPrimary
	if srv.InRecovery {
		from = staged.FromStandby
		if err := r.standbyTail(ctx, plan, stopped.LSN); err != nil {
			r.fail(PhaseCollect, err)
			return
		}
	}
	m := &staged.Manifest{
		Tool: "pgfbb-wrap " + Version, Label: r.opts.Label, Status: staged.StatusComplete,
		ServerVersionNum: srv.VersionNum, SystemIdentifier: strconv.FormatUint(srv.SystemID, 10),
		Timeline: plan.Timeline, StartLSN: started.LSN, StopLSN: stopped.LSN,
		StartWAL:       pgformat.SegmentFileName(plan.Timeline, plan.FirstSegment, plan.SegmentSize),
		StopWAL:        pgformat.SegmentFileName(plan.Timeline, plan.LastSegment, plan.SegmentSize),
		WALSegmentSize: srv.SegmentSize, WALMode: r.opts.WAL, PGData: r.pgdata, BackupFrom: from, WALZeroedFrom: plan.ZeroFrom,
		StartedAt: started.At.UTC(), StoppedAt: stopped.At.UTC(),
		BackupModeSecs: stopped.At.Sub(started.At).Seconds(), Command: r.report.Command,
		Volumes: r.volumes, Covers: r.opts.Covers,
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	m.Tablespaces, err = r.sess.Tablespaces(qctx)
	cancel()
	if err != nil {
		r.fail(PhaseCollect, err)
		return
	}
	switch r.opts.WAL {
	case staged.WALCopy:
		m.WALSource, r.report.WALSource = r.source.String(), r.source.String()
		if err := r.stageWAL(ctx, plan); err != nil {
			r.fail(PhaseCollect, err)
			return
		}
	case staged.WALSkip:
		r.note(fmt.Sprintf("WAL not staged and archiving not checked (--wal=skip): a restore needs %s..%s from your WAL archive", m.StartWAL, m.StopWAL))
	}
	switch {
	case r.opts.WAL == staged.WALCopy && plan.ZeroFrom != 0 && archiving(srv):
		r.note(fmt.Sprintf("archiving not checked: the standby archives %s only once it is complete", m.StopWAL))
	case r.opts.WAL != staged.WALSkip && archiving(srv):
		r.enter(PhaseArchive)
		check, err := r.waitArchived(ctx, plan)
		m.Archive, r.report.Archive = check, check
		var intr *runner.Interrupted
		switch {
		case err == nil:
		case r.opts.WAL == staged.WALArchive || errors.As(err, &intr):
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
	err = r.staging.Publish(m)
	r.fail(PhasePublish, err)
	if !r.staging.Published() {
		return
	}
	r.report.Path = r.staging.Path()
	for _, f := range r.staging.Files() {
		r.report.StagedBytes += f.Size
		if strings.HasPrefix(f.Path, staged.WALDir+"/") {
			r.report.WALFiles++
			r.report.WALBytes += f.Size
		}
	}
	r.log.Info("published", "path", r.report.Path)
}

// explainLost asks the server over a new connection whether
// max_slot_wal_keep_size explains a lost session: invalidating the slot,
// the server ends the session holding it, and the backup with it.
func (r *run) explainLost(ctx context.Context, start pgformat.LSN) {
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
	var copied atomic.Int64
	defer r.progress("staging WAL", func() string {
		return fmt.Sprintf("%d of %d files from %s", copied.Load(), plan.Files(), r.source)
	})()
	err := walcollect.Collect(ctx, r.staging, r.source, plan, &copied)
	if serr := checkSlot(); serr != nil {
		return serr
	}
	return err
}

// standbyTail handles the one thing a standby cannot do: switch WAL
// segments. Its last segment is complete only once the primary has moved
// past it; until then the segment is staged up to what the standby has
// received, which covers the stop LSN, and zeros after it.
func (r *run) standbyTail(ctx context.Context, plan *walcollect.Plan, stop pgformat.LSN) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	received, err := r.sess.ReceivedLSN(qctx)
	if err != nil {
		return err
	}
	end := pgformat.LSN((plan.LastSegment + 1) * plan.SegmentSize)
	if received >= end {
		return nil
	}
	plan.ZeroFrom = max(received, stop)
	r.note(fmt.Sprintf("backup from a standby: its last WAL segment %s is still being filled, so it is staged up to %s, "+
		"all the standby had received (the backup ends at %s), and zeros after it",
		pgformat.SegmentFileName(plan.Timeline, plan.LastSegment, plan.SegmentSize), plan.ZeroFrom, stop))
	return nil
}
