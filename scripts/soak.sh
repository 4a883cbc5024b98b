#!/usr/bin/env bash
# The soak run (`make soak`; too long for CI): the release `imgate` in front of the release
# `rocketchat-sim` on loopback, driven by `imgate-load soak` for SOAK_SECONDS (default 600)
# with churn of connections and users, while the gateway's RSS and descriptors are sampled
# each minute. The results replace the "## Soak" section of SOAK_REPORT (default
# docs/reliability.md; empty = write nothing). Arguments go to `imgate-load soak` (see its
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

work="$(mktemp -d /tmp/imgate-soak.XXXXXX)"
pids=()
# Last started first: the gateway logs its admin out of the sim while that still answers.
stop_all() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "soak: logs in $work"
}
trap stop_all EXIT

random() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

admin_password="$(random)"
jwt_secret="$(random)$(random)"
api_key="$(random)"

RUST_LOG=warn "$bin/rocketchat-sim" --bind 127.0.0.1:0 --admin "admin:$admin_password" \
  >"$work/rocketchat-sim.log" 2>&1 &
pids+=($!)
sim_url=""
for _ in $(seq 1 100); do
  sim_url="$(sed -n 's/^rocketchat-sim listening on \(http[^ ]*\) .*/\1/p' "$work/rocketchat-sim.log")"
  [ -n "$sim_url" ] && break
  sleep 0.1
done
if [ -z "$sim_url" ]; then
  echo "soak: rocketchat-sim did not start; see $work/rocketchat-sim.log" >&2
  exit 1
fi

port="$(free_port)"
grace_s=2
env -u RUST_LOG \
  IMGATE__PROVIDER__URL="$sim_url" \
  IMGATE__PROVIDER__ADMIN_PASSWORD="$admin_password" \
  IMGATE__PROVIDER__DEFAULT_PASSWORD="$(random)" \
  IMGATE__AUTH__JWT_SECRET="$jwt_secret" \
  IMGATE__AUTH__API_KEY="$api_key" \
  IMGATE__SERVER__BIND="127.0.0.1:$port" \
  IMGATE__LOG__LEVEL=warn \
  IMGATE__REALTIME__GRACE_S="$grace_s" \
  "$bin/imgate" >"$work/imgate.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
base="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$gateway_pid" 2>/dev/null || { echo "soak: imgate exited; see $work/imgate.log" >&2; exit 1; }
  sleep 0.2
done
curl -fs "$base/readyz" >/dev/null || { echo "soak: imgate not ready; see $work/imgate.log" >&2; exit 1; }

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
