//! A session's WebSocket: taking over the upgraded socket, writing to it (flushes, waiting
//! for it to be writable, the write timeout), the messages read from it, and the upgrade from
//! long-polling through a probing WebSocket.

use std::{rc::Rc, time::Duration};

use actix::{fut, prelude::*};
use bytes::Bytes;
use futures_util::StreamExt;
use log::debug;
use tokio::net::TcpStream;

use super::{Core, Ctx, EngineHandler, EngineSocket, Probe, Transport, Ws};
use crate::transports::{
    engineio::{
        close::CloseReason,
        packet::{self, Packet},
        request::{ErrorCode, HttpReply, TransportKind},
    },
    transport::{self, close, BinaryReader, Pushed, Writer, WsEvent, WsMessage},
};

impl<H: EngineHandler> EngineSocket<H> {
    pub(super) fn on_ws_message(&mut self, gen: u32, message: WsMessage, ctx: &mut Ctx<H>) {
        match message {
            WsMessage::Binary(data) => self.on_packet(Packet::Binary(Bytes::from(data)), ctx),
            WsMessage::Event(WsEvent::Text(text)) => match packet::decode_text(&text) {
                Ok(packet) => self.on_packet(packet, ctx),
                Err(e) => {
                    debug!("engine.io {}: {e}", self.core.sid);
                    self.core.close(CloseReason::ParseError, ctx);
                }
            },
            WsMessage::Event(WsEvent::Ping(payload)) => {
                self.core.push_ws(gen, transport::pong_frame(&payload), ctx);
            }
            WsMessage::Event(WsEvent::Pong(_) | WsEvent::Binary(_)) => {}
            WsMessage::Event(WsEvent::Close(_)) => {
                self.core.close(CloseReason::TransportClose, ctx)
            }
            WsMessage::Event(WsEvent::Violation(code, _)) => {
                let reason = if code == close::TOO_BIG {
                    CloseReason::PayloadTooLarge
                } else {
                    CloseReason::ParseError
                };
                self.core.close(reason, ctx);
            }
        }
    }
}

impl Core {
    pub(super) fn ws_mut(&mut self, gen: u32) -> Option<&mut Ws> {
        match &mut self.transport {
            Transport::WebSocket(ws) if ws.gen == gen => Some(ws),
            _ => self
                .probe
                .as_mut()
                .map(|p| &mut p.ws)
                .filter(|ws| ws.gen == gen),
        }
    }

    pub(super) fn is_current(&self, gen: u32) -> bool {
        matches!(&self.transport, Transport::WebSocket(ws) if ws.gen == gen)
    }

    /// Queues a frame on WebSocket `gen` and schedules a flush; false (and the session or the
    /// probe dropped) when its queue is full.
    pub(super) fn push_ws<H: EngineHandler>(
        &mut self,
        gen: u32,
        frame: Bytes,
        ctx: &mut Ctx<H>,
    ) -> bool {
        let Some(ws) = self.ws_mut(gen) else {
            return false;
        };
        if ws.writer.push(frame) == Pushed::Overflow {
            if self.is_current(gen) {
                self.kick(ctx);
            } else {
                self.drop_probe(ctx);
            }
            return false;
        }
        if !ws.flush_scheduled && !ws.awaiting_writable {
            ws.flush_scheduled = true;
            ctx.spawn(
                fut::ready(()).map(move |_, act: &mut EngineSocket<H>, ctx| {
                    if let Some(ws) = act.core.ws_mut(gen) {
                        ws.flush_scheduled = false;
                    }
                    if act.core.flush_ws(gen, ctx) {
                        act.drained(ctx);
                    }
                }),
            );
        }
        true
    }

    /// Writes what WebSocket `gen` holds; true when the session's current WebSocket took
    /// everything.
    pub(super) fn flush_ws<H: EngineHandler>(&mut self, gen: u32, ctx: &mut Ctx<H>) -> bool {
        let current = self.is_current(gen);
        let Some(ws) = self.ws_mut(gen) else {
            return false;
        };
        if ws.awaiting_writable {
            return false;
        }
        match ws.writer.flush() {
            Ok(true) => {
                if let Some(check) = ws.stall_check.take() {
                    ctx.cancel_future(check);
                }
                return current;
            }
            Ok(false) => {
                ws.awaiting_writable = true;
                let io = ws.writer.socket();
                if ws.stall_check.is_none() {
                    let timeout = self.env.config.write_timeout;
                    self.watch_stall(gen, timeout, ctx);
                }
                ctx.spawn(
                    fut::wrap_future::<_, EngineSocket<H>>(async move { io.writable().await }).map(
                        move |res, act, ctx| {
                            if let Some(ws) = act.core.ws_mut(gen) {
                                ws.awaiting_writable = false;
                            }
                            match res {
                                Ok(()) => {
                                    if act.core.flush_ws(gen, ctx) {
                                        act.drained(ctx);
                                    }
                                }
                                Err(_) => act.core.ws_failed(gen, ctx),
                            }
                        },
                    ),
                );
            }
            Err(e) => {
                debug!("engine.io {}: write failed: {e}", self.sid);
                self.ws_failed(gen, ctx);
            }
        }
        false
    }

    /// Checks after `delay` whether WebSocket `gen` has taken nothing for the write timeout
    /// while packets wait; drops the session (or the probe) then, checks again otherwise.
    pub(super) fn watch_stall<H: EngineHandler>(
        &mut self,
        gen: u32,
        delay: Duration,
        ctx: &mut Ctx<H>,
    ) {
        let Some(ws) = self.ws_mut(gen) else { return };
        let check = ctx.run_later(delay, move |act, ctx| {
            let timeout = act.core.env.config.write_timeout;
            let Some(ws) = act.core.ws_mut(gen) else {
                return;
            };
            ws.stall_check = None;
            match ws.writer.stalled_for() {
                Some(stalled) if stalled >= timeout => {
                    if act.core.is_current(gen) {
                        debug!("engine.io {}: write timeout, dropping", act.core.sid);
                        act.core.abort(CloseReason::WriteTimeout, ctx);
                    } else {
                        act.core.drop_probe(ctx);
                    }
                }
                Some(stalled) => act.core.watch_stall(gen, timeout - stalled, ctx),
                None => {}
            }
        });
        ws.stall_check = Some(check);
    }

    pub(super) fn ws_failed<H: EngineHandler>(&mut self, gen: u32, ctx: &mut Ctx<H>) {
        if self.is_current(gen) {
            self.abort(CloseReason::TransportClose, ctx);
        } else if self.probe.as_ref().is_some_and(|p| p.ws.gen == gen) {
            self.drop_probe(ctx);
        }
    }

    // ---- WebSockets -------------------------------------------------------------------------

    /// Takes over an upgraded socket: queues the `101` response, reads its messages as
    /// WebSocket `gen`.
    pub(super) fn open_ws<H: EngineHandler>(
        &mut self,
        socket: std::net::TcpStream,
        leftover: Vec<u8>,
        accept: &[u8; 28],
        ctx: &mut Ctx<H>,
    ) -> std::io::Result<Ws> {
        let socket = TcpStream::from_std(socket)?;
        transport::prepare_socket(&socket, self.env.config.socket_sndbuf);
        let io = Rc::new(socket);
        let gen = self.next_gen;
        self.next_gen += 1;
        let reader = BinaryReader::new(io.clone(), leftover, self.env.config.max_payload)
            .map(move |m| (gen, Some(m)))
            .chain(futures_util::stream::once(async move { (gen, None) }));
        let stream = ctx.add_stream(reader);
        let mut writer = Writer::new(io, self.env.config.queue_bytes);
        writer.push(Bytes::from(transport::switching_protocols(accept)));
        Ok(Ws {
            gen,
            writer,
            stream,
            flush_scheduled: false,
            awaiting_writable: false,
            stall_check: None,
        })
    }

    /// A WebSocket with the session's id: becomes the probe of an upgrade, is refused (the
    /// session is closing), or, when the session already has a WebSocket or a probe, gets
    /// its handshake and is closed at once (as the reference server does), leaving the
    /// session untouched.
    pub(super) fn attach_ws<H: EngineHandler>(
        &mut self,
        socket: std::net::TcpStream,
        leftover: Vec<u8>,
        accept: [u8; 28],
        ctx: &mut Ctx<H>,
    ) {
        if self.closing.is_some() {
            let reply = self.refuse(ErrorCode::UnknownSid);
            refuse_socket(socket, reply);
            return;
        }
        if self.transport_kind() != TransportKind::Polling || self.probe.is_some() {
            debug!("engine.io {}: extra WebSocket closed", self.sid);
            self.env.metrics.refused(ErrorCode::BadRequest);
            close_extra_socket(socket, accept, self.env.config.close_linger);
            return;
        }
        match self.open_ws(socket, leftover, &accept, ctx) {
            Ok(ws) => {
                let gen = ws.gen;
                let timeout = ctx.run_later(self.env.config.upgrade_timeout, move |act, ctx| {
                    if act.core.probe.as_ref().is_some_and(|p| p.ws.gen == gen) {
                        debug!("engine.io {}: upgrade timed out", act.core.sid);
                        act.core.drop_probe(ctx);
                    }
                });
                self.probe = Some(Box::new(Probe {
                    ws,
                    probed: false,
                    timeout,
                }));
                let _ = self.flush_ws(gen, ctx);
            }
            Err(e) => debug!("engine.io {}: upgrade socket: {e}", self.sid),
        }
    }

    pub(super) fn drop_probe<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        if let Some(mut probe) = self.probe.take() {
            ctx.cancel_future(probe.timeout);
            ctx.cancel_future(probe.ws.stream);
            probe.ws.writer.abort();
        }
    }

    /// A message on the probing WebSocket: `2probe`, then `5`; anything else ends the probe.
    pub(super) fn on_probe_message<H: EngineHandler>(
        &mut self,
        message: WsMessage,
        ctx: &mut Ctx<H>,
    ) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        let gen = probe.ws.gen;
        match message {
            WsMessage::Event(WsEvent::Text(text)) if text == "2probe" && !probe.probed => {
                probe.probed = true;
                if self.push_ws(gen, packet::pong_probe().ws_frame(), ctx) {
                    // End the pending poll so that the client can pause polling.
                    if let Transport::Polling(p) = &mut self.transport {
                        if let Some(get) = p.get.take() {
                            let _ =
                                get.send(HttpReply::text(packet::noop().payload().to_vec().into()));
                        }
                    }
                }
            }
            WsMessage::Event(WsEvent::Text(text)) if text == "5" && probe.probed => {
                self.complete_upgrade(ctx);
            }
            WsMessage::Event(WsEvent::Ping(payload)) => {
                self.push_ws(gen, transport::pong_frame(&payload), ctx);
            }
            WsMessage::Event(WsEvent::Pong(_)) => {}
            other => {
                debug!("engine.io {}: upgrade abandoned on {other:?}", self.sid);
                self.drop_probe(ctx);
            }
        }
    }

    /// `5` on the probe: the WebSocket becomes the transport; what long-polling still held
    /// is written to it.
    pub(super) fn complete_upgrade<H: EngineHandler>(&mut self, ctx: &mut Ctx<H>) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        ctx.cancel_future(probe.timeout);
        let gen = probe.ws.gen;
        let Probe { ws, .. } = *probe;
        let old = std::mem::replace(&mut self.transport, Transport::WebSocket(ws));
        self.env.metrics.upgrades.inc();
        if let Transport::Polling(p) = old {
            if let Some(get) = p.get {
                let _ = get.send(HttpReply::text(Bytes::from_static(b"6")));
            }
            for out in p.queue {
                if !self.push_ws(gen, out.ws_frame(), ctx) {
                    return;
                }
            }
        }
        let _ = self.flush_ws(gen, ctx);
    }
}

/// Answers a refused WebSocket upgrade with an HTTP error and closes it.
fn refuse_socket(socket: std::net::TcpStream, reply: HttpReply) {
    let Ok(socket) = TcpStream::from_std(socket) else {
        return;
    };
    let reason = if reply.status == 403 {
        "Forbidden"
    } else {
        "Bad Request"
    };
    let response = transport::http_error(reply.status, reason, &reply.body);
    actix_rt::spawn(async move {
        let _ = transport::write_all(&socket, &response).await;
    });
}

/// Completes the handshake of a WebSocket the session does not take (it already has one),
/// then closes it: close frame, FIN, and up to `linger` for the client's side to end.
fn close_extra_socket(socket: std::net::TcpStream, accept: [u8; 28], linger: Duration) {
    let Ok(socket) = TcpStream::from_std(socket) else {
        return;
    };
    let mut out = transport::switching_protocols(&accept);
    out.extend_from_slice(&transport::close_frame(
        close::NORMAL,
        "the session already has a WebSocket",
    ));
    actix_rt::spawn(async move {
        if transport::write_all(&socket, &out).await.is_err() {
            return;
        }
        let _ = socket2::SockRef::from(&socket).shutdown(std::net::Shutdown::Write);
        // Read (and discard) until the client closes too, so that its close frame does not
        // meet a closed socket and a reset.
        let drain = async {
            let mut buf = [0u8; 512];
            loop {
                if socket.readable().await.is_err() {
                    return;
                }
                match socket.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = actix_rt::time::timeout(linger, drain).await;
    });
}
