#!/usr/bin/env bash
# Everything the test suite needs besides cargo: Redis, and the third-party Rocket.Chat and
# SignalR clients the tests drive (installed into tests/clients/**, never globally).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-redis.sh
for setup in tests/clients/setup.sh tests/clients/*/setup.sh; do
  if [ -f "$setup" ]; then
    bash "$setup"
  fi
done
