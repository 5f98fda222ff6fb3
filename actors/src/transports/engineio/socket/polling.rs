//! Long-polling: the parked `GET` answered with what is queued, one `POST` at a time.

use actix::prelude::*;
use bytes::Bytes;
use log::debug;
use tokio::sync::oneshot;

use super::{Core, Ctx, EngineHandler, Polling, Transport};
use crate::transports::engineio::{
    close::CloseReason,
    packet::{self, Outgoing},
    request::{ErrorCode, HttpReply},
};

impl Core {
    pub(super) fn on_poll<H: EngineHandler>(
        &mut self,
        reply: oneshot::Sender<HttpReply>,
        ctx: &mut Ctx<H>,
    ) {
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
            p.answer_get();
        }
    }

    pub(super) fn on_post_begin<H: EngineHandler>(
        &mut self,
        ctx: &mut Ctx<H>,
    ) -> Result<(), HttpReply> {
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
}

impl Polling {
    /// Bookkeeping cost of one queued packet, on top of its bytes (so that many tiny packets
    /// also hit the queue limit).
    const PACKET_COST: usize = 64;

    /// Queues a packet; false when it does not fit in `limit` (one packet always fits).
    pub(super) fn queue(&mut self, out: Outgoing, limit: usize) -> bool {
        let cost = out.polling_len() + Self::PACKET_COST;
        if !self.queue.is_empty() && self.queued + cost > limit {
            return false;
        }
        self.queued += cost;
        self.queue.push_back(out);
        true
    }

    /// Answers the parked poll with everything queued; keeps the packets if the poll is gone.
    pub(super) fn answer_get(&mut self) {
        let Some(get) = self.get.take() else { return };
        if self.queue.is_empty() {
            self.get = Some(get);
            return;
        }
        let body = packet::encode_payload(self.queue.iter());
        if get.send(HttpReply::text(body)).is_ok() {
            self.queue.clear();
            self.queue.shrink_to(4);
            self.queued = 0;
        }
    }
}
