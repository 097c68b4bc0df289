#!/usr/bin/env bash
# Prepares this machine for `make run` or `make test`: a virtual environment with the pinned
# dependencies, and PostgreSQL and RabbitMQ reachable (started if installed but stopped; installed
# from Debian's packages when absent and we are root on Debian; otherwise we say what is missing).
# Usage: scripts/setup.sh run|test
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
is_root_debian() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_updated=
apt_install() {
  is_root_debian || die "missing: $* (install them from your distribution's packages, or run as root on Debian)"
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  say "installing $* from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Python and the virtual environment ---------------------------------------------------------------
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || die "Python 3.11 or newer is needed"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python" -m venv .venv || { apt_install python3-venv; "$python" -m venv .venv; }
fi
stamp=.venv/.sanad-installed
wanted=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  say "installing pinned dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
  # Quiet unless it fails: setuptools warns at length about editable installs.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . >/dev/null 2>&1 \
    || .venv/bin/pip install --disable-pip-version-check --no-deps -e .
  echo "$wanted" > "$stamp"
fi

# PostgreSQL -----------------------------------------------------------------------------------------
if ! port_open 127.0.0.1 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "PostgreSQL would not start"
  for _ in $(seq 1 30); do port_open 127.0.0.1 5432 && break; sleep 1; done
  port_open 127.0.0.1 5432 || die "PostgreSQL is not listening on 127.0.0.1:5432"
fi

# RabbitMQ -------------------------------------------------------------------------------------------
if ! port_open 127.0.0.1 5672; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  say "starting RabbitMQ"
  rabbitmq-server -detached || true
  # `rabbitmqctl await_startup` fails this early; poll instead (about 5 s here).
  for _ in $(seq 1 60); do rabbitmq-diagnostics -q check_running >/dev/null 2>&1 && break; sleep 1; done
  port_open 127.0.0.1 5672 || die "RabbitMQ is not listening on 127.0.0.1:5672"
fi
# The management API lets the tests make a virtual host of their own, and ops look at queues with it.
if ! port_open 127.0.0.1 15672; then
  command -v rabbitmq-plugins >/dev/null || die "RabbitMQ's management plugin is needed on 127.0.0.1:15672"
  say "enabling RabbitMQ's management plugin"
  rabbitmq-plugins enable rabbitmq_management >/dev/null
  for _ in $(seq 1 30); do port_open 127.0.0.1 15672 && break; sleep 1; done
fi

# Tools the tests need -------------------------------------------------------------------------------
if [ "$mode" = test ]; then
  command -v docker-compose >/dev/null || apt_install docker-compose
  # The browser tests drive Debian's Chromium with Playwright (no browser download); Noto gives it Arabic.
  { command -v chromium >/dev/null && [ -d /usr/share/fonts/truetype/noto ]; } \
    || apt_install chromium fonts-noto-core
  # promtool checks and unit-tests the alert rules; the prometheus binary runs in one integration test
  # on a loopback port of its own. The package would also start a server on :9090 at install time, so
  # it installs with service starts refused (policy-rc.d), and its boot-time service is disabled.
  if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    made_policy=
    if is_root_debian && [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt_install prometheus || { [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    update-rc.d prometheus disable >/dev/null 2>&1 || true
    if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
  fi
  # The integration tests run up to six service processes at once, each pooling up to max_workers + 4
  # connections, next to the tests' own; PostgreSQL's default of 100 connections is not enough. On a
  # local cluster we can manage, raise the limit (it takes a restart); elsewhere, say what is needed.
  wanted_connections=300
  have_connections=$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW max_connections' 2>/dev/null || echo 0)
  if [ "$have_connections" -lt "$wanted_connections" ]; then
    if is_root_debian && ls /etc/postgresql/*/main >/dev/null 2>&1; then
      say "raising PostgreSQL's max_connections from $have_connections to $wanted_connections (restarts it)"
      psql -h 127.0.0.1 -U postgres -qc "ALTER SYSTEM SET max_connections = $wanted_connections"
      version=$(ls /etc/postgresql | sort -V | tail -1)
      pg_ctlcluster --skip-systemctl-redirect "$version" main restart
      for _ in $(seq 1 30); do port_open 127.0.0.1 5432 && break; sleep 1; done
    else
      say "warning: PostgreSQL allows $have_connections connections; the integration tests want $wanted_connections"
    fi
  fi
fi
say "ready"
