#!/usr/bin/env bash
# Installs the official SignalR clients used by crates/signalr/tests (Node @microsoft/signalr,
# Python signalrcore and pysignalr) into tests/clients/hub/node_modules and tests/clients/hub/.venv.
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

manifest_digest() {
    if [ -f package-lock.json ]; then cat package.json package-lock.json; else cat package.json; fi | sha256sum | cut -d' ' -f1
}
lockstamp=node_modules/.package-lock.sha256
want="$(manifest_digest)"
if [ ! -f "$lockstamp" ] || [ "$(cat "$lockstamp")" != "$want" ]; then
    if [ -f package-lock.json ]; then
        npm ci --silent --no-audit --no-fund
    else
        npm install --silent --no-audit --no-fund
    fi
    want="$(manifest_digest)"
    echo "$want" > "$lockstamp"
fi
echo "tests/clients/hub ready"
