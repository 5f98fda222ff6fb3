//! `instance-kill` (part of `make chaos`): three hub instances on one Redis, clients spread
//! over them, every client in a room with members on all three; a publisher sends each user
//! its notifications and each room its messages at a steady rate. One instance is SIGKILLed
//! under that load.
//!
//! Measured: whether clients of the two survivors missed anything (every message addressed to
//! them, in order, none twice), the longest pause between their deliveries before and after
//! the kill, their latency before and after, and how long until the survivors' room member
//! lists (`GET /api/rooms/{room}`) no longer hold the dead instance's users (its presence
//! entries expire after `HUB_PRESENCE_TTL_MS`, set short for the run).

use std::{
    cell::RefCell,
    collections::HashSet,
    net::SocketAddr,
    path::PathBuf,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{
    args::Args,
    client::{self, write_all},
    leftovers,
    proto::chat_payload,
    report,
    resilient::{self, Paced, HEARD},
    stack::{HubProcess, RedisServer, Scratch},
    sys,
    verdict::Verdict,
};

use super::{close_frame, drain, http_get, metric, notification_for, open_many};

/// Where message `seq` goes: rooms get `room_rate` of every `total` messages, spread evenly
/// (the rest are notifications, round robin over the users).
#[derive(Clone, Copy)]
struct Split {
    room_rate: u64,
    total: u64,
    users: u64,
    rooms: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Dest {
    User(u64),
    Room(u64),
}

impl Split {
    fn rooms_before(&self, seq: u64) -> u64 {
        seq * self.room_rate / self.total
    }

    fn dest(&self, seq: u64) -> Dest {
        let k = self.rooms_before(seq);
        if self.rooms_before(seq + 1) > k {
            Dest::Room(k % self.rooms)
        } else {
            Dest::User((seq - k) % self.users)
        }
    }
}

/// What one client received: (sequence, arrival us, latency us) in arrival order.
type Arrivals = Rc<RefCell<Vec<(u64, u64, u64)>>>;

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let clients: u64 = args.get("clients", 900)?;
    let rooms: u64 = args.get("rooms", 30)?;
    let rate: u64 = args.get("rate", 1500)?;
    let room_rate: u64 = args.get("room-rate", 30)?;
    let before: f64 = args.get("before", 4.0)?;
    let after: f64 = args.get("after", 6.0)?;
    let ttl_ms: u64 = args.get("presence-ttl-ms", 2000)?;
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let redis_bin: String = args.get("redis-server", "redis-server".to_string())?;
    args.finish()?;
    if clients < 3 || rooms == 0 || rate == 0 {
        return Err("--clients (>= 3), --rooms and --rate must be positive".into());
    }

    let mut scratch = Scratch::new("instance-kill")?;
    let redis = RedisServer::start(&redis_bin, &scratch.dir, false)?;
    let redis_addr = redis.addr();
    let ids = ["chaos-a", "chaos-b", "chaos-c"];
    let mut hubs = Vec::new();
    for id in ids {
        let env = [
            ("HUB_INSTANCE_ID", id.to_string()),
            ("HUB_PRESENCE_TTL_MS", ttl_ms.to_string()),
        ];
        hubs.push(HubProcess::start(
            &hub_bin,
            &redis.url(),
            &env,
            &scratch.dir,
            id,
        )?);
    }
    let dead = 2;
    eprintln!(
        "instance-kill: {clients} clients over three hubs ({}), {rooms} rooms spanning all three; {rate} notifications/s + {room_rate} room messages/s; SIGKILL {} after {before} s; presence TTL {ttl_ms} ms",
        hubs.iter().map(|h| h.addr.to_string()).collect::<Vec<_>>().join(", "),
        ids[dead]
    );

    // Client i is user k{i} on hub i % 3, in room kr{i % rooms}.
    let mut arrivals: Vec<(u64, Arrivals)> = Vec::new();
    let mut pumps = Vec::new();
    let mut streams = Vec::new();
    let mut failed = 0;
    for (h, hub) in hubs.iter().enumerate() {
        let target = hub.target(ids[h]);
        let mine: Vec<u64> = (0..clients).filter(|i| i % 3 == h as u64).collect();
        let names = mine.iter().map(|i| format!("k{i}")).collect();
        let room_of: Rc<dyn Fn(usize) -> String> = {
            let mine = mine.clone();
            Rc::new(move |j| format!("kr{}", mine[j] % rooms))
        };
        let opened = open_many(&target, names, 200, h as u64 * 20_000, Some(room_of)).await;
        failed += opened.failed;
        for (j, c) in opened.clients {
            let i = mine[j];
            let (stream, decoder, proto) = c.into_parts();
            let log: Arrivals = Rc::new(RefCell::new(Vec::new()));
            arrivals.push((i, log.clone()));
            streams.push(stream.clone());
            pumps.push((
                i,
                tokio::task::spawn_local(client::pump(stream, decoder, proto, move |bt, bs| {
                    let now = sys::now_us();
                    log.borrow_mut().push((bs, now, now.saturating_sub(bt)));
                })),
            ));
        }
    }
    if failed > 0 {
        return Err(format!("{failed} clients could not connect or join"));
    }

    let split = Split {
        room_rate,
        total: rate + room_rate,
        users: clients,
        rooms,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let fates = {
        let mut payload = String::with_capacity(160);
        resilient::spawn(Paced {
            redis: redis_addr,
            rate: split.total as f64,
            stop: stop.clone(),
            message: Box::new(move |seq, bt| {
                payload.clear();
                match split.dest(seq) {
                    Dest::Room(r) => {
                        let room = format!("kr{r}");
                        chat_payload(&mut payload, &room, bt, seq);
                        (format!("chat:room:{room}"), payload.clone())
                    }
                    Dest::User(u) => {
                        let user = format!("k{u}");
                        notification_for(&mut payload, &user, bt, seq);
                        (format!("user:notifications:{user}"), payload.clone())
                    }
                }
            }),
            inbox_every: 0,
        })
    };

    tokio::time::sleep(Duration::from_secs_f64(before)).await;
    let kill_us = sys::now_us();
    hubs[dead].kill();
    eprintln!("instance-kill: {} SIGKILLed", ids[dead]);

    // The survivors' member lists, until the dead instance's users are gone from every room.
    let dead_users: HashSet<String> = (0..clients)
        .filter(|i| i % 3 == dead as u64)
        .map(|i| format!("k{i}"))
        .collect();
    let live_members: Vec<u64> = (0..rooms)
        .map(|r| {
            (0..clients)
                .filter(|i| i % rooms == r && i % 3 != dead as u64)
                .count() as u64
        })
        .collect();
    let watcher = {
        let survivor = hubs[0].addr;
        let limit = Duration::from_millis(3 * ttl_ms + 10_000);
        tokio::task::spawn_blocking(move || {
            presence_gone(survivor, rooms, &dead_users, &live_members, limit)
        })
    };
    let (expired_us, presence_detail) = watcher.await.map_err(|e| e.to_string())?;
    let elapsed = Duration::from_micros(sys::now_us() - kill_us);
    tokio::time::sleep(Duration::from_secs_f64(after).saturating_sub(elapsed)).await;
    stop.store(true, Ordering::Relaxed);
    let fates = fates
        .await
        .map_err(|_| "publisher thread died".to_string())?;

    // Expected per survivor: every message to its user or its room that Redis passed on.
    let survivor_of = |i: u64| i % 3 != dead as u64;
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); clients as usize];
    for (seq, fate) in fates.fate.iter().enumerate() {
        if *fate != HEARD {
            continue;
        }
        match split.dest(seq as u64) {
            Dest::User(u) => {
                if survivor_of(u) {
                    expected[u as usize].push(seq as u64)
                }
            }
            Dest::Room(r) => {
                for i in (r..clients).step_by(rooms as usize) {
                    if survivor_of(i) {
                        expected[i as usize].push(seq as u64);
                    }
                }
            }
        }
    }
    let total_expected: u64 = expected.iter().map(|e| e.len() as u64).sum();
    let received_now = || {
        arrivals
            .iter()
            .filter(|(i, _)| survivor_of(*i))
            .map(|(_, a)| a.borrow().len() as u64)
            .sum::<u64>()
    };
    drain(
        || received_now() >= total_expected,
        received_now,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .await;

    let (mut lost, mut out_of_order, mut duplicates, mut extra) = (0u64, 0u64, 0u64, 0u64);
    let (mut gap_before, mut gap_after) = (0u64, 0u64);
    let (mut lat_before, mut lat_after) = (report::histogram(), report::histogram());
    let window = 3_000_000u64;
    for (i, log) in &arrivals {
        if !survivor_of(*i) {
            continue;
        }
        let log = log.borrow();
        let want: HashSet<u64> = expected[*i as usize].iter().copied().collect();
        let mut seen = HashSet::new();
        let mut last_seq = None;
        let mut last_at: Option<u64> = None;
        for &(seq, at, latency) in log.iter() {
            if !seen.insert(seq) {
                duplicates += 1;
            }
            if !want.contains(&seq) {
                extra += 1;
            }
            if last_seq.is_some_and(|l| seq < l) {
                out_of_order += 1;
            }
            last_seq = Some(seq);
            if let Some(prev) = last_at {
                let gap = at - prev;
                if at < kill_us && at + window >= kill_us {
                    gap_before = gap_before.max(gap);
                } else if at >= kill_us && at <= kill_us + window {
                    gap_after = gap_after.max(gap);
                }
            }
            last_at = Some(at);
            if at < kill_us {
                report::record(&mut lat_before, latency);
            } else {
                report::record(&mut lat_after, latency);
            }
        }
        lost += want.iter().filter(|s| !seen.contains(s)).count() as u64;
    }
    let survivors_closed = pumps
        .iter()
        .filter(|(i, p)| survivor_of(*i) && p.is_finished())
        .count();
    let dead_clients = pumps.iter().filter(|(i, _)| !survivor_of(*i)).count();
    let dead_closed = pumps
        .iter()
        .filter(|(i, p)| !survivor_of(*i) && p.is_finished())
        .count();
    let reaped: f64 = hubs[..2]
        .iter()
        .filter_map(|h| metric(h.addr, "hub_presence_reaped_total"))
        .sum();
    let forgotten = {
        tokio::task::spawn_blocking(move || -> Result<(bool, u64), String> {
            let mut conn = crate::stack::connect(redis_addr)?;
            let instances: Vec<String> = redis::cmd("SMEMBERS")
                .arg(hub_actors::features::roster::INSTANCES_KEY)
                .query(&mut conn)
                .map_err(|e| e.to_string())?;
            let pairs: u64 = redis::cmd("SCARD")
                .arg(hub_actors::features::roster::instance_key("chaos-c"))
                .query(&mut conn)
                .map_err(|e| e.to_string())?;
            Ok((!instances.iter().any(|i| i == "chaos-c"), pairs))
        })
        .await
        .map_err(|e| e.to_string())?
    };
    let survivors_alive = hubs[0].alive() && hubs[1].alive();
    let panics: u64 = hubs[..2].iter().map(|h| h.log_problems().0).sum();

    // Close the survivors' clients; nothing may be left.
    for s in &streams {
        let _ = write_all(s, &close_frame(1000)).await;
    }
    let left = {
        let survivors = vec![hubs[0].addr, hubs[1].addr];
        let instances: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let mut channels: Vec<String> = (0..clients)
            .map(|i| format!("user:notifications:k{i}"))
            .collect();
        channels.extend((0..rooms).map(|r| format!("chat:room:kr{r}")));
        let room_names: Vec<String> = (0..rooms).map(|r| format!("kr{r}")).collect();
        tokio::task::spawn_blocking(move || {
            leftovers::wait_clean(
                redis_addr,
                &survivors,
                &instances,
                &channels,
                &room_names,
                Duration::from_secs(15),
            )
        })
        .await
        .map_err(|e| e.to_string())?
    };
    for (_, p) in &pumps {
        p.abort();
    }
    let exits: Vec<Option<i32>> = hubs[..2].iter_mut().map(|h| h.stop()).collect();

    let bound_ms = ttl_ms * 4 / 3 + 500;
    let expired_ms = expired_us.map(|e| e.saturating_sub(kill_us) / 1000);
    let mut v = Verdict::default();
    v.check(
        "survivors kept running",
        survivors_alive && panics == 0,
        format!("both running: {survivors_alive}; panics logged: {panics}"),
    );
    v.check(
        "survivors' clients missed nothing (no gap in their sequences)",
        lost == 0 && out_of_order == 0 && duplicates == 0 && extra == 0,
        format!(
            "{} messages expected, {lost} missing, {out_of_order} out of order, {duplicates} twice, {extra} unexpected",
            total_expected
        ),
    );
    v.check(
        "survivors' sessions stayed open",
        survivors_closed == 0,
        format!("{survivors_closed} closed"),
    );
    v.check(
        "the dead instance's users left the survivors' member lists within the presence TTL",
        expired_ms.is_some_and(|ms| ms <= bound_ms),
        format!(
            "after {} ms (TTL {ttl_ms} ms; the hub documents up to 1.33 TTL, checked against {bound_ms} ms with polling slack); {presence_detail}",
            expired_ms.map_or("never".into(), |ms| ms.to_string())
        ),
    );
    v.check(
        "the dead instance is forgotten in Redis",
        matches!(forgotten, Ok((true, 0))),
        match &forgotten {
            Ok((gone, pairs)) => {
                format!(
                    "removed from the instances set: {gone}; its presence entries left: {pairs}"
                )
            }
            Err(e) => e.clone(),
        },
    );
    v.check(
        "nothing left after the clients closed",
        left.clean(),
        format!(
            "connections {}, rooms {}, users {}, {} channels still subscribed, presence {} + {}",
            left.sessions,
            left.rooms,
            left.users,
            left.still_subscribed.len(),
            left.presence_hashes,
            left.presence_pairs
        ),
    );
    if !v.passed() {
        scratch.keep();
        eprintln!("instance-kill: logs kept in {}", scratch.dir.display());
    }
    v.print("instance-kill");

    let mut out = serde_json::Map::new();
    out.insert("scenario".into(), json!("instance-kill"));
    out.insert("server".into(), json!("hub x3"));
    out.extend(v.fields());
    out.extend(
        json!({
            "clients": clients,
            "rooms": rooms,
            "notify_rate": rate,
            "room_rate": room_rate,
            "presence_ttl_ms": ttl_ms,
            "killed": ids[dead],
            "dead_instance_clients": dead_clients,
            "dead_instance_clients_disconnected": dead_closed,
            "survivors": {
                "expected": total_expected,
                "lost": lost,
                "out_of_order": out_of_order,
                "duplicates": duplicates,
                "unexpected": extra,
                "sessions_closed": survivors_closed,
                "max_gap_ms_3s_before_kill": gap_before as f64 / 1000.0,
                "max_gap_ms_3s_after_kill": gap_after as f64 / 1000.0,
                "latency_us_before_kill": report::latency(&lat_before),
                "latency_us_after_kill": report::latency(&lat_after),
            },
            "presence_expired_ms": expired_ms,
            "presence_bound_ms": bound_ms,
            "presence_reaped_total": reaped,
            "published": fates.fate.len(),
            "leftovers": left.json(),
            "survivor_exit_codes": exits,
            "commands": {"redis": redis.command(), "hub": hubs[0].command},
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    Ok(Value::Object(out))
}

/// Polls the survivor's member list of every room until no room lists a dead user and each
/// counts exactly its live members; returns when that held (us) and what was seen last.
fn presence_gone(
    survivor: SocketAddr,
    rooms: u64,
    dead: &HashSet<String>,
    live: &[u64],
    limit: Duration,
) -> (Option<u64>, String) {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        let mut dead_listed = 0;
        let mut wrong_counts = 0;
        let mut errors = 0;
        for r in 0..rooms {
            match http_get(survivor, &format!("/api/rooms/kr{r}")) {
                Ok((200, body)) => {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    dead_listed += v["members"]
                        .as_array()
                        .map(|m| {
                            m.iter()
                                .filter(|m| m["userId"].as_str().is_some_and(|u| dead.contains(u)))
                                .count()
                        })
                        .unwrap_or(0);
                    if v["memberCount"].as_u64() != Some(live[r as usize]) {
                        wrong_counts += 1;
                    }
                }
                _ => errors += 1,
            }
        }
        last = format!(
            "last look: {dead_listed} dead users listed, {wrong_counts} rooms with a wrong count, {errors} requests failed"
        );
        if dead_listed == 0 && wrong_counts == 0 && errors == 0 {
            return (Some(sys::now_us()), last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (None, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_sends_rooms_their_share() {
        let s = Split {
            room_rate: 30,
            total: 1530,
            users: 900,
            rooms: 30,
        };
        let rooms = (0..15_300)
            .filter(|q| matches!(s.dest(*q), Dest::Room(_)))
            .count();
        assert_eq!(rooms, 300);
        assert_eq!(s.dest(0), Dest::User(0));
    }
}
