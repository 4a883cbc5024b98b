#!/usr/bin/env bash
# Installs schemathesis, the third-party fuzzer that checks the gateway against its own
# OpenAPI document (tests/e2e/openapi_contract.rs), into tests/clients/schemathesis/.venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../../../scripts/client-deps.sh" "$here"
