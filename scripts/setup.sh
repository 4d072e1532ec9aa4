#!/usr/bin/env bash
# Create .venv with wxgated installed (editable). Usage: scripts/setup.sh [extras]
# Installs Debian's python3-venv first when this Python can't make a venv (fresh Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
# the tests export spans to a local OTLP receiver, so they need the optional tracing extra
if [ "$EXTRAS" = test ]; then EXTRAS="test,tracing"; fi
PY="${PYTHON:-python3}"

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing $*: run as root or: sudo apt-get install -y $*" >&2
    exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then  # once per run (scripts/test.sh exports it)
    apt-get update -qq
    export APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "wxgated needs Python >= 3.11 (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
# The hot modules compile with Cython (setup.py) when a C compiler and this Python's
# headers are here: install them on Debian unless the interpreted build is asked for.
compiler_missing() {
  command -v cc >/dev/null 2>&1 || { echo "gcc libc6-dev"; return; }
  [ -e "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ] \
    || echo "python3-dev"
}
if [ -z "${WXGATED_NO_EXTENSIONS:-}" ] && [ -n "$(compiler_missing)" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt_install $(compiler_missing)
    if [ -n "$(compiler_missing)" ]; then apt_install $(compiler_missing); fi  # then the headers
  else
    echo "setup: no C compiler or Python headers ($(compiler_missing)): the hot modules" \
         "will run interpreted" >&2
  fi
fi
# pip's own notices and the build backend's warnings are shown only when the install fails
TARGET="."
if [ -n "$EXTRAS" ]; then TARGET=".[$EXTRAS]"; fi
if ! out=$(.venv/bin/python -m pip install -q --disable-pip-version-check -e "$TARGET" 2>&1); then
  printf '%s\n' "$out" >&2
  echo "setup: pip install -e '$TARGET' failed (its output is above)" >&2
  exit 1
fi
echo "setup: wxgated build: $(.venv/bin/python -c 'import wxgated.build as b; print(b.describe())')"
