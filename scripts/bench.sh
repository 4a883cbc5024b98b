#!/usr/bin/env bash
# The benchmarks (`make bench`, `make bench-full`; not part of CI): the release `imgate` in
# front of the release `rocketchat-sim` on loopback, the limit server (`imgate-load limit`)
# and the Socket.IO peer (bench/socketio, installed here with `npm ci`; skipped when node is
# missing), and for the nodes and pushes scenarios two more gateways sharing Redis
# (127.0.0.1:6379, started by scripts/ensure-redis.sh when none answers) in front of the same
# sim, all driven by `imgate-load bench`. Each scenario prints one line; the lines are
# appended to BENCH_REPORT (default docs/benchmarks.md; empty = write nothing).
#
# BENCH_SIZE=small (default, about 11 minutes) or full (100 000 idle connections).
# BENCH_GATEWAY_BIN runs another build of the gateway (e.g. an older commit's, to compare);
# BENCH_PEERS=no leaves the limit and Socket.IO servers out.
# Arguments go to `imgate-load bench` (see its --help), e.g. `bash scripts/bench.sh
# --scenarios rest`. Logs stay in a temporary folder, named at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

size="${BENCH_SIZE:-small}"
report="${BENCH_REPORT-docs/benchmarks.md}"
bin="${CARGO_TARGET_DIR:-target}/release"
# `descriptors`: what the gateway needs for a size (a hub connection each, an upstream per
# user, some to spare); the driver needs about as many.
case "$size" in
  small) sizes=(--connections 10000 --users 2000 --hold-s 60 --churn-users 2000) descriptors=13000 ;;
  full) sizes=(--connections 100000 --users 20000 --hold-s 60 --churn-users 10000) descriptors=121000 ;;
  smoke) sizes=(--connections 200 --users 40 --fanout-connections 200 --hold-s 2 --round-s 1
    --fixed-rate 2000 --push-rate 200 --churn-users 20 --rest-calls 20 --rest-s 1)
    descriptors=1000 ;;
  *) echo "bench: BENCH_SIZE is small, full or smoke" >&2; exit 2 ;;
esac

# The scenarios asked for (the last --scenarios wins, as in imgate-load), default its own.
scenarios=capacity,msgpack,nodes,pushes,churn,rest
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --scenarios) scenarios="${args[i + 1]:-}" ;;
    --scenarios=*) scenarios="${args[i]#--scenarios=}" ;;
  esac
done
with_nodes=no
case ",$scenarios," in *,nodes,* | *,pushes,*) with_nodes=yes ;; esac

cargo build --release -p imgate -p imgate-rocketchat-sim -p imgate-load

# Every connection is a descriptor in the driver and in the server, and the gateway's users
# have an upstream each. Root may raise its own hard limit up to fs.nr_open.
ulimit -Hn "$(cat /proc/sys/fs/nr_open)" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$descriptors" ]; then
  echo "bench: BENCH_SIZE=$size needs $descriptors open files per process, the limit is $(ulimit -n)" \
    "and cannot be raised here (root without CAP_SYS_RESOURCE?)" >&2
  exit 1
fi

name=bench
# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh
grace_s=1
start_sim
start_gateway "${BENCH_GATEWAY_BIN:-$bin/imgate}" \
  IMGATE__SERVER__USER_RATE_LIMIT_PER_S=0 IMGATE__REALTIME__GRACE_S="$grace_s"
single_pid="$gateway_pid" single_base="$base"

# Two nodes sharing Redis under a prefix of this run's own, started only when asked for. They
# idle (no connection, no upstream) while the single gateway's scenarios run. Each is sized
# for one of the machine's two cores (one HTTP worker, one runtime thread), as two nodes
# sharing a machine would be deployed; each hub route is its name, as in config/nginx.conf.
node_args=()
node_pids=()
if [ "$with_nodes" = yes ]; then
  bash scripts/ensure-redis.sh
  redis_prefix="bench-$(random)"
  for node in a b; do
    start_gateway --log "imgate-node-$node" "${BENCH_GATEWAY_BIN:-$bin/imgate}" \
      IMGATE__SERVER__USER_RATE_LIMIT_PER_S=0 IMGATE__REALTIME__GRACE_S="$grace_s" \
      IMGATE__CACHE__KIND=redis IMGATE__PUSH__KIND=redis IMGATE__HUB__ROUTE="$node" \
      IMGATE__SERVER__WORKERS=1 TOKIO_WORKER_THREADS=1 \
      IMGATE__REDIS__URL=redis://127.0.0.1:6379 IMGATE__REDIS__PREFIX="$redis_prefix"
    node_args+=(--node "$base,$gateway_pid")
    node_pids+=("$gateway_pid")
  done
  # Its CPU counts too when it runs here; a Redis in a container or elsewhere is left out.
  redis_pid="$(redis-cli -h 127.0.0.1 -p 6379 info server | tr -d '\r' | sed -n 's/^process_id://p')"
  if [ -n "$redis_pid" ] && [ -r "/proc/$redis_pid/stat" ]; then
    node_args+=(--redis-pid "$redis_pid")
  fi
  # The sessions, passwords and lease fences the nodes leave under the run's prefix.
  forget_prefix() {
    redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$redis_prefix:*" |
      xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null || true
  }
  trap 'stop_all; forget_prefix' EXIT
fi
gateway_pid="$single_pid" base="$single_base"

limit_args=()
peer_args=()
if [ "${BENCH_PEERS:-yes}" = yes ]; then
  "$bin/imgate-load" limit --bind 127.0.0.1:0 >"$work/limit.log" 2>&1 &
  pids+=($!)
  limit_args=(--limit "$(listening_url "$work/limit.log" limit),$!")
fi
if [ "${BENCH_PEERS:-yes}" != yes ]; then
  :
elif command -v node >/dev/null && command -v npm >/dev/null; then
  (cd bench/socketio && npm ci --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1) ||
    { echo "bench: npm ci failed in bench/socketio; see $work/npm.log" >&2; exit 1; }
  node bench/socketio/server.js >"$work/socketio.log" 2>&1 &
  pids+=($!)
  peer_args=(--socketio "$(listening_url "$work/socketio.log" socketio),$!")
else
  echo "bench: node or npm missing, the Socket.IO peer is left out" >&2
fi

commit="$(git rev-parse --short HEAD)"
if ! git diff --quiet HEAD -- . ':(exclude)docs/benchmarks.md'; then
  commit="$commit with uncommitted changes"
fi
report_args=()
[ -n "$report" ] && report_args=(--report "$report")

echo "bench ($size): gateway $base (pid $gateway_pid), rocketchat-sim $sim_url," \
  "${#node_pids[@]} gateway nodes sharing Redis${redis_prefix:+ under $redis_prefix}, logs in $work"
status=0
IMGATE_LOAD_API_KEY="$api_key" IMGATE_LOAD_JWT_SECRET="$jwt_secret" \
  IMGATE_LOAD_PROVIDER_ADMIN="admin:$admin_password" \
  "$bin/imgate-load" bench --base "$base" --gateway-pid "$gateway_pid" --provider "$sim_url" \
  ${limit_args[@]+"${limit_args[@]}"} ${peer_args[@]+"${peer_args[@]}"} \
  ${node_args[@]+"${node_args[@]}"} --grace-s "$grace_s" "${sizes[@]}" \
  --label "make bench ($size)" --commit "$commit" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  ${report_args[@]+"${report_args[@]}"} "$@" || status=$?

if ! kill -0 "$gateway_pid" 2>/dev/null; then
  echo "bench: imgate is no longer running; see $work/imgate.log" >&2
  status=1
fi
for node in ${node_pids[@]+"${node_pids[@]}"}; do
  if ! kill -0 "$node" 2>/dev/null; then
    echo "bench: a gateway node (pid $node) is no longer running; see $work/imgate-node-*.log" >&2
    status=1
  fi
done
for log in "$work"/imgate*.log; do
  if [ -s "$log" ]; then
    echo "bench: $(basename "$log" .log) logged $(wc -l <"$log") lines at warn or above ($log)"
  fi
done
exit "$status"
