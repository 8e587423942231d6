package pgbackup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
)

func TestConfig(t *testing.T) {
	t.Setenv("PGHOST", "/run/env")
	t.Setenv("PGDATABASE", "fromenv")
	t.Setenv("PGAPPNAME", "")
	tests := []struct {
		dbname           string
		wantHost, wantDB string
		wantApp          string
		wantSSL          pq.SSLMode
	}{
		{"", "/run/env", "fromenv", AppName, pq.SSLModeDisable},
		{"mydb", "/run/env", "mydb", AppName, pq.SSLModeDisable},
		{"it's", "/run/env", "it's", AppName, pq.SSLModeDisable},
		{"host=/tmp dbname=x", "/tmp", "x", AppName, pq.SSLModeDisable},
		{"dbname=x application_name=mine", "/run/env", "x", "mine", pq.SSLModeDisable},
		{"postgres://u@h:5433/urldb?sslmode=disable", "h", "urldb", AppName, pq.SSLModeDisable},
		// Over TCP, as libpq: prefer SSL unless told otherwise.
		{"host=db.example dbname=x", "db.example", "x", AppName, pq.SSLModePrefer},
		{"host=db.example dbname=x sslmode=verify-full", "db.example", "x", AppName, pq.SSLModeVerifyFull},
	}
	for _, tt := range tests {
		t.Run(tt.dbname, func(t *testing.T) {
			cfg, err := Config(tt.dbname)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.wantHost || cfg.Database != tt.wantDB || cfg.ApplicationName != tt.wantApp || cfg.SSLMode != tt.wantSSL {
				t.Fatalf("Config(%q) = host %q db %q app %q sslmode %q", tt.dbname, cfg.Host, cfg.Database, cfg.ApplicationName, cfg.SSLMode)
			}
		})
	}
	t.Setenv("PGAPPNAME", "fromenv")
	if cfg, _ := Config(""); cfg.ApplicationName != "fromenv" {
		t.Errorf("PGAPPNAME ignored: %q", cfg.ApplicationName)
	}
}

func TestSlotName(t *testing.T) {
	tests := []struct {
		pid   int
		label string
		want  string
	}{
		{123, "nightly", "pgfbb_123_nightly"},
		{7, "Big.Label-1", "pgfbb_7_big_label_1"},
		{99999, strings.Repeat("x", 100), "pgfbb_99999_" + strings.Repeat("x", 51)},
	}
	for _, tt := range tests {
		if got := SlotName(tt.pid, tt.label); got != tt.want {
			t.Errorf("SlotName(%d, %q) = %q, want %q", tt.pid, tt.label, got, tt.want)
		}
	}
}

func connect(t *testing.T, conninfo string) *Session {
	t.Helper()
	cfg, err := Config(conninfo)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Connect(context.Background(), cfg, DefaultNetworkTimeout)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func slotCount(t *testing.T, db *sql.DB) string {
	t.Helper()
	return pgtest.QueryString(t, db, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgfbb_%'")
}

// waitGone waits until no backend named pgfbb-wrap and no pgfbb slot is left.
func waitGone(t *testing.T, db *sql.DB) {
	t.Helper()
	for i := 0; ; i++ {
		backends := pgtest.QueryString(t, db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", AppName)
		if backends == "0" && slotCount(t, db) == "0" {
			return
		}
		if i == 100 {
			t.Fatalf("after 10s: %s backends, %s slots left", backends, slotCount(t, db))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// forMajors runs a test against every major PGFBB_TEST_PG selects; segment
// size variants add nothing to session behaviour.
func forMajors(t *testing.T, test func(t *testing.T, in pgtest.Install)) {
	pgtest.Each(t, pgtest.MajorTargets(t), func(t *testing.T, tg pgtest.Target) { test(t, tg.Install) })
}

func TestSessionBackup(t *testing.T) { forMajors(t, testSessionBackup) }

func testSessionBackup(t *testing.T, in pgtest.Install) {
	c := pgtest.New(t, in, pgtest.Options{})
	db := c.DB(t)
	ctx := context.Background()

	t.Run("start and stop in one session", func(t *testing.T) {
		s := connect(t, c.ConnString("postgres"))
		srv := s.Server()
		if srv.Major() != in.Major || srv.SegmentSize != 16<<20 || srv.DataDirectory != c.PGData || !srv.Superuser || srv.SystemID == 0 {
			t.Fatalf("server = %+v", srv)
		}
		if err := s.Preflight(); err != nil {
			t.Fatal(err)
		}
		slot, err := s.CreateSlot(ctx, "it")
		if err != nil {
			t.Fatal(err)
		}
		if got := pgtest.QueryString(t, db, "SELECT temporary AND restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = $1", slot); got != "true" {
			t.Fatalf("slot %s: temporary with reserved WAL = %q", slot, got)
		}
		st, err := s.Start(ctx, "it", true)
		if err != nil {
			t.Fatal(err)
		}
		pgtest.Exec(t, db, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS i")
		sp, err := s.Stop(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bl, err := pgformat.ParseBackupLabel(sp.Label)
		if err != nil {
			t.Fatal(err)
		}
		if bl.Label != "it" || bl.StartLSN != st.LSN || bl.StartTimeline != st.Timeline || st.Timeline != 1 || sp.LSN <= st.LSN {
			t.Fatalf("label %+v, started %+v, stopped at %s", bl, st, sp.LSN)
		}
		if len(sp.TablespaceMap) != 0 {
			t.Errorf("tablespace_map %q on a cluster without tablespaces", sp.TablespaceMap)
		}
		if err := s.DropSlot(ctx); err != nil {
			t.Fatal(err)
		}
		if n := slotCount(t, db); n != "0" {
			t.Fatalf("%s slots after DropSlot", n)
		}
		s.Close()
		waitGone(t, db)
	})

	t.Run("closing without stop aborts the backup and drops the slot", func(t *testing.T) {
		s := connect(t, c.ConnString("postgres"))
		if _, err := s.CreateSlot(ctx, "abandoned"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Start(ctx, "abandoned", true); err != nil {
			t.Fatal(err)
		}
		s.Close()
		waitGone(t, db)
		// A new backup can start at once: nothing was left in backup mode.
		s2 := connect(t, c.ConnString("postgres"))
		if _, err := s2.Start(ctx, "next", true); err != nil {
			t.Fatal(err)
		}
		if _, err := s2.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stop on a terminated session says the session is lost", func(t *testing.T) {
		s := connect(t, c.ConnString("postgres"))
		if _, err := s.Start(ctx, "killed", true); err != nil {
			t.Fatal(err)
		}
		pgtest.Exec(t, db, "SELECT pg_terminate_backend($1)", s.Server().BackendPID)
		_, err := s.Stop(ctx)
		if !errors.Is(err, ErrSessionLost) {
			t.Fatalf("Stop on a terminated session = %v, want ErrSessionLost", err)
		}
	})

	// Behind a pool, the session's statements may reach another server
	// session: here its own is played by a second session, whose backend
	// pid the guard is told to expect.
	t.Run("guarded statements do nothing in another server session", func(t *testing.T) {
		s, own := connect(t, c.ConnString("postgres")), connect(t, c.ConnString("postgres"))
		ran := s.server.BackendPID
		s.server.BackendPID = own.Server().BackendPID
		if _, err := s.CreateSlot(ctx, "moved"); !errors.Is(err, ErrSessionMoved) {
			t.Fatalf("CreateSlot = %v, want ErrSessionMoved", err)
		}
		if _, err := s.Start(ctx, "moved", true); !errors.Is(err, ErrSessionMoved) {
			t.Fatalf("Start = %v, want ErrSessionMoved", err)
		}
		if n := slotCount(t, db); n != "0" {
			t.Errorf("%s slots after a guarded CreateSlot elsewhere", n)
		}
		// Nothing started where the statements ran: a backup starts there.
		s.server.BackendPID = ran
		if _, err := s.Start(ctx, "there", true); err != nil {
			t.Fatalf("start where the guarded start ran: %v", err)
		}
		if _, err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		// Close ends the server session the guard expected.
		s.server.BackendPID, s.wandered = own.Server().BackendPID, true
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := own.conn.PingContext(ctx); err == nil {
			t.Error("the expected server session survived Close")
		}
		own.Close()
	})

	t.Run("stop twice", func(t *testing.T) {
		s := connect(t, c.ConnString("postgres"))
		if _, err := s.Start(ctx, "twice", true); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stop(ctx); !errors.Is(err, ErrNotInBackup) {
			t.Fatalf("second Stop = %v, want ErrNotInBackup", err)
		}
	})

	t.Run("role defaults cannot end the session mid-backup", func(t *testing.T) {
		pgtest.Exec(t, db, "CREATE ROLE guarded SUPERUSER LOGIN")
		pgtest.Exec(t, db, "ALTER ROLE guarded SET statement_timeout = '1ms'")
		if in.Major >= 14 {
			pgtest.Exec(t, db, "ALTER ROLE guarded SET idle_session_timeout = '500ms'")
		}
		pgtest.Exec(t, db, "ALTER ROLE guarded SET idle_in_transaction_session_timeout = '500ms'")
		pgtest.Exec(t, db, "ALTER ROLE guarded SET log_statement = 'all'")
		s := connect(t, c.ConnString("postgres")+" user=guarded")
		// Every statement before the SET runs under the 1ms timeout, which a
		// busy server does not meet: the SET must come first.
		log := c.LogTail(1 << 20)
		if set, ver := strings.Index(log, "SET statement_timeout = 0"), strings.Index(log, "server_version_num"); set < 0 || ver < set {
			t.Fatalf("the session's first statement is not SET statement_timeout = 0:\n%s", log)
		}
		// A spread checkpoint takes far longer than 1ms.
		if _, err := s.Start(ctx, "guarded", false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if _, err := s.Stop(ctx); err != nil {
			t.Fatalf("stop after idling past idle_session_timeout: %v", err)
		}
	})
}

func TestPreflightPrivileges(t *testing.T) { forMajors(t, testPreflightPrivileges) }

func testPreflightPrivileges(t *testing.T, in pgtest.Install) {
	c := pgtest.New(t, in, pgtest.Options{})
	db := c.DB(t)
	ctx := context.Background()
	pgtest.Exec(t, db, "CREATE ROLE weak LOGIN")
	start, stop := apiFor(in.Major*10000).startFunc, apiFor(in.Major*10000).stopFunc

	s := connect(t, c.ConnString("postgres")+" user=weak")
	if s.Server().DataDirectory != "" {
		t.Errorf("an unprivileged role read data_directory %q", s.Server().DataDirectory)
	}
	err := s.Preflight()
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("Preflight for an unprivileged role = %v", err)
	}
	for _, want := range []string{"EXECUTE on " + start, "GRANT EXECUTE ON FUNCTION " + stop + ` TO "weak"`, `ALTER ROLE "weak" REPLICATION`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
	s.Close()

	pgtest.Exec(t, db, "GRANT EXECUTE ON FUNCTION "+start+" TO weak")
	pgtest.Exec(t, db, "GRANT EXECUTE ON FUNCTION "+stop+" TO weak")
	pgtest.Exec(t, db, "ALTER ROLE weak REPLICATION")
	s = connect(t, c.ConnString("postgres")+" user=weak")
	if err := s.Preflight(); err != nil {
		t.Fatalf("Preflight with the grants: %v", err)
	}
	if _, err := s.CreateSlot(ctx, "weak"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "weak", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.DropSlot(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPreflightRefusesMinimalWAL(t *testing.T) {
	forMajors(t, func(t *testing.T, in pgtest.Install) {
		c := pgtest.New(t, in, pgtest.Options{Conf: []string{"wal_level = minimal", "max_wal_senders = 0"}})
		s := connect(t, c.ConnString("postgres"))
		err := s.Preflight()
		if err == nil || !strings.Contains(err.Error(), "wal_level is minimal") {
			t.Fatalf("Preflight with wal_level=minimal = %v", err)
		}
	})
}

// TestPeerPostmaster tells a postmaster's Unix socket from another
// process's, such as a proxy's (here the test's own listener).
func TestPeerPostmaster(t *testing.T) {
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{})
	other := filepath.Join(t.TempDir(), "proxy.sock")
	l, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tt := range []struct {
		path string
		want bool
	}{
		{filepath.Join(c.Socket, fmt.Sprintf(".s.PGSQL.%d", c.Port)), true},
		{other, false},
	} {
		var p peerDialer
		conn, err := p.Dial("unix", tt.path)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if got := p.postmaster(); got != tt.want {
			t.Errorf("%s: postmaster() = %v, want %v (peer pid %d)", tt.path, got, tt.want, p.pid.Load())
		}
	}
	// lib/pq dials host after host: the last dial is the session's.
	var p peerDialer
	for _, path := range []string{filepath.Join(c.Socket, fmt.Sprintf(".s.PGSQL.%d", c.Port)), other} {
		conn, err := p.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	if p.postmaster() {
		t.Error("after dialling the postmaster, then another socket: postmaster() = true")
	}
	// A session through the postmaster's socket has a backend that is its
	// child.
	cfg, err := Config(c.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p = peerDialer{}
	connector.Dialer(&p)
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !p.direct(context.Background(), conn) {
		t.Errorf("a session on the postmaster's socket is not direct (peer pid %d)", p.pid.Load())
	}
}
