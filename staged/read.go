package staged

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgfbb/pgfbb-wrap/pgformat"
)

// ReadManifest reads the manifest of the backup in dir.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return ParseManifest(data)
}

// ReadTablespaceMap reads the backup's tablespace_map; ok is false when the
// backup has none (the cluster had no user tablespaces).
func ReadTablespaceMap(dir string) (ts []pgformat.Tablespace, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, MapFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	ts, err = pgformat.ParseTablespaceMap(data)
	return ts, err == nil, err
}

// WALList reads the names of the backup's staged WAL files, oldest first.
func WALList(dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, WALListFile))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", WALListFile, err)
	}
	return strings.Fields(string(data)), nil
}

// HasTablespaceMap tells whether the backup in dir staged a tablespace_map.
func HasTablespaceMap(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, MapFile))
	return err == nil
}
