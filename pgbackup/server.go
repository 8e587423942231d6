package pgbackup

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
)

// Server is what the backup needs to know about the server.
type Server struct {
	VersionNum    int
	Version       string
	WALLevel      string
	ArchiveMode   string // off, on or always
	SegmentSize   uint64
	DataDirectory string // empty when the role may not read it
	InRecovery    bool
	SystemID      uint64 // 0 when pg_control_system() is not granted
	BackendPID    int
	User          string
	Superuser     bool
	Replication   bool
	FreeSlots     int // max_replication_slots minus slots in use
	// MaxSlotWALKeep is max_slot_wal_keep_size in bytes: -1 (unlimited,
	// and always before 13) lets a slot keep WAL until pg_wal is full.
	MaxSlotWALKeep int64
	// SpreadCheckpoint is about how long a spread checkpoint takes at
	// most: checkpoint_timeout × checkpoint_completion_target.
	SpreadCheckpoint time.Duration

	api           api
	missingGrants []string
	readFile      bool // EXECUTE on pg_read_binary_file, 11+
}

// Major is the major version (10, 11, ... 18).
func (s *Server) Major() int { return pgformat.MajorOf(s.VersionNum) }

// BackupFrom is how backup_label's BACKUP FROM line names this server.
func (s *Server) BackupFrom() string {
	if s.InRecovery {
		return "standby"
	}
	return s.api.backupFrom
}

func readServer(ctx context.Context, conn *sql.Conn, num int) (*Server, error) {
	srv := &Server{VersionNum: num, api: apiFor(num)}
	var spread float64
	// pg_settings hides data_directory from roles without superuser or
	// pg_read_all_settings instead of failing, unlike current_setting().
	err := conn.QueryRowContext(ctx, `
SELECT current_setting('server_version'),
       current_setting('wal_level'),
       current_setting('archive_mode'),
       pg_catalog.pg_size_bytes(current_setting('wal_segment_size')),
       COALESCE((SELECT setting FROM pg_catalog.pg_settings WHERE name = 'data_directory'), ''),
       pg_catalog.pg_is_in_recovery(),
       pg_catalog.pg_backend_pid(),
       current_user,
       r.rolsuper,
       r.rolreplication,
       current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_catalog.pg_replication_slots),
       pg_catalog.pg_size_bytes(COALESCE(current_setting('max_slot_wal_keep_size', true), '-1')),
       (EXTRACT(EPOCH FROM current_setting('checkpoint_timeout')::interval) *
        current_setting('checkpoint_completion_target')::float8)::float8
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`).Scan(
		&srv.Version, &srv.WALLevel, &srv.ArchiveMode, &srv.SegmentSize, &srv.DataDirectory, &srv.InRecovery,
		&srv.BackendPID, &srv.User, &srv.Superuser, &srv.Replication, &srv.FreeSlots, &srv.MaxSlotWALKeep, &spread)
	if err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	srv.SpreadCheckpoint = time.Duration(spread * float64(time.Second))
	for _, fn := range []string{srv.api.startFunc, srv.api.stopFunc, "pg_catalog.pg_control_system()", "pg_catalog.pg_control_checkpoint()"} {
		var ok bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_catalog.has_function_privilege($1, 'EXECUTE')", fn).Scan(&ok); err != nil {
			return nil, fmt.Errorf("check privilege on %s: %w", fn, err)
		}
		if !ok {
			srv.missingGrants = append(srv.missingGrants, fn)
		}
	}
	if srv.api.readFileGrant {
		if err := conn.QueryRowContext(ctx, "SELECT pg_catalog.has_function_privilege($1, 'EXECUTE')", readFileFunc).Scan(&srv.readFile); err != nil {
			return nil, fmt.Errorf("check privilege on %s: %w", readFileFunc, err)
		}
	}
	if !slices.Contains(srv.missingGrants, "pg_catalog.pg_control_system()") {
		var id string
		if err := conn.QueryRowContext(ctx, "SELECT system_identifier::text FROM pg_catalog.pg_control_system()").Scan(&id); err != nil {
			return nil, fmt.Errorf("read system identifier: %w", err)
		}
		if srv.SystemID, err = strconv.ParseUint(id, 10, 64); err != nil {
			return nil, fmt.Errorf("read system identifier: %w", err)
		}
	}
	return srv, nil
}

// PreflightError lists every reason a backup would not be safe.
type PreflightError struct {
	Problems []string
}

func (e *PreflightError) Error() string {
	return "backup refused: " + strings.Join(e.Problems, "; ")
}

// Preflight checks that a backup of this server can be safe and that the
// role may take it, and reports every problem at once, each with its remedy.
func (s *Session) Preflight() error {
	srv := s.server
	var problems []string
	if srv.WALLevel == "minimal" {
		problems = append(problems, "wal_level is minimal: set wal_level = replica and restart, a backup cannot be restored without full WAL")
	}
	for _, fn := range srv.missingGrants {
		problems = append(problems, fmt.Sprintf("role %s lacks EXECUTE on %s: GRANT EXECUTE ON FUNCTION %s TO %s",
			srv.User, fn, fn, quoteIdent(srv.User)))
	}
	if !srv.Superuser && !srv.Replication {
		problems = append(problems, fmt.Sprintf("role %s lacks REPLICATION, needed for the WAL-retention slot: ALTER ROLE %s REPLICATION",
			srv.User, quoteIdent(srv.User)))
	}
	if srv.FreeSlots < 1 {
		problems = append(problems, "no free replication slot for WAL retention: raise max_replication_slots")
	}
	if err := pgformat.ValidateSegmentSize(srv.SegmentSize); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Tablespaces lists the user tablespaces (not pg_default and pg_global).
func (s *Session) Tablespaces(ctx context.Context) ([]pgformat.Tablespace, error) {
	rows, err := s.conn.QueryContext(ctx, `SELECT oid, spcname, pg_catalog.pg_tablespace_location(oid)
FROM pg_catalog.pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`)
	if err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", s.classify(ctx, err))
	}
	defer rows.Close()
	out := []pgformat.Tablespace{}
	for rows.Next() {
		var ts pgformat.Tablespace
		if err := rows.Scan(&ts.OID, &ts.Name, &ts.Location); err != nil {
			return nil, fmt.Errorf("list tablespaces: %w", err)
		}
		out = append(out, ts)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", s.classify(ctx, err))
	}
	return out, nil
}
