//! The Socket.IO layer of one Engine.IO session: namespaces, events, acknowledgements and
//! binary attachments, for an application ([`SioApp`]).
//!
//! [`SocketIo`] is the [`EngineHandler`] of the session, so the whole Socket.IO connection
//! (and the application's per-connection state) lives in the one session actor. Per
//! namespace the connection goes `CONNECT` -> pending (the application decides, now or after
//! an async step) -> connected (`CONNECT` reply with the socket id) or refused
//! (`CONNECT_ERROR`), and -> `DISCONNECT`. A packet that breaks the protocol (malformed, for
//! a namespace that is not connected, binary data nobody announced) closes the connection,
//! as the reference server does.

use std::{future::Future, sync::Arc, time::Duration};

use actix::SpawnHandle;
use bytes::Bytes;
use log::debug;
use serde_json::Value;

use super::packet::{self, Packet, PacketType};
use crate::transports::engineio::{
    server::random_id, CloseReason, EngineHandler, EngineIo, Message, Outgoing, SendError,
};

/// Socket.IO parameters.
#[derive(Clone, Debug)]
pub struct SioConfig {
    /// A connection with no namespace connected this long after it opened is closed, unless
    /// a `CONNECT` is still being answered then: it closes only if the answers leave it
    /// without a namespace (the client's time to ask, not the application's to answer).
    pub connect_timeout: Duration,
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
}

impl Default for SioConfig {
    /// The reference server's 45 s connect timeout; 10 attachments per packet.
    fn default() -> Self {
        SioConfig {
            connect_timeout: Duration::from_secs(45),
            max_attachments: 10,
        }
    }
}

/// An event from the client.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// Its arguments; binary ones are `{"_placeholder":true,"num":i}`, the bytes being
    /// `attachments[i]`.
    pub args: Vec<Value>,
    /// Binary attachments.
    pub attachments: Vec<Bytes>,
    /// Set when the client waits for an acknowledgement: answer with [`SioIo::ack`].
    pub ack: Option<u64>,
}

/// The client's answer to an event sent with [`SioIo::emit_with_ack`].
#[derive(Clone, Debug, PartialEq)]
pub struct AckReply {
    /// The id [`SioIo::emit_with_ack`] returned.
    pub id: u64,
    /// The answer's arguments (placeholders as in [`Event::args`]).
    pub args: Vec<Value>,
    /// Binary attachments.
    pub attachments: Vec<Bytes>,
}

/// Why a namespace's socket ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left the namespace (`DISCONNECT`).
    ClientDisconnect,
    /// The server left it ([`SioIo::disconnect`]).
    ServerDisconnect,
    /// The whole connection closed.
    Closed(CloseReason),
}

/// Why a Socket.IO send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitError {
    /// The namespace is not connected.
    NotConnected,
    /// The connection could not take it (closed, or dropped as a slow consumer).
    Send(SendError),
}

impl From<SendError> for EmitError {
    fn from(e: SendError) -> Self {
        EmitError::Send(e)
    }
}

/// An application on Socket.IO: what one connection does. Its methods run inside the session
/// actor, in order.
pub trait SioApp: Unpin + Sized + 'static {
    /// True when the application serves namespace `nsp`; others are refused with
    /// `Invalid namespace`.
    fn serves(&self, nsp: &str) -> bool;

    /// The client asks to join `nsp` (served) with `auth` (`{}` when it sent none). Answer
    /// with [`SioIo::accept`] or [`SioIo::refuse`], now or later (e.g. from a future spawned
    /// with [`SioIo::spawn`]); until then the namespace is pending.
    fn on_connect(&mut self, nsp: &str, auth: Value, io: &mut SioIo<'_, Self>);

    /// An event on a connected namespace.
    fn on_event(&mut self, nsp: &str, event: Event, io: &mut SioIo<'_, Self>);

    /// The answer to an event sent with [`SioIo::emit_with_ack`].
    fn on_ack(&mut self, nsp: &str, reply: AckReply, io: &mut SioIo<'_, Self>) {
        let _ = (nsp, reply, io);
    }

    /// An Engine.IO ping went out on the heartbeat's schedule (see [`SioIo::ping_now`] for
    /// pings the application asks for).
    fn on_ping(&mut self) {}

    /// The connection takes packets again after [`SioIo::is_behind`].
    fn on_drained(&mut self, io: &mut SioIo<'_, Self>) {
        let _ = io;
    }

    /// The client answered an Engine.IO ping: it has read everything sent before it.
    fn on_pong(&mut self, io: &mut SioIo<'_, Self>) {
        let _ = io;
    }

    /// A connected (or pending) namespace ended.
    fn on_disconnect(&mut self, nsp: &str, reason: DisconnectReason) {
        let _ = (nsp, reason);
    }
}

struct Namespace {
    name: Arc<str>,
    connected: bool,
}

/// A binary packet waiting for its attachments.
struct Partial {
    packet: Packet,
    attachments: Vec<Bytes>,
    bytes: usize,
}

/// The Socket.IO state of a connection, apart from the application.
pub struct SioState {
    config: Arc<SioConfig>,
    namespaces: Vec<Namespace>,
    partial: Option<Partial>,
    next_ack: u64,
    connect_timer: ConnectTimer,
}

/// The connect timeout of a connection.
enum ConnectTimer {
    /// Running, until a namespace is connected (then cancelled: an idle connection keeps no
    /// timer and no item for it).
    Armed(SpawnHandle),
    /// It passed while a `CONNECT` was pending (the application still answering it): the
    /// connection closes if the answers leave no namespace.
    Overdue,
    /// Cancelled, or passed with a namespace connected.
    Off,
}

impl SioState {
    /// True when the connect timeout passed and no namespace is connected or pending.
    fn connect_timed_out(&self) -> bool {
        matches!(self.connect_timer, ConnectTimer::Overdue) && self.namespaces.is_empty()
    }
}

/// The Socket.IO layer of one Engine.IO session, with the application's state.
pub struct SocketIo<A: SioApp> {
    app: A,
    state: SioState,
}

impl<A: SioApp> SocketIo<A> {
    /// A connection for `app`.
    pub fn new(app: A, config: Arc<SioConfig>) -> Self {
        SocketIo {
            app,
            state: SioState {
                config,
                namespaces: Vec::new(),
                partial: None,
                next_ack: 1,
                connect_timer: ConnectTimer::Off,
            },
        }
    }

    /// The application and a handle on the connection, borrowed at once: for message
    /// handlers that the layer above adds to the session actor (e.g. fan-out deliveries).
    pub fn split<'a, 'e>(
        &'a mut self,
        engine: &'a mut EngineIo<'e, Self>,
    ) -> (&'a mut A, SioIo<'a, A>) {
        let sio = SioIo {
            state: &mut self.state,
            core: &mut *engine.core,
            ctx: &mut *engine.ctx,
        };
        (&mut self.app, sio)
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    fn protocol_error(&mut self, why: &dyn std::fmt::Display, io: &mut EngineIo<'_, Self>) {
        debug!("socket.io {}: {why}; closing", io.sid());
        io.close(CloseReason::ProtocolError);
    }

    fn on_packet(&mut self, packet: Packet, attachments: Vec<Bytes>, io: &mut EngineIo<'_, Self>) {
        let index = self
            .state
            .namespaces
            .iter()
            .position(|n| *n.name == *packet.nsp);
        let connected = index.is_some_and(|i| self.state.namespaces[i].connected);
        match packet.kind {
            PacketType::Connect if index.is_none() => self.on_connect(packet, io),
            PacketType::Disconnect if index.is_some() => {
                let ns = self.state.namespaces.remove(index.expect("checked"));
                self.app
                    .on_disconnect(&ns.name, DisconnectReason::ClientDisconnect);
                if self.state.connect_timed_out() {
                    io.close(CloseReason::ConnectTimeout);
                }
            }
            PacketType::Event | PacketType::BinaryEvent if connected => {
                let Some(Value::Array(mut args)) = packet.data else {
                    return self.protocol_error(&"event without arguments", io);
                };
                let name = match args.remove(0) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let event = Event {
                    name,
                    args,
                    attachments,
                    ack: packet.id,
                };
                let (app, mut sio) = self.split(io);
                app.on_event(&packet.nsp, event, &mut sio);
            }
            PacketType::Ack | PacketType::BinaryAck if connected => {
                let (Some(Value::Array(args)), Some(id)) = (packet.data, packet.id) else {
                    return self.protocol_error(&"ack without id or arguments", io);
                };
                let reply = AckReply {
                    id,
                    args,
                    attachments,
                };
                let (app, mut sio) = self.split(io);
                app.on_ack(&packet.nsp, reply, &mut sio);
            }
            kind => {
                let why = format!("{kind:?} packet for namespace {} in this state", packet.nsp);
                self.protocol_error(&why, io)
            }
        }
    }

    fn on_connect(&mut self, packet: Packet, io: &mut EngineIo<'_, Self>) {
        if !self.app.serves(&packet.nsp) {
            let _ = io.send_text(&packet::connect_error(
                &packet.nsp,
                "Invalid namespace",
                None,
            ));
            return;
        }
        let name: Arc<str> = packet.nsp.into();
        self.state.namespaces.push(Namespace {
            name: name.clone(),
            connected: false,
        });
        let auth = packet
            .data
            .unwrap_or_else(|| Value::Object(Default::default()));
        let (app, mut sio) = self.split(io);
        app.on_connect(&name, auth, &mut sio);
    }
}

impl<A: SioApp> EngineHandler for SocketIo<A> {
    fn on_open(&mut self, io: &mut EngineIo<'_, Self>) {
        // The client's time to ask for a namespace: a `CONNECT` the application is still
        // answering (an async step: registration, a recovery, a takeover) waits for its
        // answer, and the connection closes only if that leaves no namespace.
        let timer = io.run_later(self.state.config.connect_timeout, |sio, io| {
            let overdue = !sio.state.namespaces.iter().any(|n| n.connected);
            sio.state.connect_timer = match overdue {
                true => ConnectTimer::Overdue,
                false => ConnectTimer::Off,
            };
            if sio.state.connect_timed_out() {
                debug!("socket.io {}: no namespace connected in time", io.sid());
                io.close(CloseReason::ConnectTimeout);
            } else if overdue {
                debug!(
                    "socket.io {}: connect timeout passed; a CONNECT is being answered",
                    io.sid()
                );
            }
        });
        self.state.connect_timer = ConnectTimer::Armed(timer);
    }

    fn on_message(&mut self, message: Message, io: &mut EngineIo<'_, Self>) {
        match message {
            Message::Text(text) => {
                if self.state.partial.is_some() {
                    return self.protocol_error(&"text packet while attachments are due", io);
                }
                let packet = match packet::decode(&text, self.state.config.max_attachments) {
                    Ok(p) => p,
                    Err(e) => return self.protocol_error(&e, io),
                };
                if packet.attachments > 0 {
                    self.state.partial = Some(Partial {
                        attachments: Vec::with_capacity(packet.attachments),
                        packet,
                        bytes: 0,
                    });
                } else {
                    self.on_packet(packet, Vec::new(), io);
                }
            }
            Message::Binary(data) => {
                let Some(partial) = self.state.partial.as_mut() else {
                    return self.protocol_error(&"binary data nobody announced", io);
                };
                partial.bytes += data.len();
                if partial.bytes > io.max_payload() {
                    return self.protocol_error(&"attachments over maxPayload", io);
                }
                partial.attachments.push(data);
                if partial.attachments.len() == partial.packet.attachments {
                    let Partial {
                        packet,
                        attachments,
                        ..
                    } = self.state.partial.take().expect("checked");
                    self.on_packet(packet, attachments, io);
                }
            }
        }
    }

    fn on_ping(&mut self) {
        self.app.on_ping();
    }

    fn on_pong(&mut self, io: &mut EngineIo<'_, Self>) {
        let (app, mut sio) = self.split(io);
        app.on_pong(&mut sio);
    }

    fn on_drained(&mut self, io: &mut EngineIo<'_, Self>) {
        let (app, mut sio) = self.split(io);
        app.on_drained(&mut sio);
    }

    fn on_close(&mut self, reason: CloseReason) {
        for ns in std::mem::take(&mut self.state.namespaces) {
            self.app
                .on_disconnect(&ns.name, DisconnectReason::Closed(reason));
        }
    }
}

/// What a [`SioApp`] uses to act on its connection.
pub struct SioIo<'a, A: SioApp> {
    state: &'a mut SioState,
    core: &'a mut crate::transports::engineio::socket::Core,
    ctx: &'a mut actix::Context<crate::transports::engineio::EngineSocket<SocketIo<A>>>,
}

impl<'a, A: SioApp> SioIo<'a, A> {
    /// The Engine.IO session under this connection.
    pub fn engine(&mut self) -> EngineIo<'_, SocketIo<A>> {
        EngineIo {
            core: &mut *self.core,
            ctx: &mut *self.ctx,
        }
    }

    fn namespace(&self, nsp: &str) -> Option<&Namespace> {
        self.state.namespaces.iter().find(|n| *n.name == *nsp)
    }

    /// True while packets wait that the client has not taken (its WebSocket refused bytes,
    /// or over long-polling no `GET` is parked); [`SioApp::on_drained`] follows.
    pub fn is_behind(&self) -> bool {
        self.core.is_behind()
    }

    /// True when `nsp` is connected.
    pub fn is_connected(&self, nsp: &str) -> bool {
        self.namespace(nsp).is_some_and(|n| n.connected)
    }

    /// Accepts a pending namespace: the client gets its `CONNECT` reply with a new socket id,
    /// which this returns. Emit to the namespace after this.
    pub fn accept(&mut self, nsp: &str) -> Result<String, EmitError> {
        self.accept_with_pid(nsp, None, None)
    }

    /// [`SioIo::accept`] with a connection state recovery private id and the user's unread
    /// count in the reply.
    pub fn accept_with_pid(
        &mut self,
        nsp: &str,
        pid: Option<&str>,
        unread: Option<u64>,
    ) -> Result<String, EmitError> {
        let ns = self
            .state
            .namespaces
            .iter_mut()
            .find(|n| *n.name == *nsp && !n.connected)
            .ok_or(EmitError::NotConnected)?;
        ns.connected = true;
        let timer = std::mem::replace(&mut self.state.connect_timer, ConnectTimer::Off);
        if let ConnectTimer::Armed(timer) = timer {
            self.engine().cancel(timer);
        }
        let sid = random_id();
        self.engine()
            .send_text(&packet::connected_with_pid(nsp, &sid, pid, unread))?;
        Ok(sid)
    }

    /// Refuses a pending namespace with `CONNECT_ERROR {message, data?}`.
    pub fn refuse(
        &mut self,
        nsp: &str,
        message: &str,
        data: Option<&Value>,
    ) -> Result<(), EmitError> {
        let i = self
            .state
            .namespaces
            .iter()
            .position(|n| *n.name == *nsp && !n.connected)
            .ok_or(EmitError::NotConnected)?;
        self.state.namespaces.remove(i);
        let sent = self
            .engine()
            .send_text(&packet::connect_error(nsp, message, data));
        self.close_if_connect_timed_out();
        sent?;
        Ok(())
    }

    /// Leaves a namespace from the server side (`DISCONNECT`).
    pub fn disconnect(&mut self, nsp: &str) -> Result<(), EmitError> {
        let i = self
            .state
            .namespaces
            .iter()
            .position(|n| *n.name == *nsp)
            .ok_or(EmitError::NotConnected)?;
        self.state.namespaces.remove(i);
        let sent = self.engine().send_text(&packet::disconnect(nsp));
        self.close_if_connect_timed_out();
        sent?;
        Ok(())
    }

    /// Closes the connection when the connect timeout passed while a `CONNECT` was pending
    /// and the answers left no namespace.
    fn close_if_connect_timed_out(&mut self) {
        if self.state.connect_timed_out() {
            self.engine().close(CloseReason::ConnectTimeout);
        }
    }

    fn send_packet(
        &mut self,
        nsp: &str,
        text: &str,
        attachments: &[Bytes],
    ) -> Result<(), EmitError> {
        if !self.is_connected(nsp) {
            return Err(EmitError::NotConnected);
        }
        let mut engine = self.engine();
        engine.send_text(text)?;
        for data in attachments {
            engine.send_binary(data)?;
        }
        Ok(())
    }

    /// Emits an event; `attachments` are the binary arguments that placeholders in `args`
    /// refer to (see [`packet::placeholder`]).
    pub fn emit(
        &mut self,
        nsp: &str,
        event: &str,
        args: &[Value],
        attachments: &[Bytes],
    ) -> Result<(), EmitError> {
        let text = packet::event(nsp, event, args, None, attachments.len());
        self.send_packet(nsp, &text, attachments)
    }

    /// Emits an event that asks the client for an acknowledgement; its answer reaches
    /// [`SioApp::on_ack`] with the returned id.
    pub fn emit_with_ack(
        &mut self,
        nsp: &str,
        event: &str,
        args: &[Value],
        attachments: &[Bytes],
    ) -> Result<u64, EmitError> {
        let id = self.state.next_ack;
        let text = packet::event(nsp, event, args, Some(id), attachments.len());
        self.send_packet(nsp, &text, attachments)?;
        self.state.next_ack += 1;
        Ok(id)
    }

    /// Answers an event that asked for an acknowledgement ([`Event::ack`]).
    pub fn ack(
        &mut self,
        nsp: &str,
        id: u64,
        args: &[Value],
        attachments: &[Bytes],
    ) -> Result<(), EmitError> {
        let text = packet::ack(nsp, id, args, attachments.len());
        self.send_packet(nsp, &text, attachments)
    }

    /// Sends a pre-encoded packet (e.g. `Outgoing::message(&packet::event_raw(..))`, encoded
    /// once for many connections). The caller checks the namespace ([`SioIo::is_connected`]).
    pub fn send_shared(&mut self, packet: Outgoing) -> Result<(), SendError> {
        self.engine().send(packet)
    }

    /// Closes the connection.
    pub fn close(&mut self) {
        self.engine().close(CloseReason::ServerClose);
    }

    /// Sends an Engine.IO ping now, unless one is on its way (then `false`); its pong reaches
    /// [`SioApp::on_pong`].
    pub fn ping_now(&mut self) -> bool {
        self.engine().ping_now()
    }

    /// Runs `fut`, then `then` inside the connection, in parallel with its other events.
    pub fn spawn<F, T>(&mut self, fut: F, then: T) -> SpawnHandle
    where
        F: Future + 'static,
        T: FnOnce(&mut A, F::Output, &mut SioIo<'_, A>) + 'static,
    {
        self.engine().spawn(fut, move |sio, out, engine| {
            let (app, mut io) = sio.split(engine);
            then(app, out, &mut io)
        })
    }

    /// Like [`SioIo::spawn`], but holds the connection's other events (client packets,
    /// deliveries) until `then` has run.
    pub fn wait<F, T>(&mut self, fut: F, then: T)
    where
        F: Future + 'static,
        T: FnOnce(&mut A, F::Output, &mut SioIo<'_, A>) + 'static,
    {
        self.engine().wait(fut, move |sio, out, engine| {
            let (app, mut io) = sio.split(engine);
            then(app, out, &mut io)
        })
    }

    /// Runs `f` inside the connection after `delay`.
    pub fn run_later<T>(&mut self, delay: Duration, f: T) -> SpawnHandle
    where
        T: FnOnce(&mut A, &mut SioIo<'_, A>) + 'static,
    {
        self.engine().run_later(delay, move |sio, engine| {
            let (app, mut io) = sio.split(engine);
            f(app, &mut io)
        })
    }
}

/// How the layer above adds its own messages to a Socket.IO session actor (e.g. the hub's
/// fan-out deliveries): compiled with the tests, so the API shape is checked.
#[cfg(test)]
#[allow(dead_code)]
mod api_shape {
    use super::*;
    use crate::transports::engineio::EngineSocket;

    struct App;

    impl SioApp for App {
        fn serves(&self, nsp: &str) -> bool {
            nsp == "/"
        }

        fn on_connect(&mut self, nsp: &str, _auth: Value, io: &mut SioIo<'_, Self>) {
            // An async step (e.g. registering with the hub) before accepting.
            let nsp = nsp.to_owned();
            io.wait(async {}, move |_app, (), io| {
                let _ = io.accept(&nsp);
            });
        }

        fn on_event(&mut self, _nsp: &str, _event: Event, _io: &mut SioIo<'_, Self>) {}
    }

    /// A packet encoded once for many sessions.
    #[derive(actix::Message)]
    #[rtype(result = "()")]
    struct Deliver(Outgoing);

    impl actix::Handler<Deliver> for EngineSocket<SocketIo<App>> {
        type Result = ();

        fn handle(&mut self, Deliver(packet): Deliver, ctx: &mut actix::Context<Self>) {
            let (sio, mut engine) = self.split(ctx);
            let (_app, mut io) = sio.split(&mut engine);
            if io.is_connected("/") {
                let _ = io.send_shared(packet);
            }
        }
    }
}
