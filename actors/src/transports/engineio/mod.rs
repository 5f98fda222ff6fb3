//! Engine.IO v4, server side: the transport layer under Socket.IO.
//!
//! # Layout
//! - [`packet`]: packet and payload codec; [`packet::Outgoing`], a packet encoded once and
//!   shareable between sessions and transports.
//! - [`request`]: what an HTTP request asks for, the protocol's error codes and responses.
//! - [`socket`]: the session actor ([`EngineSocket`]) and the API of the layer above
//!   ([`EngineHandler`] in, [`EngineIo`] out).
//! - [`server`]: an endpoint's sessions ([`Endpoint`]) and the per-worker service the HTTP
//!   layer calls ([`EngineService`]).
//! - [`metrics`]: `hub_engineio_*` metrics.
//! - [`base64`]: the codec of binary packets in long-polling payloads.
//!
//! # Flow
//! ```text
//! GET  /?EIO=4&transport=polling          -> open_polling -> EngineSocket started, open packet
//! GET  /?...&sid=S                        -> poll -> PollGet: parked until packets are queued
//! POST /?...&sid=S                        -> begin_post, deliver(body) -> packets -> handler
//! GET  /?...&transport=websocket (upgrade) -> open_websocket (no sid) or upgrade (sid: probe)
//! ```

pub use hub_wire::engineio::{base64, packet};
pub mod metrics;
pub mod request;
pub mod server;
pub mod socket;

pub use metrics::EngineMetrics;
pub use packet::Outgoing;
pub use request::{EngineQuery, ErrorCode, HttpReply, Method, Route, TransportKind};
pub use server::{Endpoint, EngineService, EngineWorker, Handshake, PostGuard};
pub use socket::{
    CloseReason, CloseSession, EngineConfig, EngineHandler, EngineIo, EngineSocket, Message,
    PostFailure, Push, SendError,
};
