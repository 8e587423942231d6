package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgfbb/pgfbb-wrap/beneath"
)

// fileID is a directory's identity whatever path reaches it: a bind
// mount, a symbolic link or another spelling of a live cluster's data
// directory all have its device and inode.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) fileID {
	st := fi.Sys().(*syscall.Stat_t)
	return fileID{dev: st.Dev, ino: st.Ino}
}

func statID(path string) (fileID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, false
	}
	return idOf(fi), true
}

// runningServer is a postmaster running on this host.
type runningServer struct {
	pid int
	dir string // its data directory, as its process sees it
}

// runningServers lists the server processes on this host that this process
// may inspect (root sees all): a process named postgres or postmaster (in a
// container too, whose pids postmaster.pid does not know), or one whose
// working directory holds a postmaster.pid naming it. A server process's
// working directory is its data directory. A snapshot's stale
// postmaster.pid names a pid that is either gone or works elsewhere.
func runningServers() []runningServer {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var out []runningServer
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(p, "comm"))
		name := strings.TrimSpace(string(comm))
		if name != "postgres" && name != "postmaster" && pidFileOwner(filepath.Join(p, "cwd")) != pid {
			continue
		}
		dir, err := os.Readlink(filepath.Join(p, "cwd"))
		if err == nil {
			out = append(out, runningServer{pid: pid, dir: dir})
		}
	}
	return out
}

// pidFileOwner returns the pid on the first line of dir/postmaster.pid, 0
// when there is none. The file is read as untrusted: never through a link,
// never a FIFO, and only its first bytes.
func pidFileOwner(dir string) int {
	d, err := beneath.Open(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	f, _, err := d.OpenRegular("postmaster.pid")
	if err != nil {
		return 0
	}
	defer f.Close()
	buf := make([]byte, 32)
	n, _ := f.Read(buf)
	first, _, _ := strings.Cut(string(buf[:n]), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// usedBy maps the identity of every directory a running server writes to
// (its data directory, its pg_wal and its tablespaces, links followed) to
// a description of that server.
func usedBy() map[fileID]string {
	used := map[fileID]string{}
	for _, s := range runningServers() {
		cwd := filepath.Join("/proc", strconv.Itoa(s.pid), "cwd")
		who := fmt.Sprintf("the server is running on %q (pid %d)", s.dir, s.pid)
		links, _ := filepath.Glob(filepath.Join(cwd, "pg_tblspc", "*"))
		for _, p := range append([]string{cwd, filepath.Join(cwd, "pg_wal")}, links...) {
			if id, ok := statID(p); ok {
				used[id] = who
			}
		}
	}
	return used
}
