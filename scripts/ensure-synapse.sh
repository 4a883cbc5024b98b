#!/usr/bin/env bash
# Synapse (the Matrix homeserver the Matrix end-to-end variant runs against), installed from
# wheels into tests/clients/synapse/.venv so nothing is built and nothing lands globally.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=tests/clients/synapse/.venv
if [ -x "$venv/bin/synapse_homeserver" ] && "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --only-binary=:all: matrix-synapse
