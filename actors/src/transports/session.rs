//! The native session actor: one per `/ws` WebSocket connection. It owns the socket (through
//! [`crate::transports::transport`]), hosts the protocol-independent [`ClientCore`] (requests, limits,
//! rooms), encodes its replies as native JSON frames, and writes the events the registry
//! delivers to its mailbox.
//!
//! A resumable session (the client asked with `resume`, [`crate::hub::client::Ask`])
//! writes each event as a copy of the shared frame with its `"offset"` appended. Its Pings
//! carry what the client is asked to prove ([`Proof`]): the Pong echoing one trims what the
//! session keeps for resume and lets what waited for it go out (a Pong with any other payload
//! proves nothing). It is kept in Redis when the connection drops without a close frame from
//! the client, when the client stops answering (idle timeout) or reading (a slow consumer:
//! queue bound or write timeout), or at shutdown.

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
    common::auth::Identity,
    common::limits::ConnectionPermit,
    common::metrics::{Metrics, OutKind},
    common::outbound::Outbound,
    common::queued::KickReason,
    features::session_resume::Proof,
    hub::client::{Ask, ClientCore, ClientIo, Reply, Resumed, SessionEnv, Step},
    hub::registry::report_kick,
    messages::{Close, Deliver, Kick, SessionAddr, SessionId},
    transports::heartbeat::{self, Heartbeat},
    transports::transport::{self, close, Pushed, Reader, Writer, WsEvent},
};

use hub_wire::protocol::{self, ClientError, ErrorCode};

/// How long a closing session waits for the peer to close its side before dropping it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// One native WebSocket connection.
pub struct Session {
    core: ClientCore,
    metrics: Arc<Metrics>,
    /// Moved into the actor context as a stream when it starts.
    reader: Option<Reader>,
    writer: Writer,
    last_seen: Instant,
    flush_scheduled: bool,
    awaiting_writable: bool,
    /// A write-timeout check is scheduled.
    stall_check: bool,
    closing: bool,
    /// The connection's slot in the connection limits, released with the session.
    _permit: Option<ConnectionPermit>,
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
        permit: Option<ConnectionPermit>,
    ) -> Self {
        let limits = env.limits.clone();
        transport::prepare_socket(&socket, limits.socket_sndbuf);
        let io = Rc::new(socket);
        let core = ClientCore::new(id, env.clone(), identity);
        Session {
            metrics: env.metrics.clone(),
            reader: Some(Reader::new(io.clone(), leftover, limits.max_frame_bytes)),
            writer: Writer::sharing(io, core.queued().clone()),
            core,
            last_seen: Instant::now(),
            flush_scheduled: false,
            awaiting_writable: false,
            stall_check: false,
            closing: false,
            _permit: permit,
        }
    }

    /// Replays the notifications sent after `since` (an `inboxId`) once registered.
    pub fn set_inbox_since(&mut self, since: Option<protocol::MessageId>) {
        self.core.set_inbox_since(since);
    }

    /// The client's address (behind trusted proxies).
    pub fn set_peer(&mut self, peer: Option<std::net::IpAddr>) {
        self.core.set_peer(peer);
    }

    /// What the client asked of session resume in its upgrade request.
    pub fn set_resume_ask(&mut self, ask: Option<Ask>) {
        self.core.set_resume_ask(ask);
    }

    /// The connection dropped without a goodbye: the session is kept for resume (when it is
    /// resumable). Not after the hub or the client started closing.
    fn dropped(&mut self) {
        if !self.closing {
            self.core.keep_for_resume();
        }
    }

    /// Runs `f` on the core with this session as its I/O.
    fn with_core(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut ClientCore, &mut NativeIo<'_>),
    ) {
        let Session {
            core,
            metrics,
            writer,
            flush_scheduled,
            awaiting_writable,
            ..
        } = self;
        let mut io = NativeIo {
            metrics,
            writer,
            flush_scheduled,
            awaiting_writable,
            closing: None,
            kick: None,
            ctx,
        };
        f(core, &mut io);
        let (closing, kick) = (io.closing, io.kick);
        if let Some(reason) = kick {
            self.kick_self(ctx, reason);
        } else if let Some((code, reason)) = closing {
            self.close(ctx, code, reason);
        }
    }

    // ---- writing --------------------------------------------------------------------------

    /// Queues an encoded frame and schedules one flush for everything queued in this turn.
    fn enqueue(&mut self, frame: Bytes, ctx: &mut Context<Self>) {
        match self.writer.push(frame) {
            Pushed::Queued => {
                schedule_flush(&mut self.flush_scheduled, self.awaiting_writable, ctx)
            }
            Pushed::Overflow => self.kick_self(ctx, KickReason::QueueFull),
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        match self.writer.flush() {
            Ok(true) => {
                if self.core.holds_chunks() && !self.closing {
                    self.with_core(ctx, |core, io| core.drained(io));
                }
            }
            Ok(false) => self.wait_writable(ctx),
            Err(e) => {
                debug!("session {}: write failed: {e}", self.core.id());
                self.dropped();
                self.abort(ctx);
            }
        }
    }

    fn wait_writable(&mut self, ctx: &mut Context<Self>) {
        if !self.stall_check {
            let timeout = self.core.env().limits.write_timeout;
            self.check_stall_in(timeout, ctx);
        }
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
                    Err(_) => {
                        act.dropped();
                        act.abort(ctx)
                    }
                }
            }),
        );
    }

    // ---- closing --------------------------------------------------------------------------

    /// Sends a close frame, half-closes, and lingers briefly for the peer's side.
    fn close(&mut self, ctx: &mut Context<Self>, code: u16, reason: &'static str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.core.unregister();
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
        self.core.unregister();
        self.writer.abort();
        ctx.stop();
    }

    /// Checks after `delay` whether the socket has taken nothing for the write timeout.
    fn check_stall_in(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        self.stall_check = true;
        ctx.run_later(delay, |act, ctx| {
            act.stall_check = false;
            let timeout = act.core.env().limits.write_timeout;
            match act.writer.stalled_for() {
                Some(stalled) if stalled >= timeout => act.kick_self(ctx, KickReason::WriteTimeout),
                Some(stalled) => act.check_stall_in(timeout - stalled, ctx),
                None => {}
            }
        });
    }

    /// The client is a slow consumer (its queue passed the bound, or its socket stalled):
    /// a transport reason, so the session is kept for resume.
    fn kick_self(&mut self, ctx: &mut Context<Self>, reason: KickReason) {
        if self.closing {
            return;
        }
        report_kick(&self.metrics, self.core.id(), self.core.user(), reason);
        self.dropped();
        self.abort(ctx);
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if self.last_seen.elapsed() > self.core.env().limits.client_timeout {
            self.dropped();
            return self.close(ctx, close::NORMAL, "idle timeout");
        }
        let ping = match self.core.proof_point() {
            Some(proof) => transport::ping_frame_with(&proof.to_bytes()),
            None => transport::ping_frame(),
        };
        self.enqueue(ping, ctx);
    }
}

fn schedule_flush(flush_scheduled: &mut bool, awaiting_writable: bool, ctx: &mut Context<Session>) {
    if *flush_scheduled || awaiting_writable {
        return;
    }
    *flush_scheduled = true;
    // Runs after the mailbox is drained in this poll: one write for a burst of frames.
    ctx.spawn(fut::ready(()).map(|_, act: &mut Session, ctx| {
        act.flush_scheduled = false;
        act.flush(ctx);
    }));
}

/// The session as the core's I/O: replies become native JSON frames.
struct NativeIo<'a> {
    metrics: &'a Metrics,
    writer: &'a mut Writer,
    flush_scheduled: &'a mut bool,
    awaiting_writable: &'a mut bool,
    /// A close the core asked for, carried out once it returns.
    closing: Option<(u16, &'static str)>,
    /// A kick (slow consumer), carried out once the core returns.
    kick: Option<KickReason>,
    ctx: &'a mut Context<Session>,
}

impl NativeIo<'_> {
    fn send_json(&mut self, json: Vec<u8>, kind: OutKind) {
        self.metrics.frames_out(kind, 1, json.len());
        self.push(transport::text_frame(&json));
    }

    fn push(&mut self, frame: Bytes) {
        match self.writer.push(frame) {
            Pushed::Queued => {
                schedule_flush(self.flush_scheduled, *self.awaiting_writable, self.ctx)
            }
            Pushed::Overflow => {
                self.kick.get_or_insert(KickReason::QueueFull);
            }
        }
    }
}

impl ClientIo for NativeIo<'_> {
    fn reply(&mut self, reply: Reply, to: Option<Value>) {
        if let Some(json) = reply.to_json(&to) {
            self.send_json(json, OutKind::Reply);
        }
    }

    fn error(&mut self, err: ClientError) {
        self.send_json(protocol::error_frame(&err), OutKind::Error);
    }

    fn close(&mut self, code: u16, reason: &'static str) {
        self.closing.get_or_insert((code, reason));
    }

    fn refuse(&mut self, err: ClientError) {
        self.error(err);
        self.close(close::UNAUTHORIZED, "token revoked");
    }

    /// Writes an event: the shared frame, or in a resumable session a copy of it with
    /// `"offset"` as last key.
    fn deliver(&mut self, event: &Arc<Outbound>, offset: Option<u64>) {
        if self.kick.is_none() {
            self.push(match offset {
                None => event.native().clone(),
                Some(offset) => event.native_with_offset(offset),
            });
        }
    }

    fn kick(&mut self, reason: KickReason) {
        self.kick.get_or_insert(reason);
    }

    fn behind(&self) -> bool {
        self.writer.is_behind()
    }

    fn ping(&mut self, proof: Proof) {
        self.push(transport::ping_frame_with(&proof.to_bytes()));
    }

    fn spawn(&mut self, step: Step) {
        let work =
            fut::wrap_future::<_, Session>(step.into_future()).map(|resumed: Resumed, act, ctx| {
                act.with_core(ctx, |core, io| core.resume(resumed, io))
            });
        self.ctx.spawn(work);
    }

    fn address(&mut self) -> SessionAddr {
        SessionAddr::new(self.ctx.address())
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let env = self.core.env().clone();
        env.metrics.connections.inc();
        ctx.set_mailbox_capacity(env.limits.mailbox_frames);
        if let Some(reader) = self.reader.take() {
            ctx.add_stream(reader);
        }
        heartbeat::join(ctx.address().downgrade(), env.limits.heartbeat);
        if self.core.is_authenticated() {
            self.with_core(ctx, |core, io| core.connect(io));
        } else {
            self.core.track_pending(SessionAddr::new(ctx.address()));
            ctx.run_later(env.limits.auth_timeout, |act, ctx| {
                if !act.core.is_authenticated() {
                    act.close(ctx, close::UNAUTHORIZED, "authentication timeout");
                }
            });
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.core.unregister();
        self.metrics.connections.dec();
    }
}

impl StreamHandler<WsEvent> for Session {
    fn handle(&mut self, event: WsEvent, ctx: &mut Context<Self>) {
        self.last_seen = Instant::now();
        if self.closing {
            return;
        }
        match event {
            WsEvent::Text(text) => {
                let parsed = protocol::parse_client_frame(&text, &self.core.env().limits);
                self.with_core(ctx, |core, io| core.on_frame(parsed, text.len(), io));
            }
            WsEvent::Binary(len) => {
                let err = ClientError::new(
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text frames",
                );
                self.metrics.frame_in("binary", len);
                self.with_core(ctx, |core, io| core.reject(err, io));
            }
            WsEvent::Ping(payload) => self.enqueue(transport::pong_frame(&payload), ctx),
            WsEvent::Pong(payload) => {
                if let Some(proof) = Proof::parse(&payload) {
                    self.with_core(ctx, |core, io| core.proved(proof, io));
                }
            }
            WsEvent::Close(_) => self.close(ctx, close::NORMAL, ""),
            WsEvent::Violation(code, reason) => self.close(ctx, code, reason),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.dropped();
        ctx.stop();
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if self.closing {
            self.core.queued().sub(msg.bytes);
            let n = 1 + msg.more.len();
            self.metrics.dropped_deliveries.inc_by(n as u64);
            return;
        }
        self.with_core(ctx, |core, io| core.on_deliver(msg, io));
    }
}

impl Handler<Heartbeat> for Session {
    type Result = ();

    fn handle(&mut self, _: Heartbeat, ctx: &mut Context<Self>) {
        self.heartbeat(ctx);
    }
}

impl Handler<Kick> for Session {
    type Result = ();

    /// The registry found the client's queue full and already unregistered, counted and
    /// logged the session; it is kept for resume (a transport reason).
    fn handle(&mut self, _: Kick, ctx: &mut Context<Self>) {
        self.dropped();
        self.core.forget_registration();
        if self.writer.is_empty() {
            self.close(ctx, close::TRY_AGAIN_LATER, "slow consumer");
        } else {
            self.abort(ctx);
        }
    }
}

impl Handler<Close> for Session {
    type Result = ();

    /// Shutdown: a resumable session is kept, so that a rolling restart resumes.
    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        self.dropped();
        self.close(ctx, msg.code, msg.reason);
    }
}
