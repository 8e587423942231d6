// Package staged is a staged backup as a thing on disk: the layout of a
// backup directory and its manifest, the rules for labels, assembling a
// backup under a temporary name and publishing it (Prepare, Publish,
// Discard, and the sweep of what dead runs left), verifying a published
// one, and reading it back for restore, verify, list and prune. It knows
// nothing of database sessions or of where WAL comes from.
package staged

import (
	"fmt"
	"regexp"
)

// Names inside a staged backup directory.
const (
	LabelFile    = "backup_label"
	MapFile      = "tablespace_map"
	WALDir       = "wal"
	WALListFile  = "wal_list"
	ManifestFile = "manifest.json"
)

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// ValidateLabel checks that label can name a staged backup directory and a
// backup: no path separators, no leading dot, nothing a shell or a
// backup_label line could misread.
func ValidateLabel(label string) error {
	if !labelRE.MatchString(label) {
		return fmt.Errorf("invalid label %q: want 1 to 100 of [A-Za-z0-9._-], starting with a letter or digit", label)
	}
	return nil
}
