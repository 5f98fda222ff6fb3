//! `hub-bench`: the load generator for relay-hub and its socket.io baseline.
//!
//! # Layout
//! - [`ws`]: a minimal WebSocket client (handshake, masked frames, zero-copy decoding).
//! - [`proto`]: the hub's native frames and Socket.IO 4 framing over that client.
//! - [`client`]: one benchmark connection (connect, confirm, join, pump frames).
//! - [`http`]: a keep-alive HTTP/1.1 client for the hub's API (`jobs`).
//! - [`publisher`]: paced or closed-loop `PUBLISH` to Redis with pipelining.
//! - [`scenario`]: `idle`, `notify`, `room`, `chat`, `flood`, `jobs`, the raw write `floor`, `soak`,
//!   `redis-restart`, `instance-kill`, `slow-consumer`, `streams`.
//! - [`stack`], [`leftovers`], [`resilient`], [`verdict`]: what `soak` and the fault scenarios
//!   (`redis-restart`, `instance-kill`, `slow-consumer`; `make soak`, `make chaos`) share:
//!   processes they start and kill, the end-of-run leftover checks, a publisher that outlives
//!   Redis restarts, pass/fail checks.
//! - [`suite`]: `make bench`: starts Redis, the hub and the baseline, runs the standard suite
//!   and writes `BENCHMARKS.md`.
//! - [`markdown`]: renders the suite's runs as `BENCHMARKS.md`.
//! - [`report`], [`sys`], [`args`]: output, `/proc` and clocks, options.
//!
//! Every scenario run is bounded in time and count and prints one JSON line (stdout) and a
//! human-readable table (stderr).

mod args;
mod client;
mod cluster;
mod http;
mod leftovers;
mod markdown;
mod proto;
mod publisher;
mod report;
mod resilient;
mod scenario;
mod stack;
mod suite;
mod sys;
mod verdict;
mod ws;

use std::{future::Future, process::ExitCode};

use args::Args;

const USAGE: &str = "\
usage: hub-bench <command> [--option value ...]

scenarios (each prints one JSON line on stdout and a table on stderr):
  idle    --targets ADDR[,ADDR..] [--pids PID[,PID..]] --connections C [--procs P] [--hold S]
  notify  --target ADDR --redis ADDR [--pid PID] --users U --rate R|0 --seconds T [--window W]
  room    --target ADDR --redis ADDR [--pid PID] --members M --messages K --rate R|0 [--window W]
  chat    --target ADDR [--pid PID] --clients N --rooms R --rate-per-client r --seconds T
  flood   --target ADDR --redis ADDR [--pid PID] --users U --seconds T --payload-bytes B
          [--redis-log FILE]
  jobs    --target ADDR [--pid PID] [--worker-pids PID[,PID..]] --users U --rate R|0
          [--window W] --seconds T [--jobs N] [--http-conns C] [--api-key KEY]
  floor   --sockets 1000 --seconds 3 --frame-bytes 120 --writer-cpu 0 --reader-cpu 1
common: --proto native|socketio (default native), --server LABEL

soak and faults (start their own redis-server and hub, --hub-bin target/release/relay-hub;
each ends with PASS/FAIL checks and exits 1 when one fails):
  soak           [--seconds 600] [--warmup S] [--steady 1000] [--rooms 50] [--churners 100]
                 [--notify-rate 1000] [--chat-rate 0.2] [--rss-tolerance-pct 10]
  redis-restart  [--clients 1000] [--outages 2,3.3,5] [--between 5] [--notify-rate 2000]
                 [--chat-rate 40] [--resume-limit-ms 5000]
  instance-kill  [--clients 900] [--rooms 30] [--rate 1500] [--presence-ttl-ms 2000]
  slow-consumer  [--target ADDR --pid PID --redis ADDR] [--normal 1000] [--slow 100]
                 [--rate 2000] [--slow-rate 1000] [--seconds 10] [--max-p99-ratio 2]
                 [--queue-bytes 1048576 (HUB_SESSION_QUEUE_BYTES of the hub it starts)]
  join-storm     [--members 5000] [--workers 4] [--rate 200] [--seconds 5]
  room-hook      [--clients 1000] [--workers 2]  (join p99: public, hooked uncached, cached)
  drop           [--clients 10000] [--rooms 200] [--seconds 120] [--kill-every 15]
                 [--silent-pct 50] [--reconnect-delay-ms 1000] [--notify-rate 500]
                 [--chat-rate 50] [--senders 4] [--workers 2] [--ramp-rate 1000]
                 [--drain-seconds 60] [--seed 22] [--replay-goal-ms 1000] [--rust-log warn]
                 [--cluster [--kill-master-at S]]
                 (the drop test: every connection killed uncleanly, resume/recovery, loss,
                 duplicates, order, replay p50/p99)

ingest: notification saturation with 1, 2, 4 ... Redis pub/sub connections per hub (medians,
ratio against one), as a Markdown section on stdout (make bench appends it to BENCHMARKS.md):
  ingest [--connections 1,2,4] [--server-cpus 0-N] [--client-cpus LIST] [--workers W]
         [--users 1000] [--seconds 5] [--repeats 3] [--hub-bin target/release/relay-hub]

inbox: the notification centre on two hubs (one Redis): a read mark from one session to the
user's session on the other hub (p50/p99/max), and the unread count at connect, as a Markdown
section on stdout (make bench appends it to BENCHMARKS.md):
  inbox [--users 100] [--marks 5000] [--rate 1000] [--connects 500]
        [--hub-bin target/release/relay-hub]

streams: AI answers streamed to the browser (docs/jobs.md): S sessions, the load generator as
the workers (enqueue, claim, relay_job_chunk at R/s per job, complete); chunk latency, loss,
hub memory per active stream and CPU, and a reconnect mid-stream (time to the first missed
chunk). Starts its own redis-server and hub (hub on --server-cpu, Redis and itself on
--client-cpu), or uses --target/--redis/--pid; --markdown prints the section make bench appends:
  streams [--streams 1000] [--rate 50] [--seconds 20] [--socketio-every 10]
          [--reconnects 100] [--reconnect-at S] [--away-ms 500] [--reconnect-spread-ms 1000]
          [--redis-conns 4] [--slot-us 1000] [--workers 1] [--markdown]
          [--hub-bin target/release/relay-hub] [--target ADDR --redis ADDR [--pid PID]]

suite (make bench): starts redis-server, the hub and the socket.io baseline pinned to CPUs,
runs the standard suite and writes BENCHMARKS.md:
  suite [--out BENCHMARKS.md] [--hub-bin target/release/relay-hub] [--baseline-dir bench/baseline]
        [--server-cpu 0] [--client-cpu 1] [--quick]
";

fn block_on<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = argv.first().cloned() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let args = match Args::parse(&argv[1..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hub-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "idle" => scenario::idle::run(args),
        "notify" => block_on(scenario::notify::run(args)),
        "room" => block_on(scenario::room::run(args)),
        "chat" => block_on(scenario::chat::run(args)),
        "flood" => block_on(scenario::flood::run(args)),
        "jobs" => block_on(scenario::jobs::run(args)),
        "floor" => scenario::floor::run(args),
        "soak" => block_on(scenario::soak::run(args)),
        "redis-restart" => block_on(scenario::redis_restart::run(args)),
        "instance-kill" => block_on(scenario::instance_kill::run(args)),
        "slow-consumer" => block_on(scenario::slow::run(args)),
        "join-storm" => block_on(scenario::storm::run(args)),
        "room-hook" => block_on(scenario::room_hook::run(args)),
        "drop" => block_on(scenario::drop::run(args)),
        "idle-worker" => {
            return match block_on(scenario::idle::worker(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hub-bench idle-worker: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "streams" => {
            return match block_on(scenario::streams::main(args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("hub-bench streams: a check failed (see `checks`)");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("hub-bench streams: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "inbox" => {
            return match suite::inbox::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hub-bench inbox: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "ingest" => {
            return match suite::ingest::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hub-bench ingest: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "suite" => {
            return match suite::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hub-bench suite: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command `{other}`")),
    };
    match result {
        Ok(report) => {
            report::emit(&report);
            if report.get("pass") == Some(&serde_json::Value::Bool(false)) {
                eprintln!("hub-bench {command}: a check failed (see `checks`)");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hub-bench {command}: {e}");
            ExitCode::FAILURE
        }
    }
}
