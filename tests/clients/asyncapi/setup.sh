#!/usr/bin/env bash
# Installs the AsyncAPI parser and json-schema-to-typescript into tests/clients/asyncapi, for
# the hub contract's end-to-end test (and docs/hub.md's typings).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../../../scripts/client-deps.sh" "$here"
