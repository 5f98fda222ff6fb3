#!/bin/sh
# `make cluster`: a local Redis Cluster to try the hub on (3 masters and 3 replicas on
# 127.0.0.1, ports $CLUSTER_PORT to $CLUSTER_PORT+5, default 7000; data in a temporary
# directory), then `make run` against it (the hub with the demo page and a job worker, with
# REDIS_CLUSTER_URLS). Ctrl-C stops the hub, the worker and the cluster, and removes its files.
set -eu

base=${CLUSTER_PORT:-7000}
command -v redis-server >/dev/null ||
  { echo "redis-server is not installed (apt-get install -y redis-server)" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/relay-hub-cluster.XXXXXX")
pids=
stop() {
  trap - EXIT INT TERM HUP
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $pids; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
  echo "make cluster: stopped the cluster on ports $base-$((base + 5))"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

nodes= urls=
for port in $(seq "$base" $((base + 5))); do
  if redis-cli -p "$port" ping >/dev/null 2>&1; then
    echo "make cluster: port $port is taken (choose others with CLUSTER_PORT=...)" >&2
    exit 1
  fi
  # Their own session, so Ctrl-C reaches the hub and the worker first.
  setsid redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-node-timeout 2000 --dir "$dir" --cluster-config-file "nodes-$port.conf" \
    --dbfilename "dump-$port.rdb" --save '' --appendonly no >/dev/null &
  pids="$pids $!"
  nodes="$nodes 127.0.0.1:$port"
  urls="${urls:+$urls,}redis://127.0.0.1:$port"
done
for port in $(seq "$base" $((base + 5))); do
  i=0
  until redis-cli -p "$port" ping >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -le 100 ] || { echo "make cluster: redis-server did not start on $port" >&2; exit 1; }
    sleep 0.1
  done
done
# shellcheck disable=SC2086 # one argument per node
redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >/dev/null
i=0
until redis-cli -p "$base" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; do
  i=$((i + 1))
  [ $i -le 100 ] || { echo "make cluster: the cluster did not become ready" >&2; exit 1; }
  sleep 0.1
done
echo "make cluster: Redis Cluster on 127.0.0.1 ports $base-$((base + 5)) (3 masters, 3 replicas)"
echo "make cluster: REDIS_CLUSTER_URLS=$urls"
REDIS_CLUSTER_URLS=$urls "$(dirname "$0")/run.sh"
