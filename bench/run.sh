#!/usr/bin/env bash
# One command for the wxgated benchmark: bash bench/run.sh [--quick] [run.py options]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$here/../.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
exec "$py" "$here/run.py" "$@"
