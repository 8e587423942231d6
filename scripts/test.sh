#!/usr/bin/env bash
# The test command: formatting, vet, and every test with the race detector,
# against real PostgreSQL clusters and real btrfs snapshots on loop devices.
# Run it as root on Debian (sudo scripts/test.sh); it installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if [ "$(id -u)" != 0 ]; then
	echo "scripts/test.sh must run as root: the tests mount btrfs loop devices and run PostgreSQL as the postgres user" >&2
	exit 1
fi

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt -l lists unformatted files:" >&2
	echo "$unformatted" >&2
	exit 1
fi
for script in scripts/*.sh examples/*.sh examples/*/*.sh; do
	bash -n "$script"
done
go vet ./...
go vet -tags bench ./internal/bench # scripts/bench.sh's harness: kept compiling

# Every fuzz target a few seconds, from its checked-in corpus
# (PGFBB_FUZZTIME=0 skips this; the corpus still runs as unit tests).
fuzztime=${PGFBB_FUZZTIME:-3s}
if [ "$fuzztime" != 0 ]; then
	# A crasher is written to testdata/fuzz and fails every run after; a
	# fuzzing engine starved on a busy machine ("hung or terminated
	# unexpectedly") writes none, and gets one more try.
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	grep -H '^func Fuzz' --include='*_test.go' -r . | sed -E 's|^\./(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*).*|\1 \2|' |
		while read -r dir target; do
			for try in 1 2; do
				if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir" >"$log" 2>&1; then
					echo "fuzzed $target in $dir ($fuzztime)"
					break
				fi
				tail -n 30 "$log" >&2
				if [ "$try" = 2 ] || [ -n "$(git status --porcelain -- "$dir/testdata/fuzz" 2>/dev/null)" ]; then
					echo "fuzzing $target failed: go test -run '^\$' -fuzz '^${target}\$' ./$dir" >&2
					exit 1
				fi
				echo "fuzzing $target failed without a crasher; trying once more" >&2
			done
		done
fi

# The version matrix: every supported major (fetched once into a cache
# outside the repository), plus 1 MB and 64 MB WAL segments. Narrow it with
# e.g. PGFBB_TEST_PG=10,15,18; unset in the environment of a plain go test,
# the tests use the system's PostgreSQL alone.
export PGFBB_TEST_PG=${PGFBB_TEST_PG:-all}
export PGFBB_TEST_REPORT=${PGFBB_TEST_REPORT:-$(mktemp)}
status=0
go test -race -count=1 -timeout 40m ./... || status=$?
if [ -s "$PGFBB_TEST_REPORT" ]; then
	echo
	echo "end-to-end restore matrix (PGFBB_TEST_PG=$PGFBB_TEST_PG):"
	cat "$PGFBB_TEST_REPORT"
fi
exit "$status"
