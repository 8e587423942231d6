package hook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
)

// Spec is everything a holder needs. pre sends it over a pipe rather than
// the command line, where a conninfo with a password would show in ps.
type Spec struct {
	Backup      backup.Options `json:"backup"`
	RunDir      string         `json:"run_dir"`
	HoldTimeout time.Duration  `json:"hold_timeout"`
	Monitor     Monitor        `json:"monitor"`
}

// Monitor is where pre was told to report: post and abort report there
// too, unless told otherwise.
type Monitor struct {
	MetricsFile string `json:"metrics_file,omitempty"`
	Name        string `json:"name,omitempty"`
	PingURL     string `json:"ping_url,omitempty"`
}

// Control operations, sent as one JSON line over the socket.
const (
	OpPost  = "post"
	OpAbort = "abort"
)

// The holder checks its session this often, so that a backup the server
// already ended is reported within seconds, not at post.
const (
	pingEvery   = 5 * time.Second
	pingTimeout = time.Minute // a cancelled ping would end the session itself
	lockWait    = 2 * time.Second
)

// message is what a holder tells pre: the backup started, or the outcome of
// a run that never got that far.
type message struct {
	Started *State  `json:"started,omitempty"`
	Result  *Result `json:"result,omitempty"`
}

type request struct {
	Op   string `json:"op"`
	conn net.Conn
}

type holder struct {
	spec   Spec
	dir    runDir
	log    *slog.Logger
	logf   *os.File
	status io.WriteCloser // to pre, until the backup started or failed
	owner  bool           // the label's lock is ours: its files may be written

	// What the control socket may do: nothing until the backup started;
	// then the first post or abort claims the outcome (it also ends the
	// hold if the hold is still on); once the outcome is being delivered,
	// connections are closed unanswered and post looks for it elsewhere.
	mu      sync.Mutex
	started bool
	claimed bool
	done    bool
	ctrl    chan *request // the claiming request
	req     *request
	told    int // how many of the run's notes pre printed
}

// Hold is the holder process. It reads its Spec from spec, reports to pre
// on status, logs to logf, runs the backup until post, abort, --hold-timeout,
// a signal or the loss of its session, and hands the outcome to whoever is
// waiting. It returns the outcome's exit code.
func Hold(ctx context.Context, spec io.Reader, status io.WriteCloser, logf *os.File) int {
	// The holder has its own session and no terminal; a stray hangup from
	// the orchestrator that ran pre must not end the backup either.
	signal.Ignore(syscall.SIGHUP)
	// Everything the holder creates is private to its user, the control
	// socket from the moment it exists.
	syscall.Umask(0o077)
	h := &holder{status: status, logf: logf, ctrl: make(chan *request, 1),
		log: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	if err := json.NewDecoder(spec).Decode(&h.spec); err != nil {
		res := failure("", backup.ExitUsage, fmt.Errorf("read holder spec: %w", err))
		h.log.Error("hold is started by pre, not by hand", "err", err)
		h.deliver(res)
		return res.ExitCode
	}
	h.dir = runDir(h.spec.RunDir)
	return h.run(ctx).ExitCode
}

func failure(label string, code int, err error) *Result {
	return &Result{Label: label, ExitCode: code, Report: "pgfbb-wrap: error: " + err.Error() + "\n"}
}

func (h *holder) run(ctx context.Context) *Result {
	label := h.spec.Backup.Label
	lock, err := h.dir.lock(label, lockWait)
	if err != nil {
		if errors.Is(err, errBusy) {
			err = fmt.Errorf("a backup labelled %s is already held (see pgfbb-wrap status)", label)
		}
		res := failure(label, backup.ExitUsage, err)
		h.deliver(res)
		return res
	}
	h.owner = true
	// pre opened the log for appending before the label was ours.
	if err := h.logf.Truncate(0); err != nil {
		h.log.Warn("could not clear the log of an earlier holder of the label", "err", err)
	}
	notes := h.discardStale(label)
	sock := h.dir.path(label, "sock")
	os.Remove(sock)
	var ln *net.UnixListener
	err = h.dir.socketAddr(label, func(addr string) error {
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		return err
	})
	if err == nil {
		// The address named a descriptor that is closed by now; release
		// removes the socket.
		ln.SetUnlinkOnClose(false)
		err = os.Chmod(sock, 0o600)
	}
	if err != nil {
		res := failure(label, backup.ExitUsage, fmt.Errorf("control socket: %w", err))
		h.finish(lock, res)
		return res
	}
	go h.serve(ln)

	opts := h.spec.Backup
	opts.Log = h.log
	opts.Hold = func(ctx context.Context, b *backup.Running) error { return h.hold(ctx, b, notes) }
	rep, err := backup.Run(ctx, opts)
	ln.Close()
	var out bytes.Buffer
	backup.Print(&out, rep, err, false)
	if err == nil && rep.Aborted == "" {
		// A published backup prints no report, but what went wrong
		// since pre returned must reach post: the log goes away.
		for _, n := range rep.Notes[min(h.told, len(rep.Notes)):] {
			fmt.Fprintf(&out, "pgfbb-wrap: warning: %s\n", n)
		}
	}
	var js bytes.Buffer
	backup.WriteJSON(&js, rep, err)
	res := &Result{Label: label, ExitCode: backup.ExitCode(err), Report: out.String(), Path: rep.Path, JSON: js.Bytes()}
	if rep.Path != "" {
		res.Summary = rep.Summary()
	}
	h.finish(lock, res)
	return res
}

// finish hands the outcome over and releases the label. The log outlives
// the holder only with an outcome nobody has seen yet.
func (h *holder) finish(lock *os.File, res *Result) {
	if h.spec.Monitor != (Monitor{}) {
		res.Monitor = &h.spec.Monitor
	}
	h.log.Info("finished", "exit_code", res.ExitCode, "report", res.Report)
	if h.deliver(res) {
		h.dir.release(lock, res.Label)
	} else {
		h.dir.release(lock, res.Label, "result", "log")
	}
}

// discardStale removes what earlier holders of the label left: an outcome
// no post collected, or the state of a holder that died.
// Holding the lock proves none of them is alive.
func (h *holder) discardStale(label string) []string {
	var notes []string
	res, rerr := readJSON[Result](h.dir.path(label, "result"))
	st, serr := readJSON[State](h.dir.path(label, "state"))
	if err := errors.Join(rerr, serr); err != nil {
		notes = append(notes, fmt.Sprintf("discarded unreadable records of an earlier backup labelled %s: %v", label, err))
	}
	if res != nil {
		notes = append(notes, fmt.Sprintf("discarded the uncollected outcome (exit %d) of an earlier backup labelled %s", res.ExitCode, label))
	}
	if st != nil {
		// Its partial backup goes with the staging sweep of the run
		// this holder starts.
		notes = append(notes, fmt.Sprintf("cleaned up after an earlier holder of %s (pid %d) that died", label, st.PID))
	}
	for _, n := range notes {
		h.log.Warn(n)
	}
	os.Remove(h.dir.path(label, "result"))
	os.Remove(h.dir.path(label, "state"))
	return notes
}

// hold is the HoldFunc: it publishes the state, lets pre return, and waits.
func (h *holder) hold(ctx context.Context, b *backup.Running, notes []string) error {
	st := &State{Label: h.spec.Backup.Label, PID: os.Getpid(), Vars: b.Vars, StartedAt: time.Now().UTC(),
		HoldTimeout: h.spec.HoldTimeout, Partial: b.Partial, Log: h.dir.path(h.spec.Backup.Label, "log"), Notes: append(notes, b.Notes...)}
	h.told = len(b.Notes)
	if err := writeJSON(h.dir.path(st.Label, "state"), st); err != nil {
		return err
	}
	h.mu.Lock()
	h.started = true
	h.mu.Unlock()
	if !h.send(message{Started: st}) {
		return errors.New("pre went away before it learned that the backup started")
	}
	h.log.Info("backup held", "label", st.Label, "start_lsn", b.Vars[backup.EnvStartLSN], "hold_timeout", h.spec.HoldTimeout)
	timeout := time.NewTimer(h.spec.HoldTimeout)
	defer timeout.Stop()
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case req := <-h.ctrl:
			h.req = req
			h.log.Info("request", "op", req.Op)
			if req.Op == OpAbort {
				return fmt.Errorf("%w by pgfbb-wrap abort", backup.ErrAborted)
			}
			return nil
		case <-timeout.C:
			return fmt.Errorf("no post or abort within --hold-timeout %s: the backup was stopped and nothing published", h.spec.HoldTimeout)
		case <-ping.C:
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
			err := b.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// send tells pre something, once: pre stops listening after one message.
func (h *holder) send(m message) bool {
	if h.status == nil {
		return false
	}
	err := json.NewEncoder(h.status).Encode(m)
	h.status.Close()
	h.status = nil
	return err == nil
}

// deliver hands the outcome to pre if it is still waiting, else to the post
// or abort that ended the hold, else leaves it in the run directory for the
// next post. It reports whether someone received it.
func (h *holder) deliver(res *Result) bool {
	if h.send(message{Result: res}) {
		return true
	}
	h.mu.Lock()
	h.done = true
	h.mu.Unlock()
	if h.req == nil {
		select {
		case h.req = <-h.ctrl:
		default:
		}
	}
	if h.req != nil {
		err := json.NewEncoder(h.req.conn).Encode(res)
		h.req.conn.Close()
		if err == nil {
			return true
		}
		h.log.Warn("the post or abort that asked went away", "err", err)
	}
	if !h.owner {
		return false
	}
	if err := writeJSON(h.dir.path(res.Label, "result"), res); err != nil {
		h.log.Error("keep the outcome for post", "err", err)
	}
	return false
}

// serve answers the control socket.
func (h *holder) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go h.handle(conn)
	}
}

func (h *holder) handle(conn net.Conn) {
	if err := peerTrusted(conn); err != nil {
		h.log.Warn("refused a control connection", "err", err)
		conn.Close()
		return
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	req := &request{conn: conn}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, req)
	}
	if err == nil && req.Op != OpPost && req.Op != OpAbort {
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		h.refuse(conn, err)
		return
	}
	conn.SetReadDeadline(time.Time{})
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.done:
		conn.Close()
	case !h.started:
		h.refuse(conn, fmt.Errorf("backup %s is still starting: wait for pre to return", h.spec.Backup.Label))
	case h.claimed:
		h.refuse(conn, fmt.Errorf("backup %s is already being finished by another post or abort", h.spec.Backup.Label))
	default:
		h.claimed = true
		h.ctrl <- req
	}
}

func (h *holder) refuse(conn net.Conn, err error) {
	json.NewEncoder(conn).Encode(failure(h.spec.Backup.Label, backup.ExitUsage, err))
	conn.Close()
}
