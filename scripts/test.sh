#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite (ruff + mypy + pytest).
# Installs from Debian what is missing: redis-server (the tests start their own) and
# promtool (package `prometheus`; the tests check deploy/prometheus/alerts.yml with it).
set -euo pipefail
cd "$(dirname "$0")/.."

# need COMMAND PACKAGE: install Debian's PACKAGE when COMMAND is not on PATH
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$1 is missing: sudo apt-get install -y $2" >&2
    exit 1
  fi
  if [ ! -f /tmp/.wxgated-apt-updated ]; then
    apt-get update -qq && touch /tmp/.wxgated-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need redis-server redis-server
need promtool prometheus
bash scripts/setup.sh test
.venv/bin/ruff check wxgated tests bench
.venv/bin/python -m mypy wxgated
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
