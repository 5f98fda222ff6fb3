//! The server-sent heartbeat: a ping one `pingInterval` after the session opened (then after
//! each pong), and the session closed when no pong arrives within `pingTimeout`.

use std::time::Instant;

use actix::prelude::*;

use super::{Core, Ctx, EngineHandler};
use crate::transports::engineio::{close::CloseReason, packet};

impl Core {
    /// Schedules the next ping one `pingInterval` after `from`, and the pong deadline one
    /// `pingTimeout` after that ping.
    pub(super) fn schedule_ping<H: EngineHandler>(&mut self, from: Instant, ctx: &mut Ctx<H>) {
        let config = &self.env.config;
        let ping_at = from + config.ping_interval;
        self.pong_deadline = ping_at + config.ping_timeout;
        let delay = ping_at.saturating_duration_since(Instant::now());
        self.heartbeat = Some(ctx.run_later(delay, |act, ctx| act.core.ping(ctx)));
    }

    pub(super) fn ping<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        if self.closing.is_some() {
            return;
        }
        self.awaiting_pong = true;
        let timeout = self.pong_deadline.saturating_duration_since(Instant::now());
        self.heartbeat = Some(ctx.run_later(timeout, |act, ctx| {
            act.core.awaiting_pong = false;
            act.core.close(CloseReason::PingTimeout, ctx);
        }));
        let _ = self.send(packet::ping(), ctx);
    }

    /// Closes the session if its pong deadline has passed (its timer may not have run yet):
    /// a request that arrives after `pingInterval + pingTimeout` without a pong finds the
    /// session closed, whatever the timers' latency.
    pub(super) fn check_pong_deadline<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        if self.closing.is_none() && Instant::now() >= self.pong_deadline {
            self.awaiting_pong = false;
            self.close(CloseReason::PingTimeout, ctx);
        }
    }

    /// True when it answered a ping.
    pub(super) fn on_pong<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) -> bool {
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
}
