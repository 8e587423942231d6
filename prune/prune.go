// Package prune removes old staged backups and, through a command the user
// gives, the snapshots that belong to them, keeping what a retention policy
// says: the newest N, those younger than a duration, and always the newest
// complete backup. A backup whose snapshot could not be deleted keeps its
// staged directory: a snapshot is useless without its label and WAL.
package prune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/pgfbb/pgfbb-wrap/runner"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// Policy says which complete backups to keep. Zero values keep nothing by
// that rule; the newest complete backup of each cluster is kept whatever it
// says, and so is Protect.
type Policy struct {
	KeepLast   int
	KeepWithin time.Duration
	// Protect is a label never removed: the backup a run just made.
	Protect string
	// Cluster, a system identifier, limits the policy to that cluster's
	// backups: the rule and the delete command are one cluster's.
	Cluster string
}

// futureSlack is how far a start time may lie ahead of the clock before
// it is taken for a forged or broken date.
const futureSlack = time.Hour

// Decide splits the complete backups of entries, newest first as
// staged.List returns them, into those to keep and those to remove. The
// rules apply to each cluster (system identifier) on its own: clusters
// share a staging directory. Backups that are not complete are neither: a
// running one is never touched, and partial ones are the sweep's. A
// backup dated in the future is kept and counts for nothing: its date,
// read from its manifest, cannot be trusted to make it the newest.
func (p Policy) Decide(entries []staged.Entry, now time.Time) (keep, remove []staged.Entry) {
	seen := map[string]int{} // complete backups counted, by cluster
	for _, e := range entries {
		if e.State != staged.StateComplete || p.Cluster != "" && e.Manifest.SystemIdentifier != p.Cluster {
			continue
		}
		if e.Time.After(now.Add(futureSlack)) {
			keep = append(keep, e)
			continue
		}
		cluster := e.Manifest.SystemIdentifier
		seen[cluster]++
		n := seen[cluster]
		if n == 1 || n <= p.KeepLast || (p.KeepWithin > 0 && now.Sub(e.Time) < p.KeepWithin) || e.Label == p.Protect {
			keep = append(keep, e)
		} else {
			remove = append(remove, e)
		}
	}
	return keep, remove
}

// ErrSeveralClusters refuses a prune of a staging directory shared by
// clusters without saying which one.
var ErrSeveralClusters = errors.New("several clusters")

// Clusters lists the system identifiers of the complete backups in entries.
func Clusters(entries []staged.Entry) []string {
	var ids []string
	for _, e := range entries {
		if e.State == staged.StateComplete && !slices.Contains(ids, e.Manifest.SystemIdentifier) {
			ids = append(ids, e.Manifest.SystemIdentifier)
		}
	}
	slices.Sort(ids)
	return ids
}

// Options configure one prune.
type Options struct {
	Staging string
	Policy  Policy
	// DeleteCommand deletes one backup's snapshot; ${PGFBB_LABEL} in it
	// is the backup's label. Empty: only staged directories are removed.
	DeleteCommand []string
	DryRun        bool
	Timeout       time.Duration // for each run of DeleteCommand; 0: none
	Log           func(format string, args ...any)
}

// Result says what a prune did, or would do with DryRun.
type Result struct {
	Kept, Removed []string
	OldestKept    time.Time // when the oldest kept backup started
	Notes         []string  // the sweep of partial backups
}

// Run applies the policy to the staging directory. A delete command that
// fails keeps that backup's staged directory and fails the prune, after
// the other backups were handled.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	// Deleting in a directory someone else can change could delete the
	// wrong thing.
	root, err := beneath.CheckPrivate(o.Staging)
	if err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	lock, err := staged.LockPrune(ctx, root)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	entries, err := staged.List(root)
	if err != nil {
		return nil, err
	}
	if o.Policy.Cluster == "" {
		if clusters := Clusters(entries); len(clusters) > 1 {
			return nil, fmt.Errorf("%w: the staging directory holds backups of clusters %s; a keep rule and a delete command "+
				"are one cluster's: give --cluster", ErrSeveralClusters, strings.Join(clusters, ", "))
		}
	}
	keep, remove := o.Policy.Decide(entries, time.Now())
	res := &Result{}
	for _, e := range keep {
		res.Kept, res.OldestKept = append(res.Kept, e.Label), e.Time
	}
	var merr *multierror.Error
	for _, e := range remove {
		if ctx.Err() != nil {
			return res, multierror.Append(merr, context.Cause(ctx))
		}
		if o.DryRun {
			o.Log("would remove %s (started %s)", e.Label, e.Time.Format(time.RFC3339))
			res.Removed = append(res.Removed, e.Label)
			continue
		}
		if err := o.removeOne(ctx, e); err != nil {
			merr = multierror.Append(merr, fmt.Errorf("%s: %w", e.Label, err))
			continue
		}
		o.Log("removed %s", e.Label)
		res.Removed = append(res.Removed, e.Label)
	}
	if !o.DryRun {
		res.Notes = staged.Sweep(root)
	}
	return res, merr.ErrorOrNil()
}

// DeleteSnapshot runs the delete command argv for the backup labelled
// label (${PGFBB_LABEL} in argv), without a shell, its output on stderr.
func DeleteSnapshot(ctx context.Context, argv []string, label string, timeout time.Duration, stderr io.Writer) error {
	argv, err := runner.Expand(argv, map[string]string{"PGFBB_LABEL": label})
	if err != nil {
		return err
	}
	if _, err := runner.Run(ctx, runner.Spec{Argv: argv, Env: os.Environ(), Timeout: timeout, Grace: 10 * time.Second,
		Stderr: stderr, TailBytes: 4096}); err != nil {
		return fmt.Errorf("delete command: %w", err)
	}
	return nil
}

// removeOne deletes the snapshot, then the staged directory.
func (o Options) removeOne(ctx context.Context, e staged.Entry) error {
	if len(o.DeleteCommand) > 0 {
		if err := DeleteSnapshot(ctx, o.DeleteCommand, e.Label, o.Timeout, os.Stderr); err != nil {
			return fmt.Errorf("%w; its staged directory is kept", err)
		}
	}
	if err := os.RemoveAll(e.Path); err != nil {
		return fmt.Errorf("remove staged directory: %w", err)
	}
	return nil
}
