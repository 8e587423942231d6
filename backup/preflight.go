package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgfbb/pgfbb-wrap/pgbackup"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/pgfbb/pgfbb-wrap/volume"
	"github.com/pgfbb/pgfbb-wrap/walcollect"
	"golang.org/x/sys/unix"
)

// preflight adds the checks that need the local file system to the server's.
func (r *run) preflight(ctx context.Context) error {
	srv := r.sess.Server()
	r.log.Info("connected", "version", srv.Version, "user", srv.User, "wal_level", srv.WALLevel,
		"wal_segment_size", srv.SegmentSize, "data_directory", srv.DataDirectory)
	var problems []string
	if err := r.sess.Preflight(); err != nil {
		var pe *pgbackup.PreflightError
		if !errors.As(err, &pe) {
			return err
		}
		problems = pe.Problems
	}
	r.pgdata = r.opts.PGData
	if r.pgdata == "" {
		r.pgdata = srv.DataDirectory
	}
	located, err := r.locate(ctx)
	if err != nil {
		return err
	}
	problems = append(problems, r.checkCovered(located)...)
	if r.opts.WAL == staged.WALCopy {
		if p := r.chooseSource(srv); p != "" {
			problems = append(problems, p)
		}
	}
	if r.opts.WAL == staged.WALArchive && !archiving(srv) {
		problems = append(problems, fmt.Sprintf("--wal=archive relies on the WAL archive, but archive_mode is %s on this server: "+
			"enable archiving, or use --wal=copy", srv.ArchiveMode))
	}
	if len(problems) > 0 {
		return &pgbackup.PreflightError{Problems: problems}
	}
	// Worth knowing when setting up, not worth a mail every night.
	if r.opts.CheckOnly && r.pgdata != "" && sameDevice(r.pgdata, r.staging.Root()) {
		r.note(fmt.Sprintf("the staging directory %s is on the data directory's file system: staged WAL and the server compete for its space",
			r.staging.Root()))
	}
	r.walBudget()
	return nil
}

// sameDevice tells whether two paths are on one file system.
func sameDevice(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev
}

// locate finds the file systems the data directory, pg_wal and every
// tablespace live on, for the DBA, the snapshot command and the manifest.
// Not seeing them (a tool on another host) is no failure: located says why,
// and is nil when every one was found.
func (r *run) locate(ctx context.Context) (located error, err error) {
	tablespaces, err := r.sess.Tablespaces(ctx)
	if err != nil {
		return nil, err
	}
	var paths [][2]string
	if r.pgdata != "" {
		paths = append(paths, [2]string{"data_directory", r.pgdata}, [2]string{"pg_wal", filepath.Join(r.pgdata, "pg_wal")})
	}
	for _, ts := range tablespaces {
		paths = append(paths, [2]string{"tablespace " + ts.Name, ts.Location})
	}
	mounts, located := volume.ReadMounts()
	if located == nil {
		r.volumes, located = volume.Locate(paths, mounts)
	}
	for _, p := range r.volumes {
		r.log.Info("volume", "role", p.Role, "path", p.Real, "mount", p.Mount.Point, "fstype", p.Mount.FSType, "source", p.Mount.Source, "st_dev", p.Dev)
	}
	return located, nil
}

// checkCovered holds the volumes against --covers; without it, it warns
// that a cluster spanning several volumes needs all of them snapshotted.
func (r *run) checkCovered(located error) []string {
	if len(r.opts.Covers) == 0 {
		if located != nil {
			r.note(fmt.Sprintf("cannot tell which volumes the snapshot must cover: %v", located))
		}
		if n := volume.Units(r.volumes); n > 1 {
			var where []string
			for _, p := range r.volumes {
				where = append(where, fmt.Sprintf("%s on %s (%s %s)", p.Role, p.Mount.Point, p.Mount.FSType, p.Dev))
			}
			r.note(fmt.Sprintf("the cluster spans %d file systems or subvolumes, and the snapshot must cover every one: %s; "+
				"separate snapshots are not atomic, which backup mode and the staged WAL make safe (--covers lists them and turns this warning into a check)",
				n, strings.Join(where, ", ")))
		}
		return nil
	}
	if located == nil && r.pgdata == "" {
		located = errors.New("the data directory is unknown (pass --pgdata)")
	}
	if located != nil {
		return []string{fmt.Sprintf("--covers is given, but where the cluster's files live cannot be told: %v", located)}
	}
	uncovered, err := volume.Uncovered(r.volumes, r.opts.Covers)
	if err != nil {
		return []string{fmt.Sprintf("--covers: %v", err)}
	}
	var problems []string
	for _, p := range uncovered {
		problems = append(problems, fmt.Sprintf("%s (%s, on %s, st_dev %s) is outside every --covers path "+
			"(a nested mount, btrfs subvolume or ZFS dataset is not in its parent's snapshot): the snapshot would miss it",
			p.Role, p.Real, p.Mount.Point, p.Dev))
	}
	return problems
}

// chooseSource picks where --wal=copy reads WAL, or says why it cannot.
func (r *run) chooseSource(srv *pgbackup.Server) string {
	local := r.checkWALDir(srv)
	sql := ""
	if !srv.CanReadFiles() {
		sql = "cannot read WAL over SQL: " + srv.ReadFilesRemedy()
	}
	want := r.opts.WALSource
	if want == walcollect.SourceAuto && r.opts.PGData != "" {
		// --pgdata says where the files are: a mistake there must not
		// be papered over by reading WAL another way.
		want = walcollect.SourceLocal
	}
	switch {
	case want != walcollect.SourceSQL && local == "":
		r.source = walcollect.DirSource(filepath.Join(r.pgdata, "pg_wal"))
	case want != walcollect.SourceLocal && sql == "":
		if r.opts.WALSource == walcollect.SourceAuto {
			r.note("reading WAL over SQL (pg_read_binary_file): " + local)
		}
		r.source = r.sess.WALSource()
	case want == walcollect.SourceLocal:
		return local
	case want == walcollect.SourceSQL:
		return sql
	default:
		return local + "; " + sql
	}
	return ""
}

func (r *run) checkWALDir(srv *pgbackup.Server) string {
	if r.pgdata == "" {
		return "cannot learn the data directory (the role lacks superuser or pg_read_all_settings): pass --pgdata, or --wal=skip"
	}
	if _, err := os.ReadDir(filepath.Join(r.pgdata, "pg_wal")); err != nil {
		return fmt.Sprintf("WAL directory not readable for staging: %v", err)
	}
	id, err := pgformat.ControlSystemID(r.pgdata)
	if err != nil {
		return err.Error()
	}
	if srv.SystemID != 0 && id != srv.SystemID {
		return fmt.Sprintf("data directory %s belongs to another cluster (system identifier %d, server has %d)", r.pgdata, id, srv.SystemID)
	}
	if r.opts.PGData != "" && srv.DataDirectory != "" && !sameDir(r.opts.PGData, srv.DataDirectory) {
		// A copy of the data directory has the same system identifier.
		return fmt.Sprintf("--pgdata %s is not the server's data directory %s", r.opts.PGData, srv.DataDirectory)
	}
	return ""
}

// sameDir tells whether two paths name one directory, by device and inode.
func sameDir(a, b string) bool {
	fa, erra := os.Stat(a)
	fb, errb := os.Stat(b)
	return erra == nil && errb == nil && os.SameFile(fa, fb)
}
