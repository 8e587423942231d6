// Package monitor tells monitoring how a run went: a Prometheus text file
// for node_exporter's textfile collector, replaced atomically after every
// run, and Healthchecks-style pings. Neither can fail a backup: their
// errors are for a warning.
package monitor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Outcome is what a run reports to monitoring.
type Outcome struct {
	// Cluster is --name, or the cluster's system identifier; empty when
	// the run never reached the server: the file's series is then kept.
	Cluster  string
	At       time.Time
	ExitCode int
	// Aborted: the backup was stopped on request and nothing published
	// (abort exits 0). No success for monitoring: a snapshot that fails
	// every night, followed by an abort, must not look healthy.
	Aborted    bool
	Duration   time.Duration // the whole run
	BackupMode time.Duration // the server's time in backup mode
	Snapshot   time.Duration // the snapshot command's
	WALFiles   int
	WALBytes   int64
}

// Succeeded tells whether the run published a backup.
func (o Outcome) Succeeded() bool { return o.ExitCode == 0 && !o.Aborted }

const lastSuccess = "pgfbb_last_success_timestamp_seconds"

// WriteTextfile replaces path with the metrics of o. A failed run keeps
// the last success time the file held for the same cluster: one series per
// cluster, never one per label. The file is one cluster's: when it held
// another cluster's series, they are replaced all the same, and the error
// says so, for a warning.
func WriteTextfile(path string, o Outcome) error {
	var b bytes.Buffer
	label := `{cluster="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(o.Cluster) + `"}`
	if o.Cluster == "" {
		// A run that could not connect does not know its cluster: it
		// reports under the series the file has, or as "unknown".
		label = `{cluster="unknown"}`
		if _, other := readLastSuccess(path, label); other != "" {
			label = other
		}
	}
	prev, other := readLastSuccess(path, label)
	success := float64(0)
	if o.Succeeded() {
		success = float64(o.At.UnixNano()) / 1e9
	} else if prev <= float64(o.At.UnixNano())/1e9 {
		// A value from the future (a clock set wrong, a hand-edited
		// file) would hide every failure from a staleness alert.
		success = prev
	}
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s%s %s\n", name, help, name, name, label, strconv.FormatFloat(v, 'f', -1, 64))
	}
	gauge("pgfbb_last_run_timestamp_seconds", "When the last pgfbb-wrap run ended.", float64(o.At.UnixNano())/1e9)
	gauge(lastSuccess, "When the last successful pgfbb-wrap run ended (0: none yet).", success)
	gauge("pgfbb_last_exit_code", "The exit code of the last run (0: success).", float64(o.ExitCode))
	gauge("pgfbb_last_duration_seconds", "How long the last run took.", o.Duration.Seconds())
	gauge("pgfbb_last_backup_mode_seconds", "How long the server was in backup mode in the last run.", o.BackupMode.Seconds())
	gauge("pgfbb_last_snapshot_seconds", "How long the snapshot command of the last run took.", o.Snapshot.Seconds())
	gauge("pgfbb_last_wal_files", "WAL files the last run staged.", float64(o.WALFiles))
	gauge("pgfbb_last_wal_bytes", "WAL bytes the last run staged.", float64(o.WALBytes))
	if err := replace(path, b.Bytes()); err != nil {
		return err
	}
	if other != "" {
		return fmt.Errorf("metrics file %s held the metrics of cluster%s and now holds those of cluster%s alone: give each cluster (--name) its own file",
			path, other, label)
	}
	return nil
}

// maxTextfile bounds what is read of an existing metrics file; this
// package writes about 2 KiB.
const maxTextfile = 64 << 10

// readLastSuccess reads the last success time the file at path holds for
// the series label (0 when none, or when it is not a finite, positive
// number), and the label of another cluster's series it holds, if any.
func readLastSuccess(path, label string) (success float64, other string) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return 0, ""
	}
	sc := bufio.NewScanner(io.LimitReader(f, maxTextfile))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), "{")
		if !ok || name != lastSuccess {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		if i < 0 {
			continue
		}
		if l := "{" + rest[:i]; l != label {
			other = l
			continue
		}
		if v, err := strconv.ParseFloat(rest[i+1:], 64); err == nil && v > 0 && !math.IsInf(v, 0) {
			success = v
		}
	}
	return success, other
}

// replace writes data to a new file beside path and renames it over path,
// so that the collector never reads half a file.
func replace(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("metrics file: %w", err)
	}
	return nil
}

// pingTimeout bounds a ping: monitoring must never hold up a backup.
const pingTimeout = 10 * time.Second

// Ping signals a Healthchecks-style check: suffix "" for success, "/start"
// or "/fail"; body is sent along (the report, on failure).
func Ping(ctx context.Context, url, suffix, body string) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	u, err := neturl.Parse(url)
	if err != nil {
		return errors.New("ping: the URL does not parse") // the error would quote it, credentials and all
	}
	// The suffix belongs to the path: a query (?rid=…) stays last.
	u.Path = strings.TrimSuffix(u.Path, "/") + suffix
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("ping %s: %w", u.Redacted(), err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %s", u.Redacted(), strings.ReplaceAll(err.Error(), u.String(), u.Redacted()))
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ping %s: %s", u.Redacted(), resp.Status)
	}
	return nil
}
