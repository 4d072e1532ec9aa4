#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite (ruff + mypy + pytest).
# Installs redis-server from Debian when it is missing (the tests start their own).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "redis-server is missing: sudo apt-get install -y redis-server" >&2
    exit 1
  fi
  apt-get update -qq && touch /tmp/.wxgated-apt-updated
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
bash scripts/setup.sh test
.venv/bin/ruff check wxgated tests bench
.venv/bin/python -m mypy wxgated
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
