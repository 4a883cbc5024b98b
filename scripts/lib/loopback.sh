# Sourced by scripts/soak.sh and scripts/bench.sh: the release `rocketchat-sim` and `imgate`
# on loopback with fresh secrets, logs in a temporary folder, every process started here
# stopped on exit (last started first: the gateway logs its admin out of the sim while that
# still answers). The caller sets `name` (prefix of messages and of the folder) and `bin`
# (the folder of the release binaries).

work="$(mktemp -d "/tmp/imgate-$name.XXXXXX")"
pids=()
stop_all() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "$name: logs in $work"
}
trap stop_all EXIT

random() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits for the line a server prints when it listens; prints the URL in it.
listening_url() {
  local log="$1" pattern="$2" url=""
  for _ in $(seq 1 150); do
    url="$(sed -n "s/^$pattern listening on \([a-z]*:[^ ]*\).*/\1/p" "$log")"
    [ -n "$url" ] && { echo "$url"; return 0; }
    sleep 0.1
  done
  echo "$name: $pattern did not start; see $log" >&2
  return 1
}

admin_password="$(random)"
jwt_secret="$(random)$(random)"
api_key="$(random)"
# One for every gateway started here: it is the provider password of the users they mirror, so
# gateways in front of the same sim can log in each other's users.
default_password="$(random)"

# Starts the sim; sets `sim_url`.
start_sim() {
  RUST_LOG=warn "$bin/rocketchat-sim" --bind 127.0.0.1:0 --admin "admin:$admin_password" \
    >"$work/rocketchat-sim.log" 2>&1 &
  pids+=($!)
  sim_url="$(listening_url "$work/rocketchat-sim.log" rocketchat-sim)"
}

# start_gateway [--log NAME] BINARY [SETTING=value ...]: starts the gateway in front of the
# sim with the settings given besides the defaults, logging to $work/NAME.log (default
# imgate), and waits until it is ready; sets `gateway_pid`, `base` and `gateway_log`.
start_gateway() {
  local log_name=imgate gateway port
  if [ "$1" = --log ]; then
    log_name="$2"
    shift 2
  fi
  gateway="$1"
  shift
  port="$(free_port)"
  gateway_log="$work/$log_name.log"
  env -u RUST_LOG \
    IMGATE__PROVIDER__URL="$sim_url" \
    IMGATE__PROVIDER__ADMIN_PASSWORD="$admin_password" \
    IMGATE__PROVIDER__DEFAULT_PASSWORD="$default_password" \
    IMGATE__AUTH__JWT_SECRET="$jwt_secret" \
    IMGATE__AUTH__API_KEY="$api_key" \
    IMGATE__SERVER__BIND="127.0.0.1:$port" \
    IMGATE__LOG__LEVEL=warn \
    "$@" "$gateway" >"$gateway_log" 2>&1 &
  gateway_pid=$!
  pids+=("$gateway_pid")
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 150); do
    curl -fs "$base/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$gateway_pid" 2>/dev/null || { echo "$name: imgate exited; see $gateway_log" >&2; return 1; }
    sleep 0.2
  done
  echo "$name: imgate not ready; see $gateway_log" >&2
  return 1
}
