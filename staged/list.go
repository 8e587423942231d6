package staged

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// States of a backup in a staging directory.
const (
	StateComplete = "complete" // published, with its manifest
	StateRunning  = "running"  // a live run, or a held backup, is assembling it
	StatePartial  = "partial"  // left by a run that died; the next run or prune removes it
	StateDamaged  = "damaged"  // published, but its manifest cannot be read
)

// Entry is one backup in a staging directory.
type Entry struct {
	Label    string
	State    string
	Path     string
	Time     time.Time // when it started; for a partial one, when it was last changed
	Size     int64     // bytes of staged files
	Manifest *Manifest // for a complete backup
	Problem  string    // why a damaged one is
}

// List reads the backups in the staging directory root, newest first.
// Every entry is read as untrusted, as Open reads it.
func List(root string) ([]Entry, error) {
	dirents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	var out []Entry
	for _, d := range dirents {
		name := d.Name()
		if !d.IsDir() {
			continue
		}
		e := Entry{Path: filepath.Join(root, name)}
		if label, ok := partialLabel(name); ok {
			e.Label, e.State = label, StatePartial
			if lock, err := lockDir(e.Path, unix.LOCK_SH|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
				e.State = StateRunning
			} else if err == nil {
				lock.Close()
			}
			if fi, err := d.Info(); err == nil {
				e.Time = fi.ModTime()
			}
			out = append(out, e)
			continue
		}
		if ValidateLabel(name) != nil {
			continue // not a backup: a label cannot be named so
		}
		e.Label = name
		b, err := Open(e.Path)
		if err != nil {
			e.State, e.Problem = StateDamaged, err.Error()
			if fi, err := d.Info(); err == nil {
				e.Time = fi.ModTime()
			}
			out = append(out, e)
			continue
		}
		m := b.Manifest
		b.Close()
		e.State, e.Manifest, e.Time = StateComplete, m, m.StartedAt
		switch {
		case m.Status != StatusComplete:
			e.State, e.Problem = StateDamaged, fmt.Sprintf("manifest: status %q", m.Status)
		case m.Label != name:
			e.State, e.Problem = StateDamaged, fmt.Sprintf("manifest: label %q in directory %s", m.Label, name)
		case m.StartedAt.IsZero() || m.StoppedAt.Before(m.StartedAt):
			e.State, e.Problem = StateDamaged, "manifest: no plausible started_at and stopped_at"
		}
		for _, f := range m.Files {
			e.Size += f.Size
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b Entry) int { return b.Time.Compare(a.Time) })
	return out, nil
}

// partialLabel is the label of a partial backup's directory name,
// ".LABEL.partial-RANDOM".
func partialLabel(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, ".")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(rest, partialInfix)
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}

// WALFiles counts the backup's staged WAL files and their bytes.
func (m *Manifest) WALFiles() (files int, bytes int64) {
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, WALDir+"/") {
			files++
			bytes += f.Size
		}
	}
	return files, bytes
}
