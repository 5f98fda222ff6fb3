//! An Engine.IO endpoint's parameters, and what every session of the endpoint shares.

use std::{sync::Arc, time::Duration};

use super::metrics::EngineMetrics;

/// Engine.IO parameters of an endpoint.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Interval of server pings (`pingInterval`).
    pub ping_interval: Duration,
    /// Time the client has to answer a ping (`pingTimeout`).
    pub ping_timeout: Duration,
    /// Largest client payload (a `POST` body) or WebSocket message (`maxPayload`).
    pub max_payload: usize,
    /// Time a probing WebSocket has to complete an upgrade.
    pub upgrade_timeout: Duration,
    /// Bytes a session may hold unsent (queued for a poll, or refused by a full socket);
    /// past it the session is dropped as a slow consumer. At least `max_payload` plus some
    /// room, so that one largest message fits.
    pub queue_bytes: usize,
    /// The session actor's mailbox (fan-out uses `try_send`; a full mailbox is the sender's
    /// signal to drop the session).
    pub mailbox: usize,
    /// `SO_SNDBUF` of WebSocket connections (0 keeps the system default).
    pub socket_sndbuf: usize,
    /// How long a closing WebSocket waits for the peer's close before being dropped.
    pub close_linger: Duration,
    /// A WebSocket that takes nothing for this long while packets wait is dropped (a client
    /// that stopped reading).
    pub write_timeout: Duration,
}

impl Default for EngineConfig {
    /// The reference server's defaults: ping every 25 s, 20 s to answer, 1 MB payloads.
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_secs(10),
            queue_bytes: 2_000_000,
            mailbox: 64,
            socket_sndbuf: 64 * 1024,
            close_linger: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// What every session of an endpoint shares.
pub struct EngineEnv {
    /// Protocol parameters.
    pub config: EngineConfig,
    /// Metrics to count into.
    pub metrics: Arc<EngineMetrics>,
}
