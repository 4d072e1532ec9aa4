#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite (ruff + mypy + pytest), compiled
# and, for the compiled modules' packages, interpreted.
# Installs from Debian what is missing: redis-server and dnsmasq (the tests start their
# own), promtool (package `prometheus`; the tests check deploy/prometheus/alerts.yml) and
# chromium + chromium-driver (tests/status/test_status_browser.py loads the status page).
set -euo pipefail
cd "$(dirname "$0")/.."

# need COMMAND PACKAGE: install Debian's PACKAGE when COMMAND is not on PATH
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$1 is missing: sudo apt-get install -y $2" >&2
    exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then  # once per run, before the first install
    apt-get update -qq
    export APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

# Debian ships promtool only in `prometheus`, whose postinst would start and enable a
# Prometheus server on :9090, the admin port wxgated uses by default. Install it with
# services held back (policy-rc.d) and leave the server disabled: we only want the tool.
need_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  local held=""
  if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    held=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # also when the install fails
  fi
  need promtool prometheus
  if [ -n "$held" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if command -v systemctl >/dev/null 2>&1; then systemctl disable prometheus >/dev/null 2>&1 || true; fi
}
# dnsmasq-base: the dnsmasq binary without the package's system service, which would
# try to hold port 53 (the discovery tests start their own dnsmasq on a free port)
need_dnsmasq() {
  [ -x /usr/sbin/dnsmasq ] && return 0
  need dnsmasq dnsmasq-base
}
need redis-server redis-server
need chromium chromium          # the status page tests drive a headless Chromium
need chromedriver chromium-driver
need_dnsmasq
need_promtool
bash scripts/setup.sh test
if [ -z "${WXGATED_NO_EXTENSIONS:-}" ] \
    && [ "$(.venv/bin/python -c 'import wxgated.build as b; print(b.describe())')" != compiled ]; then
  echo "test: the hot modules did not compile (setup.py's warnings: pip install -v -e .)" >&2
  exit 1
fi
.venv/bin/ruff check wxgated tests bench setup.py
.venv/bin/python -m mypy wxgated
if [ $# -gt 0 ]; then exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"; fi
# the whole suite on the build that runs by default (compiled), then the tests of the
# compiled modules' own packages on the same sources interpreted
.venv/bin/python -m pytest -q -p no:cacheprovider
echo "test: again, interpreted (WXGATED_NO_EXTENSIONS=1): the compiled modules' packages"
WXGATED_NO_EXTENSIONS=1 exec .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/http tests/gateway tests/terminals tests/builds
