package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// Stand-ins replace, on PATH, the tools of volume managers these machines
// lack (LVM's device mapper, ZFS, a cloud's CLI): each records its call in
// calls, fails when STANDIN_FAIL names it ("zfs") or it with its first
// argument ("zfs:send"), runs STANDIN_AFTER_CREATE after it made a
// snapshot, and keeps what it made in state, so that a control-flow test can prove what an example script
// calls, in which order, and that it leaves nothing behind. They prove the
// scripts' logic, never the volume managers'.

// standinScripts are the stand-ins' bodies, after the common head; $S is
// the state directory.
var standinScripts = map[string]string{
	"lvcreate": `while [ $# -gt 0 ]; do [ "$1" = --name ] && n=$2; origin=$1; shift; done
echo "${origin#*/}" > "$S/lv-$n"
if [ -n "$STANDIN_AFTER_CREATE" ]; then sh -c "$STANDIN_AFTER_CREATE" >/dev/null; fi`,
	"lvremove": `for a; do v=$a; done; [ -e "$S/lv-${v#*/}" ] || { echo "lvremove: $v not found" >&2; exit 5; }; rm "$S/lv-${v#*/}"`,
	"lvs": `case $1 in --noheadings) for f in "$S"/lv-*; do if [ -e "$f" ]; then echo "  ${f##*/lv-} $(cat "$f")"; fi; done; exit 0 ;; esac
for a; do v=$a; done; [ -e "$S/lv-${v#*/}" ]`,
	"blkid":      `echo "${STANDIN_FSTYPE:-ext4}"`,
	"mount":      `touch "$S/mounted"`,
	"umount":     `rm "$S/mounted"`,
	"mountpoint": `[ -e "$S/mounted" ]`,
	"tar":        `exec /usr/bin/tar "$@"`,
	"zfs": `case $1 in
snapshot) for a; do v=$a; done; touch "$S/zfs-$(echo "$v" | tr / _)"
	if [ -n "$STANDIN_AFTER_CREATE" ]; then sh -c "$STANDIN_AFTER_CREATE" >/dev/null; fi ;;
destroy) for a; do v=$a; done; f="$S/zfs-$(echo "$v" | tr / _)"; [ -e "$f" ] || { echo "zfs: $v: no such snapshot" >&2; exit 1; }; rm "$f" ;;
list) case " $* " in
	*" snapshot "*) for f in "$S"/zfs-*; do if [ -e "$f" ]; then echo "${f##*/zfs-}" | tr _ /; fi; done ;;
	*" name "*) printf '%s\n' ${STANDIN_ZFS_DATASETS:-tank/pgdata} ;;
	*) printf '%s\n' $STANDIN_ZFS_MOUNTS ;;
	esac ;;
send) echo "a zfs stream of $*" ;;
esac`,
	"aws": `label() { for a; do case $a in *Value=*) v=${a##*Value=}; echo "${v%%\}*}";; *Values=*) echo "${a##*Values=}";; esac; done; }
case "$1 $2" in
"ec2 create-snapshot") l=$(label "$@"); touch "$S/aws-$l"; echo "snap-$l"
	if [ -n "$STANDIN_AFTER_CREATE" ]; then sh -c "$STANDIN_AFTER_CREATE" >/dev/null; fi
	if [ -n "$STANDIN_FAIL_AFTER_CREATE" ]; then echo "aws: timed out, after it made the snapshot" >&2; exit 255; fi ;;
"ec2 describe-snapshots") l=$(label "$@"); if [ -e "$S/aws-$l" ]; then echo "snap-$l"; fi ;;
"ec2 delete-snapshot") for a; do v=$a; done; rm "$S/aws-${v#snap-}" ;;
"s3 cp") for a; do src=$dst; dst=$a; done; case $dst in s3://*) d="$S/../s3/${dst#s3://}"; mkdir -p "$d"; cp -r "$src/." "$d" ;; esac ;;
esac`,
}

// standins puts stand-ins for names first on path (the postgres user
// may run them) and returns the
// environment that goes with them and the directory of their calls log
// and state.
func standins(t *testing.T, path string, names ...string) (env []string, dir string) {
	t.Helper()
	dir = pgtest.TempDir(t) // the postgres user may run them too
	bin, state := filepath.Join(dir, "bin"), filepath.Join(dir, "state")
	for _, d := range []string{bin, state} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.Chown(t, state)
	for _, name := range names {
		script := "#!/bin/sh\nS=" + state + "\nprintf '%s\\n' \"" + name + " $*\" >> " + filepath.Join(dir, "calls") + "\n" +
			"case \" $STANDIN_FAIL \" in *\" " + name + " \"*|*\" " + name + ":$1 \"*) echo \"" + name + ": failing, as told\" >&2; exit 1;; esac\n" +
			standinScripts[name] + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"PATH=" + bin + ":" + path}, dir
}

// s3 is where the aws stand-in's "s3 cp" puts what it uploads, by key.
func s3(dir string) string { return filepath.Join(dir, "s3") }

// calls are the stand-ins' calls so far, one line each.
func calls(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.FieldsFunc(string(data), func(r rune) bool { return r == '\n' })
}

// leftovers is what the stand-ins made and nobody removed.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
