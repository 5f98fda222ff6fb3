//! `room`: M members in one room; K messages published to `chat:room:{room}` at R msgs/s (or,
//! with `--rate 0`, a closed loop with at most `--window` messages not yet received by every
//! member). Reports fan-out deliveries/s, the latency until the last member has a message,
//! and the server's CPU time per delivery.

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
    proto::chat_payload,
    publisher::{publish_command, Plan, Window},
    report, sys,
};

use super::{drain, notify::server_cpu_fields, open_many, publish, Target};

struct Tally {
    /// Per message: members that received it, and the latest arrival (us).
    count: Vec<u32>,
    last: Vec<u64>,
    sent_at: Vec<u64>,
    deliveries: u64,
    measured_from: u64,
    measured_deliveries: u64,
    last_us: u64,
}

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let target = Target::from_args(&mut args)?;
    let redis: SocketAddr = args.req("redis")?;
    let members: u64 = args.get("members", 1000)?;
    let messages: u64 = args.get("messages", 100)?;
    let rate: f64 = args.get("rate", 10.0)?;
    let window: u64 = args.get("window", 4)?;
    let warmup: u64 = args.get("warmup", 5)?;
    let room: String = args.get("room", "bench-room".to_string())?;
    let concurrency: usize = args.get("concurrency", 200)?;
    let seconds_limit: f64 = args.get("max-seconds", 20.0)?;
    args.finish()?;

    let names = (0..members).map(|i| format!("m{i}")).collect();
    let room_of: Rc<dyn Fn(usize) -> String> = {
        let room = room.clone();
        Rc::new(move |_| room.clone())
    };
    let opened = open_many(&target, names, concurrency, 0, Some(room_of)).await;
    let joined = opened.clients.len() as u64;
    if joined == 0 {
        return Err(format!(
            "no member joined: {}",
            opened.first_error.unwrap_or_default()
        ));
    }
    let total = (warmup + messages) as usize;
    let tally = Rc::new(RefCell::new(Tally {
        count: vec![0; total],
        last: vec![0; total],
        sent_at: vec![0; total],
        deliveries: 0,
        measured_from: warmup,
        measured_deliveries: 0,
        last_us: 0,
    }));
    // Messages every member has received (the closed loop's progress).
    let complete = Arc::new(AtomicU64::new(0));
    let mut ends = Vec::new();
    for (_, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        let (tally, complete) = (tally.clone(), complete.clone());
        ends.push(tokio::task::spawn_local(client::pump(
            stream,
            decoder,
            proto,
            move |bt, bs| {
                let now = sys::now_us();
                let mut t = tally.borrow_mut();
                let i = bs as usize;
                if i >= t.count.len() {
                    return;
                }
                t.count[i] += 1;
                t.last[i] = now;
                t.sent_at[i] = bt;
                t.deliveries += 1;
                if bs >= t.measured_from {
                    t.measured_deliveries += 1;
                    t.last_us = now;
                }
                if t.count[i] as u64 == joined {
                    complete.fetch_add(1, Ordering::Release);
                }
            },
        )));
    }

    let plan = |count: u64, first_seq: u64, rate: f64| {
        let mut payload = String::with_capacity(160);
        let (room, complete) = (room.clone(), complete.clone());
        let channel = format!("chat:room:{room}");
        Plan {
            redis,
            rate: (rate > 0.0).then_some(rate),
            duration: Duration::from_secs_f64(seconds_limit),
            max_messages: count,
            window: (rate <= 0.0).then(|| Window {
                base: complete.load(Ordering::Acquire),
                progress: complete,
                size: window,
            }),
            command: Box::new(move |seq, bt, out| {
                payload.clear();
                chat_payload(&mut payload, &room, bt, first_seq + seq);
                publish_command(out, &channel, payload.as_bytes());
            }),
        }
    };

    if warmup > 0 {
        publish(plan(warmup, 0, rate.clamp(0.0, 50.0))).await?;
        let done = || complete.load(Ordering::Acquire);
        drain(
            || done() >= warmup,
            done,
            Duration::from_secs(2),
            Duration::from_secs(10),
        )
        .await;
    }

    let cpu = sys::CpuMark::take(target.pid);
    let own_cpu = sys::self_cpu();
    let start_us = sys::now_us();
    let published = publish(plan(messages, warmup, rate)).await?;
    let expected = published.with_receivers * joined;
    drain(
        || tally.borrow().measured_deliveries >= expected,
        || tally.borrow().measured_deliveries,
        Duration::from_secs(3),
        Duration::from_secs(30),
    )
    .await;
    let server_cpu = cpu.since(target.pid);
    let own_cpu = (sys::self_cpu() - own_cpu).as_secs_f64();
    let closed = ends.iter().filter(|h| h.is_finished()).count();

    let t = tally.borrow();
    let mut last_member = report::histogram();
    let mut incomplete = 0;
    for i in warmup as usize..total {
        if t.count[i] == 0 {
            continue;
        }
        if (t.count[i] as u64) < joined {
            incomplete += 1;
        }
        report::record(&mut last_member, t.last[i].saturating_sub(t.sent_at[i]));
    }
    let span = (t.last_us.max(start_us) - start_us) as f64 / 1e6;
    let delivered = t.measured_deliveries;
    let mut out = target.describe("room");
    out.extend(
        json!({
            "members": members,
            "joined": joined,
            "join_failures": opened.failed,
            "join_secs": report::round(opened.secs, 2),
            "messages": messages,
            "rate": if rate > 0.0 { json!(rate) } else { json!("max") },
            "window": if rate > 0.0 { Value::Null } else { json!(window) },
            "published": published.sent,
            "expected": expected,
            "delivered": delivered,
            "lost": expected.saturating_sub(delivered),
            "messages_incomplete": incomplete,
            "deliveries_per_sec": report::round(delivered as f64 / span.max(1e-9), 0),
            "messages_per_sec": report::round(published.sent as f64 / span.max(1e-9), 1),
            "last_member_latency_us": report::latency(&last_member),
            "server_cpu": server_cpu_fields(server_cpu, delivered),
            "loadgen_cpu_pct": report::round(own_cpu * 100.0 / span.max(1e-9), 1),
            "sessions_closed_during_run": closed,
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    if let Some(e) = &opened.first_error {
        out.insert("first_join_error".into(), json!(e));
    }
    Ok(Value::Object(out))
}
