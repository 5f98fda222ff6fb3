//! `chat`: N clients spread over R rooms, each sending `chat-message` frames at r per second
//! for T seconds. Every message goes client -> server -> Redis -> server -> every member of the
//! room (sender included). Reports deliveries, losses, the latency of every delivery and the
//! sender's own round trip, and the server's CPU time per delivery.

use std::{cell::RefCell, rc::Rc, time::Duration};

use serde_json::{json, Value};

use crate::{args::Args, client, report, sys, ws};

use super::{drain, notify::server_cpu_fields, open_many, Target};

struct Tally {
    all: hdrhistogram::Histogram<u64>,
    own: hdrhistogram::Histogram<u64>,
    delivered: u64,
    last_us: u64,
}

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let target = Target::from_args(&mut args)?;
    let clients: u64 = args.get("clients", 1000)?;
    let rooms: u64 = args.get("rooms", 100)?;
    let per_client: f64 = args.get("rate-per-client", 2.0)?;
    let seconds: f64 = args.get("seconds", 5.0)?;
    let concurrency: usize = args.get("concurrency", 200)?;
    args.finish()?;
    if rooms == 0 || clients == 0 {
        return Err("--clients and --rooms must be positive".into());
    }

    let names = (0..clients).map(|i| format!("c{i}")).collect();
    let room_name = move |i: u64| format!("chat-{}", i % rooms);
    let room_of: Rc<dyn Fn(usize) -> String> = Rc::new(move |i| room_name(i as u64));
    let opened = open_many(&target, names, concurrency, 0, Some(room_of)).await;
    if opened.clients.is_empty() {
        return Err(format!(
            "no client joined: {}",
            opened.first_error.unwrap_or_default()
        ));
    }
    // Members per room among the clients that joined.
    let mut members = vec![0u64; rooms as usize];
    for (i, _) in &opened.clients {
        members[*i % rooms as usize] += 1;
    }
    let tally = Rc::new(RefCell::new(Tally {
        all: report::histogram(),
        own: report::histogram(),
        delivered: 0,
        last_us: 0,
    }));
    let mut senders = Vec::with_capacity(opened.clients.len());
    let mut ends = Vec::new();
    for (i, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        senders.push((i as u64, stream.clone()));
        let tally = tally.clone();
        ends.push(tokio::task::spawn_local(client::pump(
            stream,
            decoder,
            proto,
            move |bt, bs| {
                let now = sys::now_us();
                let lat = now.saturating_sub(bt);
                let mut t = tally.borrow_mut();
                report::record(&mut t.all, lat);
                // sequence numbers are message_index * clients + sender index
                if bs % clients == i as u64 {
                    report::record(&mut t.own, lat);
                }
                t.delivered += 1;
                t.last_us = now;
            },
        )));
    }

    let cpu = sys::CpuMark::take(target.pid);
    let own_cpu = sys::self_cpu();
    let start = std::time::Instant::now();
    let start_us = sys::now_us();
    let total_rate = per_client * senders.len() as f64;
    let (mut sent, mut expected, mut send_failures) = (0u64, 0u64, 0u64);
    let mut next = 0u64; // index into the round-robin over senders
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while start.elapsed().as_secs_f64() < seconds {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * total_rate) as u64;
        while next < due {
            let (i, stream) = &senders[(next % senders.len() as u64) as usize];
            let round = next / senders.len() as u64;
            let seq = round * clients + i;
            let room = room_name(*i);
            let frame = ws::text(target.proto.chat(&room, sys::now_us(), seq).as_bytes());
            match stream.try_write(&frame) {
                Ok(n) if n == frame.len() => {
                    sent += 1;
                    expected += members[(*i % rooms) as usize];
                }
                _ => send_failures += 1,
            }
            next += 1;
        }
    }
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
    let mut out = target.describe("chat");
    out.extend(
        json!({
            "clients": clients,
            "joined": senders.len(),
            "join_failures": opened.failed,
            "rooms": rooms,
            "rate_per_client": per_client,
            "seconds": seconds,
            "sent": sent,
            "send_failures": send_failures,
            "messages_per_sec": report::round(sent as f64 / seconds, 0),
            "expected": expected,
            "delivered": t.delivered,
            "lost": expected.saturating_sub(t.delivered),
            "deliveries_per_sec": report::round(t.delivered as f64 / span.max(1e-9), 0),
            "latency_us": report::latency(&t.all),
            "round_trip_us": report::latency(&t.own),
            "server_cpu": server_cpu_fields(server_cpu, t.delivered),
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
