#!/usr/bin/env bash
# Set up wxgated and start it in the foreground on the shipped routes.yaml.
# Public listener :8080, admin listener 127.0.0.1:9090. Extra args go to `wxgated run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/wxgated run -c "${WXGATED_CONFIG:-routes.yaml}" "$@"
