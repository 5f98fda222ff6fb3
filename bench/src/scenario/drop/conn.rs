//! One drop-test client: connects (native `/ws` with `resume`, or Socket.IO with connection
//! state recovery), keeps its resume token and last offset, records every benchmark message
//! it reads, and at a random moment kills its own connection uncleanly, then comes back with
//! the token and the offset, on and on until the run ends.
//!
//! Like a real client (`clients/js`), it also keeps the last `inboxId` and the last chat `id`
//! it saw: every connect sends the inbox cursor as `since` (the hub uses it when it cannot
//! resume), and when a resume is refused (`resumed:false`, another `pid`) it re-joins its room
//! with the last chat id as `since`; what the `joined` history brings is read as delivered.
//! Nothing is de-duplicated: a copy counts as a duplicate.
//!
//! The kill is what the hub sees of a dead network, without a relay in between: a TCP reset
//! (`SO_LINGER` 0, then close), or silence (the socket is kept open and never read or
//! written again, so the hub gets no close, no Pong and no ACKed window beyond what the
//! kernel's buffers take; it learns of the drop only from the client's return with its token,
//! a ping timeout or a write timeout). A silent socket is closed once the hub closed its side
//! (`TCP_INFO` shows it), or after [`ZOMBIE_LIMIT`].

use std::{
    cell::{Cell, RefCell},
    io,
    net::{Ipv4Addr, SocketAddr},
    os::fd::AsRawFd,
    rc::Rc,
    time::Duration,
};

use serde_json::Value;
use tokio::{net::TcpStream, time::Instant};

use crate::{
    client::write_all,
    proto::{Incoming, Proto},
    scenario::Rng,
    sys,
    ws::{self, op, Decoder},
};

/// How long a connect, handshake and `connected` may take before the attempt counts as failed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Wait before a join answered with an error is sent again.
const JOIN_RETRY: Duration = Duration::from_millis(500);
/// Longest a silent socket is held (beyond the hub's 60 s client timeout).
const ZOMBIE_LIMIT: Duration = Duration::from_secs(150);

/// What every client shares.
pub struct Shared {
    /// The hub.
    pub hub: SocketAddr,
    /// Rooms (client `i` is in room `i % rooms`).
    pub rooms: usize,
    /// Mean connection lifetime before its kill, ms (each lives 0.5x to 1.5x of it).
    pub kill_every_ms: u64,
    /// Most a client waits before coming back after a kill, ms (uniform from 0).
    pub reconnect_delay_ms: u64,
    /// Percent of kills that are silence (the rest are resets).
    pub silent_pct: u64,
    /// While false, connections are not killed (ramp and final drain).
    pub killing: Cell<bool>,
    /// Run seed.
    pub seed: u64,
}

/// A benchmark message as read: its sequence, send time, arrival time and connection.
#[derive(Clone, Copy)]
pub struct Receipt {
    /// Marker `bs` (chat messages have [`super::CHAT_MARK`] set).
    pub seq: u64,
    /// Marker `bt` (us, monotonic clock), when the publisher sent it.
    pub bt: u64,
    /// When it was read (us).
    pub at: u64,
    /// Index of the connection in [`ClientLog::conns`].
    pub conn: u32,
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Still open.
    Open,
    /// Killed with a reset.
    Reset,
    /// Killed by going silent.
    Silent,
    /// Closed by the hub (close frame or EOF), and why: the close frame's code and reason,
    /// `41` before it for a Socket.IO server disconnect, or `eof`.
    ClosedByHub(String),
    /// Failed (connect, handshake, timeout, garbage).
    Failed,
}

/// How a connection that came back with a resume token found the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The hub resumed the session.
    Resumed,
    /// The resume was refused and the cursors (`since`) filled the gap.
    Since,
    /// The resume was refused and a cursor's gap was longer than the stream keeps
    /// (`recovered:false`).
    Lost,
}

/// One connection of a client.
pub struct ConnLog {
    /// When the attempt started (us).
    pub start: u64,
    /// When `connected` (or the Socket.IO CONNECT ack) arrived.
    pub connected: Option<u64>,
    /// How it found the session (`None` for a first connect, or before `connected`).
    pub recovery: Option<Recovery>,
    /// How it ended.
    pub ending: Ending,
}

/// What one client saw over the run.
#[derive(Default)]
pub struct ClientLog {
    /// Every benchmark message read, in order.
    pub receipts: Vec<Receipt>,
    /// Every connection, in order.
    pub conns: Vec<ConnLog>,
    /// Connected, and in its room: ready for messages.
    pub ready: bool,
    /// Resumes refused (`resumed:false`, or another `pid`).
    pub refused: u64,
    /// Error frames and failures, with the first few texts.
    pub errors: u64,
    /// The first errors.
    pub first_errors: Vec<String>,
}

impl ClientLog {
    fn error(&mut self, text: String) {
        self.errors += 1;
        if self.first_errors.len() < 3 {
            self.first_errors.push(text);
        }
    }
}

/// The source address of client `i`: 100 clients per address, so that no address holds more
/// sessions than the hub keeps resume records for (`HUB_RESUME_RECORDS_PER_ADDRESS`, 256).
pub fn source_ip(i: usize) -> Ipv4Addr {
    let n = i / 100;
    Ipv4Addr::new(
        127,
        2 + (n / 250 % 250) as u8,
        (n % 250) as u8,
        1 + (i % 100) as u8,
    )
}

/// The resume state a client carries from one connection to the next.
struct Resume {
    token: Option<String>,
    offset: u64,
    /// The last `inboxId` seen (the inbox cursor, `since` at connect).
    inbox: Option<String>,
    /// The last chat message `id` seen in the room (the room's `since`).
    chat: Option<String>,
}

/// Runs client `i` until its task is aborted.
pub async fn life(i: usize, proto: Proto, sh: Rc<Shared>, log: Rc<RefCell<ClientLog>>) {
    let user = format!("d{i}");
    let room = format!("dr-{}", i % sh.rooms);
    let mut rng = Rng::new(sh.seed ^ (i as u64).wrapping_mul(0x9E37));
    let mut resume = Resume {
        token: None,
        offset: 0,
        inbox: None,
        chat: None,
    };
    loop {
        let conn = log.borrow().conns.len() as u32;
        log.borrow_mut().conns.push(ConnLog {
            start: sys::now_us(),
            connected: None,
            recovery: None,
            ending: Ending::Open,
        });
        let ending = match connection(
            i,
            proto,
            &sh,
            &log,
            &mut rng,
            &mut resume,
            conn,
            (&user, &room),
        )
        .await
        {
            Ok(ending) => ending,
            Err(e) => {
                log.borrow_mut().error(format!("connection {conn}: {e}"));
                Ending::Failed
            }
        };
        {
            let mut l = log.borrow_mut();
            l.ready = false;
            l.conns[conn as usize].ending = ending.clone();
        }
        let pause = match ending {
            Ending::Reset | Ending::Silent => rng.below(sh.reconnect_delay_ms + 1),
            _ => 200 + rng.below(300),
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// A lifetime for the next connection: 0.5x to 1.5x the mean.
fn lifetime(sh: &Shared, rng: &mut Rng) -> Duration {
    Duration::from_millis(sh.kill_every_ms / 2 + rng.below(sh.kill_every_ms + 1))
}

/// One connection, from connect to its end.
#[allow(clippy::too_many_arguments)]
async fn connection(
    i: usize,
    proto: Proto,
    sh: &Shared,
    log: &Rc<RefCell<ClientLog>>,
    rng: &mut Rng,
    resume: &mut Resume,
    conn: u32,
    (user, room): (&str, &str),
) -> io::Result<Ending> {
    let setup_deadline = Instant::now() + SETUP_TIMEOUT;
    let since = resume
        .inbox
        .as_ref()
        .map_or(String::new(), |id| format!("&since={id}"));
    let path = match (proto, &resume.token) {
        (Proto::Native, None) => format!("/ws?userId={user}&resume=true{since}"),
        (Proto::Native, Some(t)) => {
            format!(
                "/ws?userId={user}&resume={t}&offset={}{since}",
                resume.offset
            )
        }
        (Proto::SocketIo, _) => "/socket.io/?EIO=4&transport=websocket".to_string(),
    };
    let (mut stream, leftover) = tokio::time::timeout_at(setup_deadline, async {
        let mut stream = ws::connect(sh.hub, Some(source_ip(i)), None).await?;
        let leftover = ws::handshake(&mut stream, &sh.hub.to_string(), &path).await?;
        Ok::<_, io::Error>((stream, leftover))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect or handshake timed out"))??;
    let mut state = Frames {
        proto,
        user,
        room,
        conn,
        log,
        resume,
        connected: false,
        closed: None,
        disconnected: false,
        join_failed: false,
        replies: Vec::new(),
    };
    let opened = Instant::now();
    let mut join_retry_at: Option<Instant> = None;
    let mut decoder = Decoder::default();
    let mut kill_at = Instant::now() + lifetime(sh, rng);
    let mut pending = leftover;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if !pending.is_empty() {
            decoder
                .feed(&pending, |opcode, payload| state.frame(opcode, payload))
                .map_err(|e| io::Error::other(e.to_string()))?;
            pending.clear();
            if !state.replies.is_empty() {
                let replies = std::mem::take(&mut state.replies);
                write_all(&stream, &replies).await?;
            }
            if let Some(why) = state.closed.take() {
                return Ok(Ending::ClosedByHub(state.closed_how(why, opened)));
            }
            if std::mem::take(&mut state.join_failed) {
                join_retry_at = Some(Instant::now() + JOIN_RETRY);
            }
        }
        tokio::select! {
            ready = stream.readable() => {
                ready?;
                match stream.try_read(&mut chunk) {
                    Ok(0) => {
                        let why = if state.disconnected { "41 eof" } else { "eof" };
                        return Ok(Ending::ClosedByHub(state.closed_how(why.into(), opened)));
                    }
                    Ok(n) => pending.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            _ = tokio::time::sleep_until(kill_at) => {
                if !sh.killing.get() || !state.connected {
                    kill_at = Instant::now() + lifetime(sh, rng);
                    continue;
                }
                return Ok(if rng.below(100) < sh.silent_pct {
                    go_silent(stream);
                    Ending::Silent
                } else {
                    reset(&mut stream);
                    Ending::Reset
                });
            }
            _ = tokio::time::sleep_until(join_retry_at.unwrap_or(setup_deadline)), if join_retry_at.is_some() => {
                join_retry_at = None;
                let join = join_frame(proto, room, state.resume.chat.as_deref());
                write_all(&stream, &ws::text(join.as_bytes())).await?;
            }
            _ = tokio::time::sleep_until(setup_deadline), if !state.connected => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no `connected` in time"));
            }
        }
    }
}

/// Closes with a reset: `SO_LINGER` on with a zero timeout makes `close` send RST.
fn reset(stream: &mut TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid fd and a pointer to a linger struct of the size we pass.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// The TCP state of a socket (`TCP_ESTABLISHED` is 1), from `TCP_INFO`.
fn tcp_state(stream: &TcpStream) -> Option<u8> {
    // SAFETY: a zeroed tcp_info is valid; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut libc::tcp_info as *mut libc::c_void,
            &mut len,
        );
        (rc == 0).then_some(info.tcpi_state)
    }
}

/// Keeps the socket open without reading or writing it until the hub closed its side (or
/// [`ZOMBIE_LIMIT`] passed), then resets it.
fn go_silent(mut stream: TcpStream) {
    tokio::task::spawn_local(async move {
        let until = Instant::now() + ZOMBIE_LIMIT;
        while Instant::now() < until && tcp_state(&stream) == Some(1) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        reset(&mut stream);
    });
}

/// The frame handler of one connection.
struct Frames<'a> {
    proto: Proto,
    user: &'a str,
    room: &'a str,
    conn: u32,
    log: &'a Rc<RefCell<ClientLog>>,
    resume: &'a mut Resume,
    connected: bool,
    /// The hub's close frame: its code and reason.
    closed: Option<String>,
    /// A Socket.IO server disconnect (`41`) came.
    disconnected: bool,
    /// A join was answered with an error: sent again after [`JOIN_RETRY`].
    join_failed: bool,
    replies: Vec<u8>,
}

impl Frames<'_> {
    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        match opcode {
            op::TEXT => self.text(payload),
            op::PING => ws::client_frame(&mut self.replies, 0xA, payload),
            op::CLOSE => {
                let code = payload
                    .get(..2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                let sio = if self.disconnected { "41 " } else { "" };
                self.closed = Some(format!("{sio}{code} {reason}"));
            }
            _ => {}
        }
    }

    /// Why the hub closed the connection, with what the client knew then: whether it had
    /// `connected` (and how it found its session) and the connection's age, in 10 s steps.
    fn closed_how(&self, why: String, opened: Instant) -> String {
        let state = match self.log.borrow().conns[self.conn as usize].recovery {
            _ if !self.connected => "before connected".to_string(),
            None => "first connect".to_string(),
            Some(r) => format!("{r:?}").to_lowercase(),
        };
        let age = opened.elapsed().as_secs() / 10 * 10;
        format!("{why} ({state}, {age}-{} s)", age + 10)
    }

    fn send_text(&mut self, text: &str) {
        ws::client_frame(&mut self.replies, op::TEXT, text.as_bytes());
    }

    fn text(&mut self, payload: &[u8]) {
        // A Socket.IO `joined` may hold benchmark messages in its history: still a reply.
        let kind = if payload.starts_with(br#"42["joined""#) {
            Incoming::Joined
        } else {
            self.proto.classify(payload)
        };
        match kind {
            Incoming::EioOpen => {
                let mut auth = serde_json::json!({ "userId": self.user });
                if let Some(pid) = &self.resume.token {
                    auth["pid"] = Value::from(pid.as_str());
                    auth["offset"] = Value::from(self.resume.offset.to_string());
                }
                if let Some(since) = &self.resume.inbox {
                    auth["since"] = Value::from(since.as_str());
                }
                self.send_text(&format!("40{auth}"));
            }
            Incoming::EioPing => self.send_text("3"),
            Incoming::Connected => self.connected_frame(payload),
            Incoming::Joined => {
                self.offset(payload);
                self.joined(payload);
                self.log.borrow_mut().ready = true;
            }
            Incoming::Bench { bt, bs } => {
                self.offset(payload);
                self.cursor(bs, payload);
                self.log.borrow_mut().receipts.push(Receipt {
                    seq: bs,
                    bt,
                    at: sys::now_us(),
                    conn: self.conn,
                });
            }
            Incoming::Error => {
                let text = String::from_utf8_lossy(&payload[..payload.len().min(200)]);
                let mut log = self.log.borrow_mut();
                log.error(text.into_owned());
                // A refused join (Redis unavailable for a moment): try again, as a client would.
                if self.connected && !log.ready {
                    self.join_failed = true;
                }
            }
            Incoming::Other => {
                if payload == b"41" {
                    self.disconnected = true;
                }
                self.offset(payload)
            }
        }
    }

    /// `connected` (native) or the CONNECT ack `40{"sid","pid"}` (Socket.IO).
    fn connected_frame(&mut self, payload: &[u8]) {
        let (token, resumed, v) = match self.proto {
            Proto::Native => {
                let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
                (
                    v["resume"].as_str().map(str::to_string),
                    v["resumed"].as_bool().unwrap_or(false),
                    v,
                )
            }
            Proto::SocketIo => {
                let v: Value = serde_json::from_slice(payload.get(2..).unwrap_or_default())
                    .unwrap_or(Value::Null);
                let pid = v["pid"].as_str().map(str::to_string);
                let same = pid.is_some() && pid == self.resume.token;
                (pid, same, v)
            }
        };
        self.connected = true;
        let asked = self.resume.token.is_some();
        let mut log = self.log.borrow_mut();
        let c = &mut log.conns[self.conn as usize];
        c.connected = Some(sys::now_us());
        c.recovery = asked.then_some(if resumed {
            Recovery::Resumed
        } else if v["recovered"] == Value::Bool(false) {
            // The inbox cursor's gap was longer than the inbox keeps.
            Recovery::Lost
        } else {
            Recovery::Since
        });
        if asked && !resumed {
            log.refused += 1;
        }
        if token.is_none() {
            log.error("connected without a resume token".into());
        }
        self.resume.token = token;
        if resumed {
            log.ready = true;
        } else {
            // A first connect, or a refused resume: a new session, in no room; the room
            // again, from the last message seen.
            self.resume.offset = 0;
            drop(log);
            let join = join_frame(self.proto, self.room, self.resume.chat.as_deref());
            self.send_text(&join);
        }
    }

    /// A `joined`: the messages its history brings are read (after `since`, or the room's
    /// recent history on a first join); `recovered:false` marks the connection's recovery
    /// lost.
    fn joined(&mut self, payload: &[u8]) {
        let v: Value = match self.proto {
            Proto::Native => serde_json::from_slice(payload).unwrap_or(Value::Null),
            Proto::SocketIo => {
                let v: Value = serde_json::from_slice(payload.get(2..).unwrap_or_default())
                    .unwrap_or(Value::Null);
                v[1].clone()
            }
        };
        let at = sys::now_us();
        for m in v["history"].as_array().into_iter().flatten() {
            let Some(text) = m["message"].as_str() else {
                continue;
            };
            let Incoming::Bench { bt, bs } = self.proto.classify(text.as_bytes()) else {
                continue;
            };
            if let Some(id) = m["id"].as_str() {
                self.resume.chat = Some(id.to_string());
            }
            self.log.borrow_mut().receipts.push(Receipt {
                seq: bs,
                bt,
                at,
                conn: self.conn,
            });
        }
        if v["recovered"] == Value::Bool(false) {
            let mut log = self.log.borrow_mut();
            let c = &mut log.conns[self.conn as usize];
            if c.recovery.is_some() {
                c.recovery = Some(Recovery::Lost);
            }
        }
    }

    /// Keeps the stream id of a benchmark message as that stream's cursor: `inboxId` for a
    /// notification, the history `id` for a chat message.
    fn cursor(&mut self, seq: u64, payload: &[u8]) {
        let (key, slot) = if seq & super::CHAT_MARK == 0 {
            (&br#""inboxId":""#[..], &mut self.resume.inbox)
        } else {
            (&br#""id":""#[..], &mut self.resume.chat)
        };
        if let Some(id) = string_after(payload, key) {
            *slot = Some(id);
        }
    }

    /// Keeps the frame's offset (the last of a native frame's keys, a Socket.IO event's last
    /// argument) as the last one seen.
    fn offset(&mut self, payload: &[u8]) {
        if let Some(o) = trailing_offset(self.proto, payload) {
            self.resume.offset = self.resume.offset.max(o);
        }
    }
}

/// A join of `room`, with `since` when the client saw a message there.
fn join_frame(proto: Proto, room: &str, since: Option<&str>) -> String {
    let Some(since) = since else {
        return proto.join(room);
    };
    match proto {
        Proto::Native => format!(r#"{{"type":"join-room","room":"{room}","since":"{since}"}}"#),
        Proto::SocketIo => format!(r#"42["join-room",{{"room":"{room}","since":"{since}"}}]"#),
    }
}

/// The string value after the first `key` (`"name":"`), up to its closing quote.
fn string_after(payload: &[u8], key: &[u8]) -> Option<String> {
    let start = memchr::memmem::find(payload, key)? + key.len();
    let len = memchr::memchr(b'"', &payload[start..])?;
    Some(String::from_utf8_lossy(&payload[start..start + len]).into_owned())
}

/// The offset at the end of an event frame: `...,"offset":<n>}` (native) or
/// `42[...,"<n>"]` (Socket.IO).
pub fn trailing_offset(proto: Proto, payload: &[u8]) -> Option<u64> {
    let digits_before = |s: &[u8], suffix: &[u8]| -> Option<(u64, usize)> {
        let body = s.strip_suffix(suffix)?;
        let start = body
            .iter()
            .rposition(|b| !b.is_ascii_digit())
            .map_or(0, |p| p + 1);
        let n = std::str::from_utf8(&body[start..]).ok()?.parse().ok()?;
        Some((n, start))
    };
    match proto {
        Proto::Native => {
            let (n, start) = digits_before(payload, b"}")?;
            payload[..start].ends_with(br#","offset":"#).then_some(n)
        }
        Proto::SocketIo => {
            if !payload.starts_with(b"42[") {
                return None;
            }
            let (n, start) = digits_before(payload, b"\"]")?;
            payload[..start].ends_with(br#",""#).then_some(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_trailing_offset() {
        let n = Proto::Native;
        assert_eq!(
            trailing_offset(n, br#"{"type":"notification","data":{"a":1},"offset":17}"#),
            Some(17)
        );
        assert_eq!(
            trailing_offset(n, br#"{"type":"pong","timestamp":5}"#),
            None
        );
        let s = Proto::SocketIo;
        assert_eq!(
            trailing_offset(s, br#"42["chat-message",{"m":"x"},"203"]"#),
            Some(203)
        );
        assert_eq!(trailing_offset(s, br#"42["error",{"code":"x"}]"#), None);
        assert_eq!(trailing_offset(s, br#"430[{"ok":"1"}]"#), None);
    }

    #[test]
    fn reads_stream_ids_and_joins_with_since() {
        let note = br#"{"type":"notification","data":{"id":"5-0","inboxId":"5-0","message":"@bt=1@bs=2@"},"offset":3}"#;
        assert_eq!(string_after(note, br#""inboxId":""#), Some("5-0".into()));
        let chat = br#"42["chat-message",{"id":"7-1","roomId":"dr-1"},"4"]"#;
        assert_eq!(string_after(chat, br#""id":""#), Some("7-1".into()));
        assert_eq!(string_after(b"{}", br#""id":""#), None);
        assert_eq!(
            join_frame(Proto::Native, "r", Some("7-1")),
            r#"{"type":"join-room","room":"r","since":"7-1"}"#
        );
        assert_eq!(
            join_frame(Proto::SocketIo, "r", Some("7-1")),
            r#"42["join-room",{"room":"r","since":"7-1"}]"#
        );
        assert_eq!(
            join_frame(Proto::Native, "r", None),
            Proto::Native.join("r")
        );
    }

    #[test]
    fn spreads_clients_over_source_addresses() {
        assert_eq!(source_ip(0), Ipv4Addr::new(127, 2, 0, 1));
        assert_eq!(source_ip(99), Ipv4Addr::new(127, 2, 0, 100));
        assert_eq!(source_ip(100), Ipv4Addr::new(127, 2, 1, 1));
        assert_eq!(source_ip(25_000), Ipv4Addr::new(127, 3, 0, 1));
    }
}
