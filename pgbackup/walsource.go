package pgbackup

import (
	"context"
	"fmt"
	"io"
	"io/fs"
)

// readChunk is how much of a WAL file one pg_read_binary_file call returns.
const readChunk = 1 << 20

// readFileFunc is pg_read_binary_file as has_function_privilege spells it.
const readFileFunc = "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)"

// WALSource reads the server's WAL files over this session with
// pg_read_binary_file, for when this process cannot read the data directory
// (another host, another OS user). Use it only after the stop: it shares the
// session, and a cancelled read ends it.
func (s *Session) WALSource() *SQLSource { return &SQLSource{s: s} }

// SQLSource is a walcollect.Source over SQL.
type SQLSource struct{ s *Session }

func (w *SQLSource) String() string { return "sql:pg_read_binary_file" }

// Open reads the first chunk at once, so that a missing file is reported
// here as fs.ErrNotExist, as a local open would.
func (w *SQLSource) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	r := &sqlReader{ctx: ctx, s: w.s, path: "pg_wal/" + name}
	if err := r.fetch(); err != nil {
		return nil, err
	}
	return r, nil
}

type sqlReader struct {
	ctx    context.Context
	s      *Session
	path   string
	offset int64
	buf    []byte
	eof    bool
}

func (r *sqlReader) fetch() error {
	var data []byte
	err := r.s.conn.QueryRowContext(r.ctx, "SELECT pg_catalog.pg_read_binary_file($1, $2, $3, true)",
		r.path, r.offset, readChunk).Scan(&data)
	if err != nil {
		return fmt.Errorf("read %s over SQL at offset %d: %w", r.path, r.offset, r.s.classify(r.ctx, err))
	}
	if data == nil { // NULL: missing_ok found no file
		return fmt.Errorf("read %s over SQL: %w", r.path, fs.ErrNotExist)
	}
	r.buf, r.offset, r.eof = data, r.offset+int64(len(data)), len(data) < readChunk
	return nil
}

func (r *sqlReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		if err := r.fetch(); err != nil {
			return 0, err
		}
		if len(r.buf) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *sqlReader) Close() error { return nil }

// CanReadFiles tells whether the role may read WAL over SQL: superuser on
// 10, EXECUTE on pg_read_binary_file from 11.
func (srv *Server) CanReadFiles() bool { return srv.Superuser || srv.readFile }

// ReadFilesRemedy says how to let the role read WAL over SQL.
func (srv *Server) ReadFilesRemedy() string {
	if !srv.api.readFileGrant {
		return fmt.Sprintf("on PostgreSQL 10 only a superuser may call pg_read_binary_file (role %s is not one)", srv.User)
	}
	return fmt.Sprintf("GRANT EXECUTE ON FUNCTION %s TO %s", readFileFunc, quoteIdent(srv.User))
}
