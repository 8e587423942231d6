// Package pgbackup holds the one database session a non-exclusive backup
// lives in: it detects the server version, checks that a backup can be safe,
// creates the WAL-retention slot, and starts and stops the backup with the
// functions each PostgreSQL major provides.
package pgbackup

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"golang.org/x/sys/unix"
)

// AppName is the application_name the session shows in pg_stat_activity
// unless the connection string or PGAPPNAME names another.
const AppName = "pgfbb-wrap"

// DefaultNetworkTimeout is how long a silent network may hold the session
// before it counts as lost, unless Connect is told otherwise.
const DefaultNetworkTimeout = time.Minute

// dialer bounds a dead network: a backup session idles while the snapshot
// runs, so TCP keepalives probe it, and TCP_USER_TIMEOUT ends a connection
// whose data or probes go unanswered for timeout, where retransmissions
// alone would take a quarter of an hour.
func dialer(timeout time.Duration) net.Dialer {
	return net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: max(timeout/3, time.Second), Interval: max(timeout/9, time.Second), Count: 6},
		Control: func(network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(timeout.Milliseconds()))
			})
			return errors.Join(err, serr)
		},
	}
}

// Config parses the connection settings the way libpq does: the standard
// environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE,
// PGSSLMODE, ...) overridden by dbname, which like psql's -d is a conninfo
// string ("host=... user=..."), a postgres:// URL or a bare database name.
func Config(dbname string) (pq.Config, error) {
	dsn := dbname
	if dsn != "" && !strings.Contains(dsn, "=") && !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		dsn = "dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(dsn) + "'"
	}
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		// lib/pq quotes what it could not parse, password included.
		return pq.Config{}, fmt.Errorf("connection settings: %s", Redact(err.Error(), dbname))
	}
	if cfg.ApplicationName == "" {
		cfg.ApplicationName = AppName
	}
	// lib/pq requires SSL unless told otherwise; libpq, and so every DBA's
	// psql, prefers it and falls back to plain TCP.
	if cfg.SSLMode == "" {
		cfg.SSLMode = pq.SSLModePrefer
	}
	return cfg, nil
}

// Session is one pinned database connection. A non-exclusive backup is bound
// to it: if the session ends, PostgreSQL aborts the backup and drops the
// temporary slot, so nothing here ever reconnects.
type Session struct {
	db     *sql.DB
	conn   *sql.Conn
	server *Server
	slot   string
	lost   bool // the connection broke or a query was cancelled: the server ended the backup
	// wandered: a guarded statement found another server session, so the
	// session's own may sit in a pool, in backup mode, holding the slot.
	wandered bool
	pinCheck error // why the check for a transaction pool could not run, if it could not
}

// Connect opens the session, makes it immune to role and database defaults
// that would end it mid-backup, and reads what the backup needs to know about
// the server. Over TCP, a network silent for netTimeout (0: the default)
// ends the session. Unless the session's Unix socket is the postmaster's
// own, CheckSessionPinned runs before the session's first query, since
// behind a transaction pool its statements would fail in ways that name
// prepared statements, not the pool: a pool found is ErrTransactionPooled,
// a check that could not run is PinCheck's.
func Connect(ctx context.Context, cfg pq.Config, netTimeout time.Duration) (*Session, error) {
	if netTimeout <= 0 {
		netTimeout = DefaultNetworkTimeout
	}
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	peer := &peerDialer{d: dialer(netTimeout)}
	connector.Dialer(peer)
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx) // connected and logged in; no query yet
	s := &Session{db: db, conn: conn}
	if err == nil && !peer.direct(ctx, conn) {
		if s.pinCheck = CheckSessionPinned(ctx, cfg); errors.Is(s.pinCheck, ErrTransactionPooled) {
			err = s.pinCheck
		}
	}
	if err == nil {
		err = conn.PingContext(ctx)
	}
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		db.Close()
		if errors.Is(err, ErrTransactionPooled) {
			return nil, err
		}
		return nil, fmt.Errorf("open session: %w", err)
	}
	if err := s.init(ctx); err != nil {
		s.lost = true // nothing was started; only the first error matters
		s.Close()
		return nil, err
	}
	return s, nil
}

// PinCheck is why the check for a transaction-pooling proxy could not run
// (it needs three connections at once), nil when it ran and found none or
// the session is the postmaster's own.
func (s *Session) PinCheck() error { return s.pinCheck }

// init lifts the role's statement_timeout first, because every statement
// until then runs under it, then reads the version, because the other
// settings that protect the session differ by version.
func (s *Session) init(ctx context.Context) error {
	if err := s.liftStatementTimeout(ctx); err != nil {
		return err
	}
	var num int
	if err := s.conn.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		return fmt.Errorf("detect version: %w", err)
	}
	if num < MinVersionNum {
		return &PreflightError{Problems: []string{fmt.Sprintf("PostgreSQL %s is not supported: pgfbb-wrap needs 10 or later", versionString(num))}}
	}
	// Defaults set with ALTER ROLE / ALTER DATABASE would otherwise cancel a
	// long start (spread checkpoint) or end the idle session mid-backup.
	settings := []string{"idle_in_transaction_session_timeout", "lock_timeout"}
	if apiFor(num).idleSessionTimeout {
		settings = append(settings, "idle_session_timeout")
	}
	for _, name := range settings {
		if _, err := s.conn.ExecContext(ctx, "SET "+name+" = 0"); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	srv, err := readServer(ctx, s.conn, num)
	if err != nil {
		return err
	}
	s.server = srv
	return nil
}

// liftStatementTimeout sets statement_timeout to 0. A role default too short
// for even this statement on a busy server cancels it; that cancels nothing
// else, so it is tried again a few times.
func (s *Session) liftStatementTimeout(ctx context.Context) error {
	const attempts = 5
	var err error
	for range attempts {
		if _, err = s.conn.ExecContext(ctx, "SET statement_timeout = 0"); err == nil ||
			ctx.Err() != nil || pq.As(err, pqerror.QueryCanceled) == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("set statement_timeout: %w", err)
	}
	return nil
}

// Lost tells whether the session has ended: PostgreSQL aborted the backup.
func (s *Session) Lost() bool { return s.lost }

// Server describes the server the session is connected to.
func (s *Session) Server() *Server { return s.server }

// Close ends the session. Closing without Stop aborts a running backup; the
// server drops the temporary slot either way. A session already lost was
// reported where it broke, so closing it is no further error. Behind a
// pool (a guarded statement found another server session), closing the
// client's connection would leave the server session in the pool, maybe in
// backup mode and holding the slot: it is terminated by its pid.
func (s *Session) Close() error {
	var err error
	if s.wandered {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		_, err = s.conn.ExecContext(ctx, fmt.Sprintf("SELECT pg_catalog.pg_terminate_backend(%d)", s.server.BackendPID))
		cancel()
		if err != nil && !errors.Is(err, driver.ErrBadConn) && pq.As(err, pqerror.AdminShutdown) == nil {
			err = fmt.Errorf("terminate the backup's server session (backend pid %d) behind the pool, which may hold the backup and "+
				"its slot: %w", s.server.BackendPID, err)
		} else {
			err = nil // terminated, maybe from within itself
		}
	}
	if cerr := s.conn.Close(); err == nil && !s.lost {
		err = cerr
	}
	if dbErr := s.db.Close(); err == nil {
		err = dbErr
	}
	return err
}

// closeTimeout bounds the statement that ends a session left behind a pool.
const closeTimeout = 10 * time.Second

// peerDialer dials as its net.Dialer does and remembers, of a Unix socket,
// the process at its other end: the one that listens on it, a postmaster or
// a proxy.
type peerDialer struct {
	d   net.Dialer
	pid atomic.Int32
}

func (p *peerDialer) Dial(network, address string) (net.Conn, error) {
	return p.DialContext(context.Background(), network, address)
}

func (p *peerDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.DialContext(ctx, network, address)
}

func (p *peerDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	// lib/pq dials host after host until one takes the session: the last
	// dial is the session's.
	p.pid.Store(0)
	c, err := p.d.DialContext(ctx, network, address)
	if uc, ok := c.(*net.UnixConn); ok && err == nil {
		if raw, rerr := uc.SyscallConn(); rerr == nil {
			raw.Control(func(fd uintptr) {
				if cred, cerr := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); cerr == nil {
					p.pid.Store(cred.Pid)
				}
			})
		}
	}
	return c, err
}

// direct tells whether the session conn, just dialled through p, is the
// postmaster's own: its Unix socket's peer is a process named postgres, and
// the session's backend is that process's child, which no proxy can
// arrange whatever it is called. The query is a simple-protocol one, which
// a pool runs as well as a server; any failure answers no, and the full
// check runs.
func (p *peerDialer) direct(ctx context.Context, conn *sql.Conn) bool {
	if !p.postmaster() {
		return false
	}
	var backend int
	if err := conn.QueryRowContext(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&backend); err != nil {
		return false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", backend))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, err := strconv.Atoi(strings.TrimSpace(v))
			return err == nil && ppid == int(p.pid.Load())
		}
	}
	return false
}

// postmaster tells whether the last Unix socket dialled was a process
// named postgres (or postmaster). A process in another pid
// namespace (pid 0) or a proxy answers no.
func (p *peerDialer) postmaster() bool {
	pid := p.pid.Load()
	if pid <= 0 {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	name := strings.TrimSpace(string(comm))
	return err == nil && (name == "postgres" || name == "postmaster")
}

// ErrTransactionPooled means a proxy such as PgBouncer in transaction mode
// stands between the tool and the server: consecutive transactions of one
// client may run in different server sessions, and a backup cannot outlive
// its session.
var ErrTransactionPooled = errors.New("the connection goes through a transaction-pooling proxy (PgBouncer pool_mode = transaction?), " +
	"which cannot hold a backup's session: connect to the server directly, or through session pooling")

// CheckSessionPinned tells whether two transactions of one client run in
// one server session. Other clients hold transactions open while the first
// client runs its next one: on a real session nothing changes for it and no
// one else ever sees its backend; behind a transaction pool its next
// transaction gets another server session or has to wait for one, or
// another client gets the server session it used. PgBouncer reuses server
// sessions last in, first out by default, so the second client alone
// catches it; with server_round_robin (first in, first out) the first
// client's next transaction or the third client does.
func CheckSessionPinned(ctx context.Context, cfg pq.Config) error {
	// A pool with no server session to spare would make the check wait.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	a, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	var first int
	if err := a.QueryRowContext(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&first); err != nil {
		return err
	}
	for range 2 {
		held, err := holdBackend(ctx, db)
		if err != nil {
			return err
		}
		defer held.tx.Rollback()
		if held.pid == first {
			return fmt.Errorf("%w (another client got backend pid %d)", ErrTransactionPooled, first)
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var next int
		err = a.QueryRowContext(qctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&next)
		switch {
		case err != nil && qctx.Err() != nil:
			return fmt.Errorf("%w (a second transaction waited for a server session)", ErrTransactionPooled)
		case err != nil:
			return err
		case next != first:
			return fmt.Errorf("%w (backend pid %d, then %d)", ErrTransactionPooled, first, next)
		}
	}
	return nil
}

// heldBackend is a transaction another client keeps open.
type heldBackend struct {
	tx  *sql.Tx
	pid int
}

// holdBackend opens a transaction in a new client (db has no idle
// connection: every other one is held), which keeps its server session
// until rolled back.
func holdBackend(ctx context.Context, db *sql.DB) (*heldBackend, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	h := &heldBackend{tx: tx}
	if err := tx.QueryRowContext(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&h.pid); err != nil {
		tx.Rollback()
		return nil, err
	}
	return h, nil
}
