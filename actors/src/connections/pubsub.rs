//! The subscriber's Redis pub/sub connection: RESP2 over one TCP socket, read only as fast as
//! the subscriber consumes messages.
//!
//! It replaces redis-rs's `aio::PubSub`, whose driver task reads the socket as fast as Redis
//! sends and queues every message in an unbounded channel. Under a publish flood faster than
//! the hub, that moved the backlog from Redis into the hub (measured with `hub-bench flood`:
//! +513 MB of RSS in 2 s of 1 KiB messages), and when Redis then dropped the connection for
//! its `client-output-buffer-limit pubsub`, the end of the stream sat behind that backlog, so
//! the hub noticed seconds late (through a failed PING) and threw the backlog away.
//!
//! Here the socket is read only from the subscriber's own polling of [`Messages`], with a
//! bounded read-ahead ([`LOW_WATER`]..[`HIGH_WATER`]): a burst is absorbed without Redis
//! buffering it, a flood beyond that piles up in Redis, which enforces its limit and drops the
//! connection, and the end of the connection is seen right after the messages Redis delivered
//! before it (at most [`HIGH_WATER`] of them).
//!
//! [`connect`] returns [`Commands`] (SUBSCRIBE, UNSUBSCRIBE, PING; each resolves when Redis
//! confirms it) and [`Messages`], the stream of published messages. Confirmations travel on
//! the same socket as messages, so they are only seen while [`Messages`] is being polled.
//!
//! On a Redis Cluster there is one such socket per master: per-user and per-room channels
//! are subscribed with `SSUBSCRIBE` on the master of their slot (sharded pub/sub), the fixed
//! channels with `SUBSCRIBE` on the first master (classic pub/sub reaches every node).
//! [`Messages`] merges the masters' streams and ends when any of them does, and also when a
//! master drops shard channels by itself (its slot moved away: `sunsubscribe` that nobody
//! asked for). The subscriber then reconnects with the current slot map and resubscribes;
//! a `MOVED` refusal of `SSUBSCRIBE` fails the command, with the same outcome.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    io,
    ops::Range,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use futures_util::future::try_join_all;
use futures_util::Stream;
use hub_store::{Store, Topology};
use hub_wire::resp::{encode, parse, Frame};
use redis::{ConnectionAddr, RedisConnectionInfo};
use tokio::{net::TcpStream, sync::oneshot};

use hub_wire::protocol::ChannelKind;

/// Read-ahead: while fewer unparsed bytes than this are buffered, the stream reads whatever
/// the socket has...
pub const LOW_WATER: usize = 1 << 20;
/// ...up to this much (or more when one reply is bigger). This absorbs bursts, so Redis's
/// own output buffer for the hub stays small, while bounding what the hub holds.
pub const HIGH_WATER: usize = 8 << 20;
/// Bytes asked for per read.
const READ_CHUNK: usize = 256 * 1024;

/// A published message: the channel and payload, sharing one buffer.
pub struct Message {
    frame: Bytes,
    channel: Range<usize>,
    payload: Range<usize>,
}

impl Message {
    /// The channel it was published to (channels the hub subscribes to are ASCII).
    pub fn channel(&self) -> &str {
        std::str::from_utf8(&self.frame[self.channel.clone()]).unwrap_or("")
    }

    /// The payload as published.
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload.clone()]
    }
}

/// What a command waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// `["subscribe", channel, count]` per channel.
    Subscribe,
    /// `["unsubscribe", channel, count]` per channel.
    Unsubscribe,
    /// `["ssubscribe", channel, count]` per channel.
    SSubscribe,
    /// `["sunsubscribe", channel, count]` per channel.
    SUnsubscribe,
    /// `["pong", ""]` (or `+PONG` outside subscribed mode).
    Pong,
    /// `+OK` (AUTH).
    Ok,
}

struct Pending {
    expect: Expect,
    remaining: usize,
    done: oneshot::Sender<Result<(), String>>,
}

struct Shared {
    io: TcpStream,
    /// Commands written and not yet confirmed, in order.
    pending: RefCell<VecDeque<Pending>>,
    /// Serialises command writes (a command is written whole, with its pending entry queued
    /// first, so confirmations match commands in order).
    writing: tokio::sync::Mutex<()>,
    closed: Cell<bool>,
    /// Reads that returned data: a confirmation stuck behind a flood is not a dead
    /// connection as long as this moves.
    reads: Cell<u64>,
}

impl Shared {
    fn fail_all(&self, why: &str) {
        self.closed.set(true);
        for p in self.pending.borrow_mut().drain(..) {
            let _ = p.done.send(Err(why.to_string()));
        }
    }

    /// Counts one confirmation of `kind` against the oldest pending command; `false` when
    /// no command waits for it.
    fn confirm(&self, kind: Expect) -> bool {
        let mut pending = self.pending.borrow_mut();
        let Some(front) = pending.front_mut() else {
            return false;
        };
        if front.expect != kind {
            return false;
        }
        front.remaining = front.remaining.saturating_sub(1);
        if front.remaining == 0 {
            if let Some(p) = pending.pop_front() {
                let _ = p.done.send(Ok(()));
            }
        }
        true
    }

    fn refuse(&self, error: &str) {
        if let Some(p) = self.pending.borrow_mut().pop_front() {
            let _ = p.done.send(Err(error.to_string()));
        }
    }
}

/// Sends commands on one node's connection.
#[derive(Clone)]
struct NodeCommands {
    shared: Rc<Shared>,
}

/// Sends commands on the connection (to the right master of a cluster).
#[derive(Clone)]
pub struct Commands {
    /// One per master (one in all on a single server); the first carries classic channels.
    nodes: Rc<[NodeCommands]>,
    /// On a cluster, who serves which slot.
    topology: Option<Rc<Topology>>,
}

/// The stream of published messages; ends when the connection (any master's) does.
pub struct Messages {
    nodes: Vec<NodeMessages>,
    /// The node polled first next time (so a busy one cannot starve the others).
    next: usize,
    done: bool,
}

/// One node's messages.
struct NodeMessages {
    shared: Rc<Shared>,
    /// Unparsed bytes (the read-ahead).
    buf: BytesMut,
    /// The socket ended (why); replies still buffered are delivered first.
    closed: Option<String>,
    /// The stream has ended.
    done: bool,
}

/// Connects to the server, or to every master of the cluster (and authenticates, when the
/// URL carries credentials).
pub async fn connect(target: &Store) -> Result<(Commands, Messages), String> {
    let seeds = target.seeds();
    let settings = seeds[0].redis_settings();
    let (nodes, topology) = match target {
        Store::Server(_) => {
            let ConnectionAddr::Tcp(host, port) = seeds[0].addr() else {
                return Err(format!(
                    "pub/sub needs a plain TCP Redis address (redis://host:port), not {}",
                    seeds[0].addr()
                ));
            };
            (vec![connect_node(host, *port, settings).await?], None)
        }
        Store::Cluster { .. } => {
            let topology = hub_store::discover(&seeds, std::time::Duration::from_secs(2)).await?;
            let mut nodes = Vec::with_capacity(topology.masters.len());
            for (host, port) in &topology.masters {
                nodes.push(connect_node(host, *port, settings).await?);
            }
            (nodes, Some(Rc::new(topology)))
        }
    };
    if nodes.is_empty() {
        return Err("the cluster has no master serving slots".into());
    }
    let (commands, messages): (Vec<_>, Vec<_>) = nodes.into_iter().unzip();
    Ok((
        Commands {
            nodes: commands.into(),
            topology,
        },
        Messages {
            nodes: messages,
            next: 0,
            done: false,
        },
    ))
}

/// Connects to one node.
async fn connect_node(
    host: &str,
    port: u16,
    settings: &RedisConnectionInfo,
) -> Result<(NodeCommands, NodeMessages), String> {
    let io = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let _ = io.set_nodelay(true);
    let shared = Rc::new(Shared {
        io,
        pending: RefCell::new(VecDeque::new()),
        writing: tokio::sync::Mutex::new(()),
        closed: Cell::new(false),
        reads: Cell::new(0),
    });
    let commands = NodeCommands {
        shared: shared.clone(),
    };
    let mut messages = NodeMessages {
        shared,
        buf: BytesMut::new(),
        closed: None,
        done: false,
    };
    if let Some(password) = settings.password() {
        let mut args = vec!["AUTH"];
        args.extend(settings.username());
        args.push(password);
        let reply = commands.command(&args, Expect::Ok, 1);
        // Nothing else is in flight: drive the reader until AUTH is answered.
        let mut reply = std::pin::pin!(reply);
        loop {
            tokio::select! {
                r = &mut reply => { r.map_err(|e| format!("AUTH: {e}"))?; break; }
                m = futures_util::StreamExt::next(&mut messages) => {
                    if m.is_none() {
                        return Err(format!("{host}:{port}: connection closed during AUTH"));
                    }
                }
            }
        }
    }
    Ok((commands, messages))
}

/// Channels grouped by the node and command that (un)subscribes them.
struct Batch<'a> {
    node: usize,
    sharded: bool,
    channels: Vec<&'a str>,
}

impl Commands {
    /// `SUBSCRIBE` (`SSUBSCRIBE` per slot for sharded channels on a cluster); resolves when
    /// Redis has confirmed every channel.
    pub async fn subscribe(&self, channels: &[String]) -> Result<(), String> {
        let classic = ("SUBSCRIBE", Expect::Subscribe);
        self.per_batch(channels, classic, ("SSUBSCRIBE", Expect::SSubscribe))
            .await
    }

    /// `UNSUBSCRIBE` (`SUNSUBSCRIBE` per slot for sharded channels on a cluster); resolves
    /// when Redis has confirmed every channel. With no channels (unsubscribe from everything,
    /// every node) it resolves once the commands are written.
    pub async fn unsubscribe(&self, channels: &[String]) -> Result<(), String> {
        if channels.is_empty() {
            for node in self.nodes.iter() {
                node.command(&["UNSUBSCRIBE"], Expect::Unsubscribe, 0)
                    .await?;
                if self.topology.is_some() {
                    node.command(&["SUNSUBSCRIBE"], Expect::SUnsubscribe, 0)
                        .await?;
                }
            }
            return Ok(());
        }
        let classic = ("UNSUBSCRIBE", Expect::Unsubscribe);
        self.per_batch(channels, classic, ("SUNSUBSCRIBE", Expect::SUnsubscribe))
            .await
    }

    /// Sends `classic` or `sharded` (command, confirmation) for each batch of `channels` and
    /// waits for every confirmation.
    async fn per_batch(
        &self,
        channels: &[String],
        classic: (&str, Expect),
        sharded: (&str, Expect),
    ) -> Result<(), String> {
        let batches = self.batches(channels)?;
        try_join_all(batches.iter().map(|b| {
            let (verb, expect) = if b.sharded { sharded } else { classic };
            self.nodes[b.node].channels(verb, &b.channels, expect)
        }))
        .await
        .map(drop)
    }

    /// `PING` on every node; resolves with Redis's answers.
    pub async fn ping(&self) -> Result<(), String> {
        try_join_all(
            self.nodes
                .iter()
                .map(|n| n.command(&["PING"], Expect::Pong, 1)),
        )
        .await
        .map(drop)
    }

    /// How many reads from the sockets returned data so far (progress of the connection).
    pub fn reads(&self) -> u64 {
        self.nodes.iter().map(|n| n.shared.reads.get()).sum()
    }

    /// Splits `channels` into one command per node and kind (per slot for sharded ones:
    /// `SSUBSCRIBE` takes channels of one slot only).
    fn batches<'a>(&self, channels: &'a [String]) -> Result<Vec<Batch<'a>>, String> {
        let Some(topology) = &self.topology else {
            let channels = channels.iter().map(String::as_str).collect();
            return Ok(vec![Batch {
                node: 0,
                sharded: false,
                channels,
            }]);
        };
        let mut classic = Vec::new();
        let mut by_slot: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
        for channel in channels {
            if ChannelKind::of(channel).is_sharded() {
                by_slot
                    .entry(hub_store::slot(channel.as_bytes()))
                    .or_default()
                    .push(channel);
            } else {
                classic.push(channel.as_str());
            }
        }
        let mut batches = Vec::with_capacity(by_slot.len() + 1);
        if !classic.is_empty() {
            batches.push(Batch {
                node: 0,
                sharded: false,
                channels: classic,
            });
        }
        for (slot, channels) in by_slot {
            let node = topology
                .owner(slot)
                .ok_or_else(|| format!("no master serves slot {slot} (of {})", channels[0]))?;
            batches.push(Batch {
                node,
                sharded: true,
                channels,
            });
        }
        Ok(batches)
    }
}

impl NodeCommands {
    async fn channels(&self, verb: &str, channels: &[&str], expect: Expect) -> Result<(), String> {
        let mut args = vec![verb];
        args.extend(channels);
        self.command(&args, expect, channels.len()).await
    }

    async fn command(&self, args: &[&str], expect: Expect, replies: usize) -> Result<(), String> {
        let shared = &self.shared;
        let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        encode(&mut out, args);
        let (done, answer) = oneshot::channel();
        {
            let _writing = shared.writing.lock().await;
            if shared.closed.get() {
                return Err("connection closed".into());
            }
            if replies > 0 {
                shared.pending.borrow_mut().push_back(Pending {
                    expect,
                    remaining: replies,
                    done,
                });
            }
            write_all(&shared.io, &out).await.map_err(|e| {
                shared.fail_all(&e.to_string());
                e.to_string()
            })?;
        }
        if replies == 0 {
            return Ok(());
        }
        answer.await.map_err(|_| "connection closed".to_string())?
    }
}

async fn write_all(io: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match io.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Stream for Messages {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let count = this.nodes.len();
        for i in 0..count {
            let k = (this.next + i) % count;
            match Pin::new(&mut this.nodes[k]).poll_next(cx) {
                Poll::Ready(Some(msg)) => {
                    this.next = (k + 1) % count;
                    return Poll::Ready(Some(msg));
                }
                Poll::Ready(None) => {
                    // One master gone is the connection gone: the rest is resubscribed anew.
                    this.done = true;
                    for node in &mut this.nodes {
                        node.end("another node's connection ended");
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

impl Stream for NodeMessages {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match parse(&this.buf) {
                Err(why) => {
                    this.end(&format!("bad reply from Redis: {why}"));
                    return Poll::Ready(None);
                }
                Ok(Some((frame, used))) => {
                    let bytes = this.buf.split_to(used).freeze();
                    if this.buf.len() < LOW_WATER {
                        this.top_up(cx, HIGH_WATER);
                    }
                    if let Some(msg) = this.handle(frame, bytes) {
                        return Poll::Ready(Some(msg));
                    }
                }
                Ok(None) => {
                    if let Some(why) = this.closed.take() {
                        this.end(&why);
                        return Poll::Ready(None);
                    }
                    // An incomplete reply: read more, past HIGH_WATER if this one needs it.
                    let limit = HIGH_WATER.max(this.buf.len() + READ_CHUNK);
                    if !this.top_up(cx, limit) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl NodeMessages {
    fn end(&mut self, why: &str) {
        if self.done {
            return;
        }
        self.done = true;
        self.buf = BytesMut::new();
        self.shared.fail_all(why);
    }

    /// Reads what the socket has until `limit` bytes are buffered. `false` when nothing could
    /// be read (the task will be woken when the socket is readable).
    fn top_up(&mut self, cx: &mut Context<'_>, limit: usize) -> bool {
        if self.closed.is_some() {
            return true;
        }
        let mut progress = false;
        while self.buf.len() < limit {
            match self.shared.io.poll_read_ready(cx) {
                Poll::Pending => return progress,
                Poll::Ready(Err(e)) => {
                    self.closed = Some(e.to_string());
                    return true;
                }
                Poll::Ready(Ok(())) => {}
            }
            self.buf.reserve(READ_CHUNK);
            match self.shared.io.try_read_buf(&mut self.buf) {
                Ok(0) => {
                    self.closed = Some("connection closed by Redis".into());
                    return true;
                }
                Ok(_) => {
                    progress = true;
                    self.shared.reads.set(self.shared.reads.get() + 1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closed = Some(e.to_string());
                    return true;
                }
            }
        }
        true
    }

    /// Acts on one reply; returns it when it is a published message.
    fn handle(&mut self, frame: Frame, bytes: Bytes) -> Option<Message> {
        match frame {
            Frame::Array(items) => {
                let kind = match items.first() {
                    Some(Frame::Bulk(Some(r))) => &bytes[r.clone()],
                    _ => return None,
                };
                match (kind, items.as_slice()) {
                    (
                        b"message" | b"smessage",
                        [_, Frame::Bulk(Some(ch)), Frame::Bulk(Some(p))],
                    ) => Some(Message {
                        channel: ch.clone(),
                        payload: p.clone(),
                        frame: bytes,
                    }),
                    (b"pmessage", [_, _, Frame::Bulk(Some(ch)), Frame::Bulk(Some(p))]) => {
                        Some(Message {
                            channel: ch.clone(),
                            payload: p.clone(),
                            frame: bytes,
                        })
                    }
                    (b"subscribe", _) => {
                        self.shared.confirm(Expect::Subscribe);
                        None
                    }
                    (b"unsubscribe", _) => {
                        self.shared.confirm(Expect::Unsubscribe);
                        None
                    }
                    (b"ssubscribe", _) => {
                        self.shared.confirm(Expect::SSubscribe);
                        None
                    }
                    (b"sunsubscribe", [_, Frame::Bulk(Some(ch)), ..]) => {
                        if !self.shared.confirm(Expect::SUnsubscribe) {
                            // Nobody asked: the channel's slot moved to another master.
                            let channel = String::from_utf8_lossy(&bytes[ch.clone()]);
                            self.closed = Some(format!("slot of {channel} moved"));
                        }
                        None
                    }
                    (b"pong", _) => {
                        self.shared.confirm(Expect::Pong);
                        None
                    }
                    _ => None,
                }
            }
            Frame::Simple(r) => {
                match &bytes[r] {
                    b"PONG" => self.shared.confirm(Expect::Pong),
                    b"OK" => self.shared.confirm(Expect::Ok),
                    _ => false,
                };
                None
            }
            Frame::Error(r) => {
                self.shared.refuse(&String::from_utf8_lossy(&bytes[r]));
                None
            }
            Frame::Int(_) | Frame::Bulk(_) => None,
        }
    }
}
