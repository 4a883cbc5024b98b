#!/usr/bin/env bash
# Installs the official SignalR clients used by the hub and end-to-end tests (Node
# @microsoft/signalr, Python signalrcore and pysignalr) into tests/clients/hub/node_modules
# and tests/clients/hub/.venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../../../scripts/client-deps.sh" "$here"
