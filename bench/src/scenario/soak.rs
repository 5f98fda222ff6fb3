//! `soak` (`make soak`): a long run against one hub and a private redis-server that the
//! scenario starts itself. A steady population stays connected the whole time, each member in
//! one shared room, receiving notifications (a publisher on Redis) and chat messages (the
//! steady clients send them as `chat-message` frames); beside it, churners connect, join a few
//! rooms (shared ones and sometimes a room of their own), chat, leave, and disconnect, cleanly
//! (close handshake), abruptly (socket dropped), or right after asking to join (before the
//! `joined` reply), over and over.
//!
//! The hub's RSS is sampled through the run. Checks: no notification or chat message lost by
//! a steady client; at the end, after every client closed, no sessions, rooms or users in
//! `/health`, `PUBSUB NUMSUB` 0 for every channel the run used, only the fixed channels in
//! `PUBSUB CHANNELS`, no room presence in Redis; the RSS at the end of the load within the
//! tolerance (10%) of its value after the warm-up (a fifth of the run, at most 120 s); exit 0
//! on SIGTERM. Exits non-zero when a check fails.

use std::{
    cell::{Cell, RefCell},
    path::PathBuf,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::{
    args::Args,
    client::{self, write_all},
    leftovers,
    proto::{Incoming, Proto},
    publisher::{publish_command, Plan},
    stack::{HubProcess, RedisServer, Scratch},
    sys,
    verdict::Verdict,
    ws,
};

use super::{
    close_frame, drain, health_async, metric_sum, notification_for, open_many, publish, source_ip,
    Rng, Target,
};

/// Chat markers of steady senders start here (notifications count from 0).
const CHAT_BASE: u64 = 1 << 40;
/// Chat markers of churners start here (not accounted: their senders come and go).
const CHURN_CHAT_BASE: u64 = 1 << 41;

/// What the steady clients received.
#[derive(Default)]
struct Steady {
    notifications: u64,
    chat: u64,
    errors: u64,
    first_error: Option<String>,
}

/// What the churners did.
#[derive(Default)]
struct Churn {
    cycles: u64,
    connect_failures: u64,
    first_connect_error: Option<String>,
    joins: u64,
    leaves: u64,
    chats: u64,
    quick_drops: u64,
    clean_closes: u64,
    close_timeouts: u64,
    abrupt_drops: u64,
    write_failures: u64,
    notifications: u64,
    chat_received: u64,
    errors: u64,
}

/// Shared by the churner tasks.
struct ChurnShared {
    target: Target,
    stop: Cell<bool>,
    tally: RefCell<Churn>,
    private_rooms: RefCell<Vec<String>>,
    rooms: u64,
    pool: u64,
    first_source: u64,
    chat_seq: Cell<u64>,
}

/// One sample of the curve.
struct Sample {
    t: f64,
    rss_kib: u64,
    health: Value,
    cycles: u64,
}

impl Sample {
    fn json(&self) -> Value {
        json!([
            (self.t * 10.0).round() / 10.0,
            self.rss_kib,
            self.health["websocket"]["connections"]
        ])
    }

    fn print(&self, label: &str) {
        let ws = &self.health["websocket"];
        eprintln!(
            "soak {:>7.1} s  RSS {:>9.1} MiB  sessions {:>6}  rooms {:>6}  users {:>6}  churn cycles {:>8}  {label}",
            self.t,
            self.rss_kib as f64 / 1024.0,
            ws["connections"],
            ws["rooms"],
            ws["users"],
            self.cycles
        );
    }
}

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let seconds: f64 = args.get("seconds", 600.0)?;
    // A fifth of the run (at most two minutes): the hub's buffers and the allocator reach
    // their working size in the first minute or so, and more slowly when the machine is busy.
    let warmup: f64 = args.get("warmup", (seconds / 5.0).clamp(5.0, 120.0))?;
    let sample_secs: f64 = args.get("sample-secs", (seconds / 30.0).clamp(1.0, 20.0))?;
    let steady: u64 = args.get("steady", 1000)?;
    let rooms: u64 = args.get("rooms", 50)?;
    let churners: u64 = args.get("churners", 100)?;
    let pool: u64 = args.get("user-pool", churners * 4)?;
    let notify_rate: f64 = args.get("notify-rate", 1000.0)?;
    let chat_rate: f64 = args.get("chat-rate", 0.2)?;
    let tolerance: f64 = args.get("rss-tolerance-pct", 10.0)?;
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let redis_bin: String = args.get("redis-server", "redis-server".to_string())?;
    let workers: Option<u64> = args.opt("hub-workers")?;
    let hub_env: Vec<String> = args.list("hub-env")?;
    args.finish()?;
    if warmup >= seconds {
        return Err(format!(
            "--warmup {warmup} must be shorter than --seconds {seconds}"
        ));
    }
    if steady == 0 || rooms == 0 || pool == 0 {
        return Err("--steady, --rooms and --user-pool must be positive".into());
    }

    let mut scratch = Scratch::new("soak")?;
    let redis = RedisServer::start(&redis_bin, &scratch.dir, false)?;
    let mut env = Vec::new();
    if let Some(w) = workers {
        env.push(("HUB_WORKERS", w.to_string()));
    }
    for kv in &hub_env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--hub-env {kv}: expected NAME=value"))?;
        env.push((k, v.to_string()));
    }
    let mut hub = HubProcess::start(&hub_bin, &redis.url(), &env, &scratch.dir, "hub")?;
    let instance = hub.instance_id();
    let target = hub.target("hub");
    eprintln!(
        "soak: {seconds} s (warm-up {warmup} s) against {} (pid {}), redis {}; {steady} steady clients in {rooms} rooms, {churners} churners, {notify_rate} notifications/s, {chat_rate} chat messages/s per steady client",
        hub.addr,
        hub.pid(),
        redis.addr()
    );

    // The steady population.
    let names = (0..steady).map(|i| format!("s{i}")).collect();
    let room_of: Rc<dyn Fn(usize) -> String> =
        Rc::new(move |i| format!("soak-{}", i as u64 % rooms));
    let opened = open_many(&target, names, 200, 0, Some(room_of)).await;
    let steady_connected = opened.clients.len() as u64;
    let mut members = vec![0u64; rooms as usize];
    let tally = Rc::new(RefCell::new(Steady::default()));
    let mut streams: Vec<(u64, Rc<TcpStream>)> = Vec::new();
    let mut pumps = Vec::new();
    for (i, c) in opened.clients {
        members[i % rooms as usize] += 1;
        let (stream, decoder, proto) = c.into_parts();
        streams.push((i as u64, stream.clone()));
        let tally = tally.clone();
        pumps.push(tokio::task::spawn_local(client::pump_frames(
            stream,
            decoder,
            proto,
            move |incoming, payload| {
                let mut t = tally.borrow_mut();
                match incoming {
                    Incoming::Bench { bs, .. } if bs < CHAT_BASE => t.notifications += 1,
                    Incoming::Bench { bs, .. } if bs < CHURN_CHAT_BASE => t.chat += 1,
                    Incoming::Error => {
                        t.errors += 1;
                        t.first_error
                            .get_or_insert_with(|| String::from_utf8_lossy(payload).into());
                    }
                    _ => {}
                }
            },
        )));
    }

    // Notifications: three of four to steady users (round robin), one to a churner's user.
    let steady_sent = Arc::new(AtomicU64::new(0));
    let publisher = {
        let steady_sent = steady_sent.clone();
        let mut payload = String::with_capacity(160);
        let mut next_steady = 0u64;
        let mut rng = Rng::new(7);
        tokio::task::spawn_local(publish(Plan {
            redis: redis.addr(),
            rate: Some(notify_rate),
            duration: Duration::from_secs_f64(seconds),
            max_messages: u64::MAX,
            window: None,
            command: Box::new(move |seq, bt, out| {
                let user = if seq % 4 == 3 {
                    format!("u{}", rng.below(pool))
                } else {
                    next_steady += 1;
                    steady_sent.fetch_add(1, Ordering::Relaxed);
                    format!("s{}", (next_steady - 1) % steady)
                };
                payload.clear();
                notification_for(&mut payload, &user, bt, seq);
                publish_command(
                    out,
                    &format!("user:notifications:{user}"),
                    payload.as_bytes(),
                );
            }),
        }))
    };

    // Chat from the steady clients.
    let stop = Rc::new(Cell::new(false));
    let chat = Rc::new(Cell::new((0u64, 0u64, 0u64))); // sent, expected deliveries, failures
    let chatter = {
        let (stop, chat, streams) = (stop.clone(), chat.clone(), streams.clone());
        let members = members.clone();
        tokio::task::spawn_local(async move {
            if streams.is_empty() || chat_rate <= 0.0 {
                return;
            }
            let total = chat_rate * streams.len() as f64;
            let start = Instant::now();
            let mut next = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.get() {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * total) as u64;
                while next < due {
                    let (i, stream) = &streams[(next % streams.len() as u64) as usize];
                    let room = i % rooms;
                    let text = format!(
                        r#"{{"type":"chat-message","room":"soak-{room}","message":"@bt={}@bs={}@"}}"#,
                        sys::now_us(),
                        CHAT_BASE + next
                    );
                    let frame = ws::text(text.as_bytes());
                    let (sent, expected, failed) = chat.get();
                    chat.set(match stream.try_write(&frame) {
                        Ok(n) if n == frame.len() => {
                            (sent + 1, expected + members[room as usize], failed)
                        }
                        _ => (sent, expected, failed + 1),
                    });
                    next += 1;
                }
            }
        })
    };

    // The churners.
    let shared = Rc::new(ChurnShared {
        target: target.clone(),
        stop: Cell::new(false),
        tally: RefCell::new(Churn::default()),
        private_rooms: RefCell::new(Vec::new()),
        rooms,
        pool,
        first_source: steady.div_ceil(250) * 250 + 250,
        chat_seq: Cell::new(0),
    });
    let churn_tasks: Vec<_> = (0..churners)
        .map(|slot| tokio::task::spawn_local(churn(slot, shared.clone())))
        .collect();

    // The run, sampled.
    let pid = hub.pid();
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut warm: Option<u64> = None;
    let mut next_sample = 0.0;
    let addr = hub.addr;
    let take = |t: f64, shared: &ChurnShared| {
        let cycles = shared.tally.borrow().cycles;
        async move {
            Sample {
                t,
                rss_kib: sys::rss_kib(pid).unwrap_or(0),
                health: health_async(addr).await,
                cycles,
            }
        }
    };
    loop {
        let t = start.elapsed().as_secs_f64();
        if t >= seconds {
            break;
        }
        if warm.is_none() && t >= warmup {
            let s = take(t, &shared).await;
            s.print("<- after warm-up: the reference");
            warm = Some(s.rss_kib);
            samples.push(s);
            if next_sample <= t {
                next_sample += sample_secs;
            }
        } else if t >= next_sample {
            let s = take(t, &shared).await;
            s.print("");
            samples.push(s);
            next_sample += sample_secs;
        }
        let until = next_sample.min(if warm.is_none() { warmup } else { seconds });
        let wait = (until - start.elapsed().as_secs_f64()).clamp(0.01, 0.5);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    let end = take(start.elapsed().as_secs_f64(), &shared).await;
    end.print("<- end of the load");
    let end_rss = end.rss_kib;
    samples.push(end);
    let hub_alive_under_load = hub.alive();

    // Wind down: churners finish their cycle, the publisher its plan, deliveries drain.
    stop.set(true);
    shared.stop.set(true);
    let _ = chatter.await;
    for t in churn_tasks {
        let _ = t.await;
    }
    let published = publisher
        .await
        .map_err(|e| format!("publisher task: {e}"))??;
    let (chat_sent, chat_expected, chat_failures) = chat.get();
    let steady_expected = steady_sent.load(Ordering::Relaxed);
    drain(
        || {
            let t = tally.borrow();
            t.notifications >= steady_expected && t.chat >= chat_expected
        },
        || {
            let t = tally.borrow();
            t.notifications + t.chat
        },
        Duration::from_secs(3),
        Duration::from_secs(20),
    )
    .await;
    let steady_closed = pumps.iter().filter(|p| p.is_finished()).count() as u64;
    let kicks = metric_sum(hub.addr, "hub_slow_consumer_kicks_total");
    let client_errors = metric_sum(hub.addr, "hub_client_errors_total");
    let rejected = metric_sum(hub.addr, "hub_connections_rejected_total");

    // Close the steady clients (close handshake) and look for leftovers.
    for (_, stream) in &streams {
        let _ = write_all(stream, &close_frame(1000)).await;
    }
    let close_deadline = Instant::now() + Duration::from_secs(10);
    while pumps.iter().any(|p| !p.is_finished()) && Instant::now() < close_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let steady_clean_closes = pumps.iter().filter(|p| p.is_finished()).count() as u64;
    for p in &pumps {
        p.abort();
    }
    drop(streams);
    let mut channels: Vec<String> = (0..steady)
        .map(|i| format!("user:notifications:s{i}"))
        .chain((0..pool).map(|i| format!("user:notifications:u{i}")))
        .collect();
    let mut room_names: Vec<String> = (0..rooms).map(|r| format!("soak-{r}")).collect();
    room_names.extend(shared.private_rooms.borrow().iter().cloned());
    channels.extend(room_names.iter().map(|r| format!("chat:room:{r}")));
    let (redis_addr, hub_addr, instances) = (redis.addr(), hub.addr, vec![instance.clone()]);
    let left = {
        let (channels, rooms) = (channels.clone(), room_names.clone());
        tokio::task::spawn_blocking(move || {
            leftovers::wait_clean(
                redis_addr,
                &[hub_addr],
                &instances,
                &channels,
                &rooms,
                Duration::from_secs(15),
            )
        })
        .await
        .map_err(|e| e.to_string())?
    };
    let after_close = Sample {
        t: start.elapsed().as_secs_f64(),
        rss_kib: sys::rss_kib(pid).unwrap_or(0),
        health: health_async(hub.addr).await,
        cycles: shared.tally.borrow().cycles,
    };
    after_close
        .print("<- every client closed (reported, not checked: the allocator keeps freed memory)");
    let (panics, errors) = hub.log_problems();
    let exit = hub.stop();

    // The verdict.
    let t = tally.borrow();
    let c = shared.tally.borrow();
    let warm = warm.unwrap_or(0);
    let limit = warm as f64 * (1.0 + tolerance / 100.0);
    let drift = |kib: u64| (kib as f64 - warm as f64) * 100.0 / (warm.max(1) as f64);
    let max_rss = samples
        .iter()
        .filter(|s| s.t >= warmup)
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(0);
    let mut v = Verdict::default();
    v.check(
        "hub survived",
        hub_alive_under_load && panics == 0,
        format!("running at the end of the load: {hub_alive_under_load}; panics logged: {panics}"),
    );
    v.check(
        "steady clients connected",
        steady_connected == steady,
        format!("{steady_connected} of {steady}"),
    );
    v.check(
        "steady clients lost no notification",
        t.notifications == steady_expected,
        format!("{} of {steady_expected} delivered", t.notifications),
    );
    v.check(
        "steady clients lost no chat message",
        t.chat == chat_expected && chat_failures == 0,
        format!(
            "{} of {chat_expected} deliveries ({chat_sent} messages sent, {chat_failures} not written)",
            t.chat
        ),
    );
    v.check(
        "steady sessions stayed open without errors",
        steady_closed == 0 && t.errors == 0,
        format!(
            "{steady_closed} closed during the run, {} error frames{}",
            t.errors,
            t.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ),
    );
    v.check(
        "every churn connection was accepted",
        c.connect_failures == 0,
        format!(
            "{} failed of {} cycles{}",
            c.connect_failures,
            c.cycles,
            c.first_connect_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ),
    );
    v.check(
        "no sessions, rooms or users left (/health)",
        left.sessions == 0 && left.rooms == 0 && left.users == 0,
        format!(
            "connections {}, rooms {}, users {}",
            left.sessions, left.rooms, left.users
        ),
    );
    v.check(
        "no subscription left (PUBSUB NUMSUB 0 for every channel used)",
        left.still_subscribed.is_empty() && left.error.is_none(),
        format!(
            "{} of {} channels still subscribed{}",
            left.still_subscribed.len(),
            left.channels_checked,
            left.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
    );
    v.check(
        "only the fixed channels subscribed (PUBSUB CHANNELS)",
        left.foreign.is_empty(),
        format!(
            "{} other channels: {:?}",
            left.foreign.len(),
            &left.foreign[..left.foreign.len().min(5)]
        ),
    );
    v.check(
        "no room presence left in Redis",
        left.presence_hashes == 0 && left.presence_pairs == 0,
        format!(
            "{} room hashes, {} instance entries",
            left.presence_hashes, left.presence_pairs
        ),
    );
    v.check(
        &format!("RSS at the end of the load within {tolerance}% of after warm-up"),
        warm > 0 && end_rss as f64 <= limit,
        format!(
            "{:.1} MiB after warm-up, {:.1} MiB at the end ({:+.1}%), max {:.1} MiB",
            warm as f64 / 1024.0,
            end_rss as f64 / 1024.0,
            drift(end_rss),
            max_rss as f64 / 1024.0
        ),
    );
    v.check(
        "SIGTERM: exit 0",
        exit == Some(0),
        format!("exit code {exit:?}"),
    );
    if !v.passed() {
        scratch.keep();
        eprintln!("soak: logs kept in {}", scratch.dir.display());
    }
    v.print("soak");

    let mut out = serde_json::Map::new();
    out.insert("scenario".into(), json!("soak"));
    out.insert("server".into(), json!("hub"));
    out.extend(v.fields());
    out.extend(
        json!({
            "seconds": seconds,
            "warmup_secs": warmup,
            "steady_clients": steady,
            "rooms": rooms,
            "churners": churners,
            "churn_user_pool": pool,
            "notify_rate": notify_rate,
            "chat_rate_per_client": chat_rate,
            "steady": {
                "connected": steady_connected,
                "notifications_expected": steady_expected,
                "notifications_delivered": t.notifications,
                "chat_sent": chat_sent,
                "chat_deliveries_expected": chat_expected,
                "chat_delivered": t.chat,
                "error_frames": t.errors,
                "closed_during_run": steady_closed,
                "closed_cleanly_at_end": steady_clean_closes,
            },
            "published": published.sent,
            "publish_errors": published.errors,
            "churn": {
                "cycles": c.cycles,
                "connect_failures": c.connect_failures,
                "joins": c.joins,
                "leaves": c.leaves,
                "chat_sent": c.chats,
                "dropped_before_joined": c.quick_drops,
                "clean_closes": c.clean_closes,
                "close_timeouts": c.close_timeouts,
                "abrupt_drops": c.abrupt_drops,
                "write_failures": c.write_failures,
                "notifications_received": c.notifications,
                "chat_received": c.chat_received,
                "error_frames": c.errors,
                "private_rooms": shared.private_rooms.borrow().len(),
            },
            "metrics": {
                "slow_consumer_kicks": kicks,
                "client_errors": client_errors,
                "connections_rejected": rejected,
            },
            "leftovers": left.json(),
            "rss": {
                "after_warmup_kib": warm,
                "end_of_load_kib": end_rss,
                "max_after_warmup_kib": max_rss,
                "after_close_kib": after_close.rss_kib,
                "drift_pct": (drift(end_rss) * 10.0).round() / 10.0,
                "tolerance_pct": tolerance,
                "curve_columns": ["seconds", "rss_kib", "sessions"],
                "curve": samples.iter().chain([&after_close]).map(Sample::json).collect::<Vec<_>>(),
            },
            "hub_log": {"panics": panics, "errors": errors},
            "hub_exit_code": exit,
            "commands": {"redis": redis.command(), "hub": hub.command},
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    Ok(Value::Object(out))
}

/// One churner: connect, join, maybe chat and leave, disconnect one of three ways; again.
async fn churn(slot: u64, shared: Rc<ChurnShared>) {
    let mut rng = Rng::new(1000 + slot);
    let mut n = 0u64;
    while !shared.stop.get() {
        n += 1;
        shared.tally.borrow_mut().cycles += 1;
        let user = format!("u{}", rng.below(shared.pool));
        let source = source_ip(shared.first_source + slot * 250 + n % 250);
        let c = match client::open(shared.target.addr, Some(source), Proto::Native, &user).await {
            Ok(c) => c,
            Err(e) => {
                {
                    let mut t = shared.tally.borrow_mut();
                    t.connect_failures += 1;
                    t.first_connect_error.get_or_insert_with(|| e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (stream, decoder, proto) = c.into_parts();
        let mut pump = {
            let shared = shared.clone();
            tokio::task::spawn_local(client::pump_frames(
                stream.clone(),
                decoder,
                proto,
                move |incoming, _| {
                    let mut t = shared.tally.borrow_mut();
                    match incoming {
                        Incoming::Bench { bs, .. } if bs < CHAT_BASE => t.notifications += 1,
                        Incoming::Bench { .. } => t.chat_received += 1,
                        Incoming::Error => t.errors += 1,
                        _ => {}
                    }
                },
            ))
        };
        let mut rooms: Vec<String> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let r = format!("soak-{}", rng.below(shared.rooms));
            if !rooms.contains(&r) {
                rooms.push(r);
            }
        }
        if rng.below(5) == 0 {
            let r = format!("x{slot}-{n}");
            shared.private_rooms.borrow_mut().push(r.clone());
            rooms.push(r);
        }
        let mut frames = Vec::new();
        for r in &rooms {
            let join = format!(r#"{{"type":"join-room","room":"{r}"}}"#);
            ws::client_frame(&mut frames, ws::op::TEXT, join.as_bytes());
        }
        let wrote = write_all(&stream, &frames).await.is_ok();
        {
            let mut t = shared.tally.borrow_mut();
            t.joins += rooms.len() as u64;
            t.write_failures += u64::from(!wrote);
        }
        if rng.below(10) < 2 {
            // Gone before the `joined` replies: the joins complete for a closed session.
            pump.abort();
            shared.tally.borrow_mut().quick_drops += 1;
            continue;
        }
        let life = Duration::from_millis(200 + rng.below(2800));
        tokio::time::sleep(life / 2).await;
        let mut frames = Vec::new();
        if rng.below(2) == 0 {
            let seq = shared.chat_seq.get();
            shared.chat_seq.set(seq + 1);
            let text = format!(
                r#"{{"type":"chat-message","room":"{}","message":"@bt={}@bs={}@"}}"#,
                rooms[0],
                sys::now_us(),
                CHURN_CHAT_BASE + seq
            );
            ws::client_frame(&mut frames, ws::op::TEXT, text.as_bytes());
            shared.tally.borrow_mut().chats += 1;
        }
        if rng.below(2) == 0 {
            let leave = format!(
                r#"{{"type":"leave-room","room":"{}"}}"#,
                rooms[rooms.len() - 1]
            );
            ws::client_frame(&mut frames, ws::op::TEXT, leave.as_bytes());
            shared.tally.borrow_mut().leaves += 1;
        }
        if !frames.is_empty() && write_all(&stream, &frames).await.is_err() {
            shared.tally.borrow_mut().write_failures += 1;
        }
        tokio::time::sleep(life / 2).await;
        if rng.below(2) == 0 {
            let closed = write_all(&stream, &close_frame(1000)).await.is_ok()
                && tokio::time::timeout(Duration::from_secs(5), &mut pump)
                    .await
                    .is_ok();
            let mut t = shared.tally.borrow_mut();
            if closed {
                t.clean_closes += 1;
            } else {
                t.close_timeouts += 1;
            }
        } else {
            shared.tally.borrow_mut().abrupt_drops += 1;
        }
        pump.abort();
    }
}
