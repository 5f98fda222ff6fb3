//! `flood`: U users connected; a publisher sends notifications of `--payload-bytes` as fast as
//! Redis accepts them (open loop, no regard for the server) for T seconds. Redis drops a
//! subscriber whose output buffer passes `client-output-buffer-limit pubsub` (32 MiB hard, or
//! 8 MiB for 60 s); whatever it held is lost. The question is whether loss is *silent*:
//! the run reports what was lost, how often Redis dropped a subscriber (from its log, when
//! given), how many reconnects the server itself counted (`/metrics` or `/health`), what
//! `/health` said during the run, and the server's memory growth.

use std::{
    cell::Cell,
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::{json, Value};

use crate::{
    args::Args,
    client,
    proto::notification_payload,
    publisher::{publish_command, Plan},
    report, sys,
};

use super::{drain, health, metric, notify::server_cpu_fields, open_many, publish, Target};

/// Lines redis-server logs when it drops a client over its output buffer limit.
const REDIS_DROP_LINE: &str = "overcoming of output buffer limits";

fn redis_drops(log: &Option<String>) -> Option<u64> {
    let text = std::fs::read_to_string(log.as_ref()?).ok()?;
    Some(text.matches(REDIS_DROP_LINE).count() as u64)
}

/// Reconnects the server itself reports: the hub's `/metrics` counter, or the baseline's
/// `/health` field.
fn server_reconnects(addr: SocketAddr) -> Option<f64> {
    metric(addr, "hub_redis_reconnects_total")
        .or_else(|| health(addr)["redis"]["reconnects"].as_f64())
}

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let target = Target::from_args(&mut args)?;
    let redis: SocketAddr = args.req("redis")?;
    let users: u64 = args.get("users", 100)?;
    let seconds: f64 = args.get("seconds", 5.0)?;
    let payload_bytes: usize = args.get("payload-bytes", 1024)?;
    let redis_log: Option<String> = args.opt("redis-log")?;
    args.finish()?;

    let names = (1..=users).map(|i| i.to_string()).collect();
    let opened = open_many(&target, names, 200, 0, None).await;
    if opened.clients.is_empty() {
        return Err(format!(
            "no client connected: {}",
            opened.first_error.unwrap_or_default()
        ));
    }
    let delivered = Rc::new(Cell::new(0u64));
    for (_, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        let delivered = delivered.clone();
        tokio::task::spawn_local(client::pump(stream, decoder, proto, move |_, _| {
            delivered.set(delivered.get() + 1)
        }));
    }

    // Watch /health through the run (on a thread: the receivers must not wait for it).
    let watching = Arc::new(AtomicBool::new(true));
    let degraded_polls = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (watching, degraded_polls, polls) =
            (watching.clone(), degraded_polls.clone(), polls.clone());
        let addr = target.addr;
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let h = health(addr);
                polls.fetch_add(1, Ordering::Relaxed);
                if h["status"] != "ok" {
                    degraded_polls.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let drops_before = redis_drops(&redis_log);
    let reconnects_before = server_reconnects(target.addr);
    let rss_before = target.pid.and_then(|p| sys::rss_kib(p).ok());
    let cpu = sys::CpuMark::take(target.pid);
    let pad = "x".repeat(payload_bytes.saturating_sub(100));
    let mut payload = String::with_capacity(payload_bytes + 64);
    let published = publish(Plan {
        redis,
        rate: None,
        duration: Duration::from_secs_f64(seconds),
        max_messages: u64::MAX,
        window: None,
        command: Box::new(move |seq, bt, out| {
            let user = 1 + seq % users;
            payload.clear();
            notification_payload(&mut payload, user, bt, seq);
            // pad inside the JSON object: `..."message":"@bt=..@"` + `,"pad":"xxx"}`
            payload.pop();
            payload.push_str(",\"pad\":\"");
            payload.push_str(&pad);
            payload.push_str("\"}");
            publish_command(
                out,
                &format!("user:notifications:{user}"),
                payload.as_bytes(),
            );
        }),
    })
    .await?;
    let rss_peak = target.pid.and_then(|p| sys::rss_kib(p).ok());
    let expected = published.with_receivers;
    drain(
        || delivered.get() >= expected,
        || delivered.get(),
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    let server_cpu = cpu.since(target.pid);
    // let the server finish reconnecting before asking it
    tokio::time::sleep(Duration::from_millis(500)).await;
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.join();
    let drops = redis_drops(&redis_log)
        .zip(drops_before)
        .map(|(a, b)| a - b);
    let reconnects = server_reconnects(target.addr)
        .zip(reconnects_before)
        .map(|(a, b)| a - b);
    let got = delivered.get();
    let lost = expected.saturating_sub(got);
    let reported = reconnects.unwrap_or(0.0) > 0.0;
    let mut out = target.describe("flood");
    out.extend(
        json!({
            "users": users,
            "seconds": seconds,
            "payload_bytes": payload_bytes,
            "published": published.sent,
            "publish_rate": report::round(published.sent as f64 / published.secs.max(1e-9), 0),
            "expected": expected,
            "delivered": got,
            "lost": lost,
            "lost_pct": report::round(lost as f64 * 100.0 / expected.max(1) as f64, 2),
            "redis_output_buffer_drops": drops,
            "server_reported_reconnects": reconnects,
            "health_polls": polls.load(Ordering::Relaxed),
            "health_polls_degraded": degraded_polls.load(Ordering::Relaxed),
            "health_after": health(target.addr),
            "silent_loss": lost > 0 && !reported,
            "rss_before_kib": rss_before,
            "rss_at_end_of_publish_kib": rss_peak,
            "server_cpu": server_cpu_fields(server_cpu, got),
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    Ok(Value::Object(out))
}
