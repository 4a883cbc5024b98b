#!/usr/bin/env bash
# Makes sure a Redis answers on 127.0.0.1:6379 (or $IMGATE_TEST_REDIS_PORT): uses the one
# running, else starts one (installing redis-server with apt-get when it is missing).
set -euo pipefail
port="${IMGATE_TEST_REDIS_PORT:-6379}"
answers() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }
if command -v redis-cli >/dev/null 2>&1 && answers; then
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
mkdir -p /tmp/imgate-redis
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir /tmp/imgate-redis --logfile /tmp/imgate-redis/redis.log
for _ in $(seq 1 50); do
  answers && exit 0
  sleep 0.1
done
echo "redis did not start on 127.0.0.1:$port; see /tmp/imgate-redis/redis.log" >&2
exit 1
