#!/usr/bin/env bash
# Everything the test suite needs besides cargo: Redis, the third-party Rocket.Chat and
# SignalR clients the tests drive (installed into tests/clients/**, never globally), and
# Debian's chromium for the browser test, and Debian's nginx for the many-nodes tests; Synapse
# (a venv of wheels) for the Matrix variant of the end-to-end suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-redis.sh
bash scripts/ensure-synapse.sh
for setup in tests/clients/setup.sh tests/clients/*/setup.sh; do
  if [ -f "$setup" ]; then
    bash "$setup"
  fi
done
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
