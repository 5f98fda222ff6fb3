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
use futures_util::Stream;
use redis::{ConnectionAddr, ConnectionInfo};
use tokio::{net::TcpStream, sync::oneshot};

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
}

impl Shared {
    fn fail_all(&self, why: &str) {
        self.closed.set(true);
        for p in self.pending.borrow_mut().drain(..) {
            let _ = p.done.send(Err(why.to_string()));
        }
    }

    /// Counts one confirmation of `kind` against the oldest pending command.
    fn confirm(&self, kind: Expect) {
        let mut pending = self.pending.borrow_mut();
        let Some(front) = pending.front_mut() else {
            return;
        };
        if front.expect != kind {
            return;
        }
        front.remaining = front.remaining.saturating_sub(1);
        if front.remaining == 0 {
            if let Some(p) = pending.pop_front() {
                let _ = p.done.send(Ok(()));
            }
        }
    }

    fn refuse(&self, error: &str) {
        if let Some(p) = self.pending.borrow_mut().pop_front() {
            let _ = p.done.send(Err(error.to_string()));
        }
    }
}

/// Sends commands on the connection.
#[derive(Clone)]
pub struct Commands {
    shared: Rc<Shared>,
}

/// The stream of published messages; ends when the connection does.
pub struct Messages {
    shared: Rc<Shared>,
    /// Unparsed bytes (the read-ahead).
    buf: BytesMut,
    /// The socket ended (why); replies still buffered are delivered first.
    closed: Option<String>,
    /// The stream has ended.
    done: bool,
}

/// Connects (and authenticates, when the URL carries credentials).
pub async fn connect(info: &ConnectionInfo) -> Result<(Commands, Messages), String> {
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Err(format!(
            "pub/sub needs a plain TCP Redis address (redis://host:port), not {}",
            info.addr()
        ));
    };
    let io = TcpStream::connect((host.as_str(), *port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let _ = io.set_nodelay(true);
    let shared = Rc::new(Shared {
        io,
        pending: RefCell::new(VecDeque::new()),
        writing: tokio::sync::Mutex::new(()),
        closed: Cell::new(false),
    });
    let commands = Commands {
        shared: shared.clone(),
    };
    let mut messages = Messages {
        shared,
        buf: BytesMut::new(),
        closed: None,
        done: false,
    };
    let settings = info.redis_settings();
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
                        return Err("connection closed during AUTH".into());
                    }
                }
            }
        }
    }
    Ok((commands, messages))
}

impl Commands {
    /// `SUBSCRIBE`; resolves when Redis has confirmed every channel.
    pub async fn subscribe(&self, channels: &[String]) -> Result<(), String> {
        let mut args = vec!["SUBSCRIBE"];
        args.extend(channels.iter().map(String::as_str));
        self.command(&args, Expect::Subscribe, channels.len()).await
    }

    /// `UNSUBSCRIBE`; resolves when Redis has confirmed every channel. With no channels
    /// (unsubscribe from everything) it resolves once the command is written.
    pub async fn unsubscribe(&self, channels: &[String]) -> Result<(), String> {
        let mut args = vec!["UNSUBSCRIBE"];
        args.extend(channels.iter().map(String::as_str));
        self.command(&args, Expect::Unsubscribe, channels.len())
            .await
    }

    /// `PING`; resolves with Redis's answer.
    pub async fn ping(&self) -> Result<(), String> {
        self.command(&["PING"], Expect::Pong, 1).await
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

/// Appends a command as a RESP array of bulk strings.
fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
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
                Ok(_) => progress = true,
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
                    (b"message", [_, Frame::Bulk(Some(ch)), Frame::Bulk(Some(p))]) => {
                        Some(Message {
                            channel: ch.clone(),
                            payload: p.clone(),
                            frame: bytes,
                        })
                    }
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
                    _ => {}
                }
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

/// One RESP2 value, as ranges into the buffer it was parsed from.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Simple(Range<usize>),
    Error(Range<usize>),
    Int(i64),
    Bulk(Option<Range<usize>>),
    Array(Vec<Frame>),
}

/// Parses one value at the start of `buf`: `Ok(None)` while it is incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr_crlf(&buf[from..]).map(|i| from + i)
}

fn memchr_crlf(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"\r\n")
}

fn int(buf: &[u8], range: Range<usize>) -> Result<i64, String> {
    std::str::from_utf8(&buf[range])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "bad integer".to_string())
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Frame, usize)>, String> {
    if depth > 8 {
        return Err("nesting too deep".into());
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, at + 1) else {
        return Ok(None);
    };
    let line = at + 1..end;
    let next = end + 2;
    Ok(Some(match kind {
        b'+' => (Frame::Simple(line), next),
        b'-' => (Frame::Error(line), next),
        b':' => (Frame::Int(int(buf, line)?), next),
        b'$' => {
            let len = int(buf, line)?;
            if len < 0 {
                (Frame::Bulk(None), next)
            } else {
                let stop = next + len as usize;
                if buf.len() < stop + 2 {
                    return Ok(None);
                }
                (Frame::Bulk(Some(next..stop)), stop + 2)
            }
        }
        b'*' => {
            let len = int(buf, line)?;
            if len < 0 {
                (Frame::Array(Vec::new()), next)
            } else {
                let mut items = Vec::with_capacity(len.min(16) as usize);
                let mut pos = next;
                for _ in 0..len {
                    match parse_at(buf, pos, depth + 1)? {
                        None => return Ok(None),
                        Some((item, after)) => {
                            items.push(item);
                            pos = after;
                        }
                    }
                }
                (Frame::Array(items), pos)
            }
        }
        other => return Err(format!("unexpected type byte {other:#04x}")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_and_confirmations() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nch:1\r\n$5\r\nhello\r\n";
        let (frame, used) = parse(msg).unwrap().unwrap();
        assert_eq!(used, msg.len());
        let Frame::Array(items) = frame else {
            panic!("array expected")
        };
        assert_eq!(items[2], Frame::Bulk(Some(31..36)));
        assert_eq!(&msg[31..36], b"hello");
        let sub = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n";
        assert_eq!(parse(sub).unwrap().unwrap().1, sub.len());
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Some((Frame::Error(1..7), 9))
        );
    }

    #[test]
    fn incomplete_input_waits() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nch:1\r\n$5\r\nhello\r\n";
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b"$x\r\n").is_err());
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&mut out, &["SUBSCRIBE", "a"]);
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n");
    }
}

/// Fuzzing of the RESP2 parser (`make fuzz` raises the case count).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn cases() -> u32 {
        std::env::var("FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4000)
    }

    /// RESP-looking input: type bytes, numbers (also negative and huge), CRLFs, junk.
    fn resp_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"*".to_vec()),
            Just(b"$".to_vec()),
            Just(b"+".to_vec()),
            Just(b"-".to_vec()),
            Just(b":".to_vec()),
            Just(b"\r\n".to_vec()),
            "-?[0-9]{1,20}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..8),
        ];
        prop::collection::vec(piece, 1..24).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes: a value within the buffer, incomplete, or an error; never a panic.
        #[test]
        fn resp_from_arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some((_, consumed))) = parse(&buf) {
                prop_assert!(consumed <= buf.len());
            }
        }

        #[test]
        fn resp_from_its_vocabulary(buf in resp_like()) {
            if let Ok(Some((_, consumed))) = parse(&buf) {
                prop_assert!(consumed <= buf.len());
            }
        }
    }
}
