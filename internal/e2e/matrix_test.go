package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// TestPrivilegesAcrossVersions proves, per major, that a role granted only
// what the README lists can take a backup, wrapped or held by pre/post, and
// that a role without the grants is refused with exit 3 and told which
// grants it lacks.
func TestPrivilegesAcrossVersions(t *testing.T) {
	pgtest.Each(t, pgtest.MajorTargets(t), func(t *testing.T, tg pgtest.Target) {
		c := pgtest.New(t, tg.Install, pgtest.Options{})
		db := c.DB(t)
		start, stop := tg.BackupFunctions()

		pgtest.Exec(t, db, "CREATE ROLE nobody LOGIN")
		r := runTool(t, append(c.Env(), "PGUSER=nobody"), "--staging", filepath.Join(t.TempDir(), "s"), "--", "true")
		r.want(t, 3, "lacks EXECUTE on "+start, "GRANT EXECUTE ON FUNCTION "+stop, "lacks REPLICATION")
		waitClean(t, db)

		for _, q := range []string{
			"CREATE ROLE backup LOGIN REPLICATION",
			"GRANT EXECUTE ON FUNCTION " + start + " TO backup",
			"GRANT EXECUTE ON FUNCTION " + stop + " TO backup",
			"GRANT pg_read_all_settings TO backup",
		} {
			pgtest.Exec(t, db, q)
		}
		st := filepath.Join(t.TempDir(), "s")
		runTool(t, append(c.Env(), "PGUSER=backup"), "--staging", st, "--label", "granted", "--fast", "--", "true").want(t, 0)
		m := readManifest(t, filepath.Join(st, "granted"))
		label, err := os.ReadFile(filepath.Join(st, "granted", staged.LabelFile))
		if err != nil {
			t.Fatal(err)
		}
		bl, err := pgformat.ParseBackupLabel(label)
		if err != nil {
			t.Fatal(err)
		}
		if bl.StartLSN != m.StartLSN || bl.StartTimeline != 1 || bl.Label != "granted" {
			t.Errorf("label %+v does not match manifest %+v", bl, m)
		}
		wantFrom := "primary"
		if tg.Major < 14 {
			wantFrom = "master"
		}
		if bl.From != wantFrom {
			t.Errorf("PostgreSQL %d: BACKUP FROM: %q, want %q", tg.Major, bl.From, wantFrom)
		}
		if has := strings.Contains(string(label), "START TIMELINE"); has != (tg.Major >= 11) {
			t.Errorf("PostgreSQL %d: START TIMELINE line present = %v", tg.Major, has)
		}

		// Hook mode needs nothing more: the holder is the same session.
		killHolders(t, st)
		runTool(t, append(c.Env(), "PGUSER=backup"), "pre", "--staging", st, "--label", "held", "--fast").want(t, 0)
		runTool(t, nil, "post", "--staging", st, "--label", "held").want(t, 0, "backup held complete")
		runTool(t, nil, "verify", filepath.Join(st, "held")).want(t, 0)

		// WAL over SQL: superuser only on 10, a grant from 11.
		sqlRun := func(label string) result {
			return runTool(t, append(c.Env(), "PGUSER=backup"), "--staging", st, "--label", label, "--fast", "--wal-source=sql", "--", "true")
		}
		if tg.Major < 11 {
			sqlRun("sql").want(t, 3, "on PostgreSQL 10 only a superuser may call pg_read_binary_file")
		} else {
			const readFile = "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)"
			sqlRun("sql").want(t, 3, "GRANT EXECUTE ON FUNCTION "+readFile+" TO \"backup\"")
			pgtest.Exec(t, db, "GRANT EXECUTE ON FUNCTION "+readFile+" TO backup")
			sqlRun("sql").want(t, 0)
			if m := readManifest(t, filepath.Join(st, "sql")); m.WALSource != "sql:pg_read_binary_file" {
				t.Errorf("wal_source %q", m.WALSource)
			}
			runTool(t, nil, "verify", filepath.Join(st, "sql")).want(t, 0)
		}
		waitClean(t, db)
	})
}
