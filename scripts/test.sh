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
for script in scripts/*.sh examples/*.sh; do
	bash -n "$script"
done
go vet ./...
go test -race -count=1 -timeout 40m ./...
