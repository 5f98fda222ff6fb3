#!/bin/sh
# `make run`: builds relay-hub with cargo and runs the binary cargo built (wherever
# CARGO_TARGET_DIR puts it): a job worker and the hub in dev mode on $PORT. When no Redis
# answers on $REDIS_URL it starts a redis-server bound to loopback and stops it when `make run`
# ends (Ctrl-C); a Redis that was already running is left alone. With REDIS_CLUSTER_URLS set it
# uses that Redis Cluster instead (`make cluster` starts one and runs this).
set -eu

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PORT=${PORT:-8080}
redis_port=$(echo "$REDIS_URL" | sed -E 's#^redis://([^@/]*@)?[^:/]*:?([0-9]*).*#\2#')
redis_port=${redis_port:-6379}

# The path of the binary cargo just built, from its JSON artifact messages.
bin=$(cargo build --release --bin relay-hub --message-format=json-render-diagnostics |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ ! -x "$bin" ]; then
  echo "make run: the build did not produce relay-hub (see cargo's messages above)" >&2
  exit 1
fi

redis_pid= worker= hub=
stop() {
  trap - EXIT INT TERM HUP
  # SIGINT from the terminal may have reached them already; a second signal changes nothing.
  for pid in $hub $worker; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $hub $worker; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$redis_pid" ]; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    echo "make run: stopped the redis-server it started on 127.0.0.1:$redis_port"
  fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ -n "${REDIS_CLUSTER_URLS:-}" ]; then
  unset REDIS_URL
  export REDIS_CLUSTER_URLS
  echo "make run: using the Redis Cluster at $REDIS_CLUSTER_URLS"
elif redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  echo "make run: using the Redis that answers on $REDIS_URL (left running afterwards)"
else
  command -v redis-server >/dev/null ||
    { echo "redis-server is not installed (apt-get install -y redis-server)" >&2; exit 1; }
  # Its own session, so Ctrl-C reaches the hub and the worker first; stop() ends it after them.
  setsid redis-server --port "$redis_port" --bind 127.0.0.1 -::1 --save '' --appendonly no \
    --daemonize no >/dev/null &
  redis_pid=$!
  i=0
  until redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$redis_pid" 2>/dev/null; then
      echo "make run: redis-server did not start on port $redis_port" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "make run: started redis-server on 127.0.0.1:$redis_port (stopped when make run ends)"
fi
if [ -z "${REDIS_CLUSTER_URLS:-}" ]; then
  export REDIS_URL
fi

"$bin" worker &
worker=$!
HUB_AUTH=dev PORT=$PORT "$bin" &
hub=$!
echo "make run: hub on http://localhost:$PORT/ and a job worker; Ctrl-C stops them"
status=0
wait "$hub" || status=$?
exit "$status"
