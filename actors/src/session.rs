//! The session actor: one per WebSocket connection. It owns the socket (through
//! [`crate::transport`]), authenticates, answers client frames, enforces the limits, and
//! writes the frames the registry delivers to its mailbox.

use std::{
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{fut, prelude::*};
use bytes::Bytes;
use log::debug;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::{
    auth::{Authenticator, Identity},
    limits::{Limits, TokenBucket},
    messages::{
        Close, Deliver, Join, Kick, Leave, Pending, Register, Scope, SessionId, SetTopic,
        Unregister,
    },
    metrics::{Metrics, OutKind},
    protocol::{self, ClientError, ClientFrame, ErrorCode, JoinInfo, Request, RoomId, ROOM_PREFIX},
    publisher::Publisher,
    registry::Registry,
    transport::{self, close, Pushed, Reader, Writer, WsEvent},
};

/// How long a closing session waits for the peer to close its side before dropping it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What every session of a shard shares.
pub struct SessionEnv {
    /// The registry shard of this worker thread.
    pub registry: Addr<Registry>,
    /// For chat publishes.
    pub publisher: Publisher,
    /// For first-frame `auth`.
    pub auth: Arc<Authenticator>,
    /// Limits to enforce.
    pub limits: Arc<Limits>,
    /// Metrics to count into.
    pub metrics: Arc<Metrics>,
    /// This instance's id, the prefix of session ids.
    pub instance_id: Arc<str>,
}

/// One WebSocket connection.
pub struct Session {
    id: SessionId,
    env: Arc<SessionEnv>,
    /// `None` until authenticated (first-frame `auth`).
    identity: Option<Arc<Identity>>,
    /// Moved into the actor context as a stream when it starts.
    reader: Option<Reader>,
    writer: Writer,
    rooms: Vec<RoomId>,
    topics: u8,
    rate: TokenBucket,
    errors: TokenBucket,
    last_seen: Instant,
    flush_scheduled: bool,
    awaiting_writable: bool,
    closing: bool,
    /// True while the registry knows this session (pending auth or registered).
    tracked: bool,
}

impl Session {
    /// A session over an upgraded socket. `leftover` holds bytes read past the upgrade
    /// request; `identity` is set when the upgrade request carried valid credentials.
    pub fn new(
        id: SessionId,
        env: Arc<SessionEnv>,
        socket: TcpStream,
        leftover: Vec<u8>,
        identity: Option<Identity>,
    ) -> Self {
        let limits = &env.limits;
        transport::prepare_socket(&socket, limits.socket_sndbuf);
        let io = Rc::new(socket);
        Session {
            id,
            reader: Some(Reader::new(io.clone(), leftover, limits.max_frame_bytes)),
            writer: Writer::new(io, limits.queue_bytes),
            identity: identity.map(Arc::new),
            rooms: Vec::new(),
            topics: 0,
            rate: TokenBucket::full(limits.rate_burst),
            errors: TokenBucket::full(limits.error_burst),
            last_seen: Instant::now(),
            flush_scheduled: false,
            awaiting_writable: false,
            closing: false,
            tracked: false,
            env,
        }
    }

    // ---- writing --------------------------------------------------------------------------

    /// Queues an encoded frame and schedules one flush for everything queued in this turn.
    fn enqueue(&mut self, frame: Bytes, ctx: &mut Context<Self>) {
        match self.writer.push(frame) {
            Pushed::Queued => self.schedule_flush(ctx),
            Pushed::Overflow => {
                debug!("session {}: write queue full, dropping", self.id);
                self.env.metrics.slow_consumer_kicks.inc();
                self.abort(ctx);
            }
        }
    }

    /// Sends a reply or error frame (counted here; fan-out is counted by the registry).
    fn reply(&mut self, json: Vec<u8>, kind: OutKind, ctx: &mut Context<Self>) {
        self.env.metrics.frames_out(kind, 1, json.len());
        self.enqueue(transport::text_frame(&json), ctx);
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled || self.awaiting_writable {
            return;
        }
        self.flush_scheduled = true;
        // Runs after the mailbox is drained in this poll: one write for a burst of frames.
        ctx.spawn(fut::ready(()).map(|_, act: &mut Self, ctx| {
            act.flush_scheduled = false;
            act.flush(ctx);
        }));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        match self.writer.flush() {
            Ok(true) => {}
            Ok(false) => self.wait_writable(ctx),
            Err(e) => {
                debug!("session {}: write failed: {e}", self.id);
                self.abort(ctx);
            }
        }
    }

    fn wait_writable(&mut self, ctx: &mut Context<Self>) {
        if self.awaiting_writable {
            return;
        }
        self.awaiting_writable = true;
        let io = self.writer.socket();
        ctx.spawn(
            fut::wrap_future::<_, Self>(async move { io.writable().await }).map(|res, act, ctx| {
                act.awaiting_writable = false;
                match res {
                    Ok(()) => act.flush(ctx),
                    Err(_) => act.abort(ctx),
                }
            }),
        );
    }

    // ---- closing --------------------------------------------------------------------------

    fn unregister(&mut self) {
        if self.tracked {
            self.tracked = false;
            self.env.registry.do_send(Unregister { id: self.id });
        }
    }

    /// Sends a close frame, half-closes, and lingers briefly for the peer's side.
    fn close(&mut self, ctx: &mut Context<Self>, code: u16, reason: &'static str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.unregister();
        let sent = self.writer.push(transport::close_frame(code, reason)) == Pushed::Queued
            && matches!(self.writer.flush(), Ok(true));
        if !sent {
            self.abort(ctx);
            return;
        }
        self.writer.shutdown_write();
        ctx.run_later(CLOSE_LINGER, |_, ctx| ctx.stop());
    }

    /// Drops the connection at the socket (reset) and stops.
    fn abort(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        self.unregister();
        self.writer.abort();
        ctx.stop();
    }

    // ---- client frames --------------------------------------------------------------------

    fn reject(&mut self, err: ClientError, ctx: &mut Context<Self>) {
        self.env.metrics.client_error(err.code);
        self.reply(protocol::error_frame(&err), OutKind::Error, ctx);
        let limits = &self.env.limits;
        if !self.errors.take(Instant::now(), 1.0, limits.error_burst) {
            self.env.metrics.policy_closes.inc();
            self.close(ctx, close::POLICY, "too many bad or rate-limited frames");
        }
    }

    fn on_text(&mut self, text: String, ctx: &mut Context<Self>) {
        let limits = self.env.limits.clone();
        let parsed = protocol::parse_client_frame(&text, &limits);
        let label = parsed.as_ref().map_or("invalid", |f| f.request.label());
        self.env.metrics.frame_in(label, text.len());
        if !self
            .rate
            .take(Instant::now(), limits.rate_per_sec, limits.rate_burst)
        {
            self.env.metrics.rate_limited.inc();
            let mut err = ClientError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many frames: {} per second, burst {}",
                    limits.rate_per_sec, limits.rate_burst
                ),
            );
            err.id = parsed.ok().and_then(|f| f.id);
            return self.reject(err, ctx);
        }
        match parsed {
            Ok(frame) => self.on_request(frame, ctx),
            Err(err) => self.reject(err, ctx),
        }
    }

    fn on_request(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        let ClientFrame { id, request } = frame;
        let Some(identity) = self.identity.clone() else {
            return self.authenticate(request, id, ctx);
        };
        match request {
            Request::Auth { .. } => self.reject(
                error_with_id(ErrorCode::BadRequest, "already authenticated", id),
                ctx,
            ),
            Request::Ping => self.reply(protocol::pong_frame(&id), OutKind::Reply, ctx),
            Request::JoinRoom { room, since } => self.join(room, since, id, ctx),
            Request::LeaveRoom { room } => {
                if !self.rooms.contains(&room) {
                    return self.reject(not_in_room(&room, id), ctx);
                }
                self.rooms.retain(|r| *r != room);
                self.env.registry.do_send(Leave {
                    id: self.id,
                    room: room.clone(),
                });
                self.reply(protocol::left_frame(&room, &id), OutKind::Reply, ctx);
            }
            Request::ChatMessage { room, message } => {
                if !self.rooms.contains(&room) {
                    return self.reject(not_in_room(&room, id), ctx);
                }
                let payload =
                    protocol::chat_payload(&room, &identity.user_id, &identity.name, &message);
                self.publish(format!("{ROOM_PREFIX}{room}"), payload, id, ctx);
            }
            Request::Subscribe(topic) => {
                if topic == protocol::Topic::Analytics && !identity.admin {
                    return self.reject(
                        error_with_id(
                            ErrorCode::Forbidden,
                            "the analytics topic needs a token with role admin",
                            id,
                        ),
                        ctx,
                    );
                }
                self.set_topic(topic, true, id, ctx);
            }
            Request::Unsubscribe(topic) => self.set_topic(topic, false, id, ctx),
        }
    }

    /// Handles a frame before authentication: only `auth` is accepted.
    fn authenticate(&mut self, request: Request, id: Option<Value>, ctx: &mut Context<Self>) {
        let Request::Auth { token } = request else {
            return self.reject(
                error_with_id(
                    ErrorCode::Unauthorized,
                    "authenticate first with {\"type\":\"auth\",\"token\":...}",
                    id,
                ),
                ctx,
            );
        };
        match self.env.auth.verify_token(&token) {
            Ok(identity) => {
                self.identity = Some(Arc::new(identity));
                self.register(ctx);
            }
            Err(e) => {
                self.env.metrics.client_error(ErrorCode::Unauthorized);
                let err = error_with_id(ErrorCode::Unauthorized, e.to_string(), id);
                self.reply(protocol::error_frame(&err), OutKind::Error, ctx);
                self.close(ctx, close::UNAUTHORIZED, "invalid token");
            }
        }
    }

    /// Registers with the registry, then says `connected`. Holds every other event meanwhile
    /// so that `connected` is the first frame.
    fn register(&mut self, ctx: &mut Context<Self>) {
        let Some(identity) = self.identity.clone() else {
            return;
        };
        let request = self.env.registry.send(Register {
            id: self.id,
            identity: identity.clone(),
            addr: ctx.address(),
        });
        ctx.wait(
            fut::wrap_future::<_, Self>(request).map(move |res, act, ctx| {
                if res.is_err() {
                    return act.close(ctx, close::INTERNAL, "registry unavailable");
                }
                act.tracked = true;
                let session_id = format!("{}-{:x}", act.env.instance_id, act.id);
                let frame = protocol::connected_frame(&session_id, &identity.user_id);
                act.reply(frame, OutKind::Reply, ctx);
            }),
        );
    }

    fn join(
        &mut self,
        room: RoomId,
        _since: Option<String>,
        id: Option<Value>,
        ctx: &mut Context<Self>,
    ) {
        let max = self.env.limits.max_rooms_per_session;
        if !self.rooms.contains(&room) && self.rooms.len() >= max {
            let msg = format!("a session may be in at most {max} rooms");
            return self.reject(error_with_id(ErrorCode::Forbidden, msg, id), ctx);
        }
        let request = self.env.registry.send(Join {
            id: self.id,
            room: room.clone(),
        });
        ctx.wait(
            fut::wrap_future::<_, Self>(request).map(move |res, act, ctx| match res {
                Ok(members) => {
                    if !act.rooms.contains(&room) {
                        act.rooms.push(room.clone());
                    }
                    let info = JoinInfo {
                        members,
                        ..JoinInfo::default()
                    };
                    act.reply(
                        protocol::joined_frame(&room, &info, &id),
                        OutKind::Reply,
                        ctx,
                    );
                }
                Err(_) => act.reject(
                    error_with_id(ErrorCode::Unavailable, "registry unavailable", id),
                    ctx,
                ),
            }),
        );
    }

    fn set_topic(
        &mut self,
        topic: protocol::Topic,
        on: bool,
        id: Option<Value>,
        ctx: &mut Context<Self>,
    ) {
        if on {
            self.topics |= topic.bit();
        } else {
            self.topics &= !topic.bit();
        }
        self.env.registry.do_send(SetTopic {
            id: self.id,
            topic,
            on,
        });
        self.reply(protocol::topic_frame(on, topic, &id), OutKind::Reply, ctx);
    }

    fn publish(
        &mut self,
        channel: String,
        payload: Vec<u8>,
        id: Option<Value>,
        ctx: &mut Context<Self>,
    ) {
        let publisher = self.env.publisher.clone();
        let publish = async move { publisher.publish(&channel, &payload).await };
        ctx.spawn(
            fut::wrap_future::<_, Self>(publish).map(move |res, act, ctx| {
                if let Err(e) = res {
                    debug!("session {}: {e}", act.id);
                    let err = error_with_id(
                        ErrorCode::Unavailable,
                        "the message could not be published; try again",
                        id,
                    );
                    act.reject(err, ctx);
                }
            }),
        );
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if self.last_seen.elapsed() > self.env.limits.client_timeout {
            return self.close(ctx, close::NORMAL, "idle timeout");
        }
        self.enqueue(transport::ping_frame(), ctx);
    }
}

fn error_with_id(
    code: ErrorCode,
    message: impl Into<std::borrow::Cow<'static, str>>,
    id: Option<Value>,
) -> ClientError {
    let mut err = ClientError::new(code, message);
    err.id = id;
    err
}

fn not_in_room(room: &str, id: Option<Value>) -> ClientError {
    error_with_id(
        ErrorCode::NotInRoom,
        format!("not in room `{room}`; join it first"),
        id,
    )
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.env.metrics.connections.inc();
        ctx.set_mailbox_capacity(self.env.limits.mailbox_frames);
        if let Some(reader) = self.reader.take() {
            ctx.add_stream(reader);
        }
        ctx.run_interval(self.env.limits.heartbeat, |act, ctx| act.heartbeat(ctx));
        if self.identity.is_some() {
            self.register(ctx);
        } else {
            self.tracked = true;
            self.env.registry.do_send(Pending {
                id: self.id,
                addr: ctx.address(),
            });
            ctx.run_later(self.env.limits.auth_timeout, |act, ctx| {
                if act.identity.is_none() {
                    act.close(ctx, close::UNAUTHORIZED, "authentication timeout");
                }
            });
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.unregister();
        self.env.metrics.connections.dec();
    }
}

impl StreamHandler<WsEvent> for Session {
    fn handle(&mut self, event: WsEvent, ctx: &mut Context<Self>) {
        self.last_seen = Instant::now();
        if self.closing {
            return;
        }
        match event {
            WsEvent::Text(text) => self.on_text(text, ctx),
            WsEvent::Binary(len) => {
                self.env.metrics.frame_in("binary", len);
                let err = ClientError::new(
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text frames",
                );
                self.reject(err, ctx);
            }
            WsEvent::Ping(payload) => self.enqueue(transport::pong_frame(&payload), ctx),
            WsEvent::Pong => {}
            WsEvent::Close(_) => self.close(ctx, close::NORMAL, ""),
            WsEvent::Violation(code, reason) => self.close(ctx, code, reason),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let wanted = !self.closing
            && match &msg.scope {
                Scope::User => true,
                Scope::Room(room) => self.rooms.contains(room),
                Scope::Topic(topic) => self.topics & topic.bit() != 0,
            };
        if wanted {
            self.enqueue(msg.frame, ctx);
        } else {
            self.env.metrics.dropped_deliveries.inc();
        }
    }
}

impl Handler<Kick> for Session {
    type Result = ();

    /// The registry found the mailbox full and already unregistered and counted the session.
    fn handle(&mut self, _: Kick, ctx: &mut Context<Self>) {
        self.tracked = false;
        if self.writer.is_empty() {
            self.close(ctx, close::TRY_AGAIN_LATER, "slow consumer");
        } else {
            self.abort(ctx);
        }
    }
}

impl Handler<Close> for Session {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        self.close(ctx, msg.code, msg.reason);
    }
}
