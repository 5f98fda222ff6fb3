//! `notify`: U users with one session each; a publisher does `PUBLISH
//! user:notifications:{id}` round-robin over them at R msgs/s (or, with `--rate 0`, as fast as
//! the server delivers: a closed loop with at most `--window` messages in flight) for T
//! seconds. Reports delivered, lost, deliveries/s, latency (publish to receipt) and the
//! server's CPU time per delivery. With `--cluster 1`, `--redis` is a node of a Redis Cluster
//! and one publisher per master sends `SPUBLISH` for the users whose channel it serves.

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
    publisher::{self, Plan, Published, Window},
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
    let cluster: u8 = args.get("cluster", 0)?;
    args.finish()?;
    let routes = Arc::new(routes(redis, cluster == 1, first_user, users).await?);
    let verb = if cluster == 1 { "SPUBLISH" } else { "PUBLISH" };

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
    // Received per route (message `seq` came through route `seq % routes`): each publisher's
    // window counts its own messages.
    let per_route: Arc<Vec<Arc<AtomicU64>>> =
        Arc::new((0..routes.len()).map(|_| Arc::default()).collect());
    let mut ends = Vec::new();
    for (_, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        let (tally, seen, per_route) = (tally.clone(), seen.clone(), per_route.clone());
        ends.push(tokio::task::spawn_local(client::pump(
            stream,
            decoder,
            proto,
            move |bt, bs| {
                let now = sys::now_us();
                seen.fetch_add(1, Ordering::Release);
                per_route[(bs % per_route.len() as u64) as usize].fetch_add(1, Ordering::Release);
                let mut t = tally.borrow_mut();
                if bs >= t.measured_from {
                    report::record(&mut t.hist, now.saturating_sub(bt));
                    t.delivered += 1;
                    t.last_us = now;
                }
            },
        )));
    }

    // One publisher per route, sharing the rate and the window; route `k` of `m` stamps
    // sequence numbers `first_seq + k`, `first_seq + k + m`, ... (`first_seq` a multiple of
    // `m`).
    let plans = |seconds: f64, first_seq: u64| {
        let m = routes.len() as u64;
        (0..routes.len())
            .map(|k| {
                let routes = routes.clone();
                let mut payload = String::with_capacity(160);
                Plan {
                    redis: routes[k].0,
                    rate: (rate > 0.0).then_some(rate / m as f64),
                    duration: Duration::from_secs_f64(seconds),
                    max_messages: u64::MAX,
                    window: (rate <= 0.0).then(|| Window {
                        progress: per_route[k].clone(),
                        base: per_route[k].load(Ordering::Acquire),
                        size: (window / m).max(1),
                    }),
                    command: Box::new(move |seq, bt, out| {
                        let users = &routes[k].1;
                        let user = users[(seq % users.len() as u64) as usize];
                        let seq = first_seq + k as u64 + seq * m;
                        payload.clear();
                        notification_payload(&mut payload, user, bt, seq);
                        let channel = format!("user:notifications:{user}");
                        publisher::command(out, verb, &channel, payload.as_bytes());
                    }),
                }
            })
            .collect::<Vec<_>>()
    };

    // Warm-up (JIT, allocator, connection buffers), drained and not measured.
    let (warm, warm_seqs) = if warmup > 0.0 {
        let done = publish_all(plans(warmup, 0)).await?;
        let most = done.iter().map(|p| p.sent).max().unwrap_or(0);
        (
            done.iter().map(|p| p.sent).sum(),
            most * routes.len() as u64,
        )
    } else {
        (0, 0)
    };
    let seen_now = || seen.load(Ordering::Acquire);
    drain(
        || seen_now() >= warm,
        seen_now,
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .await;
    tally.borrow_mut().measured_from = warm_seqs;

    let cpu = sys::CpuMark::take(target.pid);
    let own_cpu = sys::self_cpu();
    let start_us = sys::now_us();
    let published = merge(publish_all(plans(seconds, warm_seqs)).await?);
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

/// Where each user's notifications are published: `redis` for all, or on a cluster (`redis`
/// one of its nodes) each user's channel's master.
async fn routes(
    redis: SocketAddr,
    cluster: bool,
    first_user: u64,
    users: u64,
) -> Result<Vec<(SocketAddr, Vec<u64>)>, String> {
    let all: Vec<u64> = (first_user..first_user + users).collect();
    if !cluster {
        return Ok(vec![(redis, all)]);
    }
    let node = redis::IntoConnectionInfo::into_connection_info(format!("redis://{redis}"))
        .map_err(|e| e.to_string())?;
    let topology = hub_store::discover(&[node], Duration::from_secs(5)).await?;
    let mut routes: Vec<(SocketAddr, Vec<u64>)> = Vec::new();
    for user in all {
        let slot = hub_store::slot(format!("user:notifications:{user}").as_bytes());
        let master = topology
            .owner(slot)
            .ok_or_else(|| format!("no master serves slot {slot}"))?;
        let (host, port) = &topology.masters[master];
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .map_err(|e| format!("master {host}:{port}: {e}"))?;
        match routes.iter_mut().find(|r| r.0 == addr) {
            Some(route) => route.1.push(user),
            None => routes.push((addr, vec![user])),
        }
    }
    Ok(routes)
}

/// Runs publishers side by side.
async fn publish_all(plans: Vec<Plan>) -> Result<Vec<Published>, String> {
    futures_util::future::try_join_all(plans.into_iter().map(publish)).await
}

/// What several publishers did together.
fn merge(all: Vec<Published>) -> Published {
    let mut sum = Published::default();
    for p in all {
        sum.sent += p.sent;
        sum.with_receivers += p.with_receivers;
        sum.errors += p.errors;
        sum.first_error = sum.first_error.or(p.first_error);
        sum.secs = sum.secs.max(p.secs);
    }
    sum
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
