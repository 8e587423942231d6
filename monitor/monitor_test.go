package monitor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parse reads a text file as node_exporter would: every sample, by name
// with its labels; a line it cannot read fails the test.
func parse(t *testing.T, data string) map[string]string {
	t.Helper()
	samples := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || !strings.Contains(line[:i], "{cluster=") {
			t.Fatalf("not a sample line: %q", line)
		}
		samples[line[:i]] = line[i+1:]
	}
	return samples
}

func TestTextfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pgfbb.prom")
	at := time.Unix(1764300000, 0)
	ok := Outcome{Cluster: `main "db"`, At: at, Duration: 2 * time.Second, BackupMode: 200 * time.Millisecond, WALFiles: 3, WALBytes: 48 << 20}
	if err := WriteTextfile(path, ok); err != nil {
		t.Fatal(err)
	}
	aborted := ok
	aborted.At, aborted.Aborted = at.Add(30*time.Minute), true
	failed := ok
	failed.At, failed.ExitCode = at.Add(time.Hour), 4
	for _, o := range []Outcome{aborted, failed} {
		if err := WriteTextfile(path, o); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	s := parse(t, string(data))
	l := `{cluster="main \"db\""}`
	for name, want := range map[string]string{
		"pgfbb_last_run_timestamp_seconds": "1764303600", lastSuccess: "1764300000", "pgfbb_last_exit_code": "4",
		"pgfbb_last_wal_files": "3", "pgfbb_last_wal_bytes": "50331648", "pgfbb_last_backup_mode_seconds": "0.2",
	} {
		if s[name+l] != want {
			t.Errorf("%s = %q, want %q\n%s", name, s[name+l], want, data)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestTextfileCarriedSuccess: a failed run carries over only a sane last
// success time of its own cluster, and says when the file was another's.
func TestTextfileCarriedSuccess(t *testing.T) {
	at := time.Unix(1764300000, 0)
	line := func(cluster, v string) string {
		return lastSuccess + `{cluster="` + cluster + `"} ` + v + "\n"
	}
	for _, tc := range []struct {
		name, file, want, warn string
		unknown                bool // the run never learnt its cluster
	}{
		{"its own", line("main", "1764200000"), "1764200000", "", false},
		{"from the future", line("main", "1864200000"), "0", "", false},
		{"not a number", line("main", "NaN"), "0", "", false},
		{"infinite", line("main", "+Inf"), "0", "", false},
		{"negative", line("main", "-5"), "0", "", false},
		{"another cluster's", line("other", "1764200000"), "0", `cluster{cluster="other"}`, false},
		{"garbage", "\x00{{{ \n" + lastSuccess + "{\n", "0", "", false},
		{"a run that never connected", line("main", "1764200000"), "1764200000", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pgfbb.prom")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			o := Outcome{Cluster: "main", At: at, ExitCode: 1}
			if tc.unknown {
				o.Cluster = ""
			}
			err := WriteTextfile(path, o)
			if tc.warn == "" && err != nil || tc.warn != "" && (err == nil || !strings.Contains(err.Error(), tc.warn)) {
				t.Errorf("error %v, want one naming %q", err, tc.warn)
			}
			data, _ := os.ReadFile(path)
			if got := parse(t, string(data))[lastSuccess+`{cluster="main"}`]; got != tc.want {
				t.Errorf("last success %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPingURL(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = append(got, r.URL.String()) }))
	defer srv.Close()
	if err := Ping(context.Background(), srv.URL+"/ping/abc?rid=1", "/start", ""); err != nil {
		t.Fatal(err)
	}
	if err := Ping(context.Background(), "http://u:s3cret@127.0.0.1:1/x", "", ""); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a failed ping: %v", err)
	}
	if len(got) != 1 || got[0] != "/ping/abc/start?rid=1" {
		t.Errorf("requests %q", got)
	}
}
