//! `notify`: U users with one session each; a publisher does `PUBLISH
//! user:notifications:{id}` round-robin over them at R msgs/s (or, with `--rate 0`, as fast as
//! the server delivers: a closed loop with at most `--window` messages in flight) for T
//! seconds. Reports delivered, lost, deliveries/s, latency (publish to receipt) and the
//! server's CPU time per delivery.

use std::{
    cell::RefCell,
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::{json, Value};

use crate::{
    args::Args,
    client,
    proto::notification_payload,
    publisher::{publish_command, Plan, Window},
    report, sys,
};

use super::{drain, open_many, publish, Target};

/// Shared by the receivers of one run.
struct Tally {
    hist: hdrhistogram::Histogram<u64>,
    /// Messages below this sequence number belong to the warm-up.
    measured_from: u64,
    delivered: u64,
    last_us: u64,
}

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let target = Target::from_args(&mut args)?;
    let redis: SocketAddr = args.req("redis")?;
    let users: u64 = args.get("users", 1000)?;
    let rate: f64 = args.get("rate", 10_000.0)?;
    let seconds: f64 = args.get("seconds", 5.0)?;
    let warmup: f64 = args.get("warmup", 1.0)?;
    let window: u64 = args.get("window", 2000)?;
    let first_user: u64 = args.get("first-user", 1)?;
    let concurrency: usize = args.get("concurrency", 200)?;
    args.finish()?;

    let names = (0..users).map(|i| (first_user + i).to_string()).collect();
    let opened = open_many(&target, names, concurrency, 0, None).await;
    if opened.clients.is_empty() {
        return Err(format!(
            "no client connected: {}",
            opened.first_error.unwrap_or_default()
        ));
    }
    let tally = Rc::new(RefCell::new(Tally {
        hist: report::histogram(),
        measured_from: u64::MAX,
        delivered: 0,
        last_us: 0,
    }));
    let seen = Arc::new(AtomicU64::new(0));
    let mut ends = Vec::new();
    for (_, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        let (tally, seen) = (tally.clone(), seen.clone());
        ends.push(tokio::task::spawn_local(client::pump(
            stream,
            decoder,
            proto,
            move |bt, bs| {
                let now = sys::now_us();
                seen.fetch_add(1, Ordering::Release);
                let mut t = tally.borrow_mut();
                if bs >= t.measured_from {
                    report::record(&mut t.hist, now.saturating_sub(bt));
                    t.delivered += 1;
                    t.last_us = now;
                }
            },
        )));
    }

    let plan = |seconds: f64, first_seq: u64, base: u64| {
        let mut payload = String::with_capacity(160);
        Plan {
            redis,
            rate: (rate > 0.0).then_some(rate),
            duration: Duration::from_secs_f64(seconds),
            max_messages: u64::MAX,
            window: (rate <= 0.0).then(|| Window {
                progress: seen.clone(),
                base,
                size: window,
            }),
            command: Box::new(move |seq, bt, out| {
                let seq = first_seq + seq;
                let user = first_user + seq % users;
                payload.clear();
                notification_payload(&mut payload, user, bt, seq);
                publish_command(
                    out,
                    &format!("user:notifications:{user}"),
                    payload.as_bytes(),
                );
            }),
        }
    };

    // Warm-up (JIT, allocator, connection buffers), drained and not measured.
    let warm = if warmup > 0.0 {
        publish(plan(warmup, 0, 0)).await?.sent
    } else {
        0
    };
    let seen_now = || seen.load(Ordering::Acquire);
    drain(
        || seen_now() >= warm,
        seen_now,
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .await;
    tally.borrow_mut().measured_from = warm;
    let seen_before = seen_now();

    let cpu = sys::CpuMark::take(target.pid);
    let own_cpu = sys::self_cpu();
    let start_us = sys::now_us();
    let published = publish(plan(seconds, warm, seen_before)).await?;
    let expected = published.with_receivers;
    drain(
        || tally.borrow().delivered >= expected,
        || tally.borrow().delivered,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .await;
    let server_cpu = cpu.since(target.pid);
    let own_cpu = (sys::self_cpu() - own_cpu).as_secs_f64();
    let closed = ends.iter().filter(|h| h.is_finished()).count();

    let t = tally.borrow();
    let span = (t.last_us.max(start_us) - start_us) as f64 / 1e6;
    let mut out = target.describe("notify");
    out.extend(
        json!({
            "users": users,
            "connected": users as usize - opened.failed,
            "connect_failures": opened.failed,
            "rate": if rate > 0.0 { json!(rate) } else { json!("max") },
            "window": if rate > 0.0 { Value::Null } else { json!(window) },
            "seconds": seconds,
            "published": published.sent,
            "publish_rate": report::round(published.sent as f64 / published.secs.max(1e-9), 0),
            "expected": expected,
            "delivered": t.delivered,
            "lost": expected.saturating_sub(t.delivered),
            "deliveries_per_sec": report::round(t.delivered as f64 / span.max(1e-9), 0),
            "latency_us": report::latency(&t.hist),
            "server_cpu": server_cpu_fields(server_cpu, t.delivered),
            "loadgen_cpu_pct": report::round(own_cpu * 100.0 / span.max(1e-9), 1),
            "sessions_closed_during_run": closed,
            "redis_errors": published.errors,
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    if let Some(e) = &published.first_error {
        out.insert("redis_first_error".into(), json!(e));
    }
    Ok(Value::Object(out))
}

/// CPU seconds, utilisation and microseconds per delivery of the server process.
pub fn server_cpu_fields(cpu: Option<(f64, f64)>, deliveries: u64) -> Value {
    match cpu {
        None => Value::Null,
        Some((cpu, wall)) => json!({
            "cpu_secs": report::round(cpu, 3),
            "utilisation_pct": report::round(cpu * 100.0 / wall.max(1e-9), 1),
            "us_per_delivery": if deliveries > 0 {
                json!(report::round(cpu * 1e6 / deliveries as f64, 2))
            } else {
                Value::Null
            },
        }),
    }
}
