//! What must be left once every client is gone: no sessions, rooms or users in `/health`, no
//! hub subscription to any channel a run used (`PUBSUB NUMSUB` 0 for each), no channel
//! subscribed besides the hub's fixed ones (`PUBSUB CHANNELS`), and no room presence held in
//! Redis for the instance.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use hub_actors::features::roster;
use hub_wire::protocol::FIXED_CHANNELS;
use serde_json::{json, Value};

use crate::{scenario::health, stack};

/// Channels per `PUBSUB NUMSUB` / keys per `EXISTS` call.
const BATCH: usize = 500;

/// `PUBSUB NUMSUB` of every channel; returns those with subscribers.
pub fn subscribed(
    conn: &mut redis::Connection,
    channels: &[String],
) -> Result<Vec<(String, i64)>, String> {
    let mut out = Vec::new();
    for chunk in channels.chunks(BATCH) {
        let reply: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chunk)
            .query(conn)
            .map_err(|e| format!("PUBSUB NUMSUB: {e}"))?;
        out.extend(reply.into_iter().filter(|(_, n)| *n > 0));
    }
    Ok(out)
}

/// `PUBSUB CHANNELS` minus the fixed channels of `instances`.
fn foreign_channels(
    conn: &mut redis::Connection,
    instances: &[String],
) -> Result<Vec<String>, String> {
    let all: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(conn)
        .map_err(|e| format!("PUBSUB CHANNELS: {e}"))?;
    Ok(all
        .into_iter()
        .filter(|c| {
            !FIXED_CHANNELS.contains(&c.as_str())
                && !instances.iter().any(|i| *c == format!("hub:canary:{i}"))
        })
        .collect())
}

/// Room presence still held: the rooms' presence hashes that exist, and the entries of each
/// instance's presence set.
fn presence_left(
    conn: &mut redis::Connection,
    rooms: &[String],
    instances: &[String],
) -> Result<(u64, u64), String> {
    let mut hashes = 0;
    for chunk in rooms.chunks(BATCH) {
        let keys: Vec<String> = chunk.iter().map(|r| roster::room_key(r)).collect();
        let n: u64 = redis::cmd("EXISTS")
            .arg(&keys)
            .query(conn)
            .map_err(|e| format!("EXISTS: {e}"))?;
        hashes += n;
    }
    let mut pairs = 0;
    for id in instances {
        let n: u64 = redis::cmd("SCARD")
            .arg(roster::instance_key(id))
            .query(conn)
            .map_err(|e| format!("SCARD: {e}"))?;
        pairs += n;
    }
    Ok((hashes, pairs))
}

/// One look at everything that should be gone.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Sum over the hubs of `/health` `websocket.connections`, `rooms`, `users` (-1: unreadable).
    pub sessions: i64,
    /// See `sessions`.
    pub rooms: i64,
    /// See `sessions`.
    pub users: i64,
    /// Channels whose `NUMSUB` was asked.
    pub channels_checked: usize,
    /// Used channels that still have a subscriber (with the count).
    pub still_subscribed: Vec<(String, i64)>,
    /// Subscribed channels that are not a hub's fixed ones.
    pub foreign: Vec<String>,
    /// Presence hashes left for the used rooms.
    pub presence_hashes: u64,
    /// Entries left in the instances' presence sets.
    pub presence_pairs: u64,
    /// A Redis command failed.
    pub error: Option<String>,
    /// Seconds until everything was clean (or the limit).
    pub settle_secs: f64,
}

impl Leftovers {
    /// True when nothing is left.
    pub fn clean(&self) -> bool {
        self.sessions == 0
            && self.rooms == 0
            && self.users == 0
            && self.still_subscribed.is_empty()
            && self.foreign.is_empty()
            && self.presence_hashes == 0
            && self.presence_pairs == 0
            && self.error.is_none()
    }

    /// The report's view (at most 10 channel names of each kind).
    pub fn json(&self) -> Value {
        json!({
            "clean": self.clean(),
            "health_connections": self.sessions,
            "health_rooms": self.rooms,
            "health_users": self.users,
            "channels_checked": self.channels_checked,
            "channels_still_subscribed": self.still_subscribed.len(),
            "still_subscribed_sample": self.still_subscribed.iter().take(10)
                .map(|(c, n)| format!("{c}={n}")).collect::<Vec<_>>(),
            "foreign_channels": self.foreign.iter().take(10).collect::<Vec<_>>(),
            "presence_hashes_left": self.presence_hashes,
            "presence_pairs_left": self.presence_pairs,
            "error": self.error,
            "settle_secs": (self.settle_secs * 100.0).round() / 100.0,
        })
    }
}

/// Looks (again every 200 ms, for at most `limit`, since unsubscribing and presence updates
/// are asynchronous) until nothing is left; returns the last look.
pub fn wait_clean(
    redis: SocketAddr,
    hubs: &[SocketAddr],
    instances: &[String],
    channels: &[String],
    rooms: &[String],
    limit: Duration,
) -> Leftovers {
    let start = Instant::now();
    loop {
        let mut look = look(redis, hubs, instances, channels, rooms);
        look.settle_secs = start.elapsed().as_secs_f64();
        if look.clean() || start.elapsed() >= limit {
            return look;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn look(
    redis: SocketAddr,
    hubs: &[SocketAddr],
    instances: &[String],
    channels: &[String],
    rooms: &[String],
) -> Leftovers {
    let mut l = Leftovers {
        channels_checked: channels.len(),
        ..Leftovers::default()
    };
    for hub in hubs {
        let h = health(*hub);
        let ws = &h["websocket"];
        let field = |k: &str| ws[k].as_i64().unwrap_or(-1);
        for (sum, k) in [
            (&mut l.sessions, "connections"),
            (&mut l.rooms, "rooms"),
            (&mut l.users, "users"),
        ] {
            let v = field(k);
            *sum = if *sum < 0 || v < 0 { -1 } else { *sum + v };
        }
    }
    if let Err(e) = look_in_redis(&mut l, redis, instances, channels, rooms) {
        l.error = Some(e);
    }
    l
}

fn look_in_redis(
    l: &mut Leftovers,
    redis: SocketAddr,
    instances: &[String],
    channels: &[String],
    rooms: &[String],
) -> Result<(), String> {
    let mut conn = stack::connect(redis)?;
    l.still_subscribed = subscribed(&mut conn, channels)?;
    l.foreign = foreign_channels(&mut conn, instances)?;
    (l.presence_hashes, l.presence_pairs) = presence_left(&mut conn, rooms, instances)?;
    Ok(())
}
