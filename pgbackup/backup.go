package pgbackup

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
)

// ErrSessionLost means the backup's session ended: PostgreSQL has aborted
// the backup, and no other session can stop it.
var ErrSessionLost = errors.New("database session lost: PostgreSQL aborts a backup whose session ends")

// ErrSessionMoved means a statement of the session reached another server
// session than the one it opened: a pooling proxy (PgBouncer in
// transaction or statement mode) is in the way. The guarded statement did
// nothing there.
var ErrSessionMoved = errors.New("a statement of the backup's session reached another server session: a pooling proxy in " +
	"transaction or statement mode is in the way; connect to the server directly, or through session pooling")

// guard makes a statement run only in the session's own server session:
// the condition has no column and calls no volatile function, so the
// planner makes it a one-time filter, checked before the backup function
// is called at all. Elsewhere the statement returns no row.
func (s *Session) guard(query string) string {
	return fmt.Sprintf("%s WHERE pg_catalog.pg_backend_pid() = %d", query, s.server.BackendPID)
}

// moved reports a guarded statement that returned no row, and marks the
// session so that Close ends its server session by pid.
func (s *Session) moved(err error, what string) error {
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	s.wandered = true
	return fmt.Errorf("%s: %w (backend pid %d)", what, ErrSessionMoved, s.server.BackendPID)
}

// ErrNotInBackup means the server no longer considers the backup running.
var ErrNotInBackup = errors.New("the server has no backup in progress for this session")

// ErrPromoted means a standby was promoted while it was being backed up:
// PostgreSQL refuses to stop such a backup, which would not be consistent.
var ErrPromoted = errors.New("the standby was promoted during the backup: this backup is unusable, take a new one")

// Started is the state right after the backup started.
type Started struct {
	LSN      pgformat.LSN
	Timeline uint32
	At       time.Time
}

// Stopped is what stopping the backup returned.
type Stopped struct {
	LSN           pgformat.LSN
	Timeline      uint32 // on a standby, the timeline of the stop LSN; 0 on a primary, whose timeline cannot change
	Label         []byte // backup_label, byte for byte
	TablespaceMap []byte // empty when the cluster has no tablespaces
	At            time.Time
}

// SlotName derives a replication slot name from the backend pid, which is
// unique among live sessions, and the label, which tells a DBA whose it is.
func SlotName(pid int, label string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(label) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := fmt.Sprintf("pgfbb_%d_%s", pid, b.String())
	return name[:min(len(name), 63)] // NAMEDATALEN - 1
}

// CreateSlot creates a temporary physical slot that reserves WAL at once, so
// no segment the restore needs can be recycled before it is staged. The
// server drops it when the session ends, whatever happens to this process.
func (s *Session) CreateSlot(ctx context.Context, label string) (string, error) {
	name := SlotName(s.server.BackendPID, label)
	var created string
	err := s.conn.QueryRowContext(ctx, s.guard("SELECT (pg_catalog.pg_create_physical_replication_slot($1, true, true)).slot_name::text"), name).Scan(&created)
	if err != nil {
		return "", fmt.Errorf("create slot %s: %w", name, s.classify(ctx, s.moved(err, "create slot")))
	}
	s.slot = name
	return name, nil
}

// ErrSlotLost means max_slot_wal_keep_size invalidated the WAL-retention
// slot: the server may have removed WAL the backup needs.
var ErrSlotLost = errors.New("the WAL-retention slot was invalidated by max_slot_wal_keep_size: the server removed WAL this backup needs; " +
	"raise max_slot_wal_keep_size (or set it to -1) or make the snapshot faster")

// CheckSlot fails with ErrSlotLost when the slot was invalidated while the
// backup ran; servers before 13 never invalidate slots.
func (s *Session) CheckSlot(ctx context.Context) error {
	if s.slot == "" || !s.server.api.slotInvalidation {
		return nil
	}
	var status sql.NullString
	var keep string
	err := s.conn.QueryRowContext(ctx, `SELECT (SELECT wal_status FROM pg_catalog.pg_replication_slots WHERE slot_name = $1),
       current_setting('max_slot_wal_keep_size')`, s.slot).Scan(&status, &keep)
	if err != nil {
		return fmt.Errorf("check slot %s: %w", s.slot, s.classify(ctx, err))
	}
	if !status.Valid || status.String == "lost" {
		return fmt.Errorf("slot %s (max_slot_wal_keep_size = %s): %w", s.slot, keep, ErrSlotLost)
	}
	return nil
}

// walSinceSQL measures the WAL the server has written (a standby: received)
// since $1, which the WAL-retention slot keeps, and max_slot_wal_keep_size
// in bytes (-1: unlimited, always before 13).
const walSinceSQL = `SELECT pg_catalog.pg_wal_lsn_diff(
           CASE WHEN pg_catalog.pg_is_in_recovery()
                THEN COALESCE(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())
                ELSE pg_catalog.pg_current_wal_lsn() END,
           $1::pg_lsn)::bigint,
       pg_catalog.pg_size_bytes(COALESCE(current_setting('max_slot_wal_keep_size', true), '-1'))`

// SlotPressure opens a new connection and returns how much WAL the server
// has written since lsn, and its max_slot_wal_keep_size (see walSinceSQL).
// It explains a lost session: the server ends the session of a slot that
// setting invalidates.
func SlotPressure(ctx context.Context, cfg pq.Config, since pgformat.LSN) (written, limit int64, err error) {
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return 0, 0, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	if err := db.QueryRowContext(ctx, walSinceSQL, since.String()).Scan(&written, &limit); err != nil {
		return 0, 0, fmt.Errorf("read WAL written since %s: %w", since, err)
	}
	return written, limit, nil
}

// WALSince is how much WAL the server has written since lsn, which the
// backup's slot keeps in pg_wal. Give ctx a generous bound: a query
// cancelled by it ends the session, and with it the backup.
func (s *Session) WALSince(ctx context.Context, since pgformat.LSN) (int64, error) {
	var written, limit int64
	if err := s.conn.QueryRowContext(ctx, walSinceSQL, since.String()).Scan(&written, &limit); err != nil {
		return 0, fmt.Errorf("read WAL written since %s: %w", since, s.classify(ctx, err))
	}
	return written, nil
}

// DropSlot drops the slot CreateSlot made, if any. On a lost session there
// is nothing to do: the server dropped the temporary slot with the session.
func (s *Session) DropSlot(ctx context.Context) error {
	if s.slot == "" || s.lost {
		return nil
	}
	var one int
	err := s.conn.QueryRowContext(ctx, s.guard("SELECT 1 FROM pg_catalog.pg_drop_replication_slot($1)"), s.slot).Scan(&one)
	err = s.moved(err, "drop slot")
	// A failed stop (a standby promoted mid-backup) drops a temporary slot
	// with the aborted transaction's cleanup: gone is what we want.
	if err != nil && pq.As(err, pqerror.UndefinedObject) == nil {
		return fmt.Errorf("drop slot %s: %w", s.slot, s.classify(ctx, err))
	}
	s.slot = ""
	return nil
}

// Start starts a non-exclusive backup; fast asks for an immediate checkpoint
// instead of a spread one. Cancelling ctx cancels the query, which ends the
// session: use it only to bound or interrupt the start itself.
func (s *Session) Start(ctx context.Context, label string, fast bool) (*Started, error) {
	var lsn string
	if err := s.conn.QueryRowContext(ctx, s.guard(s.server.api.startSQL), label, fast).Scan(&lsn); err != nil {
		return nil, fmt.Errorf("start backup: %w", s.classify(ctx, s.moved(err, "start")))
	}
	st := &Started{At: time.Now()}
	var err error
	if st.LSN, err = pgformat.ParseLSN(lsn); err != nil {
		return nil, fmt.Errorf("start backup: %w", err)
	}
	// The checkpoint the backup started from is on the current timeline.
	// The backup runs now: a signal must not cancel this query, which
	// would end the session.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := s.conn.QueryRowContext(tctx, "SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()").Scan(&st.Timeline); err != nil {
		return nil, fmt.Errorf("read timeline: %w", s.classify(tctx, err))
	}
	return st, nil
}

// Stop stops the backup without waiting for WAL archiving: a stop cancelled
// while it waits for the archive would lose the label, and the WAL is staged
// by this tool. Pass a context that a signal cannot cancel.
func (s *Session) Stop(ctx context.Context) (*Stopped, error) {
	var lsn string
	var label, spcmap sql.NullString
	if err := s.conn.QueryRowContext(ctx, s.guard(s.server.api.stopSQL)).Scan(&lsn, &label, &spcmap); err != nil {
		return nil, fmt.Errorf("stop backup: %w", s.classify(ctx, s.moved(err, "stop")))
	}
	st := &Stopped{At: time.Now(), Label: []byte(label.String), TablespaceMap: []byte(spcmap.String)}
	var err error
	if st.LSN, err = pgformat.ParseLSN(lsn); err != nil {
		return nil, fmt.Errorf("stop backup: %w", err)
	}
	if len(st.Label) == 0 {
		return nil, errors.New("stop backup: the server returned no backup_label")
	}
	if s.server.InRecovery {
		// The stop LSN is the standby's minimum recovery point; so is the
		// timeline to read the WAL up to it from.
		if err := s.conn.QueryRowContext(ctx, "SELECT min_recovery_end_timeline FROM pg_catalog.pg_control_recovery()").Scan(&st.Timeline); err != nil {
			return nil, fmt.Errorf("read stop timeline: %w", s.classify(ctx, err))
		}
	}
	return st, nil
}

// ReceivedLSN is how far a standby has received and flushed WAL, 0 when it
// does not stream (it restores WAL from an archive instead).
func (s *Session) ReceivedLSN(ctx context.Context) (pgformat.LSN, error) {
	var lsn sql.NullString
	if err := s.conn.QueryRowContext(ctx, "SELECT pg_catalog.pg_last_wal_receive_lsn()::text").Scan(&lsn); err != nil {
		return 0, fmt.Errorf("read received WAL position: %w", s.classify(ctx, err))
	}
	if !lsn.Valid {
		return 0, nil
	}
	return pgformat.ParseLSN(lsn.String)
}

// Ping checks that the session is alive. Give ctx a generous bound: a ping
// cancelled by it ends the session, and with it the backup.
func (s *Session) Ping(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("check session: %w", s.classify(ctx, err))
	}
	return nil
}

// promoted tells whether a server that was a standby when the session
// began is one no longer. The server's message says so too, but in the
// server's language: ask the server instead.
func (s *Session) promoted(ctx context.Context) bool {
	if !s.server.InRecovery {
		return false
	}
	var inRecovery bool
	err := s.conn.QueryRowContext(ctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery)
	return err == nil && !inRecovery
}

// classify adds the meaning of errors a DBA must act on differently, and
// notes when the session is gone: lib/pq closes a connection whose query was
// cancelled, and the server ends the backup with it.
func (s *Session) classify(ctx context.Context, err error) error {
	var netErr net.Error
	switch {
	case ctx.Err() != nil:
		s.lost = true
		return err
	case pq.As(err, pqerror.ObjectNotInPrerequisiteState) != nil && s.promoted(ctx):
		return fmt.Errorf("%w: %w", ErrPromoted, err)
	case pq.As(err, pqerror.ObjectNotInPrerequisiteState) != nil:
		return fmt.Errorf("%w: %w", ErrNotInBackup, err)
	case pq.As(err, pqerror.UndefinedFunction) != nil:
		return fmt.Errorf("backup function missing for this server version (a version-detection bug): %w", err)
	case pq.As(err, pqerror.InsufficientPrivilege) != nil:
		return fmt.Errorf("missing privilege: %w", err)
	case pq.As(err, pqerror.AdminShutdown, pqerror.CrashShutdown) != nil,
		errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, sql.ErrConnDone), errors.As(err, &netErr):
		s.lost = true
		return fmt.Errorf("%w: %w", ErrSessionLost, err)
	}
	return err
}
