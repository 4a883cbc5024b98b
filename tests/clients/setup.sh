#!/usr/bin/env bash
# Installs the third-party Rocket.Chat clients used by crates/rocketchat-sim/tests/clients.rs.
# Idempotent: re-running only installs what is missing or changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
fi

if [ -f package.json ]; then
    lockstamp=node_modules/.package-lock.sha256
    want="$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$lockstamp" ] || [ "$(cat "$lockstamp")" != "$want" ]; then
        if [ -f package-lock.json ]; then
            npm ci --silent --no-audit --no-fund
        else
            npm install --silent --no-audit --no-fund
        fi
        echo "$want" > "$lockstamp"
    fi
fi
echo "tests/clients ready"
