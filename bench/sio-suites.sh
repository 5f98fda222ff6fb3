#!/usr/bin/env bash
# Runs the official Engine.IO and Socket.IO test suites, unmodified, RUNS times each against
# the compliance server (src/compliance.rs), and prints the counts of every run.
#
#   bench/sio-suites.sh SUITES [RUNS]      (or: make sio-suites SUITES=/path RUNS=10)
#
# SUITES is a directory outside this repository holding the suites' `test-suite/` folders:
#   SUITES/engine.io-protocol/test-suite   (github.com/socketio/engine.io-protocol, f21de7b)
#   SUITES/socket.io-protocol/test-suite   (github.com/socketio/socket.io-protocol, 4f633dd)
# e.g. from clones: git -C engine.io-protocol archive f21de7b test-suite | tar -x -C SUITES/engine.io-protocol
# Their dev dependencies (mocha, ws, ...) are installed there with `npm ci` when missing; nothing
# is downloaded into this repository. The suites talk to localhost:3000, so port 3000 must be
# free. Needs node 18+ and npm. Exits non-zero if any run has a failure.
set -euo pipefail

SUITES=${1:?usage: $0 SUITES_DIR [RUNS]}
RUNS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUITES=$(cd "$SUITES" && pwd)

case "$SUITES/" in
"$ROOT"/*)
    echo "sio-suites: $SUITES is inside the repository; put the suites outside it" >&2
    exit 2
    ;;
esac
for suite in engine.io-protocol socket.io-protocol; do
    dir="$SUITES/$suite/test-suite"
    [ -f "$dir/test-suite.js" ] || {
        echo "sio-suites: $dir/test-suite.js not found" >&2
        exit 2
    }
    [ -x "$dir/node_modules/.bin/mocha" ] ||
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
done

if (exec 3<>/dev/tcp/127.0.0.1/3000) 2>/dev/null; then
    echo "sio-suites: something already listens on port 3000" >&2
    exit 2
fi

cargo build --release --bin sio-compliance --manifest-path "$ROOT/Cargo.toml"
log=$(mktemp)
RUST_LOG=warn PORT=3000 "$ROOT/target/release/sio-compliance" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log" "$log.json"' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/3000) 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || {
        cat "$log" >&2
        exit 1
    }
    sleep 0.1
done

failed=0
for suite in engine.io-protocol socket.io-protocol; do
    dir="$SUITES/$suite/test-suite"
    for run in $(seq "$RUNS"); do
        (cd "$dir" && node_modules/.bin/mocha --reporter json test-suite.js >"$log.json" 2>/dev/null) || true
        line=$(node -e '
            const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
            const failed = [...new Set(r.failures.map((f) => f.fullTitle))];
            console.log(`${r.stats.passes}/${r.stats.tests}` + (failed.length ? ` FAILED: ${failed.join("; ")}` : ""));
            process.exit(r.stats.failures || r.stats.passes !== r.stats.tests ? 1 : 0);
        ' "$log.json") || failed=1
        echo "$suite run $run: $line"
    done
done
exit $failed
