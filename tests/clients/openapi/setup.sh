#!/usr/bin/env bash
# Installs openapi-typescript, openapi-fetch and TypeScript into tests/clients/openapi, for the
# end-to-end test that type-checks a client generated from /openapi.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../../../scripts/client-deps.sh" "$here"
