//! Engine.IO v4, server side: the transport layer under Socket.IO.
//!
//! # Layout
//! - [`packet`]: packet and payload codec; [`packet::Outgoing`], a packet encoded once and
//!   shareable between sessions and transports.
//! - [`request`]: what an HTTP request asks for, the protocol's error codes and responses.
//! - [`close`]: why a session closed ([`CloseReason`]).
//! - [`metrics`]: `hub_engineio_*` metrics.
//! - [`config`]: an endpoint's parameters ([`EngineConfig`]) and what its sessions share.
//! - [`sessions`]: an endpoint's sessions by id ([`sessions::Sessions`]).
//! - [`socket`]: the session actor ([`EngineSocket`]), one submodule per concern, and the API
//!   of the layer above ([`EngineHandler`] in, [`EngineIo`] out).
//! - [`server`]: an endpoint ([`Endpoint`]) and the per-worker service the HTTP layer calls
//!   ([`EngineService`]).
//!
//! Each module uses only those listed before it.
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
pub mod close;
pub mod config;
pub mod metrics;
pub mod request;
pub mod server;
pub mod sessions;
pub mod socket;

pub use close::CloseReason;
pub use config::EngineConfig;
pub use metrics::EngineMetrics;
pub use packet::Outgoing;
pub use request::{EngineQuery, ErrorCode, HttpReply, Method, Route, TransportKind};
pub use server::{Endpoint, EngineService, EngineWorker, Handshake, PostGuard};
pub use socket::{
    messages::{CloseSession, PostFailure, Push},
    EngineHandler, EngineIo, EngineSocket, Message, SendError,
};
