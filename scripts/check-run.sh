#!/bin/sh
# `make check-run`: runs `make run` as a user would, with CARGO_TARGET_DIR set
# (CHECK_RUN_TARGET_DIR, default target/check-run) and free ports, in two cases: no Redis
# running (make run starts one) and a Redis already running. Each time it waits for /health,
# checks that the hub runs the binary cargo built under CARGO_TARGET_DIR and that the Redis it
# started listens on loopback only, sends Ctrl-C (SIGINT to make's process group), and fails
# if anything make run started is still running afterwards, or if the Redis that was already
# running was stopped. Needs curl, ss, setsid and redis-server.
set -eu

target=${CHECK_RUN_TARGET_DIR:-$PWD/target/check-run}
log=$(mktemp)
make_pid= own_redis=
fail() {
  echo "check-run: FAIL: $*" >&2
  echo "---- make run output" >&2
  cat "$log" >&2
  exit 1
}
cleanup() {
  [ -n "$make_pid" ] && kill -KILL "-$make_pid" 2>/dev/null || true
  [ -n "$own_redis" ] && kill "$own_redis" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

# A TCP port nobody listens on.
free_port() {
  while :; do
    p=$(( $(od -An -N2 -tu2 /dev/urandom) % 20000 + 30000 ))
    [ -z "$(ss -Htln "sport = :$p")" ] && echo "$p" && return
  done
}

# Waits up to $2 seconds for the shell condition $1.
await() {
  i=0
  until eval "$1"; do
    i=$((i + 1))
    [ $i -le $(($2 * 10)) ] || return 1
    sleep 0.1
  done
}

alive() { kill -0 "$1" 2>/dev/null; }

# The pid of the process listening on TCP port $1.
listener() { ss -Htlnp "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1; }

# Runs `make run` against redis port $1 and interrupts it; $2 = "own" when make run is to
# start that Redis itself.
run_and_interrupt() {
  redis_port=$1
  hub_port=$(free_port)
  : >"$log"
  # setsid: make leads a process group of its own, as in a terminal, where Ctrl-C reaches
  # the whole group.
  CARGO_TARGET_DIR=$target setsid make --no-print-directory run PORT="$hub_port" \
    REDIS_URL="redis://127.0.0.1:$redis_port" >"$log" 2>&1 &
  make_pid=$!
  await "curl -fs http://127.0.0.1:$hub_port/health >/dev/null || ! alive $make_pid" 900 ||
    fail "the hub did not answer /health"
  alive "$make_pid" || fail "make run exited before the hub answered"

  started=$(pgrep -g "$make_pid" | tr '\n' ' ')
  if [ "$2" = own ]; then
    # Its redis-server runs in a session of its own (so Ctrl-C reaches the hub first).
    redis_pid=$(listener "$redis_port")
    [ -n "$redis_pid" ] || fail "nothing listens on the Redis port $redis_port"
    started="$started $redis_pid"
    for addr in $(ss -Htln "sport = :$redis_port" | awk '{print $4}'); do
      case "$addr" in
        127.0.0.1:* | "[::1]:"*) ;;
        *) fail "the redis-server make run started listens on $addr, not only on loopback" ;;
      esac
    done
  fi
  hub_pid=$(listener "$hub_port")
  [ -n "$hub_pid" ] || fail "no process listens on the hub port $hub_port"
  exe=$(readlink "/proc/$hub_pid/exe")
  case "$exe" in
    "$target"/*) ;;
    *) fail "the hub runs $exe, not the binary cargo built under $target" ;;
  esac
  workers=0
  for p in $started; do
    if [ "$p" != "$hub_pid" ] && [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$exe" ]; then
      workers=$((workers + 1))
    fi
  done
  [ "$workers" -ge 1 ] || fail "no job worker runs beside the hub"

  kill -INT "-$make_pid"
  await "! alive $make_pid" 60 || fail "make run did not end within 60 s of Ctrl-C"
  make_pid=
  for p in $started; do
    if alive "$p"; then
      fail "process $p ($(tr '\0' ' ' <"/proc/$p/cmdline")) outlived make run"
    fi
  done
  [ -z "$(ss -Htln "sport = :$hub_port")" ] || fail "something still listens on $hub_port"
}

echo "check-run: make run with CARGO_TARGET_DIR=$target, no Redis running"
redis_port=$(free_port)
run_and_interrupt "$redis_port" own
grep -q "started redis-server on 127.0.0.1:$redis_port" "$log" ||
  fail "make run did not say it started redis-server"
[ -z "$(ss -Htln "sport = :$redis_port")" ] ||
  fail "the redis-server make run started still listens on $redis_port"

echo "check-run: make run with a Redis already running"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
own_redis=$!
await "redis-cli -p $redis_port ping >/dev/null 2>&1" 10 || fail "the test redis-server did not start"
run_and_interrupt "$redis_port" theirs
redis-cli -p "$redis_port" ping >/dev/null 2>&1 ||
  fail "make run stopped a Redis it had not started"
echo "check-run: ok"
