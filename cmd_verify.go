package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/pgfbb/pgfbb-wrap/backup"
	"github.com/pgfbb/pgfbb-wrap/staged"
	"github.com/urfave/cli/v2"
)

func verifyCommand(command []string) *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check that a staged backup is complete and intact",
		ArgsUsage: "STAGED_DIR",
		Description: "Checks manifest.json (status, size and SHA-256 of every file), backup_label against the manifest,\n" +
			"and every WAL segment from the start to the stop LSN: present, full size, and every page header\n" +
			"(magic of the server version, timeline, page address, system identifier). Then decodes the records\n" +
			"with pg_waldump of the server's major when one is installed.\n\n" +
			"Reads nothing outside STAGED_DIR, follows no link and opens only regular files of the sizes the manifest allows.\n\n" +
			"Exit 0 when the backup is usable, 1 when it is not (each problem is listed), 2 on usage errors,\n" +
			"130/143 when interrupted.",
		Flags: []cli.Flag{jsonFlag, quietFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 || len(command) > 0 {
				return fail(c, backup.UsageError(fmt.Errorf("verify takes one STAGED_DIR and no command")))
			}
			v, err := staged.Verify(c.Context, c.Args().First())
			if err != nil {
				// Interrupted: what was checked so far proves nothing.
				return fail(c, err)
			}
			if c.Bool("json") {
				writeVerification(c.App.Writer, c.Args().First(), v)
			}
			human := c.App.Writer
			if c.Bool("json") {
				human = c.App.ErrWriter
			}
			for _, n := range v.Notes {
				fmt.Fprintf(human, "note: %s\n", n)
			}
			for _, p := range v.Problems {
				fmt.Fprintf(human, "PROBLEM: %s\n", p)
			}
			if len(v.Problems) > 0 {
				return report(c.App.ErrWriter, fmt.Errorf("%s: %d problem(s): not usable", c.Args().First(), len(v.Problems)))
			}
			fmt.Fprintf(human, "%s: ok: backup %s, %d WAL segments %s..%s verified\n", c.Args().First(),
				v.Manifest.Label, v.Segments, v.Manifest.StartWAL, v.Manifest.StopWAL)
			return nil
		},
	}
}

// writeVerification prints verify --json: {"format_version": 1, "path",
// "ok", "label", "segments", "problems", "notes"}.
func writeVerification(w io.Writer, path string, v *staged.Verification) {
	out := map[string]any{"format_version": 1, "path": path, "ok": len(v.Problems) == 0, "segments": v.Segments,
		"problems": append([]string{}, v.Problems...), "notes": append([]string{}, v.Notes...)}
	if v.Manifest != nil {
		out["label"] = v.Manifest.Label
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}
