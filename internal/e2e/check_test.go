package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestCheck runs check against a healthy cluster, one with wal_level
// minimal, a role missing its grants, and the healthy one behind PgBouncer
// in transaction mode.
func TestCheck(t *testing.T) {
	in := pgtest.DefaultInstall(t)
	c := pgtest.New(t, in, pgtest.Options{})
	staging := func(t *testing.T) string { return filepath.Join(t.TempDir(), "staging") }

	t.Run("healthy", func(t *testing.T) {
		st := staging(t)
		r := runTool(t, c.Env(), "check", "--staging", st, "--", "true")
		r.want(t, 0, "ok    staging directory", "ok    connected: PostgreSQL", "ok    one server session", "ok    settings and privileges",
			"ok    WAL source: local:", "ok    snapshot command true found")
		if strings.Contains(r.stdout, "fail") {
			t.Errorf("a passing check printed a fail line:\n%s", r.stdout)
		}
		runTool(t, c.Env(), "check", "--bogus").want(t, 2, "flag provided but not defined")
		assertNothingPublished(t, st) // lock files aside, check leaves nothing
		waitClean(t, c.DB(t))
	})
	t.Run("wal_level minimal", func(t *testing.T) {
		m := pgtest.New(t, in, pgtest.Options{Conf: []string{"wal_level = minimal", "max_wal_senders = 0"}})
		runTool(t, m.Env(), "check", "--staging", staging(t)).want(t, 3, "fail  wal_level is minimal")
	})
	t.Run("missing grants", func(t *testing.T) {
		pgtest.Exec(t, c.DB(t), "CREATE ROLE weakcheck LOGIN")
		start, _ := in.BackupFunctions()
		runTool(t, append(c.Env(), "PGUSER=weakcheck"), "check", "--staging", staging(t)).
			want(t, 3, "fail  role weakcheck lacks EXECUTE on "+start, "GRANT EXECUTE")
	})
	// With server_round_robin, consecutive statements of one client go
	// to different servers: the pool must be named before the session's
	// first prepared statement fails.
	for _, settings := range []string{"pool_mode = transaction", "pool_mode = transaction\nserver_round_robin = 1"} {
		t.Run("behind PgBouncer: "+settings, func(t *testing.T) {
			port := pgbouncer(t, c, settings)
			env := []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(port), "PGUSER=postgres", "PGDATABASE=postgres", "PGSSLMODE=disable"}
			res := runTool(t, env, "check", "--staging", staging(t), "--pgdata", c.PGData)
			res.want(t, 3, "fail  preflight: the connection goes through a transaction-pooling proxy")
			if strings.Contains(res.stdout+res.stderr, "prepared statement") {
				t.Error("check names a prepared statement, not the pool")
			}
			runTool(t, env, "--staging", staging(t), "--pgdata", c.PGData, "--", "true").want(t, 3, "transaction-pooling proxy")
		})
	}
	// A Unix socket's peer tells the postmaster from a proxy: the tool
	// skips the three-client check only for the postmaster's own socket.
	t.Run("behind PgBouncer on a Unix socket", func(t *testing.T) {
		sock := pgtest.TempDir(t)
		port := pgbouncer(t, c, "pool_mode = transaction\nunix_socket_dir = "+sock)
		env := []string{"PGHOST=" + sock, "PGPORT=" + strconv.Itoa(port), "PGUSER=postgres", "PGDATABASE=postgres"}
		runTool(t, env, "check", "--staging", staging(t), "--pgdata", c.PGData).
			want(t, 3, "fail  preflight: the connection goes through a transaction-pooling proxy")
	})
	t.Run("behind PgBouncer in session mode", func(t *testing.T) {
		port := pgbouncer(t, c, "pool_mode = session")
		env := []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(port), "PGUSER=postgres", "PGDATABASE=postgres", "PGSSLMODE=disable"}
		runTool(t, env, "check", "--staging", staging(t), "--pgdata", c.PGData).want(t, 0, "ok    one server session")
	})
}

// pgbouncer starts a PgBouncer in front of c with settings (pool_mode and
// others, one per line), for the test's duration, and returns its port.
func pgbouncer(t *testing.T, c *pgtest.Cluster, settings string) int {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		t.Fatal("pgbouncer not found: install Debian's pgbouncer (scripts/install-deps.sh does)")
	}
	dir := pgtest.TempDir(t)
	port := pgtest.FreePort(t)
	conf := filepath.Join(dir, "pgbouncer.ini")
	text := fmt.Sprintf(`[databases]
postgres = host=%s port=%d dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
%s
default_pool_size = 4
ignore_startup_parameters = extra_float_digits
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
`, c.Socket, c.Port, port, settings, dir, dir)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("runuser", "-u", "postgres", "--", bin, conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); exec.Command("pkill", "-f", conf).Run() })
	for i := 0; ; i++ {
		if out, err := exec.Command(c.ClientBin(t, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-Atc", "SELECT 1", "postgres").Output(); err == nil && string(out) == "1\n" {
			return port
		}
		if i == 100 {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer never answered:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
