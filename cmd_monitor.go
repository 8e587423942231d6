package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/hook"
	"github.com/pgfbb/pgfbb-wrap/monitor"
	"github.com/urfave/cli/v2"
)

// monitorFlags are the wrapper's flags for monitoring.
func monitorFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "metrics-file", EnvVars: []string{"PGFBB_METRICS_FILE"}, Usage: "after every run, replace `PATH` " +
			"(a .prom file in node_exporter's textfile directory) with the run's metrics"},
		&cli.StringFlag{Name: "name", EnvVars: []string{"PGFBB_NAME"}, Usage: "the cluster's `NAME` in the metrics (default: its system identifier)"},
		&cli.StringFlag{Name: "ping-url", EnvVars: []string{"PGFBB_PING_URL"}, Usage: "Healthchecks-style `URL`: pinged at URL/start, " +
			"then URL on success or URL/fail with the report; a failed ping is only a warning", Action: checkPingURL},
	}
}

// checkPingURL refuses, at once and not as a warning each night, a ping
// URL that could never be pinged. It names no part of it: a URL may hold
// credentials.
func checkPingURL(c *cli.Context, v string) error {
	if u, err := neturl.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail(c, backup.UsageError(errors.New("--ping-url: want an http:// or https:// URL")))
	}
	return nil
}

// monitoring reports one wrapped run to what the flags name.
type monitoring struct {
	metrics, name, ping string
	began               time.Time
	warn                io.Writer
}

func newMonitoring(c *cli.Context) *monitoring {
	return &monitoring{metrics: c.String("metrics-file"), name: c.String("name"), ping: c.String("ping-url"),
		began: time.Now(), warn: c.App.ErrWriter}
}

// inherit takes the settings pre was given for what post or abort was
// not: the outcome goes where the start went.
func (m *monitoring) inherit(pre *hook.Monitor) *monitoring {
	if pre == nil {
		return m
	}
	for _, f := range []struct {
		mine *string
		pre  string
	}{{&m.metrics, pre.MetricsFile}, {&m.name, pre.Name}, {&m.ping, pre.PingURL}} {
		if *f.mine == "" {
			*f.mine = f.pre
		}
	}
	return m
}

func (m *monitoring) warning(err error) {
	if err != nil {
		fmt.Fprintf(m.warn, "pgfbb-wrap: warning: %v\n", err)
	}
}

func (m *monitoring) start(ctx context.Context) {
	if m.ping != "" {
		m.warning(monitor.Ping(ctx, m.ping, "/start", ""))
	}
}

// finish reports a wrapped run: see report.
func (m *monitoring) finish(ctx context.Context, rep *backup.Report, err error) {
	var text strings.Builder
	backup.Print(&text, rep, err, false)
	o := monitor.Outcome{Cluster: m.name, ExitCode: backup.ExitCode(err), Aborted: rep.Aborted != "", Duration: time.Since(m.began),
		BackupMode: rep.BackupMode(), WALFiles: rep.WALFiles, WALBytes: rep.WALBytes}
	if o.Cluster == "" && rep.SystemID != 0 {
		o.Cluster = strconv.FormatUint(rep.SystemID, 10)
	}
	if rep.Command != nil {
		o.Snapshot = time.Duration(rep.Command.DurationSec * float64(time.Second))
	}
	m.report(ctx, o, text.String())
}

// finishHeld reports a held backup from the outcome post or abort got:
// the JSON report the holder made.
func (m *monitoring) finishHeld(ctx context.Context, res *hook.Result) {
	var j struct {
		SystemIdentifier  string  `json:"system_identifier"`
		ElapsedSeconds    float64 `json:"elapsed_seconds"`
		BackupModeSeconds float64 `json:"backup_mode_seconds"`
		WALFiles          int     `json:"wal_files"`
		WALBytes          int64   `json:"wal_bytes"`
		Aborted           string  `json:"aborted"`
	}
	json.Unmarshal(res.JSON, &j)
	o := monitor.Outcome{Cluster: m.name, ExitCode: res.ExitCode, Aborted: j.Aborted != "", Duration: time.Duration(j.ElapsedSeconds * float64(time.Second)),
		BackupMode: time.Duration(j.BackupModeSeconds * float64(time.Second)), WALFiles: j.WALFiles, WALBytes: j.WALBytes}
	if o.Cluster == "" {
		o.Cluster = j.SystemIdentifier
	}
	m.report(ctx, o, res.Report)
}

// report pings success or failure (with the report as the body) and writes
// the metrics file. A signal has cancelled ctx by then, and must not
// silence the failure ping.
func (m *monitoring) report(ctx context.Context, o monitor.Outcome, text string) {
	ctx = context.WithoutCancel(ctx)
	if m.ping != "" {
		if o.Succeeded() {
			m.warning(monitor.Ping(ctx, m.ping, "", ""))
		} else {
			m.warning(monitor.Ping(ctx, m.ping, "/fail", text))
		}
	}
	if m.metrics == "" {
		return
	}
	o.At = time.Now()
	m.warning(monitor.WriteTextfile(m.metrics, o))
}
