package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/urfave/cli/v2"
)

// listFormatVersion versions the JSON list: fields are added, never
// renamed or removed, without a new version.
const listFormatVersion = 1

// listedBackup is one backup in list --json.
type listedBackup struct {
	Label            string        `json:"label"`
	State            string        `json:"state"`
	Path             string        `json:"path"`
	StartedAt        *time.Time    `json:"started_at,omitempty"`
	StoppedAt        *time.Time    `json:"stopped_at,omitempty"`
	StartLSN         *pgformat.LSN `json:"start_lsn,omitempty"`
	StopLSN          *pgformat.LSN `json:"stop_lsn,omitempty"`
	Timeline         uint32        `json:"timeline,omitempty"`
	WALFiles         int           `json:"wal_files"`
	WALBytes         int64         `json:"wal_bytes"`
	WALMode          string        `json:"wal_mode,omitempty"`
	ArchiveConfirmed *bool         `json:"archive_confirmed,omitempty"`
	SizeBytes        int64         `json:"size_bytes"`
	AgeSeconds       float64       `json:"age_seconds"`
	Problem          string        `json:"problem,omitempty"`
}

func listCommand(command []string) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the backups in a staging directory, newest first",
		Description: "States: complete (published), running (a run or a held backup is assembling it), partial (left by\n" +
			"a run that died; the next run or prune removes it), damaged (its manifest cannot be read).\n" +
			"--json prints one object: {\"format_version\": 1, \"staging\": DIR, \"backups\": [...]}.",
		Flags: []cli.Flag{stagingFlag, jsonFlag, quietFlag},
		Action: func(c *cli.Context) error {
			if c.String("staging") == "" || c.NArg() > 0 || len(command) > 0 {
				return fail(c, backup.UsageError(errors.New("list takes --staging DIR and no arguments")))
			}
			entries, err := staged.List(c.String("staging"))
			if err != nil {
				return fail(c, backup.UsageError(err))
			}
			now := time.Now()
			out := []listedBackup{}
			for _, e := range entries {
				out = append(out, listed(e, now))
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"format_version": listFormatVersion, "staging": c.String("staging"), "backups": out})
			}
			printList(c.App.Writer, out)
			return nil
		},
	}
}

func listed(e staged.Entry, now time.Time) listedBackup {
	l := listedBackup{Label: e.Label, State: e.State, Path: e.Path, SizeBytes: e.Size, Problem: e.Problem,
		AgeSeconds: now.Sub(e.Time).Round(time.Second).Seconds()}
	if m := e.Manifest; m != nil {
		l.StartedAt, l.StoppedAt, l.StartLSN, l.StopLSN = &m.StartedAt, &m.StoppedAt, &m.StartLSN, &m.StopLSN
		l.Timeline, l.WALMode = m.Timeline, string(m.WALMode)
		l.WALFiles, l.WALBytes = m.WALFiles()
		if m.Archive != nil {
			l.ArchiveConfirmed = &m.Archive.Confirmed
		}
	}
	return l
}

func printList(w io.Writer, backups []listedBackup) {
	if len(backups) == 0 {
		fmt.Fprintln(w, "no backups")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tSTATE\tSTARTED\tSTART LSN\tSTOP LSN\tTLI\tWAL\tMODE\tARCHIVED\tSIZE\tAGE")
	for _, b := range backups {
		started, lsns, tli, wal, mode, archived := "-", "-\t-", "-", "-", "-", "-"
		if b.StartedAt != nil {
			started, lsns, tli = b.StartedAt.UTC().Format(time.RFC3339), b.StartLSN.String()+"\t"+b.StopLSN.String(), fmt.Sprint(b.Timeline)
			wal, mode = fmt.Sprintf("%d files, %d MiB", b.WALFiles, b.WALBytes>>20), b.WALMode
		}
		if b.ArchiveConfirmed != nil {
			archived = fmt.Sprint(*b.ArchiveConfirmed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d MiB\t%s\n", b.Label, b.State, started, lsns, tli, wal, mode, archived,
			b.SizeBytes>>20, time.Duration(b.AgeSeconds)*time.Second)
	}
	tw.Flush()
	// Below the table: a line of other cells would end its columns.
	for _, b := range backups {
		if b.Problem != "" {
			fmt.Fprintf(w, "%s: %s\n", b.Label, b.Problem)
		}
	}
}
