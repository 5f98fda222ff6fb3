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
//! # Layout
//! This file holds the session's state (every type of it), the actor and how a packet reaches
//! the handler; each submodule adds one concern's behaviour to that state and uses only this
//! file: `websocket.rs` (a WebSocket transport, its writes and the upgrade's probe),
//! `polling.rs` (long-polling requests), `heartbeat.rs` (pings and the pong deadline),
//! `closing.rs` (closing and dropping), [`messages`] (what the endpoint and the layer above
//! send to the actor), [`io`] (the handler's [`EngineIo`]).

mod closing;
mod heartbeat;
pub mod io;
pub mod messages;
mod polling;
mod websocket;

use std::{collections::VecDeque, sync::Arc, time::Instant};

use actix::{fut, prelude::*};
use bytes::Bytes;
use log::debug;
use tokio::sync::oneshot;

use super::{
    close::CloseReason,
    config::EngineEnv,
    packet::{self, Outgoing, Packet},
    request::{ErrorCode, HttpReply, TransportKind},
    sessions::Sessions,
};
use crate::{
    common::limits::ConnectionPermit,
    transports::transport::{Writer, WsMessage},
};

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

    /// The transport takes packets again after [`EngineIo::is_behind`]: the WebSocket's
    /// queue drained, or a long-polling `GET` arrived (what is sent now goes in its answer).
    fn on_drained(&mut self, io: &mut EngineIo<'_, Self>) {
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
    /// The scheduled write-timeout check, cancelled once the socket took everything (an idle
    /// session keeps no timer for it: every session's first write waits for writability).
    stall_check: Option<SpawnHandle>,
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
    /// Boxed, like `probe`: held only until the session starts (or while it upgrades), so
    /// not inline in every session for its whole life.
    initial: Option<Box<Initial>>,
    transport: Transport,
    probe: Option<Box<Probe>>,
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
    endpoint: Arc<Sessions<Addr<EngineSocket<H>>>>,
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
        endpoint: Arc<Sessions<Addr<EngineSocket<H>>>>,
        handler: H,
        initial: Initial,
        permit: Option<ConnectionPermit>,
    ) -> Self {
        EngineSocket {
            handler,
            core: Core {
                sid,
                env: endpoint.env().clone(),
                initial: Some(Box::new(initial)),
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

    /// Tells the handler that the transport took everything ([`EngineHandler::on_drained`]).
    fn drained(&mut self, ctx: &mut Ctx<H>) {
        if self.core.closing.is_none() {
            let (handler, mut io) = self.split(ctx);
            handler.on_drained(&mut io);
        }
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
}

impl Core {
    /// True while packets wait that the client has not taken: the WebSocket refused bytes,
    /// or over long-polling no `GET` is parked.
    pub(crate) fn is_behind(&self) -> bool {
        match &self.transport {
            Transport::Polling(p) => p.get.is_none() && !p.queue.is_empty(),
            Transport::WebSocket(ws) => ws.writer.is_behind(),
        }
    }

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
        match &mut self.transport {
            Transport::Polling(p) => {
                if !p.queue(out, self.env.config.queue_bytes) {
                    self.kick(ctx);
                    return Err(SendError::Overflow);
                }
                let upgrading = self.probe.as_ref().is_some_and(|p| p.probed);
                if p.get.is_some() && !p.reply_scheduled && !upgrading {
                    p.reply_scheduled = true;
                    // Answer after this turn, so that a burst of packets goes in one response.
                    ctx.spawn(fut::ready(()).map(|_, act: &mut EngineSocket<H>, _| {
                        if let Transport::Polling(p) = &mut act.core.transport {
                            p.reply_scheduled = false;
                            p.answer_get();
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
        }) = self.core.initial.take().map(|initial| *initial)
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
