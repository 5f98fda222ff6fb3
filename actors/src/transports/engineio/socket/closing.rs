//! Closing a session (the close packet and frame its transport gets, then the actor stops),
//! dropping it at once, and dropping it as a slow consumer.

use actix::{fut, prelude::*};
use bytes::Bytes;
use log::debug;

use super::{Core, Ctx, EngineHandler, EngineSocket, Transport};
use crate::transports::{
    engineio::{close::CloseReason, packet, request::HttpReply},
    transport::{self, Pushed},
};

impl Core {
    /// Closes the session: the parked poll gets the close packet (a noop when the client
    /// closed; with no poll parked, the next poll within `close_linger` gets that noop), a
    /// WebSocket gets the close packet and a close frame, then the actor stops.
    pub(super) fn close<H: EngineHandler>(&mut self, reason: CloseReason, ctx: &mut Ctx<H>) {
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
    pub(super) fn abort<H: EngineHandler>(&mut self, reason: CloseReason, ctx: &mut Ctx<H>) {
        self.start_closing(reason, ctx);
        self.drop_probe(ctx);
        if let Transport::WebSocket(ws) = &mut self.transport {
            ws.writer.abort();
        }
        ctx.stop();
    }

    /// The session could not keep up: counted and dropped.
    pub(super) fn kick<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        if self.closing.is_none() {
            debug!("engine.io {}: queue full, dropping", self.sid);
            self.env.metrics.slow_consumer.inc();
            self.abort(CloseReason::SlowConsumer, ctx);
        }
    }

    /// Marks the session closing (false if it already was) and tells the handler after the
    /// current turn.
    pub(super) fn start_closing<H: EngineHandler>(
        &mut self,
        reason: CloseReason,
        ctx: &mut Ctx<H>,
    ) -> bool {
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
