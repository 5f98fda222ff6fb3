//! The hub behind `/socket.io/`: a Socket.IO connection is a client session like a native
//! one. It hosts the same [`ClientCore`] (identity, limits, rooms, history, topics) and is
//! registered with the same registry shard, so users, rooms and Redis fan-out are shared with
//! `/ws` sessions; only the wire encoding differs.
//!
//! Mapping (namespace `/` only):
//! - CONNECT auth `{token}` (JWT) or `{userId, name?}` (dev mode), plus `since` (the last
//!   `inboxId` seen: the notifications sent after it are replayed); refused auth gets
//!   CONNECT_ERROR `{message, data: {code: "unauthorized"}}`; the refusal that uses up the
//!   address's failure budget, and every CONNECT while it is used up, also closes the
//!   connection (`{code: "too_many_auth_failures"}` for the latter). The namespace is accepted once
//!   the user's channel is subscribed, like the native `connected`.
//! - client events `join-room` (room string, or `{room, since?}`), `leave-room` (string or
//!   `{room}`), `chat-message` (`{room, message}`), `subscribe` / `unsubscribe` (topic string or
//!   `{topic}`), `ping`. With an ack callback the reply (the native reply object, e.g.
//!   `{type:"joined", room, history, members, ...}`; `{type:"published", room, id}` for a chat
//!   message) or the error `{error: {code, message}}` goes to the ack; without one, replies are
//!   emitted as events named like the native `type` (`joined`, `left`, `pong`, ...) and
//!   errors as an `error` event `{code, message}`.
//! - server events `notification`, `ai-result`, `chat-message`, `presence`,
//!   `cache-invalidate`, `analytics` carry the native `data` payloads, encoded once per event
//!   for every Socket.IO recipient ([`Outbound::socketio`](crate::common::outbound::Outbound::socketio)).
//! - connection state recovery (when [`SessionEnv::resume`] is set): the CONNECT reply
//!   carries a private id (`pid`), every server event carries its offset as a last string
//!   argument (a copy of the event's shared packet with the offset appended), and a session
//!   whose transport dropped (or that was dropped as a slow consumer) is kept in Redis; a
//!   CONNECT with `pid` and `offset` of the same user, on any instance, gets its rooms back and
//!   the missed events before live ones, and the same `pid` (`socket.recovered` true in the
//!   client). The core does it ([`ClientCore::connect`]), as for native sessions; the
//!   Engine.IO pings are its proofs (what was sent before a ping is read once its pong comes).

use std::sync::Arc;

use actix::prelude::*;
use serde_json::{json, Map, Value};

use crate::{
    common::auth::{AuthError, Identity},
    common::metrics::OutKind,
    common::outbound::Outbound,
    common::queued::KickReason,
    features::session_resume::{Pid, Proof},
    hub::client::{Ask, ClientCore, ClientIo, Reply, Resumed, SessionEnv, Step},
    hub::registry::report_kick,
    messages::{Close, Deliver, Kick, SessionAddr},
    transports::engineio::{EngineSocket, Outgoing},
    transports::socketio::{packet, Event, SioApp, SioIo, SocketIo},
};

use hub_wire::protocol::{self, ClientError, ClientFrame, ErrorCode};

/// The namespace the hub serves.
const NSP: &str = "/";

/// A Socket.IO session actor running the hub.
pub type SioSession = EngineSocket<SocketIo<HubApp>>;

/// The hub as a Socket.IO application (one per connection).
pub struct HubApp {
    core: ClientCore,
    /// The client's address: failed CONNECTs count against its budget.
    peer: Option<std::net::IpAddr>,
    /// The hub closed the session itself for the client's fault (policy, auth, token
    /// expiry): not kept for recovery. (A slow consumer is kept: a transport reason.)
    closed_by_hub: bool,
    /// Closed by shutdown: kept, so that a rolling restart recovers.
    shutting_down: bool,
    /// What the Engine.IO ping on its way asks the client to prove.
    pinged: Option<Proof>,
}

/// The `pid` and `offset` of a CONNECT that asks for recovery (`offset` 0 when the client
/// got no event yet; `None` when it is not a number).
fn recovery_request(auth: &Value) -> Option<(Pid, Option<u64>)> {
    let pid = auth.get("pid")?.as_str().and_then(Pid::parse)?;
    let offset = match auth.get("offset") {
        None | Some(Value::Null) => Some(0),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    Some((pid, offset))
}

impl HubApp {
    /// The application for a new connection of the worker whose sessions share `env`.
    pub fn new(env: Arc<SessionEnv>, peer: Option<std::net::IpAddr>) -> Self {
        env.metrics.connections.inc();
        let id = env.next_session_id();
        let mut core = ClientCore::new(id, env, None);
        core.set_peer(peer);
        HubApp {
            core,
            peer,
            closed_by_hub: false,
            shutting_down: false,
            pinged: None,
        }
    }

    fn identity(&self, auth: &Value) -> Result<Identity, AuthError> {
        let authenticator = &self.core.env().auth;
        let field = |k: &str| auth.get(k);
        if let Some(token) = field("token").and_then(Value::as_str) {
            return authenticator.verify_token(token);
        }
        let user = match field("userId") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match user {
            Some(user) => authenticator.dev_identity(&user, field("name").and_then(Value::as_str)),
            None if authenticator.jwt_enabled() => Err(AuthError::Missing),
            None => Err(AuthError::Invalid(
                "pass auth: {userId} (dev mode) or {token}".into(),
            )),
        }
    }

    /// Runs `f` on the core with the connection as its I/O.
    fn with_core(
        &mut self,
        io: &mut SioIo<'_, Self>,
        f: impl FnOnce(&mut ClientCore, &mut HubIo<'_, '_>),
    ) {
        let metrics = self.core.env().metrics.clone();
        let mut hub_io = HubIo {
            io,
            metrics: &metrics,
            close: false,
            kick: None,
            pinged: None,
        };
        f(&mut self.core, &mut hub_io);
        let (kick, close) = (hub_io.kick, hub_io.close);
        if let Some(proof) = hub_io.pinged {
            self.pinged = Some(proof);
        }
        self.closed_by_hub |= close && kick.is_none();
        if let Some(reason) = kick {
            report_kick(&metrics, self.core.id(), self.core.user(), reason);
            self.core.keep_for_resume();
            self.core.unregister();
            io.close();
        } else if close {
            // A server disconnect: socket.io-client does not reconnect by itself after it
            // (an expired token, a policy close would only be refused or closed again).
            self.core.unregister();
            let _ = io.disconnect(NSP);
            io.close();
        }
    }
}

impl Drop for HubApp {
    fn drop(&mut self) {
        self.core.unregister();
        self.core.env().metrics.connections.dec();
    }
}

/// Turns a client event into the request it stands for (the same validation as native
/// frames); the ack id plays the native `id`.
fn request(
    event: &Event,
    limits: &crate::common::limits::Limits,
) -> Result<ClientFrame, ClientError> {
    let id = event.ack.map(Value::from);
    if !event.attachments.is_empty() {
        let message = "binary arguments are not supported";
        return Err(crate::hub::client::error_with_id(
            ErrorCode::BadRequest,
            message,
            id,
        ));
    }
    let shorthand = match event.name.as_str() {
        "join-room" | "leave-room" => Some("room"),
        "subscribe" | "unsubscribe" => Some("topic"),
        _ => None,
    };
    let mut map = match (event.args.first(), shorthand) {
        (None, _) => Map::new(),
        (Some(Value::String(s)), Some(key)) => {
            Map::from_iter([(key.to_string(), Value::from(s.as_str()))])
        }
        (Some(Value::Object(m)), _) => m.clone(),
        (Some(_), _) if event.name == "ping" => Map::new(),
        (Some(_), _) => {
            let message = format!("`{}` takes an object argument", event.name);
            return Err(crate::hub::client::error_with_id(
                ErrorCode::BadRequest,
                message,
                id,
            ));
        }
    };
    match protocol::parse_request(&event.name, &mut map, limits) {
        Ok(request) => Ok(ClientFrame { id, request }),
        Err(mut err) => {
            err.id = id;
            Err(err)
        }
    }
}

impl SioApp for HubApp {
    fn serves(&self, nsp: &str) -> bool {
        nsp == NSP
    }

    fn on_connect(&mut self, nsp: &str, auth: Value, io: &mut SioIo<'_, Self>) {
        if self.core.is_authenticated() {
            let _ = io.refuse(nsp, "already connected", None);
            return;
        }
        let budget = self.core.env().auth.failures();
        if self.peer.is_some_and(|ip| budget.exhausted(ip)) {
            self.core.env().metrics.reject("auth_failures");
            let _ = io.refuse(
                nsp,
                "too many failed authentications from this address; try again later",
                Some(&json!({"code": "too_many_auth_failures"})),
            );
            io.close();
            return;
        }
        let since = match auth.get("since") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => protocol::parse_since(s).map(Some),
            Some(_) => Err(ClientError::new(
                ErrorCode::BadRequest,
                "`since` must be a string (the last inboxId seen)",
            )),
        };
        let since = match since {
            Ok(since) => since,
            Err(e) => {
                self.core.env().metrics.reject("bad_since");
                let data = json!({"code": "bad_request"});
                let _ = io.refuse(nsp, &e.message, Some(&data));
                return;
            }
        };
        match self.identity(&auth) {
            Ok(identity) => {
                self.core.set_identity(identity);
                self.core.set_inbox_since(since);
                // Every Socket.IO session is recoverable when the hub keeps sessions.
                let ask =
                    recovery_request(&auth).map_or(Ask::Start, |(pid, offset)| Ask::Continue {
                        pid: Some(pid),
                        offset,
                    });
                self.core.set_resume_ask(Some(ask));
                self.with_core(io, |core, io| core.connect(io));
            }
            Err(e) => {
                let counts = e.counts_as_failure();
                let metric = if counts {
                    "unauthorized"
                } else {
                    "expired_token"
                };
                self.core.env().metrics.reject(metric);
                let exhausted = counts && self.peer.is_some_and(|ip| budget.record(ip));
                let _ = io.refuse(nsp, &e.to_string(), Some(&json!({"code": "unauthorized"})));
                if exhausted {
                    io.close();
                }
            }
        }
    }

    fn on_event(&mut self, _nsp: &str, event: Event, io: &mut SioIo<'_, Self>) {
        let parsed = request(&event, &self.core.env().limits);
        let bytes = event.name.len()
            + event
                .args
                .iter()
                .map(|a| a.to_string().len())
                .sum::<usize>();
        self.with_core(io, |core, io| core.on_frame(parsed, bytes, io));
    }

    fn on_ping(&mut self) {
        self.pinged = self.core.proof_point();
    }

    fn on_pong(&mut self, io: &mut SioIo<'_, Self>) {
        if let Some(proof) = self.pinged.take() {
            self.with_core(io, |core, io| core.proved(proof, io));
        }
    }

    fn on_drained(&mut self, io: &mut SioIo<'_, Self>) {
        if self.core.holds_chunks() {
            self.with_core(io, |core, io| core.drained(io));
        }
    }

    fn on_disconnect(&mut self, _nsp: &str, reason: crate::transports::socketio::DisconnectReason) {
        use crate::{transports::engineio::CloseReason, transports::socketio::DisconnectReason};
        if reason == DisconnectReason::Closed(CloseReason::SlowConsumer) {
            // The engine counted it (`reason="socketio_queue"`); the user is known here.
            log::info!(
                "session {:x} of user {} dropped as a slow consumer: its Socket.IO queue passed \
                 the session queue bound",
                self.core.id(),
                self.core.user()
            );
        }
        if reason == DisconnectReason::Closed(CloseReason::WriteTimeout) {
            let metrics = &self.core.env().metrics;
            report_kick(
                metrics,
                self.core.id(),
                self.core.user(),
                KickReason::WriteTimeout,
            );
        }
        self.keep_for_recovery(reason);
        self.core.unregister();
    }
}

impl HubApp {
    /// Writes the session to Redis for recovery when its transport dropped or the client
    /// stopped reading (not when the client left, nor when the hub closed it for the client's
    /// fault; at shutdown it is).
    fn keep_for_recovery(&mut self, reason: crate::transports::socketio::DisconnectReason) {
        use crate::{transports::engineio::CloseReason, transports::socketio::DisconnectReason};
        let dropped = match reason {
            DisconnectReason::Closed(
                CloseReason::TransportClose
                | CloseReason::PingTimeout
                | CloseReason::ClientClose
                | CloseReason::SlowConsumer
                | CloseReason::WriteTimeout,
            ) => !self.closed_by_hub,
            DisconnectReason::Closed(CloseReason::ServerClose) => self.shutting_down,
            _ => false,
        };
        if dropped {
            self.core.keep_for_resume();
        }
    }
}

/// The connection as the core's I/O: replies become acks or events.
struct HubIo<'a, 'b> {
    io: &'a mut SioIo<'b, HubApp>,
    metrics: &'a crate::common::metrics::Metrics,
    close: bool,
    kick: Option<KickReason>,
    /// An early ping went out asking for this proof.
    pinged: Option<Proof>,
}

impl HubIo<'_, '_> {
    fn send(&mut self, text: String, kind: OutKind) {
        self.metrics.frames_out(kind, 1, text.len());
        // A full queue drops the connection inside the engine (slow consumer).
        let _ = self.io.send_shared(Outgoing::message(&text));
    }
}

impl HubIo<'_, '_> {}

impl ClientIo for HubIo<'_, '_> {
    fn reply(&mut self, reply: Reply, to: Option<Value>) {
        let json = match &reply {
            Reply::Connected { resumption, .. } => {
                let pid = resumption.token.as_deref();
                let _ = self.io.accept_with_pid(NSP, pid, resumption.unread);
                return;
            }
            Reply::Published { room, id } => {
                json!({"type": "published", "room": &**room, "id": id.to_string()}).to_string()
            }
            Reply::Marked { unread } => json!({"type": "marked", "unread": unread}).to_string(),
            other => match other.to_json(&None) {
                Some(json) => String::from_utf8(json).expect("JSON is UTF-8"),
                None => return,
            },
        };
        match to.as_ref().and_then(Value::as_u64) {
            Some(ack) => self.send(packet::ack_raw(NSP, ack, &[&json]), OutKind::Reply),
            None if matches!(reply, Reply::Published { .. } | Reply::Marked { .. }) => {}
            None => {
                // A `joined` with an offset carries it last too, like events, so that the
                // client library tracks it.
                let offset = match &reply {
                    Reply::Joined { info, .. } => info.offset.map(|o| format!("\"{o}\"")),
                    _ => None,
                };
                let args: Vec<&str> = std::iter::once(json.as_str())
                    .chain(offset.as_deref())
                    .collect();
                self.send(packet::event_raw(NSP, reply.name(), &args), OutKind::Reply)
            }
        }
    }

    fn error(&mut self, err: ClientError) {
        let body = protocol::error_json(&err, json!({}));
        let text = match err.id.as_ref().and_then(Value::as_u64) {
            Some(ack) => packet::ack_raw(NSP, ack, &[&json!({"error": body}).to_string()]),
            None => packet::event_raw(NSP, "error", &[&body.to_string()]),
        };
        self.send(text, OutKind::Error);
    }

    fn close(&mut self, _code: u16, _reason: &'static str) {
        self.close = true;
    }

    /// `CONNECT_ERROR {message, data: {code}}`, then the connection closes.
    fn refuse(&mut self, err: ClientError) {
        let data = json!({"code": err.code.as_str()});
        let _ = self.io.refuse(NSP, &err.message, Some(&data));
        self.close = true;
    }

    /// Writes a server event: the shared packet, or in a recoverable session a copy of it
    /// with the offset as last (string) argument.
    fn deliver(&mut self, event: &Arc<Outbound>, offset: Option<u64>) {
        let packet = match offset {
            None => event.socketio().clone(),
            Some(offset) => event.socketio().with_last_arg(&format!("\"{offset}\"")),
        };
        // A full queue drops the connection inside the engine (slow consumer).
        let _ = self.io.send_shared(packet);
    }

    fn kick(&mut self, reason: KickReason) {
        self.kick.get_or_insert(reason);
    }

    fn behind(&self) -> bool {
        self.io.is_behind()
    }

    fn ping(&mut self, proof: Proof) {
        if self.io.ping_now() {
            self.pinged = Some(proof);
        }
    }

    fn spawn(&mut self, step: Step) {
        let then = |app: &mut HubApp, resumed: Resumed, io: &mut SioIo<'_, HubApp>| {
            app.with_core(io, |core, io| core.resume(resumed, io))
        };
        self.io.spawn(step.into_future(), then);
    }

    fn address(&mut self) -> SessionAddr {
        SessionAddr::new(self.io.engine().address())
    }
}

impl Handler<Deliver> for SioSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let (sio, mut engine) = self.split(ctx);
        let (app, mut io) = sio.split(&mut engine);
        app.with_core(&mut io, |core, io| core.on_deliver(msg, io));
    }
}

impl Handler<Kick> for SioSession {
    type Result = ();

    /// The registry found the client's queue full (it counted and logged the kick).
    fn handle(&mut self, _: Kick, ctx: &mut Context<Self>) {
        self.drop_slow_consumer(ctx);
    }
}

impl Handler<Close> for SioSession {
    type Result = ();

    /// An Engine.IO close, whatever the code (shutdown).
    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        let (sio, mut engine) = self.split(ctx);
        let (app, _) = sio.split(&mut engine);
        app.shutting_down = true;
        self.close_by_server(ctx);
    }
}
