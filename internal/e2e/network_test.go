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

// testNet is a network namespace joined to this host by a veth pair: the
// tool runs inside it and reaches the server at hostAddr, and down cuts the
// link without a word to either end, as a dead switch would.
type testNet struct {
	ns, hostDev string
}

const (
	hostAddr = "169.254.213.1"
	nsAddr   = "169.254.213.2"
)

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	id := strconv.Itoa(os.Getpid() % 100000)
	n := &testNet{ns: "pgfbb-" + id, hostDev: "pgfbbh" + id}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s (the network tests need root and iproute2)", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", n.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.ns).Run() })
	nsDev := "pgfbbn" + id
	ip("link", "add", n.hostDev, "type", "veth", "peer", "name", nsDev)
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.hostDev).Run() })
	ip("link", "set", nsDev, "netns", n.ns)
	ip("addr", "add", hostAddr+"/30", "dev", n.hostDev)
	ip("link", "set", n.hostDev, "up")
	ip("-n", n.ns, "addr", "add", nsAddr+"/30", "dev", nsDev)
	ip("-n", n.ns, "link", "set", nsDev, "up")
	ip("-n", n.ns, "link", "set", "lo", "up")
	return n
}

// link sets the host's end of the link up or down.
func (n *testNet) link(t *testing.T, state string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "set", n.hostDev, state).CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s %s: %v: %s", n.hostDev, state, err, out)
	}
}

// tool is the tool run inside the namespace.
func (n *testNet) tool(env []string, args ...string) (*exec.Cmd, *strings.Builder) {
	cmd, _ := tool(env, args...)
	ip, _ := exec.LookPath("ip")
	cmd.Path, cmd.Args = ip, append([]string{"ip", "netns", "exec", n.ns, toolBin}, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// TestNetworkSilence cuts the network between the tool and the server while
// a backup is running, during the snapshot and during a hold: the run must
// end within --network-timeout and a little, report the lost session with
// exit 1 and publish nothing.
func TestNetworkSilence(t *testing.T) {
	n := newTestNet(t)
	in := pgtest.DefaultInstall(t)
	// The server notices the dead link too, so that its backend (and the
	// backup in it) goes away within seconds.
	c := pgtest.New(t, in, pgtest.Options{Conf: []string{"listen_addresses = '" + hostAddr + "'",
		"tcp_keepalives_idle = 3", "tcp_keepalives_interval = 1", "tcp_keepalives_count = 3", "tcp_user_timeout = 6000"}})
	hba, err := os.OpenFile(filepath.Join(c.PGData, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(hba, "host all all %s/32 trust\n", nsAddr)
	hba.Close()
	db := c.DB(t)
	pgtest.Exec(t, db, "SELECT pg_reload_conf()")
	env := []string{"PGHOST=" + hostAddr, "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=postgres", "PGDATABASE=postgres", "PGSSLMODE=disable"}
	const bound = 10 * time.Second

	cut := func(t *testing.T) time.Time {
		t.Helper()
		backendRunning(t, db)
		n.link(t, "down")
		t.Cleanup(func() { n.link(t, "up") })
		return time.Now()
	}
	t.Run("during the snapshot", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "staging")
		started := filepath.Join(t.TempDir(), "started")
		cmd, stderr := n.tool(env, "--staging", st, "--label", "cut", "--fast", "--network-timeout", bound.String(),
			"--", "sh", "-c", "echo $$ > "+started+"; exec sleep 600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, started) // the backup has started
		at := cut(t)
		cmd.Wait()
		took := time.Since(at)
		r := result{code: cmd.ProcessState.ExitCode(), stderr: stderr.String()}
		r.want(t, 1, "database session lost", "FAILED, nothing was published")
		if took > bound+20*time.Second {
			t.Errorf("the run ended %s after the network went silent, want about --network-timeout %s", took, bound)
		}
		assertNothingPublished(t, st)
		waitClean(t, db)
	})
	t.Run("during a hold", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "staging")
		cmd, stderr := n.tool(env, "pre", "--staging", st, "--label", "held", "--fast", "--network-timeout", bound.String())
		if err := cmd.Run(); err != nil {
			t.Fatalf("pre: %v\n%s", err, stderr)
		}
		at := cut(t)
		for !strings.Contains(runTool(t, nil, "status", "--staging", st).stdout, "ended") {
			if time.Since(at) > bound+20*time.Second {
				t.Fatal("the holder did not notice the silent network")
			}
			time.Sleep(time.Second)
		}
		runTool(t, nil, "post", "--staging", st, "--label", "held").want(t, 1, "database session lost")
		if left, _ := filepath.Glob(filepath.Join(st, "*held*")); len(left) > 0 {
			t.Errorf("a lost hold left %q", left)
		}
		waitClean(t, db)
	})
}
