//! `hub-bench streams`: AI answers streamed to the browser (docs/jobs.md#streams-to-the-browser)
//! at scale. `--streams` users hold one session each (every `--socketio-every`-th through
//! Socket.IO, the rest native `/ws`); the load generator acts as the workers: it enqueues and
//! claims one job per user through the worker protocol, then emits `--rate` chunks per second
//! per job with `relay_job_chunk` for `--seconds` (pipelined, over `--redis-conns`
//! connections, [`worker`]), and completes them. Each delta carries its emit time, so the
//! session measures emit -> frame ([`receiver`]).
//!
//! Reported: latency p50..max, chunks sent against received (loss, duplicates, order per job),
//! the hub's RSS before the streams and during them (memory per active stream), the CPU of
//! the hub, Redis and the load generator. Mid-stream `--reconnects` sessions drop their
//! connection, stay away `--away-ms`, connect again and send `watch-job` with the last seq
//! they had: the time from the start of that reconnect to the first chunk they missed.
//!
//! Without `--target` it starts its own redis-server and hub (`HUB_WORKERS=1`), the hub pinned
//! to `--server-cpu`, Redis and itself to `--client-cpu`. `--markdown` prints the section
//! `make bench` appends to `BENCHMARKS.md` instead of the JSON line.

mod markdown;
mod receiver;
mod worker;

use std::{
    cell::RefCell,
    net::SocketAddr,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{
    args::Args,
    client,
    proto::Proto,
    report,
    stack::{self, HubProcess, RedisServer, Scratch},
    suite, sys,
    verdict::Verdict,
};
use receiver::{Session, Tally};

/// What a run does.
struct Options {
    streams: usize,
    rate: f64,
    seconds: f64,
    socketio_every: usize,
    reconnects: usize,
    reconnect_at: f64,
    away: Duration,
    spread: Duration,
    redis_conns: usize,
    slot: Duration,
}

/// The hub and Redis under test, started here or given.
struct Stack {
    hub: SocketAddr,
    hub_pid: Option<u32>,
    redis: SocketAddr,
    redis_pid: Option<u32>,
    commands: Vec<String>,
    redis_log: Option<PathBuf>,
    owned: Option<(Scratch, RedisServer, HubProcess)>,
}

/// The hub's counters of what can lose or delay a chunk, compared before and after.
const COUNTERS: [&str; 6] = [
    "hub_redis_reconnects_total",
    "hub_redis_unresponsive_total",
    "hub_redis_read_pauses_total",
    "hub_slow_consumer_kicks_total",
    "hub_dropped_deliveries_total",
    "hub_invalid_payloads_total",
];

fn counters(hub: SocketAddr) -> Vec<Option<f64>> {
    COUNTERS.iter().map(|c| super::metric_sum(hub, c)).collect()
}

/// Lines redis-server logs when it drops a client over its output buffer limit.
const REDIS_DROP_LINE: &str = "overcoming of output buffer limits";

/// Runs the scenario; with `--markdown`, prints the `BENCHMARKS.md` section on stdout (the
/// figures as a table on stderr) instead of the JSON line.
pub async fn main(mut args: Args) -> Result<bool, String> {
    let markdown: bool = args.get("markdown", false)?;
    let out = run(args).await?;
    if markdown {
        report::table(&out);
        print!("{}", markdown::section(&out));
    } else {
        report::emit(&out);
    }
    Ok(out["pass"] != false)
}

async fn run(mut args: Args) -> Result<Value, String> {
    let streams: usize = args.get("streams", 1000)?;
    let seconds: f64 = args.get("seconds", 20.0)?;
    let o = Options {
        streams,
        rate: args.get("rate", 50.0)?,
        seconds,
        socketio_every: args.get("socketio-every", 10)?,
        reconnects: args.get("reconnects", 100usize)?.min(streams),
        reconnect_at: args.get("reconnect-at", seconds / 2.0)?,
        away: Duration::from_millis(args.get("away-ms", 500)?),
        spread: Duration::from_millis(args.get("reconnect-spread-ms", 1000)?),
        redis_conns: args.get("redis-conns", 4usize)?.clamp(1, streams.max(1)),
        slot: Duration::from_micros(args.get("slot-us", 1000)?),
    };
    if o.streams == 0 || o.rate <= 0.0 || o.seconds <= 0.0 {
        return Err("--streams, --rate and --seconds must be positive".into());
    }
    let mut stack = start_stack(&mut args)?;
    args.finish()?;
    let loadavg_before = suite::loadavg();
    eprintln!(
        "streams: {} sessions, {} chunks/s each for {} s, {} reconnects at {} s",
        o.streams, o.rate, o.seconds, o.reconnects, o.reconnect_at
    );

    let tag = format!(
        "st{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let users: Vec<String> = (0..o.streams).map(|i| format!("{tag}-u{i}")).collect();
    let protos: Vec<Proto> = (0..o.streams).map(|i| proto_of(&o, i)).collect();
    let tally = Rc::new(RefCell::new(Tally::new(o.streams)));
    let sessions = connect_all(stack.hub, &users, &protos, &tally).await?;
    let mut conn = stack::connect(stack.redis)?;
    let jobs = worker::enqueue_and_claim(&mut conn, &tag, &users)?;
    // The `queued` and `running` state frames reach the sessions; then the hub is idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = stack.hub_pid.and_then(|p| sys::rss_kib(p).ok());
    let counters_before = counters(stack.hub);

    let chunks = (o.rate * o.seconds).round() as u64;
    let start = Instant::now() + Duration::from_millis(100);
    let emitters = spawn_emitters(&o, &jobs, chunks, start, stack.redis)?;
    tokio::time::sleep_until(start.into()).await;
    let marks = Marks::take(&stack);
    let reconnecting =
        spawn_reconnects(&o, start, &stack, &users, &protos, &jobs, &tally, &sessions);
    let mut rss_samples = Vec::new();
    let mut next_sample = start;
    while emitters.iter().any(|h| !h.is_finished()) {
        if Instant::now() >= next_sample {
            if let Some(kib) = stack.hub_pid.and_then(|p| sys::rss_kib(p).ok()) {
                rss_samples.push(kib);
            }
            next_sample += Duration::from_millis(250);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let used = marks.since(&stack);
    let mut emitted = Vec::new();
    for h in emitters {
        emitted.push(h.join().map_err(|_| "an emitter thread panicked")??);
    }
    let mut reconnect_errors = Vec::new();
    for h in reconnecting {
        if let Err(e) = h.await.map_err(|e| e.to_string())? {
            reconnect_errors.push(e);
        }
    }
    worker::complete_all(&mut conn, &jobs)?;
    let per_stream = sent_per_stream(&emitted, o.streams);
    let complete = || {
        let t = tally.borrow();
        t.jobs
            .iter()
            .zip(&per_stream)
            .all(|(j, &n)| j.result_chunks.is_some() && j.missing(n) == 0)
    };
    super::drain(
        complete,
        || 0,
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;
    let rss_after = stack.hub_pid.and_then(|p| sys::rss_kib(p).ok());
    let hub_counters: serde_json::Map<String, Value> = COUNTERS
        .iter()
        .zip(counters(stack.hub).iter().zip(&counters_before))
        .map(|(name, (after, before))| {
            let delta = after.zip(*before).map(|(a, b)| a - b);
            (name.to_string(), json!(delta))
        })
        .collect();
    let redis_drops = stack.redis_log.as_ref().map(|log| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches(REDIS_DROP_LINE)
            .count()
    });
    drop(sessions);

    let figures = Figures {
        o: &o,
        tally: &tally.borrow(),
        per_stream: &per_stream,
        emitted: &emitted,
        used,
        rss: (rss_idle, rss_samples, rss_after),
        reconnect_errors,
    };
    let mut out = figures.report();
    out["loadavg"] = json!({"before": loadavg_before, "after": suite::loadavg()});
    out["commands"] = json!(stack.commands);
    out["hub_counters"] = Value::Object(hub_counters);
    out["redis_output_buffer_drops"] = json!(redis_drops);
    if out["pass"] == false {
        if let Some((scratch, _, _)) = &mut stack.owned {
            scratch.keep();
            eprintln!("streams: logs kept in {}", scratch.dir.display());
        }
    }
    Ok(out)
}

/// Socket.IO for every `--socketio-every`-th user.
fn proto_of(o: &Options, i: usize) -> Proto {
    if o.socketio_every > 0 && i % o.socketio_every == o.socketio_every - 1 {
        Proto::SocketIo
    } else {
        Proto::Native
    }
}

/// The streams that reconnect: spread evenly, alternating between the first user of a
/// stride and the last, so that the sample holds both protocols.
fn reconnect_sample(o: &Options) -> Vec<usize> {
    if o.reconnects == 0 {
        return Vec::new();
    }
    let stride = o.streams / o.reconnects;
    (0..o.reconnects)
        .map(|k| k * stride + if k % 2 == 1 { stride - 1 } else { 0 })
        .collect()
}

/// Starts redis-server and the hub (or takes `--target`, `--redis`, `--pid`).
fn start_stack(args: &mut Args) -> Result<Stack, String> {
    let target: Option<SocketAddr> = args.opt("target")?;
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let redis_bin: String = args.get("redis-server", "redis-server".to_string())?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server_cpu: Option<String> = args.opt("server-cpu")?;
    let client_cpu: Option<String> = args.opt("client-cpu")?;
    let workers: usize = args.get("workers", 1)?;
    if let Some(hub) = target {
        return Ok(Stack {
            hub,
            hub_pid: args.opt("pid")?,
            redis: args.req("redis")?,
            redis_pid: args.opt("redis-pid")?,
            commands: Vec::new(),
            redis_log: None,
            owned: None,
        });
    }
    let (server_cpu, client_cpu) = match (server_cpu, client_cpu) {
        (Some(s), Some(c)) => (Some(s), Some(c)),
        _ if cpus >= 2 => (Some("0".to_string()), Some((cpus - 1).to_string())),
        _ => (None, None),
    };
    if let Some(cpu) = &client_cpu {
        let cpu: usize = cpu
            .parse()
            .map_err(|e| format!("--client-cpu {cpu}: one CPU number ({e})"))?;
        // Redis, started next, and the emitter threads inherit this.
        sys::pin_thread(cpu).map_err(|e| format!("pin to CPU {cpu}: {e}"))?;
    }
    let scratch = Scratch::new("streams")?;
    let redis = RedisServer::start(&redis_bin, &scratch.dir, false)?;
    let env = [("HUB_WORKERS", workers.to_string())];
    let hub = HubProcess::start_on(
        server_cpu.as_deref(),
        &hub_bin,
        &redis.url(),
        &env,
        &scratch.dir,
        "hub",
    )?;
    let pin = client_cpu.map_or(String::new(), |c| format!("taskset -c {c} "));
    // The scratch directory's name holds this run's pid: the report names it the same way
    // every time.
    let scratch_dir = scratch.dir.display().to_string();
    let commands = [
        format!("{pin}{}", redis.command()),
        hub.command.clone(),
        format!("{pin}{}", std::env::args().collect::<Vec<_>>().join(" ")),
    ]
    .map(|c| c.replace(&scratch_dir, "$TMPDIR/hub-bench-streams"))
    .to_vec();
    Ok(Stack {
        hub: hub.addr,
        hub_pid: Some(hub.pid()),
        redis: redis.addr(),
        redis_pid: redis.pid(),
        commands,
        redis_log: Some(scratch.dir.join("redis.log")),
        owned: Some((scratch, redis, hub)),
    })
}

/// Connects every user (100 handshakes at a time) and pumps its frames into the tally.
async fn connect_all(
    hub: SocketAddr,
    users: &[String],
    protos: &[Proto],
    tally: &Rc<RefCell<Tally>>,
) -> Result<Rc<RefCell<Vec<Option<Session>>>>, String> {
    let gate = Rc::new(tokio::sync::Semaphore::new(100));
    let handles: Vec<_> = users
        .iter()
        .zip(protos)
        .map(|(user, &proto)| {
            let (gate, user) = (gate.clone(), user.clone());
            tokio::task::spawn_local(async move {
                let _turn = gate.acquire().await.expect("semaphore open");
                client::open(hub, None, proto, &user)
                    .await
                    .map_err(|e| format!("connect {user}: {e}"))
            })
        })
        .collect();
    let mut sessions = Vec::with_capacity(users.len());
    for (i, h) in handles.into_iter().enumerate() {
        let c = h.await.map_err(|e| e.to_string())??;
        sessions.push(Some(Session::pump(tally.clone(), i, c)));
    }
    Ok(Rc::new(RefCell::new(sessions)))
}

/// One emitter thread per Redis connection, streams dealt round-robin.
fn spawn_emitters(
    o: &Options,
    jobs: &[worker::Job],
    chunks: u64,
    start: Instant,
    redis: SocketAddr,
) -> Result<Vec<std::thread::JoinHandle<Result<worker::Emitted, String>>>, String> {
    (0..o.redis_conns)
        .map(|t| {
            let plan = worker::Plan {
                streams: jobs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % o.redis_conns == t)
                    .map(|(i, j)| (i, j.clone()))
                    .collect(),
                total_streams: jobs.len(),
                rate: o.rate,
                chunks,
                start,
                slot: o.slot,
            };
            let mut conn = stack::connect(redis)?;
            std::thread::Builder::new()
                .name(format!("emitter-{t}"))
                .spawn(move || worker::emit(&mut conn, &plan))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The reconnects, each a local task: drop the connection, stay away, come back.
#[allow(clippy::too_many_arguments)]
fn spawn_reconnects(
    o: &Options,
    start: Instant,
    stack: &Stack,
    users: &[String],
    protos: &[Proto],
    jobs: &[worker::Job],
    tally: &Rc<RefCell<Tally>>,
    sessions: &Rc<RefCell<Vec<Option<Session>>>>,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    let sample = reconnect_sample(o);
    let n = sample.len().max(1) as u32;
    sample
        .into_iter()
        .enumerate()
        .map(|(k, i)| {
            let at = start + Duration::from_secs_f64(o.reconnect_at) + o.spread * k as u32 / n;
            let (tally, sessions, away) = (tally.clone(), sessions.clone(), o.away);
            let (user, job, proto, hub) =
                (users[i].clone(), jobs[i].id.clone(), protos[i], stack.hub);
            tokio::task::spawn_local(async move {
                tokio::time::sleep_until(at.into()).await;
                if let Some(s) = sessions.borrow_mut()[i].take() {
                    s.drop_connection();
                }
                tokio::time::sleep(away).await;
                let s = receiver::reconnect(tally, hub, proto, (i, &user, &job)).await?;
                sessions.borrow_mut()[i] = Some(s);
                Ok(())
            })
        })
        .collect()
}

/// Chunks each stream's emitter got acknowledged.
fn sent_per_stream(emitted: &[worker::Emitted], streams: usize) -> Vec<u64> {
    let mut per = vec![0; streams];
    for e in emitted {
        for &(i, n) in &e.per_stream {
            per[i] = n;
        }
    }
    per
}

/// CPU times at the start of the streams.
struct Marks {
    hub: sys::CpuMark,
    redis: sys::CpuMark,
    me: Duration,
    cpus: Vec<(u64, u64)>,
    waits: Vec<Option<Duration>>,
    at: Instant,
}

/// The hub, Redis and this process, for the run-queue delay.
fn pids(stack: &Stack) -> [Option<u32>; 3] {
    [stack.hub_pid, stack.redis_pid, Some(std::process::id())]
}

/// What the processes used over the streams.
struct Used {
    /// Hub and Redis CPU, % of one CPU.
    hub: Option<f64>,
    redis: Option<f64>,
    /// The load generator's CPU, % of one CPU.
    me: f64,
    /// Each CPU's busy %, all processes.
    busy: Vec<f64>,
    /// Hub, Redis, load generator: time runnable but waiting for a CPU, % of the run.
    waiting: Vec<Option<f64>>,
    /// Seconds.
    wall: f64,
}

impl Marks {
    fn take(stack: &Stack) -> Marks {
        Marks {
            hub: sys::CpuMark::take(stack.hub_pid),
            redis: sys::CpuMark::take(stack.redis_pid),
            me: sys::self_cpu(),
            cpus: suite::cpu_times(),
            waits: pids(stack).map(|p| p.and_then(sys::runqueue_wait)).to_vec(),
            at: Instant::now(),
        }
    }

    fn since(&self, stack: &Stack) -> Used {
        let pct = |m: &sys::CpuMark, pid| m.since(pid).map(|(cpu, wall)| 100.0 * cpu / wall);
        let wall = self.at.elapsed().as_secs_f64();
        let me = 100.0 * (sys::self_cpu() - self.me).as_secs_f64() / wall;
        let busy = suite::cpu_times()
            .iter()
            .zip(&self.cpus)
            .map(|(now, then)| 100.0 * (now.0 - then.0) as f64 / (now.1 - then.1).max(1) as f64)
            .collect();
        let waiting = pids(stack)
            .iter()
            .zip(&self.waits)
            .map(|(p, before)| {
                let now = p.and_then(sys::runqueue_wait)?;
                Some(100.0 * now.checked_sub((*before)?)?.as_secs_f64() / wall)
            })
            .collect();
        Used {
            hub: pct(&self.hub, stack.hub_pid),
            redis: pct(&self.redis, stack.redis_pid),
            me,
            busy,
            waiting,
            wall,
        }
    }
}

/// Everything the report is made of.
struct Figures<'a> {
    o: &'a Options,
    tally: &'a Tally,
    per_stream: &'a [u64],
    emitted: &'a [worker::Emitted],
    used: Used,
    rss: (Option<u64>, Vec<u64>, Option<u64>),
    reconnect_errors: Vec<String>,
}

impl Figures<'_> {
    fn report(&self) -> Value {
        let (o, t) = (self.o, self.tally);
        let sent: u64 = self.per_stream.iter().sum();
        let (mut live, mut replay_only, mut lost, mut dups, mut order, mut overlap) =
            (0, 0, 0, 0, 0, 0);
        let (mut results, mut bad_results) = (0, 0);
        for (j, &n) in t.jobs.iter().zip(self.per_stream) {
            let (l, r) = j.counts();
            live += l;
            replay_only += r;
            lost += j.missing(n);
            dups += j.duplicates;
            order += j.out_of_order;
            overlap += j.overlap;
            results += j.result_chunks.is_some() as u64;
            bad_results += j.bad_results + (j.result_chunks.is_some_and(|c| c != n)) as u64;
        }
        let mut lateness = report::histogram();
        for e in self.emitted {
            let _ = lateness.add(&e.lateness);
        }
        let mut all = report::histogram();
        for h in &t.latency {
            let _ = all.add(h);
        }
        let Used {
            hub: hub_cpu,
            redis: redis_cpu,
            me,
            busy,
            waiting,
            wall,
        } = &self.used;
        let (idle, samples, after) = &self.rss;
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        let during = sorted.get(sorted.len() / 2).copied();
        let peak = sorted.last().copied();
        let per_stream = |kib: Option<u64>| {
            kib.zip(*idle)
                .map(|(d, i)| (d as f64 - i as f64) * 1024.0 / o.streams as f64)
        };
        let sample = reconnect_sample(o);
        let unanswered = receiver::still_waiting(t);
        let mut verdict = Verdict::default();
        verdict.check(
            "no chunk lost",
            lost == 0,
            format!("{lost} of {sent} missing"),
        );
        verdict.check(
            "no chunk twice or out of order",
            dups == 0 && order == 0,
            format!("{dups} duplicates, {order} out of order"),
        );
        verdict.check(
            "every job's ai-result, with its last seq",
            results == o.streams as u64 && bad_results == 0,
            format!("{results} of {} results, {bad_results} wrong", o.streams),
        );
        verdict.check(
            "every reconnect got its missed chunks",
            self.reconnect_errors.is_empty() && unanswered == 0,
            format!(
                "{} failed, {unanswered} still waiting{}",
                self.reconnect_errors.len(),
                self.reconnect_errors
                    .first()
                    .map_or(String::new(), |e| format!(": {e}"))
            ),
        );
        verdict.check(
            "no error frame",
            t.errors.is_empty(),
            t.errors.first().cloned().unwrap_or_default(),
        );
        verdict.print("streams");
        let sio = (0..o.streams)
            .filter(|&i| proto_of(o, i) == Proto::SocketIo)
            .count();
        let mut out = json!({
            "scenario": "streams",
            "streams": o.streams,
            "socketio_sessions": sio,
            "rate_per_stream": o.rate,
            "seconds": o.seconds,
            "redis_conns": o.redis_conns,
            "slot_us": o.slot.as_micros() as u64,
            "chunks": {
                "sent": sent,
                "received_live": live,
                "received_by_replay_only": replay_only,
                "lost": lost,
                "duplicates": dups,
                "out_of_order": order,
                "replayed_and_live": overlap,
                "results": results,
                "bad_results": bad_results,
                "per_sec": report::round(sent as f64 / wall, 0),
            },
            "latency_us": {
                "all": report::latency(&all),
                "native": report::latency(&t.latency[0]),
                "socketio": report::latency(&t.latency[1]),
            },
            "emit_lateness_us": report::latency(&lateness),
            "pipelines": self.emitted.iter().map(|e| e.writes).sum::<u64>(),
            "hub": {
                "rss_idle_kib": idle,
                "rss_during_median_kib": during,
                "rss_during_peak_kib": peak,
                "rss_after_kib": after,
                "bytes_per_active_stream": per_stream(during).map(|b| report::round(b, 0)),
                "bytes_per_active_stream_peak": per_stream(peak).map(|b| report::round(b, 0)),
                "cpu_pct": hub_cpu.map(|c| report::round(c, 1)),
                "cpu_us_per_chunk": hub_cpu.map(|c| report::round(c / 100.0 * wall * 1e6 / sent.max(1) as f64, 2)),
            },
            "redis_cpu_pct": redis_cpu.map(|c| report::round(c, 1)),
            "loadgen_cpu_pct": report::round(*me, 1),
            "cpu_busy_pct": busy.iter().map(|b| report::round(*b, 1)).collect::<Vec<_>>(),
            "runqueue_wait_pct": {
                "hub": waiting[0].map(|w| report::round(w, 1)),
                "redis": waiting[1].map(|w| report::round(w, 1)),
                "loadgen": waiting[2].map(|w| report::round(w, 1)),
            },
            "reconnect": {
                "sessions": sample.len(),
                "native": sample.iter().filter(|&&i| proto_of(o, i) == Proto::Native).count(),
                "away_ms": o.away.as_millis() as u64,
                "at_secs": o.reconnect_at,
                "to_connected_us": report::latency(&t.connected),
                "to_first_missed_chunk_us": report::latency(&t.first_replayed),
                "to_job_watched_us": report::latency(&t.watched),
                "chunks_per_replay": mean(&t.replay_sizes),
            },
        });
        for (k, v) in verdict.fields() {
            out[k] = v;
        }
        out
    }
}

fn mean(values: &[u64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| report::round(values.iter().sum::<u64>() as f64 / values.len() as f64, 1))
}
