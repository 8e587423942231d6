#!/usr/bin/env bash
# The benchmark: makes its own cluster on a btrfs loop device, measures
# pgfbb-wrap against the physical floor (CHECKPOINT + snapshot), the same
# backup by hand in psql, and pg_basebackup, at 1, 2 and 4 GB, plus the
# backup-mode window, a backup under pgbench load and the Go benchmarks;
# prints a table and writes docs/BENCHMARKS.md and docs/bench.png. Run it
# as root on Debian (sudo scripts/bench.sh); it installs what it needs. It
# takes about 15 minutes and 20 GB of disk under /tmp.
# PGFBB_BENCH_SIZES=1 PGFBB_BENCH_RUNS=3 give a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if [ "$(id -u)" != 0 ]; then
	echo "scripts/bench.sh must run as root: it mounts a btrfs loop device and runs PostgreSQL as the postgres user" >&2
	exit 1
fi
if ! command -v gnuplot >/dev/null; then
	echo "installing gnuplot-nox" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null
fi
mkdir -p docs
PGFBB_BENCH_OUT=$PWD/docs go test -tags bench -run '^TestBenchReport$' -count=1 -timeout 90m -v ./internal/bench |
	grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok '
echo "wrote docs/BENCHMARKS.md and docs/bench.png" >&2
