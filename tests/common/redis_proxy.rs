//! A TCP proxy in front of a redis-server that reads the RESP commands and replies passing
//! through, to inject faults at an exact point: drop a connection after a command ran (its
//! reply never reaches the client), or hold the replies to a kind of command (a slow Redis),
//! noting when the client sent each of those commands, or hold a pushed pub/sub message (a
//! subscriber that lags behind).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hub_wire::resp::{self, Frame};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{watch, Notify},
};

/// The proxy; listens while it lives.
pub struct RedisProxy {
    /// Its port (give the hub `redis://127.0.0.1:{port}`).
    pub port: u16,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a command armed with [`RedisProxy::swallow_reply_to`] passed.
    swallowing: Notify,
    /// Bumped by [`RedisProxy::cut`]: connections swallowing replies close.
    cut: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// The next command with an argument equal to this swallows its connection's replies.
    swallow: Option<Vec<u8>>,
    /// Replies to this command (upper case) are held.
    hold: Option<(String, usize, Duration)>,
    /// When each command of the held kind was sent.
    held_kind_sent: Vec<Instant>,
    /// The next push containing these bytes is held this long (with what follows it).
    hold_push: Option<(Vec<u8>, Duration)>,
}

impl RedisProxy {
    /// A proxy to the redis-server on `port`.
    pub async fn start(redis_port: u16) -> RedisProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, accepting.clone()));
            }
        });
        RedisProxy {
            port,
            shared,
            accept,
        }
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The next command carrying `arg` (e.g. a key) goes to Redis, which runs it, but its
    /// reply and every later one on that connection are swallowed ([`RedisProxy::swallowing`]
    /// returns once it passed); [`RedisProxy::cut`] then closes the connection.
    pub fn swallow_reply_to(&self, arg: &str) {
        self.shared.state.lock().unwrap().swallow = Some(arg.as_bytes().to_vec());
    }

    /// Returns once a command armed by [`RedisProxy::swallow_reply_to`] passed.
    pub async fn swallowing(&self) {
        self.shared.swallowing.notified().await;
    }

    /// Closes every connection that swallows replies.
    pub fn cut(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// The replies to the next `count` commands named `command` reach the client `delay` after
    /// Redis sent them (the replies behind them wait in order, as behind a slow command).
    pub fn hold(&self, command: &str, count: usize, delay: Duration) {
        let mut state = self.shared.state.lock().unwrap();
        state.hold = Some((command.to_ascii_uppercase(), count, delay));
        state.held_kind_sent.clear();
    }

    /// The next pub/sub message pushed to a subscriber that contains `bytes` reaches it
    /// `delay` after Redis sent it, and everything pushed behind it waits in order (a
    /// subscriber whose ingest lags).
    pub fn hold_push(&self, bytes: &str, delay: Duration) {
        self.shared.state.lock().unwrap().hold_push = Some((bytes.as_bytes().to_vec(), delay));
    }

    /// How many commands of the held kind the client sent within `window` of the first (0
    /// before any): with `window` shorter than the client's timeout, how many it had waiting
    /// at once.
    pub fn sent_within(&self, window: Duration) -> usize {
        let state = self.shared.state.lock().unwrap();
        let Some(first) = state.held_kind_sent.first() else {
            return 0;
        };
        state
            .held_kind_sent
            .iter()
            .filter(|t| t.duration_since(*first) <= window)
            .count()
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What one connection's two directions share.
#[derive(Default)]
struct Conn {
    /// Per command sent and not yet answered: whether its reply is held.
    pending: VecDeque<bool>,
    /// Everything from Redis is dropped from now on.
    swallowing: bool,
    /// A subscriber: replies do not answer commands one to one; passed through.
    pubsub: bool,
}

async fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let conn = Arc::new(Mutex::new(Conn::default()));
    let mut cut = shared.cut.subscribe();
    let upstream = {
        let (conn, shared) = (conn.clone(), shared.clone());
        async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = client_rx.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some((frame, used))) = resp::parse(&buf) {
                    command(&buf, &frame, &conn, &shared);
                    buf.drain(..used);
                }
                if server_tx.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = {
        let (conn, shared) = (conn.clone(), shared.clone());
        async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = server_rx.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                let arrived = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
                let (swallowing, pubsub) = {
                    let c = conn.lock().unwrap();
                    (c.swallowing, c.pubsub)
                };
                if swallowing {
                    buf.clear();
                    continue;
                }
                if pubsub {
                    let delay = {
                        let mut state = shared.state.lock().unwrap();
                        let hit = state
                            .hold_push
                            .as_ref()
                            .is_some_and(|(bytes, _)| buf.windows(bytes.len()).any(|w| w == bytes));
                        if hit {
                            state.hold_push.take().map(|(_, delay)| delay)
                        } else {
                            None
                        }
                    };
                    if let Some(delay) = delay {
                        tokio::time::sleep_until((arrived + delay).into()).await;
                    }
                    if client_tx.write_all(&buf).await.is_err() {
                        return;
                    }
                    buf.clear();
                    continue;
                }
                while let Ok(Some((_, used))) = resp::parse(&buf) {
                    let held = conn.lock().unwrap().pending.pop_front().unwrap_or(false);
                    if held {
                        let delay = shared.state.lock().unwrap().hold.as_ref().map(|h| h.2);
                        if let Some(delay) = delay {
                            tokio::time::sleep_until((arrived + delay).into()).await;
                        }
                    }
                    if client_tx.write_all(&buf[..used]).await.is_err() {
                        return;
                    }
                    buf.drain(..used);
                }
            }
        }
    };
    let cut_off = async {
        loop {
            if cut.changed().await.is_err() {
                return std::future::pending().await;
            }
            if conn.lock().unwrap().swallowing {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cut_off => {}
    }
}

/// Notes a command the client sent: whether its reply is held, swallowed, or a pub/sub one.
fn command(buf: &[u8], frame: &Frame, conn: &Mutex<Conn>, shared: &Shared) {
    let Frame::Array(args) = frame else { return };
    let args: Vec<&[u8]> = args
        .iter()
        .filter_map(|a| match a {
            Frame::Bulk(Some(r)) => Some(&buf[r.clone()]),
            _ => None,
        })
        .collect();
    let name = args
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
        .unwrap_or_default();
    let mut c = conn.lock().unwrap();
    if matches!(name.as_str(), "SUBSCRIBE" | "SSUBSCRIBE" | "PSUBSCRIBE") {
        c.pubsub = true;
    }
    let mut state = shared.state.lock().unwrap();
    let swallow = state
        .swallow
        .as_ref()
        .is_some_and(|arg| args.iter().any(|a| a == arg));
    if swallow {
        state.swallow = None;
        c.swallowing = true;
        shared.swallowing.notify_one();
    }
    let mut held = false;
    if let Some((kind, count, _)) = &mut state.hold {
        if *kind == name {
            held = *count > 0;
            *count = count.saturating_sub(1);
            state.held_kind_sent.push(Instant::now());
        }
    }
    c.pending.push_back(held);
}
