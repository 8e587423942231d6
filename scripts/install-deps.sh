#!/usr/bin/env bash
# Installs what the tests and the demo need when it is missing: PostgreSQL
# (server, client, pgbench, pg_amcheck), btrfs-progs, util-linux (runuser),
# npm and a German locale.
# Needs root for apt-get; does nothing when everything is there.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
ls /usr/lib/postgresql/*/bin/pg_amcheck >/dev/null 2>&1 || need+=(postgresql-client)
command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs)
command -v runuser >/dev/null || need+=(util-linux)
command -v npm >/dev/null || need+=(npm) # fetches the other PostgreSQL majors for the test matrix
command -v locale-gen >/dev/null || need+=(locales) # a translated server for the locale tests
command -v ip >/dev/null || need+=(iproute2)          # network namespaces for the network tests
[ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)       # a transaction-pooling proxy for the check tests
command -v restic >/dev/null || need+=(restic)        # the restic example ships to a local repository
command -v borg >/dev/null || need+=(borgbackup)      # the borg example too
command -v systemd-analyze >/dev/null || need+=(systemd) # the example units are verified
command -v zsh >/dev/null || need+=(zsh)              # the zsh completion script is run by a test

if ((${#need[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages: ${need[*]}: run as root, or install them yourself" >&2
		exit 1
	fi
	# The tests make their own clusters: no need for Debian's default one.
	if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
		mkdir -p /etc/postgresql-common
		echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
	fi
	echo "installing ${need[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold "${need[@]}" >/dev/null
fi

# The locale tests run a server whose messages are German.
if ! locale -a 2>/dev/null | grep -qix 'de_DE\.utf8'; then
	if [ "$(id -u)" != 0 ]; then
		echo "locale de_DE.UTF-8 missing: run as root, or generate it yourself (locale-gen)" >&2
		exit 1
	fi
	grep -qx 'de_DE.UTF-8 UTF-8' /etc/locale.gen 2>/dev/null || echo 'de_DE.UTF-8 UTF-8' >>/etc/locale.gen
	locale-gen >/dev/null
fi

command -v go >/dev/null || { echo "go not found: install Go 1.26 or later (https://go.dev/doc/install)" >&2; exit 1; }
