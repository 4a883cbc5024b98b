#!/usr/bin/env bash
# Installs a folder's test clients into that folder: `.venv` from requirements.txt and
# `node_modules` from package.json (+ package-lock.json), whichever the folder has.
# Idempotent: re-running only installs what is missing or changed.
#   bash scripts/client-deps.sh tests/clients/hub
set -euo pipefail
cd "$1"

if [ -f requirements.txt ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    stamp=.venv/.requirements.sha256
    want="$(sha256sum requirements.txt | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
        echo "$want" > "$stamp"
    fi
fi

if [ -f package.json ]; then
    manifest_digest() {
        if [ -f package-lock.json ]; then cat package.json package-lock.json; else cat package.json; fi | sha256sum | cut -d' ' -f1
    }
    stamp=node_modules/.package-lock.sha256
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(manifest_digest)" ]; then
        if [ -f package-lock.json ]; then
            npm ci --silent --no-audit --no-fund
        else
            npm install --silent --no-audit --no-fund
        fi
        manifest_digest > "$stamp"
    fi
fi
echo "$1 ready"
