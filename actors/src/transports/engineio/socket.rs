//! The Engine.IO session actor: one per Engine.IO session, whatever its transport.
//!
//! It owns the session's current transport: HTTP long-polling (at most one parked `GET`, whose
//! reply sender it holds, and one `POST` in flight) or a WebSocket (its socket, through
//! [`crate::transports::transport`]); during an upgrade it also owns the probing WebSocket. It runs the
//! server-sent heartbeat (a ping one `pingInterval` after open, then one `pingInterval` after
//! each pong; no pong within `pingTimeout` closes), enforces `maxPayload`, and bounds what it
//! queues for the client: a long-polling client that does not poll, or a WebSocket client that
//! does not read, is dropped once its queue passes `queue_bytes` (counted as a slow consumer).
//!
//! The layer above is an [`EngineHandler`]: it receives the session's messages and sends
//! through an [`EngineIo`] handle (`send_text`, `send_binary`, pre-encoded shared
//! [`Outgoing`] packets, `close`, and futures/timers that come back into the actor).
//!
//! One cohesive thing, and so one file past the usual size: the session's state machine
//! (open, polling, upgrading, upgraded, closing) is shared by every transition, and splitting
//! it would scatter the rules each transition must keep.

use std::{
    collections::VecDeque,
    future::Future,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{fut, prelude::*};
use bytes::Bytes;
use futures_util::StreamExt;
use log::debug;
use tokio::{net::TcpStream, sync::oneshot};

use super::{
    packet::{self, Outgoing, Packet},
    request::{ErrorCode, HttpReply, TransportKind},
    server::{Endpoint, EngineEnv},
};
use crate::{
    common::limits::ConnectionPermit,
    transports::transport::{self, close, BinaryReader, Pushed, Writer, WsEvent, WsMessage},
};

/// Engine.IO parameters of an endpoint.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Interval of server pings (`pingInterval`).
    pub ping_interval: Duration,
    /// Time the client has to answer a ping (`pingTimeout`).
    pub ping_timeout: Duration,
    /// Largest client payload (a `POST` body) or WebSocket message (`maxPayload`).
    pub max_payload: usize,
    /// Time a probing WebSocket has to complete an upgrade.
    pub upgrade_timeout: Duration,
    /// Bytes a session may hold unsent (queued for a poll, or refused by a full socket);
    /// past it the session is dropped as a slow consumer. At least `max_payload` plus some
    /// room, so that one largest message fits.
    pub queue_bytes: usize,
    /// The session actor's mailbox (fan-out uses `try_send`; a full mailbox is the sender's
    /// signal to drop the session).
    pub mailbox: usize,
    /// `SO_SNDBUF` of WebSocket connections (0 keeps the system default).
    pub socket_sndbuf: usize,
    /// How long a closing WebSocket waits for the peer's close before being dropped.
    pub close_linger: Duration,
    /// A WebSocket that takes nothing for this long while packets wait is dropped (a client
    /// that stopped reading).
    pub write_timeout: Duration,
}

impl Default for EngineConfig {
    /// The reference server's defaults: ping every 25 s, 20 s to answer, 1 MB payloads.
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_secs(10),
            queue_bytes: 2_000_000,
            mailbox: 64,
            socket_sndbuf: 64 * 1024,
            close_linger: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a session closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet.
    ClientClose,
    /// The client did not answer a ping within `pingTimeout`.
    PingTimeout,
    /// The connection went away (socket closed or failed, WebSocket closed by the client).
    TransportClose,
    /// The client sent a packet that could not be decoded or is not allowed.
    ParseError,
    /// A payload or message over `maxPayload`.
    PayloadTooLarge,
    /// Two long-polling `GET`s (or `POST`s) at once.
    Overlap,
    /// The client did not keep up with what was sent to it.
    SlowConsumer,
    /// The client's WebSocket took nothing for the write timeout while packets waited.
    WriteTimeout,
    /// The layer above found a protocol violation (e.g. a malformed Socket.IO packet).
    ProtocolError,
    /// The layer above gave up waiting (e.g. no Socket.IO namespace connected in time).
    ConnectTimeout,
    /// The server closed the session (the layer above, or shutdown).
    ServerClose,
}

impl CloseReason {
    /// Every reason.
    pub const ALL: [CloseReason; 11] = [
        CloseReason::ClientClose,
        CloseReason::PingTimeout,
        CloseReason::TransportClose,
        CloseReason::ParseError,
        CloseReason::PayloadTooLarge,
        CloseReason::Overlap,
        CloseReason::SlowConsumer,
        CloseReason::WriteTimeout,
        CloseReason::ProtocolError,
        CloseReason::ConnectTimeout,
        CloseReason::ServerClose,
    ];

    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::TransportClose => "transport_close",
            CloseReason::ParseError => "parse_error",
            CloseReason::PayloadTooLarge => "payload_too_large",
            CloseReason::Overlap => "overlap",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::ServerClose => "server_close",
        }
    }

    /// The WebSocket close code and reason for a closing WebSocket.
    fn ws_close(self) -> (u16, &'static str) {
        match self {
            CloseReason::ClientClose | CloseReason::TransportClose => (close::NORMAL, ""),
            CloseReason::PingTimeout => (close::NORMAL, "ping timeout"),
            CloseReason::ConnectTimeout => (close::NORMAL, "connect timeout"),
            CloseReason::ParseError => (close::POLICY, "invalid packet"),
            CloseReason::ProtocolError => (close::POLICY, "protocol error"),
            CloseReason::PayloadTooLarge => (close::TOO_BIG, "payload too large"),
            CloseReason::Overlap => (close::POLICY, "overlapping requests"),
            CloseReason::SlowConsumer => (close::TRY_AGAIN_LATER, "slow consumer"),
            CloseReason::WriteTimeout => (close::TRY_AGAIN_LATER, "write timeout"),
            CloseReason::ServerClose => (close::GOING_AWAY, "server closed the session"),
        }
    }
}

/// A message of the session, for the layer above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (`4...`).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// Why a send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The session is closing or closed.
    Closed,
    /// The session's queue was full: it has been dropped as a slow consumer.
    Overflow,
}

/// The layer above an Engine.IO session (e.g. Socket.IO, or an echo server). Its methods run
/// inside the session actor, in order.
pub trait EngineHandler: Unpin + Sized + 'static {
    /// The session is open (its open packet is on its way).
    fn on_open(&mut self, io: &mut EngineIo<'_, Self>) {
        let _ = io;
    }

    /// The client sent a message.
    fn on_message(&mut self, message: Message, io: &mut EngineIo<'_, Self>);

    /// A ping went out (on the heartbeat's schedule): its pong proves what was sent before
    /// it (see [`EngineIo::ping_now`] for pings the handler asks for).
    fn on_ping(&mut self) {}

    /// The client answered a ping: it has read everything sent before the ping.
    fn on_pong(&mut self, io: &mut EngineIo<'_, Self>) {
        let _ = io;
    }

    /// The session is closing (called once); nothing can be sent any more.
    fn on_close(&mut self, reason: CloseReason) {
        let _ = reason;
    }
}

/// How a new session starts.
pub(crate) enum Initial {
    /// Over long-polling: the open packet was the handshake's response.
    Polling,
    /// Over a WebSocket: the `101` response and the open packet are the first writes.
    WebSocket {
        socket: std::net::TcpStream,
        leftover: Vec<u8>,
        accept: [u8; 28],
    },
}

/// Bookkeeping cost of one queued long-polling packet, on top of its bytes (so that many tiny
/// packets also hit the queue limit).
const PACKET_COST: usize = 64;

struct Polling {
    queue: VecDeque<Outgoing>,
    queued: usize,
    /// The parked `GET`.
    get: Option<oneshot::Sender<HttpReply>>,
    /// A `POST` is in flight.
    posting: bool,
    reply_scheduled: bool,
    /// The client closed while no `GET` was parked: the next one (within `close_linger`) gets
    /// the noop it would have got had it arrived first.
    noop_owed: bool,
}

struct Ws {
    /// Tells this WebSocket's events from an older one's.
    gen: u32,
    writer: Writer,
    stream: SpawnHandle,
    flush_scheduled: bool,
    awaiting_writable: bool,
    /// A write-timeout check is scheduled.
    stall_check: bool,
}

enum Transport {
    Polling(Polling),
    WebSocket(Ws),
}

/// A WebSocket connected with the session's id, not yet the session's transport.
struct Probe {
    ws: Ws,
    /// `2probe` answered with `3probe`: the client is upgrading.
    probed: bool,
    timeout: SpawnHandle,
}

/// Everything of a session but its handler (so that the handler and this can be borrowed at
/// once).
pub struct Core {
    sid: Arc<str>,
    env: Arc<EngineEnv>,
    initial: Option<Initial>,
    transport: Transport,
    probe: Option<Probe>,
    /// The next ping, or the pong deadline while `awaiting_pong`.
    heartbeat: Option<SpawnHandle>,
    awaiting_pong: bool,
    /// When the session times out unless a pong arrives first: `pingInterval + pingTimeout`
    /// after the open packet was ready (before it was written) or after the last pong.
    /// Requests check it too, so a late timer never keeps a timed-out session alive.
    pong_deadline: Instant,
    /// When the session was created, before its open packet was written: the heartbeat's
    /// origin, so that the client (which starts counting when it receives the open packet)
    /// never sees the first ping or the timeout later than the spec says.
    created: Instant,
    closing: Option<CloseReason>,
    handler_told: bool,
    next_gen: u32,
    _permit: Option<ConnectionPermit>,
}

/// One Engine.IO session.
pub struct EngineSocket<H: EngineHandler> {
    handler: H,
    core: Core,
    endpoint: Arc<Endpoint<H>>,
}

/// What an [`EngineHandler`] uses to act on its session.
pub struct EngineIo<'a, H: EngineHandler> {
    pub(crate) core: &'a mut Core,
    pub(crate) ctx: &'a mut Context<EngineSocket<H>>,
}

type Ctx<H> = Context<EngineSocket<H>>;

impl<H: EngineHandler> EngineSocket<H> {
    pub(crate) fn new(
        sid: Arc<str>,
        endpoint: Arc<Endpoint<H>>,
        handler: H,
        initial: Initial,
        permit: Option<ConnectionPermit>,
    ) -> Self {
        EngineSocket {
            handler,
            core: Core {
                sid,
                env: endpoint.env().clone(),
                initial: Some(initial),
                transport: Transport::Polling(Polling {
                    queue: VecDeque::new(),
                    queued: 0,
                    get: None,
                    posting: false,
                    reply_scheduled: false,
                    noop_owed: false,
                }),
                probe: None,
                heartbeat: None,
                awaiting_pong: false,
                pong_deadline: Instant::now(),
                created: Instant::now(),
                closing: None,
                handler_told: false,
                next_gen: 1,
                _permit: permit,
            },
            endpoint,
        }
    }

    /// The handler and a handle on the session, borrowed at once: for message handlers that
    /// the layer above adds to this actor (e.g. fan-out deliveries).
    pub fn split<'a>(&'a mut self, ctx: &'a mut Ctx<H>) -> (&'a mut H, EngineIo<'a, H>) {
        (
            &mut self.handler,
            EngineIo {
                core: &mut self.core,
                ctx,
            },
        )
    }

    fn deliver(&mut self, message: Message, ctx: &mut Ctx<H>) {
        if self.core.closing.is_some() {
            return;
        }
        let (handler, mut io) = self.split(ctx);
        handler.on_message(message, &mut io);
    }

    fn tell_handler(&mut self) {
        if !self.core.handler_told {
            self.core.handler_told = true;
            let reason = self.core.closing.unwrap_or(CloseReason::TransportClose);
            self.handler.on_close(reason);
        }
    }

    /// A packet from the session's transport (a POST or the current WebSocket).
    fn on_packet(&mut self, packet: Packet, ctx: &mut Ctx<H>) {
        if self.core.closing.is_some() {
            return;
        }
        match packet {
            Packet::Text(text) => self.deliver(Message::Text(text), ctx),
            Packet::Binary(data) => self.deliver(Message::Binary(data), ctx),
            Packet::Pong(_) => {
                if self.core.on_pong(ctx) {
                    let (handler, mut io) = self.split(ctx);
                    handler.on_pong(&mut io);
                }
            }
            Packet::Close => self.core.close(CloseReason::ClientClose, ctx),
            Packet::Noop => {}
            // v4 clients never ping, and upgrade only on a probing WebSocket.
            Packet::Ping(_) | Packet::Upgrade => self.core.close(CloseReason::ParseError, ctx),
        }
    }

    fn on_ws_message(&mut self, gen: u32, message: WsMessage, ctx: &mut Ctx<H>) {
        match message {
            WsMessage::Binary(data) => self.on_packet(Packet::Binary(Bytes::from(data)), ctx),
            WsMessage::Event(WsEvent::Text(text)) => match packet::decode_text(&text) {
                Ok(packet) => self.on_packet(packet, ctx),
                Err(e) => {
                    debug!("engine.io {}: {e}", self.core.sid);
                    self.core.close(CloseReason::ParseError, ctx);
                }
            },
            WsMessage::Event(WsEvent::Ping(payload)) => {
                self.core.push_ws(gen, transport::pong_frame(&payload), ctx);
            }
            WsMessage::Event(WsEvent::Pong(_) | WsEvent::Binary(_)) => {}
            WsMessage::Event(WsEvent::Close(_)) => {
                self.core.close(CloseReason::TransportClose, ctx)
            }
            WsMessage::Event(WsEvent::Violation(code, _)) => {
                let reason = if code == close::TOO_BIG {
                    CloseReason::PayloadTooLarge
                } else {
                    CloseReason::ParseError
                };
                self.core.close(reason, ctx);
            }
        }
    }
}

impl Core {
    fn transport_kind(&self) -> TransportKind {
        match self.transport {
            Transport::Polling(_) => TransportKind::Polling,
            Transport::WebSocket(_) => TransportKind::WebSocket,
        }
    }

    fn refuse(&self, code: ErrorCode) -> HttpReply {
        self.env.metrics.refused(code);
        HttpReply::error(code)
    }

    // ---- sending ----------------------------------------------------------------------------

    /// Queues a packet on the current transport.
    fn send<H: EngineHandler>(&mut self, out: Outgoing, ctx: &mut Ctx<H>) -> Result<(), SendError> {
        if self.closing.is_some() {
            return Err(SendError::Closed);
        }
        let limit = self.env.config.queue_bytes;
        match &mut self.transport {
            Transport::Polling(p) => {
                let cost = out.polling_len() + PACKET_COST;
                if !p.queue.is_empty() && p.queued + cost > limit {
                    self.kick(ctx);
                    return Err(SendError::Overflow);
                }
                p.queued += cost;
                p.queue.push_back(out);
                let upgrading = self.probe.as_ref().is_some_and(|p| p.probed);
                if p.get.is_some() && !p.reply_scheduled && !upgrading {
                    p.reply_scheduled = true;
                    // Answer after this turn, so that a burst of packets goes in one response.
                    ctx.spawn(fut::ready(()).map(|_, act: &mut EngineSocket<H>, _| {
                        if let Transport::Polling(p) = &mut act.core.transport {
                            p.reply_scheduled = false;
                            answer_get(p);
                        }
                    }));
                }
                Ok(())
            }
            Transport::WebSocket(ws) => {
                let gen = ws.gen;
                if self.push_ws(gen, out.ws_frame(), ctx) {
                    Ok(())
                } else {
                    Err(SendError::Overflow)
                }
            }
        }
    }

    fn ws_mut(&mut self, gen: u32) -> Option<&mut Ws> {
        match &mut self.transport {
            Transport::WebSocket(ws) if ws.gen == gen => Some(ws),
            _ => self
                .probe
                .as_mut()
                .map(|p| &mut p.ws)
                .filter(|ws| ws.gen == gen),
        }
    }

    fn is_current(&self, gen: u32) -> bool {
        matches!(&self.transport, Transport::WebSocket(ws) if ws.gen == gen)
    }

    /// Queues a frame on WebSocket `gen` and schedules a flush; false (and the session or the
    /// probe dropped) when its queue is full.
    fn push_ws<H: EngineHandler>(&mut self, gen: u32, frame: Bytes, ctx: &mut Ctx<H>) -> bool {
        let Some(ws) = self.ws_mut(gen) else {
            return false;
        };
        if ws.writer.push(frame) == Pushed::Overflow {
            if self.is_current(gen) {
                self.kick(ctx);
            } else {
                self.drop_probe(ctx);
            }
            return false;
        }
        if !ws.flush_scheduled && !ws.awaiting_writable {
            ws.flush_scheduled = true;
            ctx.spawn(
                fut::ready(()).map(move |_, act: &mut EngineSocket<H>, ctx| {
                    if let Some(ws) = act.core.ws_mut(gen) {
                        ws.flush_scheduled = false;
                    }
                    act.core.flush_ws(gen, ctx);
                }),
            );
        }
        true
    }

    fn flush_ws<H: EngineHandler>(&mut self, gen: u32, ctx: &mut Ctx<H>) {
        let Some(ws) = self.ws_mut(gen) else { return };
        if ws.awaiting_writable {
            return;
        }
        match ws.writer.flush() {
            Ok(true) => {}
            Ok(false) => {
                ws.awaiting_writable = true;
                let io = ws.writer.socket();
                if !ws.stall_check {
                    let timeout = self.env.config.write_timeout;
                    self.watch_stall(gen, timeout, ctx);
                }
                ctx.spawn(
                    fut::wrap_future::<_, EngineSocket<H>>(async move { io.writable().await }).map(
                        move |res, act, ctx| {
                            if let Some(ws) = act.core.ws_mut(gen) {
                                ws.awaiting_writable = false;
                            }
                            match res {
                                Ok(()) => act.core.flush_ws(gen, ctx),
                                Err(_) => act.core.ws_failed(gen, ctx),
                            }
                        },
                    ),
                );
            }
            Err(e) => {
                debug!("engine.io {}: write failed: {e}", self.sid);
                self.ws_failed(gen, ctx);
            }
        }
    }

    /// Checks after `delay` whether WebSocket `gen` has taken nothing for the write timeout
    /// while packets wait; drops the session (or the probe) then, checks again otherwise.
    fn watch_stall<H: EngineHandler>(&mut self, gen: u32, delay: Duration, ctx: &mut Ctx<H>) {
        let Some(ws) = self.ws_mut(gen) else { return };
        ws.stall_check = true;
        ctx.run_later(delay, move |act, ctx| {
            let timeout = act.core.env.config.write_timeout;
            let Some(ws) = act.core.ws_mut(gen) else {
                return;
            };
            ws.stall_check = false;
            match ws.writer.stalled_for() {
                Some(stalled) if stalled >= timeout => {
                    if act.core.is_current(gen) {
                        debug!("engine.io {}: write timeout, dropping", act.core.sid);
                        act.core.abort(CloseReason::WriteTimeout, ctx);
                    } else {
                        act.core.drop_probe(ctx);
                    }
                }
                Some(stalled) => act.core.watch_stall(gen, timeout - stalled, ctx),
                None => {}
            }
        });
    }

    fn ws_failed<H: EngineHandler>(&mut self, gen: u32, ctx: &mut Ctx<H>) {
        if self.is_current(gen) {
            self.abort(CloseReason::TransportClose, ctx);
        } else if self.probe.as_ref().is_some_and(|p| p.ws.gen == gen) {
            self.drop_probe(ctx);
        }
    }

    // ---- WebSockets -------------------------------------------------------------------------

    /// Takes over an upgraded socket: queues the `101` response, reads its messages as
    /// WebSocket `gen`.
    fn open_ws<H: EngineHandler>(
        &mut self,
        socket: std::net::TcpStream,
        leftover: Vec<u8>,
        accept: &[u8; 28],
        ctx: &mut Ctx<H>,
    ) -> std::io::Result<Ws> {
        let socket = TcpStream::from_std(socket)?;
        transport::prepare_socket(&socket, self.env.config.socket_sndbuf);
        let io = Rc::new(socket);
        let gen = self.next_gen;
        self.next_gen += 1;
        let reader = BinaryReader::new(io.clone(), leftover, self.env.config.max_payload)
            .map(move |m| (gen, Some(m)))
            .chain(futures_util::stream::once(async move { (gen, None) }));
        let stream = ctx.add_stream(reader);
        let mut writer = Writer::new(io, self.env.config.queue_bytes);
        writer.push(Bytes::from(transport::switching_protocols(accept)));
        Ok(Ws {
            gen,
            writer,
            stream,
            flush_scheduled: false,
            awaiting_writable: false,
            stall_check: false,
        })
    }

    /// A WebSocket with the session's id: becomes the probe of an upgrade, is refused (the
    /// session is closing), or, when the session already has a WebSocket or a probe, gets
    /// its handshake and is closed at once (as the reference server does), leaving the
    /// session untouched.
    fn attach_ws<H: EngineHandler>(
        &mut self,
        socket: std::net::TcpStream,
        leftover: Vec<u8>,
        accept: [u8; 28],
        ctx: &mut Ctx<H>,
    ) {
        if self.closing.is_some() {
            let reply = self.refuse(ErrorCode::UnknownSid);
            refuse_socket(socket, reply);
            return;
        }
        if self.transport_kind() != TransportKind::Polling || self.probe.is_some() {
            debug!("engine.io {}: extra WebSocket closed", self.sid);
            self.env.metrics.refused(ErrorCode::BadRequest);
            close_extra_socket(socket, accept, self.env.config.close_linger);
            return;
        }
        match self.open_ws(socket, leftover, &accept, ctx) {
            Ok(ws) => {
                let gen = ws.gen;
                let timeout = ctx.run_later(self.env.config.upgrade_timeout, move |act, ctx| {
                    if act.core.probe.as_ref().is_some_and(|p| p.ws.gen == gen) {
                        debug!("engine.io {}: upgrade timed out", act.core.sid);
                        act.core.drop_probe(ctx);
                    }
                });
                self.probe = Some(Probe {
                    ws,
                    probed: false,
                    timeout,
                });
                self.flush_ws(gen, ctx);
            }
            Err(e) => debug!("engine.io {}: upgrade socket: {e}", self.sid),
        }
    }

    fn drop_probe<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        if let Some(mut probe) = self.probe.take() {
            ctx.cancel_future(probe.timeout);
            ctx.cancel_future(probe.ws.stream);
            probe.ws.writer.abort();
        }
    }

    /// A message on the probing WebSocket: `2probe`, then `5`; anything else ends the probe.
    fn on_probe_message<H: EngineHandler>(&mut self, message: WsMessage, ctx: &mut Ctx<H>) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        let gen = probe.ws.gen;
        match message {
            WsMessage::Event(WsEvent::Text(text)) if text == "2probe" && !probe.probed => {
                probe.probed = true;
                if self.push_ws(gen, packet::pong_probe().ws_frame(), ctx) {
                    // End the pending poll so that the client can pause polling.
                    if let Transport::Polling(p) = &mut self.transport {
                        if let Some(get) = p.get.take() {
                            let _ =
                                get.send(HttpReply::text(packet::noop().payload().to_vec().into()));
                        }
                    }
                }
            }
            WsMessage::Event(WsEvent::Text(text)) if text == "5" && probe.probed => {
                self.complete_upgrade(ctx);
            }
            WsMessage::Event(WsEvent::Ping(payload)) => {
                self.push_ws(gen, transport::pong_frame(&payload), ctx);
            }
            WsMessage::Event(WsEvent::Pong(_)) => {}
            other => {
                debug!("engine.io {}: upgrade abandoned on {other:?}", self.sid);
                self.drop_probe(ctx);
            }
        }
    }

    /// `5` on the probe: the WebSocket becomes the transport; what long-polling still held
    /// is written to it.
    fn complete_upgrade<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        ctx.cancel_future(probe.timeout);
        let gen = probe.ws.gen;
        let old = std::mem::replace(&mut self.transport, Transport::WebSocket(probe.ws));
        self.env.metrics.upgrades.inc();
        if let Transport::Polling(p) = old {
            if let Some(get) = p.get {
                let _ = get.send(HttpReply::text(Bytes::from_static(b"6")));
            }
            for out in p.queue {
                if !self.push_ws(gen, out.ws_frame(), ctx) {
                    return;
                }
            }
        }
        self.flush_ws(gen, ctx);
    }

    // ---- heartbeat --------------------------------------------------------------------------

    /// Schedules the next ping one `pingInterval` after `from`, and the pong deadline one
    /// `pingTimeout` after that ping.
    fn schedule_ping<H: EngineHandler>(&mut self, from: Instant, ctx: &mut Ctx<H>) {
        let config = &self.env.config;
        let ping_at = from + config.ping_interval;
        self.pong_deadline = ping_at + config.ping_timeout;
        let delay = ping_at.saturating_duration_since(Instant::now());
        self.heartbeat = Some(ctx.run_later(delay, |act, ctx| {
            if act.core.ping(ctx) {
                act.handler.on_ping();
            }
        }));
    }

    /// Sends a ping now, unless one is on its way or the session is closing (then `false`):
    /// its pong deadline is `pingTimeout` from now, and the next ping is one `pingInterval`
    /// after its pong, as for the scheduled ones.
    fn ping_now<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) -> bool {
        if self.closing.is_some() || self.awaiting_pong {
            return false;
        }
        if let Some(handle) = self.heartbeat.take() {
            ctx.cancel_future(handle);
        }
        self.pong_deadline = Instant::now() + self.env.config.ping_timeout;
        self.ping(ctx)
    }

    /// Sends the ping and starts waiting for its pong; `false` when closing.
    fn ping<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) -> bool {
        if self.closing.is_some() {
            return false;
        }
        self.awaiting_pong = true;
        let timeout = self.pong_deadline.saturating_duration_since(Instant::now());
        self.heartbeat = Some(ctx.run_later(timeout, |act, ctx| {
            act.core.awaiting_pong = false;
            act.core.close(CloseReason::PingTimeout, ctx);
        }));
        let _ = self.send(packet::ping(), ctx);
        true
    }

    /// Closes the session if its pong deadline has passed (its timer may not have run yet):
    /// a request that arrives after `pingInterval + pingTimeout` without a pong finds the
    /// session closed, whatever the timers' latency.
    fn check_pong_deadline<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        if self.closing.is_none() && Instant::now() >= self.pong_deadline {
            self.awaiting_pong = false;
            self.close(CloseReason::PingTimeout, ctx);
        }
    }

    /// True when it answered a ping.
    fn on_pong<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) -> bool {
        if !self.awaiting_pong {
            return false;
        }
        self.awaiting_pong = false;
        if let Some(handle) = self.heartbeat.take() {
            ctx.cancel_future(handle);
        }
        self.schedule_ping(Instant::now(), ctx);
        true
    }

    // ---- long-polling -----------------------------------------------------------------------

    fn on_poll<H: EngineHandler>(&mut self, reply: oneshot::Sender<HttpReply>, ctx: &mut Ctx<H>) {
        self.check_pong_deadline(ctx);
        if self.closing.is_some() {
            if let Transport::Polling(p) = &mut self.transport {
                if std::mem::take(&mut p.noop_owed) {
                    let _ = reply.send(HttpReply::text(Bytes::from_static(b"6")));
                    ctx.stop();
                    return;
                }
            }
            let _ = reply.send(self.refuse(ErrorCode::UnknownSid));
            return;
        }
        let upgrading = self.probe.as_ref().is_some_and(|p| p.probed);
        let Transport::Polling(p) = &mut self.transport else {
            let _ = reply.send(self.refuse(ErrorCode::BadRequest));
            return;
        };
        if p.get.as_ref().is_some_and(|g| !g.is_closed()) {
            debug!("engine.io {}: overlapping polls", self.sid);
            let _ = reply.send(self.refuse(ErrorCode::BadRequest));
            self.close(CloseReason::Overlap, ctx);
            return;
        }
        if upgrading {
            let _ = reply.send(HttpReply::text(Bytes::from_static(b"6")));
            return;
        }
        p.get = Some(reply);
        if !p.queue.is_empty() {
            answer_get(p);
        }
    }

    fn on_post_begin<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) -> Result<(), HttpReply> {
        self.check_pong_deadline(ctx);
        if self.closing.is_some() {
            return Err(self.refuse(ErrorCode::UnknownSid));
        }
        let Transport::Polling(p) = &mut self.transport else {
            return Err(self.refuse(ErrorCode::BadRequest));
        };
        if p.posting {
            debug!("engine.io {}: overlapping posts", self.sid);
            let reply = self.refuse(ErrorCode::BadRequest);
            self.close(CloseReason::Overlap, ctx);
            return Err(reply);
        }
        p.posting = true;
        Ok(())
    }

    // ---- closing ----------------------------------------------------------------------------

    /// Closes the session: the parked poll gets the close packet (a noop when the client
    /// closed; with no poll parked, the next poll within `close_linger` gets that noop), a
    /// WebSocket gets the close packet and a close frame, then the actor stops.
    fn close<H: EngineHandler>(&mut self, reason: CloseReason, ctx: &mut Ctx<H>) {
        if !self.start_closing(reason, ctx) {
            return;
        }
        self.drop_probe(ctx);
        match &mut self.transport {
            Transport::Polling(p) => {
                if let Some(get) = p.get.take() {
                    let body = if reason == CloseReason::ClientClose {
                        Bytes::from_static(b"6")
                    } else {
                        let close = packet::close();
                        packet::encode_payload(p.queue.iter().chain([&close]))
                    };
                    let _ = get.send(HttpReply::text(body));
                } else if reason == CloseReason::ClientClose {
                    // A poll sent with the close may arrive just after it: it still gets its
                    // noop (not a random 400), and the session ends then or at the linger.
                    p.noop_owed = true;
                    ctx.run_later(self.env.config.close_linger, |_, ctx| ctx.stop());
                    return;
                }
                ctx.stop();
            }
            Transport::WebSocket(ws) => {
                let (code, why) = reason.ws_close();
                let mut sent = true;
                if !matches!(
                    reason,
                    CloseReason::ClientClose | CloseReason::TransportClose
                ) {
                    sent = ws.writer.push(packet::close().ws_frame()) == Pushed::Queued;
                }
                sent = sent
                    && ws.writer.push(transport::close_frame(code, why)) == Pushed::Queued
                    && matches!(ws.writer.flush(), Ok(true));
                if !sent {
                    ws.writer.abort();
                    ctx.stop();
                    return;
                }
                ws.writer.shutdown_write();
                ctx.run_later(self.env.config.close_linger, |_, ctx| ctx.stop());
            }
        }
    }

    /// Drops the session at once (reset for a WebSocket).
    fn abort<H: EngineHandler>(&mut self, reason: CloseReason, ctx: &mut Ctx<H>) {
        self.start_closing(reason, ctx);
        self.drop_probe(ctx);
        if let Transport::WebSocket(ws) = &mut self.transport {
            ws.writer.abort();
        }
        ctx.stop();
    }

    /// The session could not keep up: counted and dropped.
    fn kick<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        if self.closing.is_none() {
            debug!("engine.io {}: queue full, dropping", self.sid);
            self.env.metrics.slow_consumer.inc();
            self.abort(CloseReason::SlowConsumer, ctx);
        }
    }

    /// Marks the session closing (false if it already was) and tells the handler after the
    /// current turn.
    fn start_closing<H: EngineHandler>(&mut self, reason: CloseReason, ctx: &mut Ctx<H>) -> bool {
        if self.closing.is_some() {
            return false;
        }
        self.closing = Some(reason);
        self.env.metrics.closed(reason);
        if let Some(handle) = self.heartbeat.take() {
            ctx.cancel_future(handle);
        }
        ctx.spawn(fut::ready(()).map(|_, act: &mut EngineSocket<H>, _| act.tell_handler()));
        true
    }
}

/// Answers the parked poll with everything queued; keeps the packets if the poll is gone.
fn answer_get(p: &mut Polling) {
    let Some(get) = p.get.take() else { return };
    if p.queue.is_empty() {
        p.get = Some(get);
        return;
    }
    let body = packet::encode_payload(p.queue.iter());
    if get.send(HttpReply::text(body)).is_ok() {
        p.queue.clear();
        p.queue.shrink_to(4);
        p.queued = 0;
    }
}

/// Answers a refused WebSocket upgrade with an HTTP error and closes it.
fn refuse_socket(socket: std::net::TcpStream, reply: HttpReply) {
    let Ok(socket) = TcpStream::from_std(socket) else {
        return;
    };
    let reason = if reply.status == 403 {
        "Forbidden"
    } else {
        "Bad Request"
    };
    let response = transport::http_error(reply.status, reason, &reply.body);
    actix_rt::spawn(async move {
        let _ = transport::write_all(&socket, &response).await;
    });
}

/// Completes the handshake of a WebSocket the session does not take (it already has one),
/// then closes it: close frame, FIN, and up to `linger` for the client's side to end.
fn close_extra_socket(socket: std::net::TcpStream, accept: [u8; 28], linger: Duration) {
    let Ok(socket) = TcpStream::from_std(socket) else {
        return;
    };
    let mut out = transport::switching_protocols(&accept);
    out.extend_from_slice(&transport::close_frame(
        close::NORMAL,
        "the session already has a WebSocket",
    ));
    actix_rt::spawn(async move {
        if transport::write_all(&socket, &out).await.is_err() {
            return;
        }
        let _ = socket2::SockRef::from(&socket).shutdown(std::net::Shutdown::Write);
        // Read (and discard) until the client closes too, so that its close frame does not
        // meet a closed socket and a reset.
        let drain = async {
            let mut buf = [0u8; 512];
            loop {
                if socket.readable().await.is_err() {
                    return;
                }
                match socket.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = actix_rt::time::timeout(linger, drain).await;
    });
}

impl<H: EngineHandler> Actor for EngineSocket<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Ctx<H>) {
        ctx.set_mailbox_capacity(self.core.env.config.mailbox);
        let metrics = &self.core.env.metrics;
        metrics.sessions.inc();
        if let Some(Initial::WebSocket {
            socket,
            leftover,
            accept,
        }) = self.core.initial.take()
        {
            metrics.opened(TransportKind::WebSocket);
            match self.core.open_ws(socket, leftover, &accept, ctx) {
                Ok(ws) => {
                    let gen = ws.gen;
                    self.core.transport = Transport::WebSocket(ws);
                    let config = &self.core.env.config;
                    let open = packet::open(
                        &self.core.sid,
                        &[],
                        config.ping_interval.as_millis() as u64,
                        config.ping_timeout.as_millis() as u64,
                        config.max_payload,
                    );
                    self.core.push_ws(gen, open.ws_frame(), ctx);
                }
                Err(e) => {
                    debug!("engine.io {}: socket: {e}", self.core.sid);
                    self.core.abort(CloseReason::TransportClose, ctx);
                    return;
                }
            }
        } else {
            metrics.opened(TransportKind::Polling);
        }
        let created = self.core.created;
        self.core.schedule_ping(created, ctx);
        let (handler, mut io) = self.split(ctx);
        handler.on_open(&mut io);
    }

    fn stopped(&mut self, _ctx: &mut Ctx<H>) {
        self.tell_handler();
        self.core.env.metrics.sessions.dec();
        self.endpoint.forget(&self.core.sid);
    }
}

impl<H: EngineHandler> StreamHandler<(u32, Option<WsMessage>)> for EngineSocket<H> {
    fn handle(&mut self, (gen, message): (u32, Option<WsMessage>), ctx: &mut Ctx<H>) {
        let current = self.core.is_current(gen);
        let probe = self.core.probe.as_ref().is_some_and(|p| p.ws.gen == gen);
        match message {
            None if current => {
                if self.core.closing.is_some() {
                    ctx.stop();
                } else {
                    self.core.abort(CloseReason::TransportClose, ctx);
                }
            }
            None if probe => self.core.drop_probe(ctx),
            Some(message) if current && self.core.closing.is_none() => {
                self.on_ws_message(gen, message, ctx)
            }
            Some(message) if probe => self.core.on_probe_message(message, ctx),
            _ => {}
        }
    }

    fn finished(&mut self, _ctx: &mut Ctx<H>) {
        // Each stream ends with a `(gen, None)` item, handled above.
    }
}

// ---- messages ---------------------------------------------------------------------------------

/// A long-polling `GET`: answered with the queued packets, at once or when some arrive.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PollGet {
    pub reply: oneshot::Sender<HttpReply>,
}

impl<H: EngineHandler> Handler<PollGet> for EngineSocket<H> {
    type Result = ();

    fn handle(&mut self, msg: PollGet, ctx: &mut Ctx<H>) {
        self.core.on_poll(msg.reply, ctx);
    }
}

/// A long-polling `POST` starts (its body is read next): refused when one is in flight.
#[derive(Message)]
#[rtype(result = "Result<(), HttpReply>")]
pub(crate) struct PostBegin;

impl<H: EngineHandler> Handler<PostBegin> for EngineSocket<H> {
    type Result = Result<(), HttpReply>;

    fn handle(&mut self, _: PostBegin, ctx: &mut Ctx<H>) -> Result<(), HttpReply> {
        self.core.on_post_begin(ctx)
    }
}

/// Why a `POST` body did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostFailure {
    /// The client went away while sending it.
    Aborted,
    /// Longer than `maxPayload`.
    TooLarge,
}

/// The body of the `POST` that `PostBegin` announced.
#[derive(Message)]
#[rtype(result = "HttpReply")]
pub struct PostBody(pub(crate) Result<Bytes, PostFailure>);

impl<H: EngineHandler> Handler<PostBody> for EngineSocket<H> {
    type Result = MessageResult<PostBody>;

    fn handle(&mut self, PostBody(body): PostBody, ctx: &mut Ctx<H>) -> MessageResult<PostBody> {
        if let Transport::Polling(p) = &mut self.core.transport {
            p.posting = false;
        }
        if self.core.closing.is_some() {
            return MessageResult(self.core.refuse(ErrorCode::UnknownSid));
        }
        let body = match body {
            Ok(body) => body,
            Err(PostFailure::Aborted) => {
                return MessageResult(HttpReply::error(ErrorCode::BadRequest))
            }
            Err(PostFailure::TooLarge) => {
                self.core.close(CloseReason::PayloadTooLarge, ctx);
                self.core.env.metrics.refused(ErrorCode::BadRequest);
                return MessageResult(HttpReply::error_with(
                    413,
                    ErrorCode::BadRequest,
                    "Payload too large",
                ));
            }
        };
        match packet::decode_payload(&body) {
            Ok(packets) => {
                for packet in packets {
                    self.on_packet(packet, ctx);
                }
                MessageResult(HttpReply::ok())
            }
            Err(e) => {
                debug!("engine.io {}: {e}", self.core.sid);
                self.core.close(CloseReason::ParseError, ctx);
                MessageResult(self.core.refuse(ErrorCode::BadRequest))
            }
        }
    }
}

/// A WebSocket upgrade request with this session's id, handed over with its socket (the
/// session answers the handshake itself).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AttachWebSocket {
    pub socket: std::net::TcpStream,
    pub leftover: Vec<u8>,
    pub accept: [u8; 28],
}

impl<H: EngineHandler> Handler<AttachWebSocket> for EngineSocket<H> {
    type Result = ();

    fn handle(&mut self, msg: AttachWebSocket, ctx: &mut Ctx<H>) {
        self.core
            .attach_ws(msg.socket, msg.leftover, msg.accept, ctx);
    }
}

/// Sends a pre-encoded packet (shared by every recipient of a fan-out). Send it with
/// `try_send`: a full mailbox means the session cannot keep up.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Push(pub Outgoing);

impl<H: EngineHandler> Handler<Push> for EngineSocket<H> {
    type Result = ();

    fn handle(&mut self, Push(packet): Push, ctx: &mut Ctx<H>) {
        let _ = self.core.send(packet, ctx);
    }
}

/// Closes the session (server side; e.g. at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSession;

impl<H: EngineHandler> Handler<CloseSession> for EngineSocket<H> {
    type Result = ();

    fn handle(&mut self, _: CloseSession, ctx: &mut Ctx<H>) {
        self.core.close(CloseReason::ServerClose, ctx);
    }
}

impl<H: EngineHandler> EngineSocket<H> {
    /// Drops the session as a slow consumer (its application found it could not keep up).
    pub fn drop_slow_consumer(&mut self, ctx: &mut Ctx<H>) {
        self.core.abort(CloseReason::SlowConsumer, ctx);
    }

    /// Closes the session from the server's side (an Engine.IO close).
    pub fn close_by_server(&mut self, ctx: &mut Ctx<H>) {
        self.core.close(CloseReason::ServerClose, ctx);
    }
}

// ---- the handler's handle ---------------------------------------------------------------------

impl<'a, H: EngineHandler> EngineIo<'a, H> {
    /// The session id.
    pub fn sid(&self) -> &str {
        &self.core.sid
    }

    /// The current transport.
    pub fn transport(&self) -> TransportKind {
        self.core.transport_kind()
    }

    /// False once the session is closing.
    pub fn is_open(&self) -> bool {
        self.core.closing.is_none()
    }

    /// The session's `maxPayload`.
    pub fn max_payload(&self) -> usize {
        self.core.env.config.max_payload
    }

    /// Sends a pre-encoded packet (e.g. one encoding shared by many sessions).
    pub fn send(&mut self, packet: Outgoing) -> Result<(), SendError> {
        self.core.send(packet, self.ctx)
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send(Outgoing::message(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send(Outgoing::binary(data))
    }

    /// Sends a ping now, unless one is on its way or the session is closing (then `false`);
    /// its pong reaches [`EngineHandler::on_pong`].
    pub fn ping_now(&mut self) -> bool {
        self.core.ping_now(self.ctx)
    }

    /// Closes the session.
    pub fn close(&mut self, reason: CloseReason) {
        self.core.close(reason, self.ctx);
    }

    /// The session actor's address (for messages the layer above handles on it).
    pub fn address(&self) -> Addr<EngineSocket<H>> {
        self.ctx.address()
    }

    /// Runs `fut` and then `then` inside the session, in parallel with its other events.
    pub fn spawn<F, T>(&mut self, fut: F, then: T) -> SpawnHandle
    where
        F: Future + 'static,
        T: FnOnce(&mut H, F::Output, &mut EngineIo<'_, H>) + 'static,
    {
        self.ctx.spawn(
            fut::wrap_future::<_, EngineSocket<H>>(fut).map(move |out, act, ctx| {
                let (handler, mut io) = act.split(ctx);
                then(handler, out, &mut io)
            }),
        )
    }

    /// Like [`EngineIo::spawn`], but holds every other event of the session (messages,
    /// deliveries) until `then` has run: for steps whose order matters.
    pub fn wait<F, T>(&mut self, fut: F, then: T)
    where
        F: Future + 'static,
        T: FnOnce(&mut H, F::Output, &mut EngineIo<'_, H>) + 'static,
    {
        self.ctx.wait(
            fut::wrap_future::<_, EngineSocket<H>>(fut).map(move |out, act, ctx| {
                let (handler, mut io) = act.split(ctx);
                then(handler, out, &mut io)
            }),
        )
    }

    /// Runs `f` inside the session after `delay`.
    pub fn run_later<T>(&mut self, delay: Duration, f: T) -> SpawnHandle
    where
        T: FnOnce(&mut H, &mut EngineIo<'_, H>) + 'static,
    {
        self.ctx.run_later(delay, move |act, ctx| {
            let (handler, mut io) = act.split(ctx);
            f(handler, &mut io)
        })
    }

    /// Cancels what [`EngineIo::spawn`] or [`EngineIo::run_later`] started.
    pub fn cancel(&mut self, handle: SpawnHandle) {
        self.ctx.cancel_future(handle);
    }
}
