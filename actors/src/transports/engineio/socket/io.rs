//! [`EngineIo`]: what an [`EngineHandler`] uses to act on its session.

use std::{future::Future, time::Duration};

use actix::{fut, prelude::*};

use super::{EngineHandler, EngineIo, EngineSocket, SendError};
use crate::transports::engineio::{close::CloseReason, packet::Outgoing, request::TransportKind};

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

    /// True while packets wait that the client has not taken (see
    /// [`EngineHandler::on_drained`]).
    pub fn is_behind(&self) -> bool {
        self.core.is_behind()
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
