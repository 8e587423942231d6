package staged

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClusterBusy means another run is backing up the same cluster into the
// same staging directory.
var ErrClusterBusy = errors.New("a backup of this cluster is running")

// lockPoll is how often a waiting run tries a lock again.
const lockPoll = 200 * time.Millisecond

// pollLock opens the lock file path and flocks it, trying until deadline
// (zero: until ctx ends); it fails with EWOULDBLOCK when the lock stayed
// taken.
func pollLock(ctx context.Context, path string, deadline time.Time) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if ctx.Err() != nil {
			f.Close()
			return nil, context.Cause(ctx) // interrupted while waiting: not "still running"
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || !deadline.IsZero() && time.Now().After(deadline) {
			f.Close()
			return nil, err
		}
		time.Sleep(lockPoll)
	}
}

// PruneLockFile serialises prunes of a staging directory.
const PruneLockFile = ".pgfbb-prune.lock"

// LockPrune waits until no other prune runs in the staging directory root
// (or ctx ends), so that two never run one backup's delete command: the
// second would fail on a snapshot already gone. Close the file to unlock.
func LockPrune(ctx context.Context, root string) (*os.File, error) {
	f, err := pollLock(ctx, filepath.Join(root, PruneLockFile), time.Time{})
	if err != nil {
		return nil, fmt.Errorf("prune lock: %w", err)
	}
	return f, nil
}

// lockOwner is what a cluster lock file says about its holder.
type lockOwner struct {
	Label string    `json:"label"`
	PID   int       `json:"pid"`
	Since time.Time `json:"since"`
}

// LockCluster takes the lock of the cluster systemID in the staging
// directory, waiting up to wait for another run of the same cluster to end,
// and holds it until Publish or Discard: one backup of a cluster at a time,
// wrapped or held, while backups of other clusters run side by side.
func (s *Staging) LockCluster(ctx context.Context, systemID uint64, wait time.Duration) error {
	path := filepath.Join(s.root, fmt.Sprintf(".pgfbb-cluster-%d.lock", systemID))
	f, err := pollLock(ctx, path, time.Now().Add(wait))
	if errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("%w%s", ErrClusterBusy, owner(path, wait))
	}
	if err != nil {
		return fmt.Errorf("cluster lock: %w", err)
	}
	data, _ := json.Marshal(lockOwner{Label: s.label, PID: os.Getpid(), Since: time.Now().UTC()})
	if err := f.Truncate(0); err == nil {
		f.WriteAt(data, 0)
	}
	s.clusterLock = f
	return nil
}

// owner describes the holder a lock file names, when it can be read, and
// what waiting did or would do.
func owner(path string, waited time.Duration) string {
	hint := "--lock-wait waits for it"
	if waited > 0 {
		hint = fmt.Sprintf("still running after --lock-wait %s", waited)
	}
	data, err := os.ReadFile(path)
	var o lockOwner
	if err != nil || json.Unmarshal(data, &o) != nil {
		return " (" + hint + ")"
	}
	return fmt.Sprintf(": label %s, pid %d, since %s (%s)", o.Label, o.PID, o.Since.Format(time.RFC3339), hint)
}
