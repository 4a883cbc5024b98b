#!/usr/bin/env bash
# Builds the gateway, starts it in demo mode (realtime.mode = both, so the hub and frontend
# mode both work) on a free port, runs the browser test against it, and stops it.
#   bash tests/browser/run.sh                      # from anywhere
#   IMGATE_TEST_PROVIDER=matrix bash tests/browser/run.sh   # in front of a test Synapse instead
#   IMGATE_SCREENSHOT=docs/screenshot.png bash tests/browser/run.sh   # also save a screenshot
#   IMGATE_TEST_BASE_PATH= bash tests/browser/run.sh   # serve at / instead of /chat/
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${IMGATE_SCREENSHOT:-}" ]; then
  IMGATE_SCREENSHOT=$(realpath -m "$IMGATE_SCREENSHOT")
  export IMGATE_SCREENSHOT
fi
root=$(cd "$here/../.." && pwd)
cd "$root"

chromium=${IMGATE_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "run.sh: $chromium is missing; install Debian's chromium (apt-get install -y chromium)" >&2
  exit 1
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

target=${CARGO_TARGET_DIR:-$root/target}
cargo build -q -p imgate
bin="$target/debug/imgate"
provider=${IMGATE_TEST_PROVIDER:-rocketchat}

port=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
log=$(mktemp -t imgate-browser.XXXXXX.log)
# Demo mode: no provider URL and no JWT key, whatever the caller's environment says.
unset IMGATE__PROVIDER__KIND IMGATE__PROVIDER__URL IMGATE__AUTH__JWT_SECRET IMGATE__AUTH__JWT_PUBLIC_KEY_FILE
# A base path proves the page's URLs are all relative.
base_path=${IMGATE_TEST_BASE_PATH-/chat}
export IMGATE__SERVER__BIND=127.0.0.1:$port IMGATE__REALTIME__MODE=both IMGATE__SERVER__BASE_PATH=$base_path
IMGATE_TOKEN_ALICE=$("$bin" token --user alice)
IMGATE_TOKEN_BOB=$("$bin" token --user bob)
synapse_pid=
if [ "$provider" = matrix ]; then
  # The demo secret and key, so the tokens above work; Synapse has no demo users: mirror them.
  cargo build -q -p imgate-e2e --bin imgate-test-synapse
  synapse_env=$(mktemp -t imgate-synapse.XXXXXX.env)
  "$target/debug/imgate-test-synapse" >"$synapse_env" &
  synapse_pid=$!
  for _ in $(seq 1 600); do
    if grep -q '^admin_password=' "$synapse_env"; then break; fi
    if ! kill -0 "$synapse_pid" 2>/dev/null; then
      # 2: no Synapse here and IMGATE_SKIP_MATRIX is set (it said so).
      wait "$synapse_pid" && status=0 || status=$?
      [ "$status" -eq 2 ] && { echo "run.sh: SKIPPING the browser test against Matrix" >&2; exit 0; }
      echo "run.sh: the test Synapse did not start" >&2
      exit 1
    fi
    sleep 0.2
  done
  synapse_url=$(sed -n 's/^url=//p' "$synapse_env")
  export IMGATE__PROVIDER__KIND=matrix IMGATE__PROVIDER__URL=$synapse_url
  export IMGATE__PROVIDER__ADMIN_USER=$(sed -n 's/^admin_user=//p' "$synapse_env")
  export IMGATE__PROVIDER__ADMIN_PASSWORD=$(sed -n 's/^admin_password=//p' "$synapse_env")
  export IMGATE__PROVIDER__DEFAULT_PASSWORD=browser-test-password
  export IMGATE__AUTH__JWT_SECRET=imgate-demo-secret-not-for-production-use
  export IMGATE__AUTH__API_KEY=imgate-demo-api-key
  rm -f "$synapse_env"
fi
"$bin" >"$log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -n "$synapse_pid" ]; then
    kill "$synapse_pid" 2>/dev/null || true
    wait "$synapse_pid" 2>/dev/null || true
  fi
}
trap stop EXIT

url="http://127.0.0.1:$port$base_path/"
ready() { node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "${url}readyz"; }
for _ in $(seq 1 300); do
  if ready; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: the gateway exited; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
ready || { echo "run.sh: the gateway is not ready; its log:" >&2; cat "$log" >&2; exit 1; }

if [ "$provider" = matrix ]; then
  for user in alice bob carol; do
    node -e 'fetch(process.argv[1], {method: "PUT", headers: {"X-Api-Key": process.argv[2], "Content-Type": "application/json"},
      body: JSON.stringify({username: process.argv[3], name: process.argv[3]})}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
      "${url}api/v1/users/$user" "$IMGATE__AUTH__API_KEY" "$user" || { echo "run.sh: cannot mirror $user; the gateway's log:" >&2; cat "$log" >&2; exit 1; }
  done
fi

export IMGATE_URL=$url IMGATE_PROVIDER=$provider
export IMGATE_TOKEN_ALICE IMGATE_TOKEN_BOB IMGATE_CHROMIUM="$chromium"
# The last test stops this gateway and starts another on the same port (it stops that one).
export IMGATE_GATEWAY_BIN=$bin IMGATE_GATEWAY_PID=$pid
status=0
(cd "$here" && node --test --test-reporter=spec demo.test.mjs) || status=$?
if [ "$status" -ne 0 ]; then
  echo "run.sh: browser test failed; the gateway's log is $log" >&2
else
  rm -f "$log"
fi
exit "$status"
