#!/usr/bin/env bash
# Installs the third-party Rocket.Chat clients used by crates/rocketchat-sim/tests/clients.rs
# (PyPI rocketchat_API and rocketchat-async) into tests/clients/.venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../../scripts/client-deps.sh" "$here"
