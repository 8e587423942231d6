package backup

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

// JSONFormatVersion versions the JSON report: fields are added, never
// renamed or removed, without a new version.
const JSONFormatVersion = 1

// jsonReport is the report as --json prints it.
type jsonReport struct {
	FormatVersion     int                  `json:"format_version"`
	Label             string               `json:"label"`
	Path              string               `json:"path,omitempty"`
	ExitCode          int                  `json:"exit_code"`
	Reached           Phase                `json:"phase_reached"`
	SystemIdentifier  string               `json:"system_identifier,omitempty"`
	Timeline          uint32               `json:"timeline,omitempty"`
	StartLSN          *pgformat.LSN        `json:"start_lsn,omitempty"`
	StopLSN           *pgformat.LSN        `json:"stop_lsn,omitempty"`
	StartedAt         *time.Time           `json:"started_at,omitempty"`
	StoppedAt         *time.Time           `json:"stopped_at,omitempty"`
	ElapsedSeconds    float64              `json:"elapsed_seconds"`
	BackupModeSeconds float64              `json:"backup_mode_seconds"`
	Command           *staged.Command      `json:"command,omitempty"`
	WALMode           staged.WALMode       `json:"wal_mode"`
	WALSource         string               `json:"wal_source,omitempty"`
	WALFiles          int                  `json:"wal_files"`
	WALBytes          int64                `json:"wal_bytes"`
	StagedBytes       int64                `json:"staged_bytes"`
	Archive           *staged.ArchiveCheck `json:"archive,omitempty"`
	Aborted           string               `json:"aborted,omitempty"`
	Checks            []string             `json:"checks,omitempty"`
	Phases            []jsonPhase          `json:"phases"`
	Warnings          []string             `json:"warnings"`
	Errors            []jsonError          `json:"errors"`
}

type jsonPhase struct {
	Phase   Phase   `json:"phase"`
	Seconds float64 `json:"seconds"`
}

type jsonError struct {
	Phase   Phase  `json:"phase,omitempty"`
	Message string `json:"message"`
}

// WriteJSON writes the report of a run that ended with err as one JSON
// object (see README, JSON report).
func WriteJSON(w io.Writer, r *Report, err error) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(newJSONReport(r, err))
}

// Log writes what Print writes, as one log record whose "report" is the
// JSON report: for --log-format json, where stderr holds records only.
func Log(l *slog.Logger, r *Report, err error, verbose bool) {
	switch {
	case err == nil && r != nil && r.Aborted != "":
		l.Warn("backup aborted", "report", newJSONReport(r, err))
	case err == nil && r != nil && verbose:
		l.Info("backup complete", "report", newJSONReport(r, err))
	case err == nil:
	default:
		l.Error("backup failed", "report", newJSONReport(r, err))
	}
}

func newJSONReport(r *Report, err error) jsonReport {
	j := jsonReport{FormatVersion: JSONFormatVersion, ExitCode: ExitCode(err), Warnings: []string{}, Errors: []jsonError{}, Phases: []jsonPhase{}}
	if r != nil {
		for _, p := range r.Phases {
			j.Phases = append(j.Phases, jsonPhase{Phase: p.Phase, Seconds: p.Duration.Seconds()})
		}
		j.Label, j.Path, j.Reached, j.Timeline = r.Label, r.Path, r.Reached, r.Timeline
		j.ElapsedSeconds, j.BackupModeSeconds = r.Elapsed.Seconds(), r.BackupMode().Seconds()
		j.Command, j.WALMode, j.WALSource, j.Archive, j.Aborted = r.Command, r.WALMode, r.WALSource, r.Archive, r.Aborted
		j.WALFiles, j.WALBytes, j.StagedBytes, j.Checks = r.WALFiles, r.WALBytes, r.StagedBytes, r.Checks
		j.Warnings = append(j.Warnings, r.Notes...)
		if r.SystemID != 0 {
			j.SystemIdentifier = strconv.FormatUint(r.SystemID, 10)
		}
		if r.StartLSN != 0 {
			j.StartLSN, j.StartedAt = &r.StartLSN, &r.StartedAt
		}
		if r.StopLSN != 0 {
			j.StopLSN, j.StoppedAt = &r.StopLSN, &r.StoppedAt
		}
	}
	if err != nil {
		for _, e := range Errors(err) {
			je := jsonError{Message: e.Error()}
			var pe *PhaseError
			if errors.As(e, &pe) {
				je.Phase, je.Message = pe.Phase, pe.Err.Error()
			}
			j.Errors = append(j.Errors, je)
		}
	}
	return j
}
