package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/pgfbb/pgfbb-wrap/backup"
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
func applyConfig(app *cli.App, flags []cli.Flag) cli.BeforeFunc {
	return func(c *cli.Context) error {
		if err := configure(c, app, flags); err != nil {
			return report(c.App.ErrWriter, err)
		}
		return nil
	}
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
		values := []any{v}
		if list, isList := v.([]any); isList {
			values = list
		}
		for _, v := range values {
			if err := c.Set(name, fmt.Sprint(v)); err != nil {
				return backup.UsageError(fmt.Errorf("%s: %s: %q is not a value it takes (%w)", path, name, fmt.Sprint(v), err))
			}
		}
	}
	return nil
}

// readConfig reads a YAML mapping of flag names to values.
func readConfig(path string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var settings map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&settings); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	for key, v := range settings {
		switch v.(type) {
		case map[string]any:
			return nil, fmt.Errorf("config %s: %s: want a value or a list, not a mapping", path, key)
		}
	}
	return settings, nil
}

func allFlagNames(app *cli.App) []string {
	var names []string
	add := func(flags []cli.Flag) {
		for _, f := range flags {
			names = append(names, f.Names()[0])
		}
	}
	add(app.Flags)
	for _, c := range app.Commands {
		add(c.Flags)
	}
	return names
}

func sortedKeys(m map[string]any) []string {
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
