package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/beneath"
	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// configFlag names the YAML file that holds flags of any command.
var configFlag = &cli.StringFlag{Name: "config", EnvVars: []string{"PGFBB_CONFIG"},
	Usage: "read flags from the YAML `FILE` (keys are flag names); the command line, then PGFBB_* variables, win over it"}

// envName is the environment variable a flag reads: PGFBB_ and its name.
func envName(flag string) string {
	return "PGFBB_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// withEnv gives every flag without one its PGFBB_ environment variable.
func withEnv(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		name := f.Names()[0]
		switch f := f.(type) {
		case *cli.StringFlag:
			f.EnvVars = orEnv(f.EnvVars, name)
		case *cli.BoolFlag:
			f.EnvVars = orEnv(f.EnvVars, name)
		case *cli.DurationFlag:
			f.EnvVars = orEnv(f.EnvVars, name)
		case *cli.IntFlag:
			f.EnvVars = orEnv(f.EnvVars, name)
		case *cli.StringSliceFlag:
			f.EnvVars = orEnv(f.EnvVars, name)
		}
	}
	return flags
}

func orEnv(env []string, flag string) []string {
	if len(env) > 0 || flag == "help" || flag == "version" {
		return env
	}
	return []string{envName(flag)}
}

// applyConfig sets, from the --config file, every one of a command's flags
// that neither the command line nor the environment set. A key that is no
// flag of any command, and a value a flag refuses, are usage errors.
func applyConfig(app *cli.App, flags []cli.Flag, root bool) cli.BeforeFunc {
	return func(c *cli.Context) error {
		err := inherit(c, flags)
		if err == nil {
			err = configure(c, app, flags)
		}
		if err != nil {
			return fail(c, err)
		}
		// The hints come once, from the command that runs, and -q
		// (from the command line, environment or file) silences them.
		if sub := c.Args().First(); root && sub != "" && app.Command(sub) != nil {
			return nil
		}
		if !c.Bool("quiet") {
			warnOldVariables(c.App.ErrWriter)
		}
		return nil
	}
}

// inherit gives a subcommand's flags that its command line did not set
// the values given before the subcommand's name (pgfbb-wrap --config F
// --staging D list), the config file's path among them.
func inherit(c *cli.Context, flags []cli.Flag) error {
	parents := c.Lineage()[1:]
	for _, f := range flags {
		name := f.Names()[0]
		if c.IsSet(name) {
			continue
		}
		for _, p := range parents {
			if p.Command == nil || !slices.Contains(p.FlagNames(), name) || !p.IsSet(name) {
				continue
			}
			values := []string{fmt.Sprint(p.Value(name))}
			if _, repeatable := f.(*cli.StringSliceFlag); repeatable {
				values = p.StringSlice(name)
			}
			for _, v := range values {
				if err := c.Set(name, v); err != nil {
					return backup.UsageError(fmt.Errorf("--%s %q: %w", name, v, err))
				}
			}
			break
		}
	}
	return nil
}

// configure applies the --config file to flags: see applyConfig.
func configure(c *cli.Context, app *cli.App, flags []cli.Flag) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	settings, err := readConfig(path)
	if err != nil {
		return backup.UsageError(err)
	}
	known := allFlagNames(app)
	for _, key := range sortedKeys(settings) {
		if !slices.Contains(known, key) {
			return backup.UsageError(fmt.Errorf("%s: unknown key %q: keys are flag names (pgfbb-wrap --help)", path, key))
		}
	}
	for _, f := range flags {
		name := f.Names()[0]
		v, ok := settings[name]
		if !ok || c.IsSet(name) {
			continue
		}
		if _, repeatable := f.(*cli.StringSliceFlag); !repeatable && len(v) != 1 {
			return backup.UsageError(fmt.Errorf("%s: %s takes one value, not a list", path, name))
		}
		for _, v := range v {
			if err := c.Set(name, v); err != nil {
				return backup.UsageError(fmt.Errorf("%s: %s: %q is not a value it takes (%w)", path, name, v, err))
			}
		}
	}
	return nil
}

// readConfig reads a YAML mapping of flag names to values, each value as
// written (007 stays 007, 2024-01-02 a string), a list for repeatable
// flags. The file sets commands to run, so it must be as private as the
// staging directory: owned by this user or root, writable by no one else,
// in directories no one else can change.
func readConfig(path string) (map[string][]string, error) {
	if err := beneath.CheckAncestors(path); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	dir, err := beneath.Open(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer dir.Close()
	f, fi, err := dir.OpenRegular(filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	st := fi.Sys().(*syscall.Stat_t)
	if (int(st.Uid) != os.Geteuid() && st.Uid != 0) || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("config %s: owned by uid %d with mode %04o: it must belong to you or root and be writable by no one else (chmod go-w)",
			path, st.Uid, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var doc, more yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: want one YAML document, not several", path)
	}
	settings := map[string][]string{}
	if len(doc.Content) == 0 {
		return settings, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s: want a mapping of flag names to values", path)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i].Value, root.Content[i+1]
		var values []string
		switch {
		case value.Kind == yaml.ScalarNode && value.Tag != "!!null":
			values = []string{value.Value}
		case value.Kind == yaml.SequenceNode:
			for _, item := range value.Content {
				if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
					return nil, fmt.Errorf("config %s: %s: want a list of values", path, key)
				}
				values = append(values, item.Value)
			}
		default:
			return nil, fmt.Errorf("config %s: %s: want a value or a list of values", path, key)
		}
		if _, twice := settings[key]; twice {
			return nil, fmt.Errorf("config %s: %s is set twice", path, key)
		}
		settings[key] = values
	}
	return settings, nil
}

func allFlagNames(app *cli.App) []string {
	var names []string
	add := func(flags []cli.Flag) {
		for _, f := range flags {
			// A file cannot name itself, nor ask for help or the version.
			if name := f.Names()[0]; name != "config" && name != "help" && name != "version" {
				names = append(names, name)
			}
		}
	}
	add(app.Flags)
	for _, c := range app.Commands {
		add(c.Flags)
	}
	return names
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// oldVariables are the shell tool's settings, and what replaces each.
var oldVariables = map[string]string{
	"PG_FBB_TIMEOUT":   "--start-timeout (PGFBB_START_TIMEOUT); the hold is bounded by --hold-timeout",
	"PG_FBB_POLL_TIME": "nothing: pre and post are told, they do not poll",
	"PG_FBB_WAL_LIST":  "nothing: the list is always STAGING/LABEL/wal_list (pgfbb-wrap path … wal-list)",
}

// warnOldVariables says, one line each, what replaces the old shell tool's
// variables, so that a migrating user is not silently ignored.
func warnOldVariables(w io.Writer) {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "PG_FBB_") {
			continue
		}
		instead, ok := oldVariables[name]
		if !ok {
			instead = "nothing: pgfbb-wrap does not read it"
		}
		fmt.Fprintf(w, "pgfbb-wrap: warning: %s is the old shell tool's setting; here it is %s\n", name, instead)
	}
}
