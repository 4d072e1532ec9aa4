#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite (ruff + mypy + pytest).
# Installs redis-server and dnsmasq from Debian when missing (the tests start their own).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "redis-server is missing: sudo apt-get install -y redis-server" >&2
    exit 1
  fi
  if [ ! -f /tmp/.wxgated-apt-updated ]; then
    apt-get update -qq && touch /tmp/.wxgated-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
# dnsmasq-base: the dnsmasq binary without the package's system service, which would
# try to hold port 53 (the discovery tests start their own dnsmasq on a free port)
if ! command -v dnsmasq >/dev/null 2>&1 && [ ! -x /usr/sbin/dnsmasq ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "dnsmasq is missing: sudo apt-get install -y dnsmasq-base" >&2
    exit 1
  fi
  if [ ! -f /tmp/.wxgated-apt-updated ]; then
    apt-get update -qq && touch /tmp/.wxgated-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base >/dev/null
fi
bash scripts/setup.sh test
.venv/bin/ruff check wxgated tests bench
.venv/bin/python -m mypy wxgated
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
