# relay-hub: `make run` starts the hub and a job worker (and Redis if none answers); `make test`
# runs every test.
REDIS_URL ?= redis://127.0.0.1:6379
PORT ?= 8080
REDIS_PORT = $(shell echo "$(REDIS_URL)" | sed -E 's#^redis://([^@/]*@)?[^:/]*:?([0-9]*).*#\2#; s#^$$#6379#')

.PHONY: run test bench soak chaos fmt lint redis build sio-compliance fuzz

build:
	cargo build --release

## The hub in dev mode on :$(PORT) with the demo page at http://localhost:$(PORT)/, and one job
## worker beside it (stopped with SIGTERM when the hub exits).
run: redis build
	@REDIS_URL=$(REDIS_URL) ./target/release/relay-hub worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT; \
	trap 'exit 130' INT TERM; \
	HUB_AUTH=dev REDIS_URL=$(REDIS_URL) PORT=$(PORT) ./target/release/relay-hub

## Starts a local redis-server unless one answers on REDIS_URL.
redis:
	@if redis-cli -u "$(REDIS_URL)" ping >/dev/null 2>&1; then \
	  echo "redis answers on $(REDIS_URL)"; \
	else \
	  command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install -y redis-server)"; exit 1; }; \
	  echo "starting redis-server on port $(REDIS_PORT)"; \
	  redis-server --port $(REDIS_PORT) --daemonize yes --save '' --appendonly no >/dev/null; \
	  for i in $$(seq 50); do redis-cli -u "$(REDIS_URL)" ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	fi

## Unit and integration tests (each integration test starts its own redis-server and hub;
## tests/browser.rs also needs /usr/bin/chromium: apt-get install -y chromium).
test: tests/browser/node_modules tests/socketio/node_modules
	cargo test --workspace --all-targets

## playwright-core for the browser test (it drives the system Chromium, no browser download).
tests/browser/node_modules: tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	@touch $@

## socket.io-client for the Socket.IO end-to-end tests (tests/socketio_client.rs).
tests/socketio/node_modules: tests/socketio/package-lock.json
	npm ci --prefix tests/socketio --no-audit --no-fund --loglevel=error
	@touch $@

## The Socket.IO protocol's reference test application on :3000 (127.0.0.1 and ::1).
sio-compliance:
	cargo run --release --bin sio-compliance
## Benchmarks (a few minutes): release hub + hub-bench, the socket.io baseline (npm ci), a
## private redis-server; servers pinned to CPU 0, load generator and Redis to CPU 1. Writes
## BENCHMARKS.md. Needs redis-server, node/npm and taskset.
bench:
	cargo build --release -p relay-hub -p hub-bench
	cd bench/baseline && npm ci --no-audit --no-fund --loglevel=error
	./target/release/hub-bench suite --out BENCHMARKS.md

## Soak (10 minutes; SOAK_SECONDS=60 make soak for a short one): a release hub and a private
## redis-server started by hub-bench; steady clients plus connect/join/chat/leave/disconnect
## churn; prints the RSS curve and fails when anything is left over, lost, or RSS drifted >10%.
SOAK_SECONDS ?= 600
soak:
	cargo build --release -p relay-hub -p hub-bench
	./target/release/hub-bench soak --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

## Fault injection (about two minutes), each scenario with its own redis-server and hubs:
## Redis SIGKILLed and restarted three times under load, one of three hubs SIGKILLed under
## load, 100 clients that never read beside 1,000 that do. Fails when any check fails.
chaos:
	cargo build --release -p relay-hub -p hub-bench
	@status=0; for s in redis-restart instance-kill slow-consumer; do \
	  echo "== hub-bench $$s"; ./target/release/hub-bench $$s || status=1; \
	done; exit $$status

## Property-based fuzzing of the WebSocket, RESP, Engine.IO/Socket.IO and JSON frame parsers:
## 11 properties x FUZZ_CASES generated cases each (1.1 million by default); any panic fails.
FUZZ_CASES ?= 100000
fuzz:
	FUZZ_CASES=$(FUZZ_CASES) cargo test --release -p hub-actors --lib fuzz::
	FUZZ_CASES=$(FUZZ_CASES) cargo test --release -p hub-actors --test parser_properties
	@echo "fuzz: 11 properties x $(FUZZ_CASES) cases = $$((11 * $(FUZZ_CASES))) generated cases, 0 panics"

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
