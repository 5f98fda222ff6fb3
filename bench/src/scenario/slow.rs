//! `slow-consumer` (part of `make chaos` and `make bench`): do clients that stop reading hurt
//! the others? N normal clients receive notifications at a steady rate while S heavy users
//! receive large notifications, twice: first with the S heavy users as ordinary clients that
//! read (the baseline), then as raw sockets with a small receive buffer that complete the
//! handshake and never read again; whenever the hub drops one, it comes back and stops reading
//! again, so the hub holds S stuck clients the whole run. Same traffic in both runs; the only
//! difference is that S clients do not read.
//!
//! Reports the normal clients' latency (p50/p99) and losses in both runs, the hub's RSS
//! (before, peak, after) in both, and the kicks it counted (`hub_slow_consumer_kicks_total`).
//! Checks: p99 with the stuck clients within 2x of without (`--max-p99-ratio`, 0: report
//! only), nothing lost by normal clients, every stuck client dropped, RSS growth bounded by the
//! per-session queue limit.
//!
//! Runs against a given hub (`--target --pid --redis`, as `make bench` does) or starts its
//! own redis-server and hub (`--hub-bin`).

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    os::fd::AsRawFd,
    path::PathBuf,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::{
    args::Args,
    client::{self, write_all},
    proto::Proto,
    publisher::{publish_command, Plan},
    report,
    stack::{HubProcess, RedisServer, Scratch},
    sys,
    verdict::Verdict,
};

use super::{
    close_frame, drain, health_async, metric_sum, notification_for, open_many, publish, source_ip,
    Target,
};

/// The normal clients' receipts.
struct Tally {
    hist: hdrhistogram::Histogram<u64>,
    measuring: bool,
    delivered: u64,
    seen: u64,
}

/// Options shared by both runs.
#[derive(Clone, Copy)]
struct Load {
    redis: SocketAddr,
    normal: u64,
    heavy: u64,
    rate: f64,
    heavy_rate: f64,
    heavy_bytes: usize,
}

/// The publisher's plan for `seconds`: normal users round robin at `rate`, heavy users round
/// robin at `heavy_rate` with padded payloads; counts what went to normal users.
fn plan(load: Load, seconds: f64, normal_sent: Arc<AtomicU64>) -> Plan {
    let total = load.rate + load.heavy_rate;
    let heavy_share = (load.heavy_rate * 1000.0 / total) as u64; // per mille
    let pad = "x".repeat(load.heavy_bytes.saturating_sub(120));
    let mut payload = String::with_capacity(load.heavy_bytes + 160);
    let (mut n, mut h) = (0u64, 0u64);
    Plan {
        redis: load.redis,
        rate: Some(total),
        duration: Duration::from_secs_f64(seconds),
        max_messages: u64::MAX,
        window: None,
        command: Box::new(move |seq, bt, out| {
            payload.clear();
            let heavy =
                load.heavy > 0 && (seq * heavy_share / 1000) != ((seq + 1) * heavy_share / 1000);
            let user = if heavy {
                h += 1;
                format!("h{}", (h - 1) % load.heavy)
            } else {
                n += 1;
                normal_sent.fetch_add(1, Ordering::Relaxed);
                format!("n{}", (n - 1) % load.normal)
            };
            notification_for(&mut payload, &user, bt, seq);
            if heavy {
                payload.pop();
                payload.push_str(",\"pad\":\"");
                payload.push_str(&pad);
                payload.push_str("\"}");
            }
            publish_command(
                out,
                &format!("user:notifications:{user}"),
                payload.as_bytes(),
            );
        }),
    }
}

/// One run's figures.
struct RunFigures {
    latency: Value,
    p99: Option<u64>,
    expected: u64,
    delivered: u64,
    rss_before: u64,
    rss_max: u64,
    rss_after: u64,
    kicks: f64,
    stuck_connections: u64,
}

impl RunFigures {
    fn json(&self) -> Value {
        json!({
            "latency_us": self.latency,
            "normal_expected": self.expected,
            "normal_delivered": self.delivered,
            "normal_lost": self.expected.saturating_sub(self.delivered),
            "rss_before_kib": self.rss_before,
            "rss_max_kib": self.rss_max,
            "rss_after_kib": self.rss_after,
            "kicks": self.kicks,
            "stuck_connections_opened": self.stuck_connections,
        })
    }
}

/// True when the hub reset or closed the connection (checked without reading: `poll` reports
/// an error or hang-up even while unread data waits).
fn dropped_by_peer(stream: &TcpStream) -> bool {
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLRDHUP) != 0
}

/// Keeps `count` stuck clients connected until `stop`: each completes the handshake, gets
/// `connected` and never reads again; one the hub dropped is replaced. Returns connections
/// opened.
async fn keep_stuck(target: SocketAddr, count: u64, rcvbuf: u32, stop: Rc<Cell<bool>>) -> u64 {
    let mut stuck: Vec<Option<Rc<TcpStream>>> = vec![None; count as usize];
    let mut opened = 0u64;
    let mut next_source = 600_000u64;
    while !stop.get() {
        for (j, slot) in stuck.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|s| dropped_by_peer(s)) {
                *slot = None;
            }
            if slot.is_none() && !stop.get() {
                next_source += 1;
                let user = format!("h{j}");
                let source = Some(source_ip(next_source));
                if let Ok(c) =
                    client::open_with(target, source, Some(rcvbuf), Proto::Native, &user).await
                {
                    *slot = Some(c.into_parts().0);
                    opened += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    opened
}

/// Samples the hub's RSS every 100 ms until `stop`; returns the peak.
async fn peak_rss(pid: Option<u32>, stop: Rc<Cell<bool>>) -> u64 {
    let mut peak = 0;
    while !stop.get() {
        if let Some(kib) = pid.and_then(|p| sys::rss_kib(p).ok()) {
            peak = peak.max(kib);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

#[allow(clippy::too_many_arguments)]
async fn one_run(
    target: &Target,
    load: Load,
    tally: &Rc<RefCell<Tally>>,
    warmup: f64,
    seconds: f64,
    stuck: Option<u32>,
) -> Result<RunFigures, String> {
    let rss = || target.pid.and_then(|p| sys::rss_kib(p).ok()).unwrap_or(0);
    let kicks_before = metric_sum(target.addr, "hub_slow_consumer_kicks_total").unwrap_or(0.0);
    let stop = Rc::new(Cell::new(false));
    // The heavy users: readers (baseline) or stuck clients.
    let mut readers = Vec::new();
    let stuck_task = match stuck {
        None => {
            let names = (0..load.heavy).map(|j| format!("h{j}")).collect();
            let opened = open_many(target, names, 100, 400_000, None).await;
            for (_, c) in opened.clients {
                let (stream, decoder, proto) = c.into_parts();
                readers.push((
                    stream.clone(),
                    tokio::task::spawn_local(client::pump(stream, decoder, proto, |_, _| {})),
                ));
            }
            None
        }
        Some(rcvbuf) => Some(tokio::task::spawn_local(keep_stuck(
            target.addr,
            load.heavy,
            rcvbuf,
            stop.clone(),
        ))),
    };
    let rss_before = rss();
    let sampler = tokio::task::spawn_local(peak_rss(target.pid, stop.clone()));

    // Warm-up, then the measured part.
    let warm_sent = Arc::new(AtomicU64::new(0));
    let seen_before = tally.borrow().seen;
    if warmup > 0.0 {
        publish(plan(load, warmup, warm_sent.clone())).await?;
    }
    let seen = || tally.borrow().seen - seen_before;
    let warm = warm_sent.load(Ordering::Relaxed);
    drain(
        || seen() >= warm,
        seen,
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .await;
    {
        let mut t = tally.borrow_mut();
        t.hist.reset();
        t.delivered = 0;
        t.measuring = true;
    }
    let sent = Arc::new(AtomicU64::new(0));
    publish(plan(load, seconds, sent.clone())).await?;
    let expected = sent.load(Ordering::Relaxed);
    drain(
        || tally.borrow().delivered >= expected,
        || tally.borrow().delivered,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .await;
    tally.borrow_mut().measuring = false;
    stop.set(true);
    let stuck_connections = match stuck_task {
        Some(t) => t.await.map_err(|e| e.to_string())?,
        None => 0,
    };
    let rss_max = sampler.await.map_err(|e| e.to_string())?;
    for (stream, _) in &readers {
        let _ = write_all(stream, &close_frame(1000)).await;
    }
    // Let the heavy users' sessions go before the next run.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let h = health_async(target.addr).await;
        if h["websocket"]["connections"].as_u64() == Some(load.normal) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_, pump) in readers {
        pump.abort();
    }
    let kicks =
        metric_sum(target.addr, "hub_slow_consumer_kicks_total").unwrap_or(0.0) - kicks_before;
    let t = tally.borrow();
    Ok(RunFigures {
        latency: report::latency(&t.hist),
        p99: (!t.hist.is_empty()).then(|| t.hist.value_at_quantile(0.99)),
        expected,
        delivered: t.delivered,
        rss_before,
        rss_max: rss_max.max(rss_before),
        rss_after: rss(),
        kicks,
        stuck_connections,
    })
}

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let given: Option<SocketAddr> = args.opt("target")?;
    let given_pid: Option<u32> = args.opt("pid")?;
    let given_redis: Option<SocketAddr> = args.opt("redis")?;
    let normal: u64 = args.get("normal", 1000)?;
    let heavy: u64 = args.get("slow", 100)?;
    let rate: f64 = args.get("rate", 2000.0)?;
    let heavy_rate: f64 = args.get("slow-rate", 1000.0)?;
    let heavy_bytes: usize = args.get("slow-payload-bytes", 16 * 1024)?;
    let seconds: f64 = args.get("seconds", 10.0)?;
    let warmup: f64 = args.get("warmup", 1.0)?;
    let rcvbuf: u32 = args.get("rcvbuf", 4096)?;
    let queue_bytes: u64 = args.get("queue-bytes", 1 << 20)?;
    let max_ratio: f64 = args.get("max-p99-ratio", 2.0)?;
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let redis_bin: String = args.get("redis-server", "redis-server".to_string())?;
    args.finish()?;
    if normal == 0 {
        return Err("--normal must be positive".into());
    }

    // The hub: given, or our own.
    let mut scratch = None;
    let mut own = None;
    let (target, redis) = match (given, given_redis) {
        (Some(addr), Some(redis)) => (
            Target {
                addr,
                proto: Proto::Native,
                pid: given_pid,
                label: "hub".into(),
            },
            redis,
        ),
        (None, None) => {
            let s = Scratch::new("slow-consumer")?;
            let r = RedisServer::start(&redis_bin, &s.dir, false)?;
            let env = [("HUB_SESSION_QUEUE_BYTES", queue_bytes.to_string())];
            let h = HubProcess::start(&hub_bin, &r.url(), &env, &s.dir, "hub")?;
            let t = h.target("hub");
            let addr = r.addr();
            scratch = Some(s);
            own = Some((r, h));
            (t, addr)
        }
        _ => return Err("give both --target and --redis, or neither".into()),
    };
    eprintln!(
        "slow-consumer: {normal} normal clients at {rate} notifications/s; {heavy} heavy users at {heavy_rate}/s of {heavy_bytes} B; {seconds} s per run; hub {} (pid {})",
        target.addr,
        target.pid.map_or("unknown".into(), |p| p.to_string())
    );

    let names = (0..normal).map(|i| format!("n{i}")).collect();
    let opened = open_many(&target, names, 200, 0, None).await;
    if opened.failed > 0 {
        return Err(format!(
            "{} normal clients failed to connect: {}",
            opened.failed,
            opened.first_error.unwrap_or_default()
        ));
    }
    let tally = Rc::new(RefCell::new(Tally {
        hist: report::histogram(),
        measuring: false,
        delivered: 0,
        seen: 0,
    }));
    let mut pumps = Vec::new();
    for (_, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        let tally = tally.clone();
        pumps.push(tokio::task::spawn_local(client::pump(
            stream,
            decoder,
            proto,
            move |bt, _| {
                let now = sys::now_us();
                let mut t = tally.borrow_mut();
                t.seen += 1;
                if t.measuring {
                    report::record(&mut t.hist, now.saturating_sub(bt));
                    t.delivered += 1;
                }
            },
        )));
    }
    let load = Load {
        redis,
        normal,
        heavy,
        rate,
        heavy_rate,
        heavy_bytes,
    };
    eprintln!("slow-consumer: run 1, the heavy users read");
    let without = one_run(&target, load, &tally, warmup, seconds, None).await?;
    eprintln!("slow-consumer: run 2, the heavy users never read");
    let with = one_run(&target, load, &tally, warmup, seconds, Some(rcvbuf)).await?;
    let normal_closed = pumps.iter().filter(|p| p.is_finished()).count();
    for p in &pumps {
        p.abort();
    }
    let self_started = own.is_some();
    let mut exit = None;
    let mut panics = 0;
    if let Some((_, mut hub)) = own.take() {
        panics = hub.log_problems().0;
        exit = hub.stop();
    }

    let ratio = match (with.p99, without.p99) {
        (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
        _ => None,
    };
    let growth = with.rss_max.saturating_sub(with.rss_before);
    let bound_kib = heavy * queue_bytes / 1024 + 16 * 1024;
    let mut v = Verdict::default();
    let latency = format!(
        "p99 {} us without, {} us with ({}); p50 {} / {} us",
        without.p99.map_or("–".into(), |p| p.to_string()),
        with.p99.map_or("–".into(), |p| p.to_string()),
        ratio.map_or("–".into(), |r| format!("{r:.2}x")),
        without.latency["p50"],
        with.latency["p50"]
    );
    if max_ratio > 0.0 {
        v.check(
            &format!("normal clients' p99 with stuck clients within {max_ratio}x of without"),
            ratio.is_some_and(|r| r <= max_ratio),
            latency,
        );
    } else {
        eprintln!("slow-consumer: latency (not checked): {latency}");
    }
    v.check(
        "normal clients lost nothing and stayed connected",
        without.delivered == without.expected
            && with.delivered == with.expected
            && normal_closed == 0,
        format!(
            "{}/{} and {}/{} delivered; {normal_closed} closed",
            without.delivered, without.expected, with.delivered, with.expected
        ),
    );
    v.check(
        "every stuck client was dropped",
        heavy == 0 || with.kicks >= heavy as f64,
        format!(
            "{} kicks for {heavy} stuck users ({} stuck connections opened)",
            with.kicks, with.stuck_connections
        ),
    );
    v.check(
        "hub RSS bounded while clients are stuck",
        growth <= bound_kib,
        format!(
            "grew {:.1} MiB to a peak of {:.1} MiB (bound on the growth {:.1} MiB: {heavy} x {} KiB queue + 16 MiB); {:.1} MiB after",
            growth as f64 / 1024.0,
            with.rss_max as f64 / 1024.0,
            bound_kib as f64 / 1024.0,
            queue_bytes / 1024,
            with.rss_after as f64 / 1024.0
        ),
    );
    if self_started {
        v.check(
            "hub never crashed, SIGTERM: exit 0",
            panics == 0 && exit == Some(0),
            format!("panics logged: {panics}; exit code {exit:?}"),
        );
    }
    if !v.passed() {
        if let Some(s) = scratch.as_mut() {
            s.keep();
            eprintln!("slow-consumer: logs kept in {}", s.dir.display());
        }
    }
    v.print("slow-consumer");

    let mut out = target.describe("slow-consumer");
    out.extend(v.fields());
    out.extend(
        json!({
            "normal_clients": normal,
            "stuck_clients": heavy,
            "rate": rate,
            "slow_rate": heavy_rate,
            "slow_payload_bytes": heavy_bytes,
            "seconds": seconds,
            "rcvbuf": rcvbuf,
            "without": without.json(),
            "with": with.json(),
            "p99_ratio": ratio.map(|r| report::round(r, 2)),
            "rss_growth_with_kib": growth,
            "rss_bound_kib": bound_kib,
            "normal_sessions_closed": normal_closed,
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    Ok(Value::Object(out))
}
