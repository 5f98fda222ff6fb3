//! What the endpoint and the layer above send to a session actor.

use actix::prelude::*;
use bytes::Bytes;
use log::debug;
use tokio::sync::oneshot;

use super::{Ctx, EngineHandler, EngineSocket, Transport};
use crate::transports::engineio::{
    close::CloseReason,
    packet::{self, Outgoing},
    request::{ErrorCode, HttpReply},
};

/// A long-polling `GET`: answered with the queued packets, at once or when some arrive.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PollGet {
    pub reply: oneshot::Sender<HttpReply>,
}

impl<H: EngineHandler> Handler<PollGet> for EngineSocket<H> {
    type Result = ();

    fn handle(&mut self, msg: PollGet, ctx: &mut Ctx<H>) {
        if matches!(&self.core.transport, Transport::Polling(p) if p.get.is_none()) {
            // What the handler held while no poll was parked goes in this one's answer.
            self.drained(ctx);
        }
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
