#!/usr/bin/env bash
# The soak run (`make soak`; too long for CI): the release `imgate` in front of the release
# `rocketchat-sim` on loopback, driven by `imgate-load soak` for SOAK_SECONDS (default 600)
# with churn of connections and users, while the gateway's RSS and descriptors are sampled
# each minute. The results replace the "## Soak" section of SOAK_REPORT (default
# docs/reliability.md; empty = write nothing). SOAK_GATEWAY_BIN runs another build of the
# gateway (e.g. one on the system allocator, for heaptrack). Arguments go to `imgate-load soak` (see its
# --help), e.g. `bash scripts/soak.sh --connections 200`. Logs stay in a temporary folder,
# named at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${SOAK_SECONDS:-600}"
report="${SOAK_REPORT-docs/reliability.md}"
bin="${CARGO_TARGET_DIR:-target}/release"

cargo build --release -p imgate -p imgate-rocketchat-sim -p imgate-load

# Hundreds of WebSockets plus their upstreams; the default soft limit is often 1024.
ulimit -n "$(ulimit -Hn)"

name=soak
# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh
grace_s=2
start_sim
start_gateway "${SOAK_GATEWAY_BIN:-$bin/imgate}" IMGATE__REALTIME__GRACE_S="$grace_s"

commit="$(git rev-parse --short HEAD)"
if ! git diff --quiet HEAD -- . ':(exclude)docs/reliability.md'; then
  commit="$commit with uncommitted changes"
fi
report_args=()
[ -n "$report" ] && report_args=(--report "$report")

echo "soak: gateway $base (pid $gateway_pid), rocketchat-sim $sim_url, $seconds s"
status=0
IMGATE_LOAD_API_KEY="$api_key" IMGATE_LOAD_JWT_SECRET="$jwt_secret" \
  "$bin/imgate-load" soak --base "$base" --gateway-pid "$gateway_pid" \
  --duration-s "$seconds" --after-s $((grace_s + 3)) \
  --commit "$commit" --date "$(date -u)" \
  --setting "provider.url = the release rocketchat-sim on loopback" \
  --setting "realtime.grace_s = $grace_s" \
  --setting "log.level = warn" \
  "${report_args[@]}" "$@" || status=$?

if ! kill -0 "$gateway_pid" 2>/dev/null; then
  echo "soak: imgate is no longer running; see $work/imgate.log" >&2
  status=1
fi
if [ -s "$work/imgate.log" ]; then
  echo "soak: imgate logged $(wc -l <"$work/imgate.log") lines at warn or above ($work/imgate.log)"
fi
exit "$status"
