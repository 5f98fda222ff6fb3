//! A paced publisher that outlives Redis outages, for the fault scenarios: it publishes at a
//! steady rate whether or not Redis is there, reconnects every 100 ms while it is gone, and
//! records each message's fate (never sent, sent without an answer, taken by Redis with or
//! without a subscriber), so the report can say exactly what an outage cost.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::sys;

/// Redis could not be reached: the message was never sent.
pub const REFUSED: u8 = 1;
/// Written, but the connection died before Redis answered: it may or may not have gone out.
pub const UNANSWERED: u8 = 2;
/// Redis took it and had no subscriber for the channel (nobody can receive it).
pub const NOBODY: u8 = 3;
/// Redis took it and passed it to at least one subscriber.
pub const HEARD: u8 = 4;

/// Builds message `seq` stamped `bt` (microseconds, [`sys::now_us`]): (channel, payload).
pub type MessageFn = Box<dyn FnMut(u64, u64) -> (String, String) + Send>;

/// What to publish.
pub struct Paced {
    /// Redis.
    pub redis: SocketAddr,
    /// Messages per second.
    pub rate: f64,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Builds each message.
    pub message: MessageFn,
    /// Every `inbox_every`-th message (0: none) is a notification sent through the inbox
    /// (`FCALL relay_notify 1 inbox:{<channel>} <payload>`) instead of `PUBLISH`.
    pub inbox_every: u64,
}

impl Paced {
    /// True when message `seq` goes through the inbox.
    pub fn via_inbox(inbox_every: u64, seq: u64) -> bool {
        inbox_every > 0 && seq.is_multiple_of(inbox_every)
    }
}

/// What happened to each message, by sequence number.
#[derive(Default)]
pub struct Fates {
    /// One of [`REFUSED`], [`UNANSWERED`], [`NOBODY`], [`HEARD`] per message.
    pub fate: Vec<u8>,
    /// When each was sent (or would have been), microseconds.
    pub at_us: Vec<u64>,
    /// Connections made (1 + reconnects).
    pub connects: u64,
}

impl Fates {
    /// Messages with fate `f`.
    pub fn count(&self, f: u8) -> u64 {
        self.fate.iter().filter(|x| **x == f).count() as u64
    }
}

const TICK: Duration = Duration::from_millis(5);
const RECONNECT_EVERY: Duration = Duration::from_millis(100);
/// Most messages in one pipeline.
const MAX_BATCH: u64 = 2000;

fn open(redis: SocketAddr) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{redis}")).ok()?;
    let conn = client
        .get_connection_with_timeout(Duration::from_millis(200))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    conn.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    Some(conn)
}

/// Runs until `stop` is set (blocking: run it on its own thread).
pub fn run(mut p: Paced) -> Fates {
    sys::fine_timer_slack();
    let mut fates = Fates::default();
    let mut conn: Option<redis::Connection> = None;
    let mut last_attempt: Option<Instant> = None;
    let start = Instant::now();
    let mut seq = 0u64;
    while !p.stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let due = (start.elapsed().as_secs_f64() * p.rate) as u64;
        if due <= seq {
            continue;
        }
        let batch = (due - seq).min(MAX_BATCH);
        if conn.is_none() && last_attempt.is_none_or(|t| t.elapsed() >= RECONNECT_EVERY) {
            last_attempt = Some(Instant::now());
            conn = open(p.redis);
            fates.connects += u64::from(conn.is_some());
        }
        let bt = sys::now_us();
        let Some(c) = conn.as_mut() else {
            for i in 0..batch {
                let _ = (p.message)(seq + i, bt);
                fates.fate.push(REFUSED);
                fates.at_us.push(bt);
            }
            seq += batch;
            continue;
        };
        let mut pipe = redis::pipe();
        for i in 0..batch {
            let (channel, payload) = (p.message)(seq + i, bt);
            if Paced::via_inbox(p.inbox_every, seq + i) {
                let key = format!("inbox:{{{channel}}}");
                pipe.cmd("FCALL")
                    .arg("relay_notify")
                    .arg(1)
                    .arg(key)
                    .arg(payload);
            } else {
                pipe.cmd("PUBLISH").arg(channel).arg(payload);
            }
        }
        match pipe.query::<Vec<redis::Value>>(c) {
            Ok(replies) => {
                for i in 0..batch as usize {
                    // PUBLISH answers the receivers, FCALL relay_notify [inboxId, receivers].
                    let receivers = match replies.get(i) {
                        Some(redis::Value::Int(n)) => Some(*n),
                        Some(redis::Value::Array(a)) => match a.get(1) {
                            Some(redis::Value::Int(n)) => Some(*n),
                            _ => None,
                        },
                        _ => None,
                    };
                    fates.fate.push(match receivers {
                        Some(n) if n > 0 => HEARD,
                        Some(_) => NOBODY,
                        None => UNANSWERED,
                    });
                }
            }
            Err(_) => {
                fates
                    .fate
                    .extend(std::iter::repeat_n(UNANSWERED, batch as usize));
                conn = None;
            }
        }
        fates.at_us.extend(std::iter::repeat_n(bt, batch as usize));
        seq += batch;
    }
    fates
}

/// Runs [`run`] on its own thread; the returned receiver yields the fates once `stop` is set.
pub fn spawn(p: Paced) -> tokio::sync::oneshot::Receiver<Fates> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("paced-publisher".into())
        .spawn(move || {
            let _ = tx.send(run(p));
        })
        .expect("spawn the publisher thread");
    rx
}
