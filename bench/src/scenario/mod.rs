//! The scenarios, and what they share: the server under test, opening many clients at once,
//! source addresses, and small HTTP reads of `/health` and `/metrics`.

pub mod chat;
pub mod drop;
pub mod flood;
pub mod floor;
pub mod idle;
pub mod instance_kill;
pub mod jobs;
pub mod notify;
pub mod redis_restart;
pub mod room;
pub mod room_hook;
pub mod slow;
pub mod soak;
pub mod storm;
pub mod streams;

use std::{
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr},
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{
    args::Args,
    client::{self, Client},
    proto::Proto,
};

/// The server under test.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its WebSocket (and HTTP) address.
    pub addr: SocketAddr,
    /// What it speaks.
    pub proto: Proto,
    /// Its pid, for CPU time and memory.
    pub pid: Option<u32>,
    /// Report label (`hub`, `socketio`, ...).
    pub label: String,
}

impl Target {
    /// `--target host:port --proto native|socketio --pid N --server label`.
    pub fn from_args(args: &mut Args) -> Result<Target, String> {
        let proto: Proto = args.get("proto", Proto::Native)?;
        Ok(Target {
            addr: args.req("target")?,
            proto,
            pid: args.opt("pid")?,
            label: args.get(
                "server",
                match proto {
                    Proto::Native => "hub".to_string(),
                    Proto::SocketIo => "socketio".to_string(),
                },
            )?,
        })
    }

    /// The fields every report starts with.
    pub fn describe(&self, scenario: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("scenario".into(), json!(scenario));
        m.insert("server".into(), json!(self.label));
        m.insert("proto".into(), json!(self.proto.label()));
        m
    }
}

/// The source address for the `i`-th connection: spread over 127.0.0.0/8 (250 connections per
/// address), so no single address runs out of ephemeral ports.
pub fn source_ip(i: u64) -> Ipv4Addr {
    let n = i / 250;
    Ipv4Addr::new(
        127,
        1 + (n / 250 % 250) as u8,
        (n % 250) as u8,
        1 + (i % 250) as u8,
    )
}

/// Clients opened by [`open_many`].
pub struct Opened {
    /// The confirmed clients, in request order (failed ones are missing).
    pub clients: Vec<(usize, Client)>,
    /// How many failed.
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Seconds the whole ramp took.
    pub secs: f64,
}

/// Opens clients for `users` (`concurrency` handshakes at a time, each from its own source
/// address), joins each to `room(i)` when given, and waits for every confirmation.
pub async fn open_many(
    target: &Target,
    users: Vec<String>,
    concurrency: usize,
    first_source: u64,
    room: Option<Rc<dyn Fn(usize) -> String>>,
) -> Opened {
    let start = Instant::now();
    let gate = Rc::new(Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::with_capacity(users.len());
    for (i, user) in users.into_iter().enumerate() {
        let (gate, target, room) = (gate.clone(), target.clone(), room.clone());
        handles.push(tokio::task::spawn_local(async move {
            let _permit = gate.acquire().await.expect("semaphore open");
            let source = source_ip(first_source + i as u64);
            let mut c = client::open(target.addr, Some(source), target.proto, &user).await?;
            if let Some(room) = room {
                c.join(&room(i)).await?;
            }
            Ok::<_, io::Error>(c)
        }));
    }
    let mut opened = Opened {
        clients: Vec::with_capacity(handles.len()),
        failed: 0,
        first_error: None,
        secs: 0.0,
    };
    for (i, h) in handles.into_iter().enumerate() {
        match h.await.map_err(io::Error::other).and_then(|r| r) {
            Ok(c) => opened.clients.push((i, c)),
            Err(e) => {
                opened.failed += 1;
                opened.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    opened.secs = start.elapsed().as_secs_f64();
    opened
}

/// A `GET` over a fresh connection; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad HTTP response from {addr}{path}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// `GET /health` as JSON (`null` when it cannot be read).
pub fn health(addr: SocketAddr) -> Value {
    http_get(addr, "/health")
        .ok()
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
        .unwrap_or(Value::Null)
}

/// One sample of the hub's `/metrics` (e.g. `hub_redis_reconnects_total`), if present.
pub fn metric(addr: SocketAddr, sample: &str) -> Option<f64> {
    let (_, text) = http_get(addr, "/metrics").ok()?;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok())?
    })
}

/// The sum of every sample of a metric family (all label values), if present.
pub fn metric_sum(addr: SocketAddr, family: &str) -> Option<f64> {
    let (_, text) = http_get(addr, "/metrics").ok()?;
    let mut found = false;
    let mut sum = 0.0;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let base = name.split('{').next().unwrap_or(name);
        if base == family {
            if let Ok(v) = value.parse::<f64>() {
                sum += v;
                found = true;
            }
        }
    }
    found.then_some(sum)
}

/// Waits until `done()` or until `progress()` stops changing for `quiet` (or `limit` passes).
pub async fn drain(
    mut done: impl FnMut() -> bool,
    mut progress: impl FnMut() -> u64,
    quiet: Duration,
    limit: Duration,
) {
    let start = Instant::now();
    let mut last = progress();
    let mut last_change = Instant::now();
    while !done() && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = progress();
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > quiet {
            break;
        }
    }
}

/// Runs a blocking publisher on its own thread and awaits it without blocking the receivers.
pub async fn publish(plan: crate::publisher::Plan) -> Result<crate::publisher::Published, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let _ = tx.send(crate::publisher::run(plan));
        })
        .map_err(|e| e.to_string())?;
    rx.await
        .map_err(|_| "publisher thread died".to_string())?
        .map_err(|e| e.to_string())
}

/// A small deterministic random number generator (xorshift64*), so that a run's choices can
/// be replayed from its seed without a crate for it.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// `GET /health` on a blocking thread, so that the clients pumped on this one keep reading.
pub async fn health_async(addr: SocketAddr) -> Value {
    tokio::task::spawn_blocking(move || health(addr))
        .await
        .unwrap_or(Value::Null)
}

/// A masked close frame with status `code`.
pub fn close_frame(code: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    crate::ws::client_frame(&mut out, 0x8, &code.to_be_bytes());
    out
}

/// `{"type":"notification"...}` payload for a user id given as a string.
pub fn notification_for(out: &mut String, user: &str, bt: u64, bs: u64) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        r#"{{"userId":"{user}","type":"soak","title":"Soak","message":"@bt={bt}@bs={bs}@"}}"#
    );
}
