//! `redis-restart` (part of `make chaos`): Redis is SIGKILLed and started again while clients
//! receive a steady stream of notifications (a publisher on Redis that keeps trying through
//! the outage; every other one through the inbox function `relay_notify`, the others plain
//! `PUBLISH`es) and chat messages (clients send `chat-message` frames to their rooms). The
//! scenario starts its own redis-server, with an append-only file so that the chat history
//! survives the kill as it would in production, and its own hub.
//!
//! Measured: whether the hub stayed up, what `/health` said during and after the outage, how
//! long until every subscription was back (`PUBSUB NUMSUB` of every channel) and until the
//! first notification published after Redis returned was delivered, how many notifications
//! the outage cost (and where: never published, taken by Redis without a subscriber, lost in
//! flight), and how many chat messages clients missed live and got back by re-joining with
//! `since` (their last id from before the outage), checked against the history in Redis.

use std::{
    cell::RefCell,
    collections::HashSet,
    path::PathBuf,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use hub_wire::protocol::FIXED_CHANNELS;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::{
    args::Args,
    client::{self, write_all},
    leftovers,
    proto::Incoming,
    report,
    resilient::{self, Paced, HEARD, NOBODY, REFUSED, UNANSWERED},
    stack::{HubProcess, RedisServer, Scratch},
    sys,
    verdict::Verdict,
    ws,
};

use super::{drain, notification_for, open_many};

/// Chat markers carry this bit; notification markers count from 0.
const CHAT_MARK: u64 = 1 << 40;

/// Every other notification goes through the inbox (`relay_notify`), the others are plain
/// `PUBLISH`es: the report gives the losses of each path.
const INBOX_EVERY: u64 = 2;

/// A chat message id (`{ms}-{seq}`) as a comparable pair.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The chat message id at the start of a `chat-message` frame's data.
fn chat_id(payload: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(payload, br#"{"id":""#)? + 7;
    let len = memchr::memchr(b'"', &payload[at..])?;
    String::from_utf8(payload[at..at + len].to_vec()).ok()
}

/// What one client saw.
#[derive(Default)]
struct Log {
    /// Chat ids received live, with their arrival time.
    chat: Vec<(u64, String)>,
    /// The `joined` reply to the re-join.
    rejoined: Option<Value>,
    awaiting_rejoin: bool,
    unavailable: u64,
    other_errors: u64,
}

/// Notifications received, by sequence number: first arrival time (0: not received).
#[derive(Default)]
struct Received {
    arrival_us: Vec<u64>,
    duplicates: u64,
}

/// One outage's timeline (microseconds).
struct Outage {
    kill_us: u64,
    back_us: u64,
    subs_back_us: u64,
    missing_subs: usize,
}

/// What one outage cost.
#[derive(Default)]
struct OutageFigures {
    first_after_back: Option<u64>,
    resume_ms: Option<f64>,
    refused: u64,
    lost_no_subscriber: u64,
    lost_in_flight: u64,
    unanswered_lost: u64,
    polls: usize,
    degraded_polls: usize,
    first_503_s: Option<f64>,
    first_200_s: Option<f64>,
}

/// `/health` as polled through the run.
#[derive(Clone, Copy)]
struct Poll {
    at_us: u64,
    status: u16,
    degraded: bool,
}

/// Polls `/health` every 100 ms on a thread until stopped.
fn watch_health(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Poll>> {
    std::thread::spawn(move || {
        let mut polls = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let at_us = sys::now_us();
            let (status, degraded) = match super::http_get(addr, "/health") {
                Ok((status, body)) => (status, body.contains(r#""status":"degraded""#)),
                Err(_) => (0, false),
            };
            polls.push(Poll {
                at_us,
                status,
                degraded,
            });
            std::thread::sleep(Duration::from_millis(100));
        }
        polls
    })
}

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let clients: u64 = args.get("clients", 1000)?;
    let rooms: u64 = args.get("rooms", 50)?;
    let notify_rate: f64 = args.get("notify-rate", 2000.0)?;
    let chat_rate: f64 = args.get("chat-rate", 40.0)?;
    let before: f64 = args.get("before", 5.0)?;
    let outages: Vec<f64> = match args.list::<f64>("outages")? {
        l if l.is_empty() => vec![2.0, 3.3, 5.0],
        l => l,
    };
    let between: f64 = args.get("between", 5.0)?;
    let resume_limit_ms: f64 = args.get("resume-limit-ms", 5000.0)?;
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let redis_bin: String = args.get("redis-server", "redis-server".to_string())?;
    args.finish()?;
    if clients == 0 || rooms == 0 {
        return Err("--clients and --rooms must be positive".into());
    }

    let mut scratch = Scratch::new("redis-restart")?;
    let redis = RedisServer::start(&redis_bin, &scratch.dir, true)?;
    let redis_addr = redis.addr();
    let mut hub = HubProcess::start(&hub_bin, &redis.url(), &[], &scratch.dir, "hub")?;
    let instance = hub.instance_id();
    let target = hub.target("hub");
    eprintln!(
        "redis-restart: {clients} clients in {rooms} rooms on {} (pid {}), redis {} (append-only file); {notify_rate} notifications/s, {chat_rate} chat messages/s; first kill after {before} s, outages of {outages:?} s, {between} s of load after each",
        hub.addr,
        hub.pid(),
        redis_addr
    );

    let names = (0..clients).map(|i| format!("r{i}")).collect();
    let room_of: Rc<dyn Fn(usize) -> String> = Rc::new(move |i| format!("rr-{}", i as u64 % rooms));
    let opened = open_many(&target, names, 200, 0, Some(room_of)).await;
    if opened.clients.is_empty() {
        return Err(format!(
            "no client connected: {}",
            opened.first_error.unwrap_or_default()
        ));
    }
    let connected: Vec<u64> = opened.clients.iter().map(|(i, _)| *i as u64).collect();
    let received = Rc::new(RefCell::new(Received::default()));
    let mut logs: Vec<Rc<RefCell<Log>>> = Vec::new();
    let mut streams: Vec<(u64, Rc<TcpStream>)> = Vec::new();
    let mut pumps = Vec::new();
    for (i, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        streams.push((i as u64, stream.clone()));
        let log = Rc::new(RefCell::new(Log::default()));
        logs.push(log.clone());
        let received = received.clone();
        pumps.push(tokio::task::spawn_local(client::pump_frames(
            stream,
            decoder,
            proto,
            move |incoming, payload| match incoming {
                Incoming::Bench { bs, .. } if bs < CHAT_MARK => {
                    let now = sys::now_us();
                    let mut r = received.borrow_mut();
                    let i = bs as usize;
                    if r.arrival_us.len() <= i {
                        r.arrival_us.resize(i + 1, 0);
                    }
                    if r.arrival_us[i] == 0 {
                        r.arrival_us[i] = now;
                    } else {
                        r.duplicates += 1;
                        eprintln!(
                            "redis-restart: notification {bs} arrived twice ({} and {} us): {}",
                            r.arrival_us[i],
                            now,
                            String::from_utf8_lossy(payload)
                        );
                    }
                }
                Incoming::Bench { .. } => {
                    if let Some(id) = chat_id(payload) {
                        log.borrow_mut().chat.push((sys::now_us(), id));
                    }
                }
                Incoming::Joined => {
                    let mut l = log.borrow_mut();
                    if l.awaiting_rejoin {
                        l.awaiting_rejoin = false;
                        l.rejoined = serde_json::from_slice(payload).ok();
                    }
                }
                Incoming::Error => {
                    let mut l = log.borrow_mut();
                    if memchr::memmem::find(payload, br#""unavailable""#).is_some() {
                        l.unavailable += 1;
                    } else {
                        l.other_errors += 1;
                    }
                }
                _ => {}
            },
        )));
    }

    // Steady load: notifications round robin over the connected users, chat frames round robin
    // over the clients.
    let stop = Arc::new(AtomicBool::new(false));
    let fates = {
        let users = connected.clone();
        let mut payload = String::with_capacity(160);
        resilient::spawn(Paced {
            redis: redis_addr,
            rate: notify_rate,
            stop: stop.clone(),
            message: Box::new(move |seq, bt| {
                let user = format!("r{}", users[(seq % users.len() as u64) as usize]);
                payload.clear();
                notification_for(&mut payload, &user, bt, seq);
                (format!("user:notifications:{user}"), payload.clone())
            }),
            inbox_every: INBOX_EVERY,
        })
    };
    let chat_sent = Rc::new(RefCell::new((0u64, 0u64))); // written, not written
    let chatter = {
        let (stop, streams, chat_sent) = (stop.clone(), streams.clone(), chat_sent.clone());
        tokio::task::spawn_local(async move {
            let start = Instant::now();
            let mut next = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::Relaxed) && chat_rate > 0.0 {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * chat_rate) as u64;
                while next < due {
                    let (i, stream) = &streams[(next % streams.len() as u64) as usize];
                    let text = format!(
                        r#"{{"type":"chat-message","room":"rr-{}","message":"@bt={}@bs={}@","id":{next}}}"#,
                        i % rooms,
                        sys::now_us(),
                        CHAT_MARK | next
                    );
                    let frame = ws::text(text.as_bytes());
                    let mut s = chat_sent.borrow_mut();
                    match stream.try_write(&frame) {
                        Ok(n) if n == frame.len() => s.0 += 1,
                        _ => s.1 += 1,
                    }
                    next += 1;
                }
            }
        })
    };
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_health(hub.addr, watch_stop.clone());

    // The outages.
    let redis = Arc::new(Mutex::new(redis));
    let mut channels: Vec<String> = connected
        .iter()
        .map(|i| format!("user:notifications:r{i}"))
        .collect();
    channels.extend((0..rooms).map(|r| format!("chat:room:rr-{r}")));
    channels.extend(FIXED_CHANNELS.iter().map(|c| c.to_string()));
    channels.push(format!("hub:canary:{instance}"));
    tokio::time::sleep(Duration::from_secs_f64(before)).await;
    let mut done: Vec<Outage> = Vec::new();
    for (k, secs) in outages.iter().enumerate() {
        let kill_us = sys::now_us();
        redis.lock().expect("redis lock").kill();
        eprintln!("redis-restart: outage {}: redis-server SIGKILLed", k + 1);
        tokio::time::sleep(Duration::from_secs_f64(*secs)).await;
        let back_us = {
            let redis = redis.clone();
            tokio::task::spawn_blocking(move || {
                redis.lock().expect("redis lock").restart()?;
                Ok::<_, String>(sys::now_us())
            })
            .await
            .map_err(|e| e.to_string())??
        };
        let (subs_back_us, missing_subs) = {
            let channels = channels.clone();
            tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let subscribed = stack_subscribed(redis_addr, &channels);
                    if subscribed == channels.len() || Instant::now() >= deadline {
                        return (sys::now_us(), channels.len() - subscribed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .await
            .map_err(|e| e.to_string())?
        };
        eprintln!(
            "redis-restart: outage {}: redis answers again after {:.2} s; {} of {} channels subscribed again {:.2} s later",
            k + 1,
            (back_us - kill_us) as f64 / 1e6,
            channels.len() - missing_subs,
            channels.len(),
            subs_back_us.saturating_sub(back_us) as f64 / 1e6
        );
        done.push(Outage {
            kill_us,
            back_us,
            subs_back_us,
            missing_subs,
        });
        let elapsed = Duration::from_micros(sys::now_us() - back_us);
        tokio::time::sleep(Duration::from_secs_f64(between).saturating_sub(elapsed)).await;
    }
    let kill_us = done[0].kill_us; // chat recovery starts from the last id before the first

    // Stop the load and let deliveries finish.
    stop.store(true, Ordering::Relaxed);
    let _ = chatter.await;
    let fates = fates
        .await
        .map_err(|_| "publisher thread died".to_string())?;
    let expected_heard = fates.count(HEARD);
    let delivered_now = || {
        received
            .borrow()
            .arrival_us
            .iter()
            .filter(|a| **a > 0)
            .count() as u64
    };
    drain(
        || delivered_now() >= expected_heard,
        delivered_now,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // chat echoes still on their way

    // Recovery: every client re-joins its room with the last id it had before the kill.
    let mut rejoins = 0u64;
    for ((i, stream), log) in streams.iter().zip(&logs) {
        let since = log
            .borrow()
            .chat
            .iter()
            .filter(|(at, _)| *at < kill_us)
            .map(|(_, id)| id.clone())
            .next_back();
        let Some(since) = since else { continue };
        log.borrow_mut().awaiting_rejoin = true;
        let frame = format!(
            r#"{{"type":"join-room","room":"rr-{}","since":"{since}","id":"rejoin"}}"#,
            i % rooms
        );
        if write_all(stream, &ws::text(frame.as_bytes())).await.is_ok() {
            rejoins += 1;
        }
        // Pace the re-joins (each reads the room's history): the rate limit is per session,
        // but a thousand history reads at once would only measure Redis.
        if rejoins.is_multiple_of(100) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let answered = || {
        logs.iter()
            .filter(|l| l.borrow().rejoined.is_some())
            .count() as u64
    };
    drain(
        || answered() >= rejoins,
        answered,
        Duration::from_secs(5),
        Duration::from_secs(20),
    )
    .await;
    let history = {
        tokio::task::spawn_blocking(move || -> Result<Vec<Vec<String>>, String> {
            let mut conn = crate::stack::connect(redis_addr)?;
            (0..rooms)
                .map(|r| {
                    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                        .arg(format!("chat:history:rr-{r}"))
                        .arg("-")
                        .arg("+")
                        .query(&mut conn)
                        .map_err(|e| format!("XRANGE: {e}"))?;
                    Ok(entries.into_iter().map(|(id, _)| id).collect())
                })
                .collect()
        })
        .await
        .map_err(|e| e.to_string())??
    };
    let sessions_closed = pumps.iter().filter(|p| p.is_finished()).count() as u64;
    watch_stop.store(true, Ordering::Relaxed);
    let polls = watcher.join().map_err(|_| "health watcher died")?;
    let hub_alive = hub.alive();
    let reconnects = super::metric(hub.addr, "hub_redis_reconnects_total");
    let left_behind = {
        for (_, stream) in &streams {
            let _ = write_all(stream, &super::close_frame(1000)).await;
        }
        let hub_addr = hub.addr;
        let instances = vec![instance.clone()];
        let user_channels: Vec<String> = channels
            .iter()
            .filter(|c| c.starts_with("user:") || c.starts_with("chat:room:"))
            .cloned()
            .collect();
        let room_names: Vec<String> = (0..rooms).map(|r| format!("rr-{r}")).collect();
        tokio::task::spawn_blocking(move || {
            leftovers::wait_clean(
                redis_addr,
                &[hub_addr],
                &instances,
                &user_channels,
                &room_names,
                Duration::from_secs(15),
            )
        })
        .await
        .map_err(|e| e.to_string())?
    };
    for p in &pumps {
        p.abort();
    }
    let (panics, _) = hub.log_problems();
    let exit = hub.stop();

    // Notifications: what each outage cost. Outage k covers messages sent from its kill to
    // the next kill (or the end).
    let r = received.borrow();
    let got = |seq: usize| r.arrival_us.get(seq).is_some_and(|a| *a > 0);
    let secs = |us: u64, from: u64| ((us as f64 - from as f64) / 1e3).round() / 1e3;
    let mut figures: Vec<OutageFigures> = done.iter().map(|_| OutageFigures::default()).collect();
    let (mut delivered, mut unanswered_delivered, mut lost_outside) = (0u64, 0u64, 0u64);
    // Per path (inbox, plain PUBLISH): taken by Redis, and of those never delivered.
    let (mut taken, mut lost) = ([0u64; 2], [0u64; 2]);
    for (seq, fate) in fates.fate.iter().enumerate() {
        let at = fates.at_us[seq];
        let ok = got(seq);
        delivered += u64::from(ok);
        let path = usize::from(!Paced::via_inbox(INBOX_EVERY, seq as u64));
        if matches!(*fate, HEARD | NOBODY) {
            taken[path] += 1;
            lost[path] += u64::from(!ok);
        }
        let k = done.iter().rposition(|o| o.kill_us <= at);
        if let Some(k) = k {
            let f = &mut figures[k];
            if ok && at >= done[k].back_us {
                let arrival = r.arrival_us[seq];
                f.first_after_back = Some(f.first_after_back.map_or(arrival, |x| x.min(arrival)));
            }
            match *fate {
                REFUSED => f.refused += 1,
                HEARD if !ok => f.lost_in_flight += 1,
                NOBODY => f.lost_no_subscriber += 1,
                UNANSWERED if !ok => f.unanswered_lost += 1,
                _ => {}
            }
        }
        if *fate == UNANSWERED && ok {
            unanswered_delivered += 1;
        }
        // Outside every outage (from 0.5 s before its kill to when every channel was
        // subscribed again) nothing may be lost.
        let inside = done
            .iter()
            .any(|o| at + 500_000 >= o.kill_us && at <= o.subs_back_us);
        if matches!(*fate, HEARD | NOBODY) && !ok && !inside {
            lost_outside += 1;
        }
    }
    let unanswered_polls = polls.iter().filter(|p| p.status == 0).count();
    let ok_at_end = polls.last().is_some_and(|p| p.status == 200);
    for (o, f) in done.iter().zip(figures.iter_mut()) {
        f.resume_ms = f
            .first_after_back
            .map(|a| a.saturating_sub(o.back_us) as f64 / 1000.0);
        let during: Vec<&Poll> = polls
            .iter()
            .filter(|p| p.at_us >= o.kill_us && p.at_us < o.back_us)
            .collect();
        f.polls = during.len();
        f.degraded_polls = during
            .iter()
            .filter(|p| p.status == 503 && p.degraded)
            .count();
        f.first_503_s = polls
            .iter()
            .find(|p| p.at_us >= o.kill_us && p.status == 503)
            .map(|p| secs(p.at_us, o.kill_us));
        f.first_200_s = polls
            .iter()
            .find(|p| p.at_us >= o.back_us && p.status == 200)
            .map(|p| secs(p.at_us, o.back_us));
    }
    let outages_json: Vec<Value> = done
        .iter()
        .zip(&figures)
        .map(|(o, f)| {
            json!({
                "down_s": secs(o.back_us, o.kill_us),
                "health_polls_while_down": f.polls,
                "health_503_degraded_while_down": f.degraded_polls,
                "first_503_after_kill_s": f.first_503_s,
                "first_200_after_return_s": f.first_200_s,
                "subscriptions_back_after_s": secs(o.subs_back_us, o.back_us),
                "subscriptions_missing": o.missing_subs,
                "resume_ms": f.resume_ms.map(|m| report::round(m, 1)),
                "notifications_refused_redis_down": f.refused,
                "notifications_lost_no_subscriber_yet": f.lost_no_subscriber,
                "notifications_lost_in_flight": f.lost_in_flight,
                "notifications_unanswered_lost": f.unanswered_lost,
            })
        })
        .collect();
    for (k, j) in outages_json.iter().enumerate() {
        eprintln!("redis-restart: outage {}: {j}", k + 1);
    }

    // Chat: missed live, recovered by `since`, checked against the history in Redis.
    let (mut missed_live, mut recovered, mut still_missing) = (0u64, 0u64, 0u64);
    let (mut rejoined, mut not_recovered_flag, mut chat_received) = (0u64, 0u64, 0u64);
    let (mut unavailable, mut other_errors) = (0u64, 0u64);
    for ((i, _), log) in streams.iter().zip(&logs) {
        let l = log.borrow();
        chat_received += l.chat.len() as u64;
        unavailable += l.unavailable;
        other_errors += l.other_errors;
        let Some(joined) = &l.rejoined else { continue };
        rejoined += 1;
        if joined["recovered"] != json!(true) {
            not_recovered_flag += 1;
        }
        let Some(since) = l
            .chat
            .iter()
            .filter(|(at, _)| *at < kill_us)
            .filter_map(|(_, id)| parse_id(id))
            .next_back()
        else {
            continue;
        };
        let live: HashSet<&str> = l.chat.iter().map(|(_, id)| id.as_str()).collect();
        let replayed: HashSet<&str> = joined["history"]
            .as_array()
            .map(|h| h.iter().filter_map(|m| m["id"].as_str()).collect())
            .unwrap_or_default();
        for id in &history[(*i % rooms) as usize] {
            if parse_id(id).is_none_or(|p| p <= since) || live.contains(id.as_str()) {
                continue;
            }
            missed_live += 1;
            if replayed.contains(id.as_str()) {
                recovered += 1;
            } else {
                still_missing += 1;
            }
        }
    }
    let (chat_written, chat_unwritten) = *chat_sent.borrow();

    let all = |pred: &dyn Fn(&Outage, &OutageFigures) -> bool| {
        done.iter().zip(&figures).all(|(o, f)| pred(o, f))
    };
    let list = |show: &dyn Fn(&Outage, &OutageFigures) -> String| {
        done.iter()
            .zip(&figures)
            .map(|(o, f)| show(o, f))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut v = Verdict::default();
    v.check(
        "hub never crashed",
        hub_alive && unanswered_polls == 0 && panics == 0,
        format!("running at the end: {hub_alive}; /health polls unanswered: {unanswered_polls}; panics logged: {panics}"),
    );
    v.check(
        "/health reported each outage (503 degraded)",
        all(&|_, f| f.degraded_polls > 0),
        format!(
            "degraded polls while down: {}; first 503 after the kill (s): {}",
            list(&|_, f| format!("{}/{}", f.degraded_polls, f.polls)),
            list(&|_, f| f.first_503_s.map_or("never".into(), |s| s.to_string()))
        ),
    );
    v.check(
        "/health recovered after each (200 ok)",
        all(&|_, f| f.first_200_s.is_some()) && ok_at_end,
        format!(
            "first 200 after redis returned (s): {}",
            list(&|_, f| f.first_200_s.map_or("never".into(), |s| s.to_string()))
        ),
    );
    v.check(
        "every subscription came back (PUBSUB NUMSUB of every channel)",
        all(&|o, _| o.missing_subs == 0),
        format!(
            "{} channels; back after (s): {}",
            channels.len(),
            list(&|o, _| if o.missing_subs == 0 {
                secs(o.subs_back_us, o.back_us).to_string()
            } else {
                format!("{} missing", o.missing_subs)
            })
        ),
    );
    v.check(
        &format!(
            "delivery resumed within {} s of redis returning",
            resume_limit_ms / 1000.0
        ),
        all(&|_, f| f.resume_ms.is_some_and(|ms| ms <= resume_limit_ms)),
        format!(
            "first notification published after the restart delivered after (ms): {}",
            list(&|_, f| f.resume_ms.map_or("never".into(), |ms| format!("{ms:.0}")))
        ),
    );
    v.check(
        "no inbox notification lost across the restarts",
        lost[0] == 0,
        format!(
            "{} of {} sent through relay_notify and taken by Redis never arrived (plain PUBLISH: {} of {} lost)",
            lost[0], taken[0], lost[1], taken[1]
        ),
    );
    v.check(
        "no notification lost outside the outages",
        lost_outside == 0,
        format!("{lost_outside} lost (outside: before 0.5 s ahead of a kill or after every channel was subscribed again)"),
    );
    v.check(
        "chat messages missed live were recovered with `since`",
        still_missing == 0 && not_recovered_flag == 0 && rejoined == rejoins,
        format!(
            "{missed_live} missed live, {recovered} recovered, {still_missing} still missing; {rejoined} of {rejoins} re-joins answered, {not_recovered_flag} without `recovered: true`"
        ),
    );
    v.check(
        "sessions survived the outages",
        sessions_closed == 0,
        format!("{sessions_closed} of {} closed", streams.len()),
    );
    v.check(
        "nothing left after the clients closed",
        left_behind.clean(),
        format!(
            "connections {}, rooms {}, users {}, {} channels still subscribed, {} other channels, presence {} + {}",
            left_behind.sessions,
            left_behind.rooms,
            left_behind.users,
            left_behind.still_subscribed.len(),
            left_behind.foreign.len(),
            left_behind.presence_hashes,
            left_behind.presence_pairs
        ),
    );
    if !v.passed() {
        scratch.keep();
        eprintln!("redis-restart: logs kept in {}", scratch.dir.display());
    }
    v.print("redis-restart");

    let mut out = serde_json::Map::new();
    out.insert("scenario".into(), json!("redis-restart"));
    out.insert("server".into(), json!("hub"));
    out.extend(v.fields());
    let redis_command = redis.lock().expect("redis lock").command();
    out.extend(
        json!({
            "clients": streams.len(),
            "rooms": rooms,
            "notify_rate": notify_rate,
            "chat_rate": chat_rate,
            "outages": outages_json,
            "notifications": {
                "published": fates.fate.len(),
                "delivered": delivered,
                "refused_redis_down": fates.count(REFUSED),
                "taken_by_redis": fates.count(HEARD) + fates.count(NOBODY),
                "lost_no_subscriber_yet": figures.iter().map(|f| f.lost_no_subscriber).sum::<u64>(),
                "lost_in_flight": figures.iter().map(|f| f.lost_in_flight).sum::<u64>(),
                "unanswered": fates.count(UNANSWERED),
                "unanswered_but_delivered": unanswered_delivered,
                "lost_outside_outages": lost_outside,
                "inbox_taken_by_redis": taken[0],
                "inbox_lost": lost[0],
                "plain_taken_by_redis": taken[1],
                "plain_lost": lost[1],
                "duplicates": r.duplicates,
                "publisher_connects": fates.connects,
            },
            "chat": {
                "frames_written": chat_written,
                "frames_not_written": chat_unwritten,
                "rejected_unavailable": unavailable,
                "other_errors": other_errors,
                "deliveries_received": chat_received,
                "history_messages": history.iter().map(Vec::len).sum::<usize>(),
                "rejoins_sent": rejoins,
                "rejoins_answered": rejoined,
                "missed_live": missed_live,
                "recovered_with_since": recovered,
                "still_missing": still_missing,
                "rejoins_without_recovered_true": not_recovered_flag,
            },
            "sessions_closed": sessions_closed,
            "hub_redis_reconnects": reconnects,
            "leftovers": left_behind.json(),
            "hub_exit_code": exit,
            "commands": {"redis": redis_command, "hub": hub.command},
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    Ok(Value::Object(out))
}

/// Channels of `channels` with a subscriber (0 when Redis cannot be asked).
fn stack_subscribed(redis: std::net::SocketAddr, channels: &[String]) -> usize {
    crate::stack::connect(redis)
        .and_then(|mut c| leftovers::subscribed(&mut c, channels))
        .map_or(0, |s| s.len())
}
