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
//! [`connect`] returns [`Commands`], a [`Link`] per node (SUBSCRIBE, UNSUBSCRIBE, PING; each
//! resolves when Redis confirms it), and each link's [`Messages`], the stream of published
//! messages. Confirmations travel on the same socket as messages, so they are only seen while
//! that link's [`Messages`] is being polled.
//!
//! On a Redis Cluster there is one link per master: per-user and per-room channels are
//! subscribed with `SSUBSCRIBE` on the master of their slot (sharded pub/sub), the fixed
//! channels with `SUBSCRIBE` on one master (classic pub/sub reaches every node). Each link
//! lives on its own: a master that fails (its stream ends, or it stops answering) is replaced
//! by reconnecting with [`connect`] given the previous links, which keeps the others. A
//! link's stream also ends when its master drops shard channels by itself (its slot moved
//! away: `sunsubscribe` that nobody asked for), and a `MOVED` refusal of `SSUBSCRIBE` fails
//! the command: either way that link is replaced with the current slot map.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    io,
    ops::Range,
    pin::Pin,
    rc::Rc,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
    time::Duration,
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

/// One master's connection (the server's, on one server): commands go out on it, and its
/// [`Messages`] stream reads it. A link that could not be made stays in [`Commands`] as down,
/// so the channels of the other masters keep going while it is retried.
#[derive(Clone)]
pub struct Link {
    /// Unique in the process: tells a replacement from the link it replaces.
    id: u64,
    addr: (String, u16),
    /// On a cluster: sharded channels are subscribed with `SSUBSCRIBE`.
    sharded: bool,
    /// `None`: not connected.
    shared: Option<Rc<Shared>>,
}

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// Sends commands on the connection (to the right master of a cluster).
#[derive(Clone)]
pub struct Commands {
    /// One per master (one in all on a single server).
    links: Rc<[Link]>,
    /// On a cluster, who serves which slot.
    topology: Option<Rc<Topology>>,
    /// The link that carries the classic channels.
    fixed: usize,
}

/// One link's stream of published messages; ends when its socket does, or when its master
/// drops shard channels by itself.
pub struct Messages {
    shared: Rc<Shared>,
    /// Unparsed bytes (the read-ahead).
    buf: BytesMut,
    /// The socket ended (why); replies still buffered are delivered first.
    closed: Option<String>,
    /// The stream has ended.
    done: bool,
}

/// Connects to the server, or to every master of the cluster (and authenticates, when the
/// URL carries credentials), each within `timeout`. On a cluster, the links of `previous`
/// that are still up and still masters are kept (their streams go on); a master that cannot
/// be reached is left down in the result (see [`Link::is_up`]) rather than failing the rest.
/// Returns the commands and the streams of the new links, by link id.
pub async fn connect(
    target: &Store,
    previous: Option<&Commands>,
    timeout: Duration,
) -> Result<(Commands, Vec<(u64, Messages)>), String> {
    let seeds = target.seeds();
    let settings = seeds[0].redis_settings();
    let within = |host: String, port: u16, sharded: bool| async move {
        let made = tokio::time::timeout(timeout, connect_node(&host, port, settings)).await;
        let made = made.unwrap_or_else(|_| Err(format!("{host}:{port}: timed out")));
        (Link::new((host, port), sharded, made.as_ref().ok()), made)
    };
    let mut fresh = Vec::new();
    let (links, topology, fixed) = match target {
        Store::Server(_) => {
            let ConnectionAddr::Tcp(host, port) = seeds[0].addr() else {
                return Err(format!(
                    "pub/sub needs a plain TCP Redis address (redis://host:port), not {}",
                    seeds[0].addr()
                ));
            };
            let (link, made) = within(host.clone(), *port, false).await;
            fresh.push((link.id, made?.1));
            (vec![link], None, 0)
        }
        Store::Cluster { .. } => {
            let topology = hub_store::discover(&seeds, timeout.min(DISCOVER_TIMEOUT)).await?;
            let kept = |addr: &(String, u16)| {
                previous
                    .into_iter()
                    .flat_map(|p| p.links.iter())
                    .find(|l| l.addr == *addr && l.is_up())
                    .cloned()
            };
            let mut links = Vec::with_capacity(topology.masters.len());
            let mut connects = Vec::new();
            for addr in &topology.masters {
                match kept(addr) {
                    Some(link) => links.push(Some(link)),
                    None => {
                        links.push(None);
                        connects.push(within(addr.0.clone(), addr.1, true));
                    }
                }
            }
            let mut made = futures_util::future::join_all(connects).await.into_iter();
            let links: Vec<Link> = links
                .into_iter()
                .map(|kept| match kept {
                    Some(link) => link,
                    None => {
                        let (link, result) = made.next().expect("one connect per new link");
                        match result {
                            Ok((_, messages)) => fresh.push((link.id, messages)),
                            Err(e) => log::warn!("redis pub/sub: master {e}"),
                        }
                        link
                    }
                })
                .collect();
            if !links.iter().any(Link::is_up) {
                return Err("no master of the cluster could be reached".into());
            }
            // The classic channels stay where they are when that link is kept, else go to the
            // first master reached.
            let was = previous.map(|p| p.fixed().id);
            let fixed = links
                .iter()
                .position(|l| Some(l.id) == was && l.is_up())
                .or_else(|| links.iter().position(Link::is_up))
                .unwrap_or(0);
            (links, Some(Rc::new(topology)), fixed)
        }
    };
    if links.is_empty() {
        return Err("the cluster has no master serving slots".into());
    }
    let commands = Commands {
        links: links.into(),
        topology,
        fixed,
    };
    Ok((commands, fresh))
}

/// Longest wait for a node's `CLUSTER SLOTS` (then the next node is asked).
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to one node.
async fn connect_node(
    host: &str,
    port: u16,
    settings: &RedisConnectionInfo,
) -> Result<(Rc<Shared>, Messages), String> {
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
    let mut messages = Messages {
        shared: shared.clone(),
        buf: BytesMut::new(),
        closed: None,
        done: false,
    };
    // One round trip before the link counts as up (a hung server still accepts TCP): AUTH
    // when the URL carries credentials, else PING.
    let (args, expect) = match settings.password() {
        Some(password) => {
            let mut args = vec!["AUTH"];
            args.extend(settings.username());
            args.push(password);
            (args, Expect::Ok)
        }
        None => (vec!["PING"], Expect::Pong),
    };
    {
        let reply = command(&shared, &args, expect, 1);
        // Nothing else is in flight: drive the reader until it is answered.
        let mut reply = std::pin::pin!(reply);
        loop {
            tokio::select! {
                r = &mut reply => { r.map_err(|e| format!("{host}:{port}: {}: {e}", args[0]))?; break; }
                m = futures_util::StreamExt::next(&mut messages) => {
                    if m.is_none() {
                        return Err(format!("{host}:{port}: connection closed during {}", args[0]));
                    }
                }
            }
        }
    }
    Ok((shared, messages))
}

impl Commands {
    /// Every master's link (the server's, on one server).
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The link `id`, if it is one of these.
    pub fn link(&self, id: u64) -> Option<&Link> {
        self.links.iter().find(|l| l.id == id)
    }

    /// The link that carries the classic channels.
    pub fn fixed(&self) -> &Link {
        &self.links[self.fixed]
    }

    /// On one server (not a cluster).
    pub fn single(&self) -> bool {
        self.topology.is_none()
    }

    /// The link a channel is subscribed on: its slot's master for a sharded channel on a
    /// cluster, the fixed link otherwise; `None` when no master serves its slot.
    pub fn link_of(&self, channel: &str) -> Option<&Link> {
        match &self.topology {
            Some(topology) if ChannelKind::of(channel).is_sharded() => {
                let node = topology.owner(hub_store::slot(channel.as_bytes()))?;
                self.links.get(node)
            }
            _ => Some(self.fixed()),
        }
    }

    /// `UNSUBSCRIBE` (and `SUNSUBSCRIBE` on a cluster) from everything on every link that is
    /// up; resolves once the commands are written.
    pub async fn unsubscribe_all(&self) -> Result<(), String> {
        for link in self.links.iter().filter(|l| l.is_up()) {
            link.command(&["UNSUBSCRIBE"], Expect::Unsubscribe, 0)
                .await?;
            if link.sharded {
                link.command(&["SUNSUBSCRIBE"], Expect::SUnsubscribe, 0)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Link {
    fn new(addr: (String, u16), sharded: bool, made: Option<&(Rc<Shared>, Messages)>) -> Link {
        Link {
            id: NEXT_LINK.fetch_add(1, Ordering::Relaxed),
            addr,
            sharded,
            shared: made.map(|(shared, _)| shared.clone()),
        }
    }

    /// Unique in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.addr.0, self.addr.1)
    }

    /// Connected, and not ended or closed since.
    pub fn is_up(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| !s.closed.get())
    }

    /// Takes the link for dead: commands waiting on it fail, new ones are refused.
    pub fn close(&self, why: &str) {
        if let Some(shared) = &self.shared {
            shared.fail_all(why);
        }
    }

    /// How many reads from the socket returned data so far (progress of the link).
    pub fn reads(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.reads.get())
    }

    /// `SUBSCRIBE` (`SSUBSCRIBE` per slot for sharded channels on a cluster); resolves when
    /// Redis has confirmed every channel.
    pub async fn subscribe(&self, channels: &[String]) -> Result<(), String> {
        let classic = ("SUBSCRIBE", Expect::Subscribe);
        self.per_batch(channels, classic, ("SSUBSCRIBE", Expect::SSubscribe))
            .await
    }

    /// `UNSUBSCRIBE` (`SUNSUBSCRIBE` per slot for sharded channels on a cluster); resolves
    /// when Redis has confirmed every channel.
    pub async fn unsubscribe(&self, channels: &[String]) -> Result<(), String> {
        let classic = ("UNSUBSCRIBE", Expect::Unsubscribe);
        self.per_batch(channels, classic, ("SUNSUBSCRIBE", Expect::SUnsubscribe))
            .await
    }

    /// `PING`; resolves with Redis's answer.
    pub async fn ping(&self) -> Result<(), String> {
        self.command(&["PING"], Expect::Pong, 1).await
    }

    /// Sends `classic` or `sharded` (command, confirmation) for each batch of `channels`
    /// (`SSUBSCRIBE` takes channels of one slot only) and waits for every confirmation.
    async fn per_batch(
        &self,
        channels: &[String],
        classic: (&str, Expect),
        sharded: (&str, Expect),
    ) -> Result<(), String> {
        let mut plain = Vec::new();
        let mut by_slot: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
        for channel in channels {
            if self.sharded && ChannelKind::of(channel).is_sharded() {
                by_slot
                    .entry(hub_store::slot(channel.as_bytes()))
                    .or_default()
                    .push(channel);
            } else {
                plain.push(channel.as_str());
            }
        }
        let batches = (!plain.is_empty())
            .then_some((classic, plain))
            .into_iter()
            .chain(by_slot.into_values().map(|b| (sharded, b)));
        try_join_all(batches.map(|((verb, expect), channels)| async move {
            let mut args = vec![verb];
            args.extend(&channels);
            self.command(&args, expect, channels.len()).await
        }))
        .await
        .map(drop)
    }

    async fn command(&self, args: &[&str], expect: Expect, replies: usize) -> Result<(), String> {
        match &self.shared {
            Some(shared) => command(shared, args, expect, replies).await,
            None => Err(format!("{}: not connected", self.addr())),
        }
    }
}

/// Writes a command on `shared` and awaits its `replies` confirmations (none: resolves once
/// written).
async fn command(
    shared: &Shared,
    args: &[&str],
    expect: Expect,
    replies: usize,
) -> Result<(), String> {
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

impl Messages {
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
