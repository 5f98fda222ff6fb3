//! The hub's wire formats, with no I/O and no knowledge of actors or Redis connections: every
//! byte a client, a service or Redis sends is parsed here, and every frame the hub sends is
//! encoded here. Tested alone (unit tests and property tests of each parser).
//!
//! - [`protocol`]: the JSON contract: client frames, server frames, Redis payloads.
//! - [`limits`]: the protocol's limits.
//! - [`websocket`]: RFC 6455 framing.
//! - [`resp`]: the RESP2 replies of a Redis pub/sub connection.
//! - [`engineio`], [`socketio`]: Engine.IO v4 and Socket.IO v5 packets.
//! - [`glob`]: the `cache:invalidate` pattern syntax.

#![warn(missing_docs)]

pub mod engineio;
pub mod glob;
pub mod limits;
pub mod protocol;
pub mod resp;
pub mod socketio;
pub mod websocket;

/// Cases per fuzzing property: `FUZZ_CASES` (set by `make fuzz`), 4,000 in `make test`.
#[cfg(test)]
fn fuzz_cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000)
}
