#!/usr/bin/env bash
# Builds the gateway, starts it in demo mode (realtime.mode = both, so the hub and frontend
# mode both work) on a free port, runs the browser test against it, and stops it.
#   bash tests/browser/run.sh                      # from anywhere
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

port=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
log=$(mktemp -t imgate-browser.XXXXXX.log)
# Demo mode: no provider URL and no JWT key, whatever the caller's environment says.
unset IMGATE__PROVIDER__URL IMGATE__AUTH__JWT_SECRET IMGATE__AUTH__JWT_PUBLIC_KEY_FILE
# A base path proves the page's URLs are all relative.
base_path=${IMGATE_TEST_BASE_PATH-/chat}
export IMGATE__SERVER__BIND=127.0.0.1:$port IMGATE__REALTIME__MODE=both IMGATE__SERVER__BASE_PATH=$base_path
"$bin" >"$log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
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

export IMGATE_URL=$url
IMGATE_TOKEN_ALICE=$("$bin" token --user alice)
IMGATE_TOKEN_BOB=$("$bin" token --user bob)
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
