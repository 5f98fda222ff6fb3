//! An Engine.IO endpoint (e.g. `/socket.io/`): its sessions by id, shared by every worker
//! thread, and the per-worker service that the HTTP layer calls for each request.
//!
//! A session actor lives on the worker thread that accepted its handshake. Requests for it
//! that arrive on other workers reach it through its address (long-polling) or hand it their
//! socket (a WebSocket upgrade moves the socket to the session's thread).

use std::{net::SocketAddr, sync::Arc};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use tokio::sync::oneshot;

use super::{
    config::EngineConfig,
    metrics::EngineMetrics,
    packet,
    request::{ErrorCode, HttpReply, TransportKind},
    sessions::Sessions,
    socket::{
        messages::{AttachWebSocket, CloseSession, PollGet, PostBegin, PostBody, PostFailure},
        EngineHandler, EngineSocket, Initial,
    },
};
use crate::common::limits::ConnectionPermit;

/// What the layer above learns about a new session's handshake request.
#[derive(Debug)]
pub struct Handshake {
    /// The transport the session opens on.
    pub transport: TransportKind,
    /// The request's raw query string.
    pub query: String,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// The client's address (the socket's peer).
    pub peer: Option<SocketAddr>,
    /// The connection-limit slot the session holds until it ends.
    pub permit: Option<ConnectionPermit>,
}

/// An Engine.IO endpoint: its sessions by id, shared by every worker thread.
pub type Endpoint<H> = Sessions<Addr<EngineSocket<H>>>;

impl<H: EngineHandler> Endpoint<H> {
    /// Refuses new sessions from now on and closes every open one; returns how many.
    pub fn close_all(&self) -> usize {
        self.refuse_new();
        let mut n = 0;
        self.each(|session| {
            session.do_send(CloseSession);
            n += 1;
        });
        n
    }

    /// The service one worker thread uses; `make` creates the handler of each session this
    /// worker opens (so it may hold per-worker state).
    pub fn worker(self: &Arc<Self>, make: impl Fn(&Handshake) -> H + 'static) -> EngineWorker<H> {
        EngineWorker {
            endpoint: self.clone(),
            make: Box::new(make),
        }
    }
}

/// An endpoint as seen by the HTTP layer of one worker thread (object safe, so that endpoints
/// with different handlers can be mounted side by side).
pub trait EngineService {
    /// Protocol parameters.
    fn config(&self) -> &EngineConfig;
    /// Metrics (the HTTP layer counts the requests it refuses itself).
    fn metrics(&self) -> &EngineMetrics;
    /// True once the endpoint refuses new sessions (shutdown).
    fn is_closing(&self) -> bool;
    /// Opens a long-polling session on this thread; the reply carries the open packet.
    fn open_polling(&self, handshake: Handshake) -> HttpReply;
    /// Opens a WebSocket session on this thread; it answers the upgrade (`101`) itself.
    fn open_websocket(
        &self,
        handshake: Handshake,
        socket: std::net::TcpStream,
        leftover: Vec<u8>,
        accept: [u8; 28],
    );
    /// A long-polling `GET`: resolves with the packets to send (or an error reply).
    fn poll(&self, sid: &str) -> LocalBoxFuture<'static, HttpReply>;
    /// A long-polling `POST` begins: a guard to hand the body to, or an error reply.
    fn begin_post(&self, sid: &str) -> LocalBoxFuture<'static, Result<PostGuard, HttpReply>>;
    /// True when `sid` names a session (checked before accepting an upgrade).
    fn has_session(&self, sid: &str) -> bool;
    /// Hands a WebSocket upgrade of session `sid` to it; the session answers the upgrade.
    fn upgrade(&self, sid: &str, socket: std::net::TcpStream, leftover: Vec<u8>, accept: [u8; 28]);
}

/// The per-worker service of an [`Endpoint`].
pub struct EngineWorker<H: EngineHandler> {
    endpoint: Arc<Endpoint<H>>,
    make: Box<dyn Fn(&Handshake) -> H>,
}

impl<H: EngineHandler> EngineWorker<H> {
    fn start(&self, handshake: Handshake, initial: Initial) -> Arc<str> {
        let sid: Arc<str> = random_id().into();
        let handler = (self.make)(&handshake);
        let socket = EngineSocket::new(
            sid.clone(),
            self.endpoint.clone(),
            handler,
            initial,
            handshake.permit,
        );
        let addr = socket.start();
        self.endpoint.insert(sid.clone(), addr);
        sid
    }

    fn refuse(&self, code: ErrorCode) -> HttpReply {
        self.endpoint.env().metrics.refused(code);
        HttpReply::error(code)
    }
}

impl<H: EngineHandler> EngineService for EngineWorker<H> {
    fn config(&self) -> &EngineConfig {
        &self.endpoint.env().config
    }

    fn metrics(&self) -> &EngineMetrics {
        &self.endpoint.env().metrics
    }

    fn is_closing(&self) -> bool {
        self.endpoint.is_closing()
    }

    fn open_polling(&self, handshake: Handshake) -> HttpReply {
        let sid = self.start(handshake, Initial::Polling);
        let config = &self.endpoint.env().config;
        let open = packet::open(
            &sid,
            &["websocket"],
            config.ping_interval.as_millis() as u64,
            config.ping_timeout.as_millis() as u64,
            config.max_payload,
        );
        HttpReply::text(Bytes::copy_from_slice(open.payload()))
    }

    fn open_websocket(
        &self,
        handshake: Handshake,
        socket: std::net::TcpStream,
        leftover: Vec<u8>,
        accept: [u8; 28],
    ) {
        self.start(
            handshake,
            Initial::WebSocket {
                socket,
                leftover,
                accept,
            },
        );
    }

    fn poll(&self, sid: &str) -> LocalBoxFuture<'static, HttpReply> {
        let addr = self.endpoint.session(sid);
        let unknown = self.refuse_later(addr.is_none());
        Box::pin(async move {
            let Some(addr) = addr else { return unknown };
            let (tx, rx) = oneshot::channel();
            if addr.send(PollGet { reply: tx }).await.is_err() {
                return unknown;
            }
            rx.await.unwrap_or(unknown)
        })
    }

    fn begin_post(&self, sid: &str) -> LocalBoxFuture<'static, Result<PostGuard, HttpReply>> {
        let addr = self.endpoint.session(sid);
        let unknown = self.refuse_later(addr.is_none());
        Box::pin(async move {
            let Some(addr) = addr else {
                return Err(unknown);
            };
            match addr.send(PostBegin).await {
                Ok(Ok(())) => Ok(PostGuard {
                    to: Some(addr.recipient()),
                }),
                Ok(Err(reply)) => Err(reply),
                Err(_) => Err(unknown),
            }
        })
    }

    fn has_session(&self, sid: &str) -> bool {
        self.endpoint.contains(sid)
    }

    fn upgrade(&self, sid: &str, socket: std::net::TcpStream, leftover: Vec<u8>, accept: [u8; 28]) {
        if let Some(addr) = self.endpoint.session(sid) {
            addr.do_send(AttachWebSocket {
                socket,
                leftover,
                accept,
            });
        }
    }
}

impl<H: EngineHandler> EngineWorker<H> {
    /// The "unknown sid" reply, counted now if `count` (the request is refused at once) or
    /// left uncounted for the rare case of a session that vanished mid-request.
    fn refuse_later(&self, count: bool) -> HttpReply {
        if count {
            self.refuse(ErrorCode::UnknownSid)
        } else {
            HttpReply::error(ErrorCode::UnknownSid)
        }
    }
}

/// A `POST` admitted by its session: hand it the body with [`PostGuard::deliver`]. Dropping
/// the guard (the client went away mid-body) tells the session the `POST` is over.
pub struct PostGuard {
    to: Option<Recipient<PostBody>>,
}

impl PostGuard {
    /// Delivers the body (or why there is none) and resolves with the reply.
    pub async fn deliver(mut self, body: Result<Bytes, PostFailure>) -> HttpReply {
        let to = self.to.take().expect("a guard delivers once");
        to.send(PostBody(body))
            .await
            .unwrap_or_else(|_| HttpReply::error(ErrorCode::UnknownSid))
    }
}

impl Drop for PostGuard {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            to.do_send(PostBody(Err(PostFailure::Aborted)));
        }
    }
}

/// A random, unguessable id (20 characters of URL-safe base64: 120 bits), for session ids.
pub fn random_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = crate::common::random::random_bits();
    (0..20)
        .map(|i| ALPHABET[(bits >> (i * 6)) as usize & 63] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::random_id;

    #[test]
    fn random_ids_are_distinct_and_url_safe() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.len() == 20
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
    }
}
