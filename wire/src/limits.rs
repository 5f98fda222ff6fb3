//! The limits of the hub's protocol (`docs/protocol.md#limits`): what a client may send and
//! what the hub holds for it. All are configurable; `Default` holds the documented defaults.

use std::time::Duration;

/// Bookkeeping counted per queued delivery on top of its frame's bytes (the mailbox entry and
/// the shared event's reference), so that many tiny frames also reach the queue bound.
pub const DELIVERY_OVERHEAD: usize = 64;

/// Limits applied to every session. All are configurable; `Default` holds the documented
/// defaults (`docs/protocol.md#limits`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest client message (after reassembling fragments); larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Longest chat message in characters; longer gets `too_large`.
    pub max_message_chars: usize,
    /// Rooms one session may be in at once.
    pub max_rooms_per_session: usize,
    /// Client frames refilled per second.
    pub rate_per_sec: f64,
    /// Client frames allowed in a burst.
    pub rate_burst: f64,
    /// Bad or rate-limited frames tolerated in a burst before closing with 1008; the budget
    /// refills at one per second.
    pub error_burst: f64,
    /// Interval of server WebSocket pings.
    pub heartbeat: Duration,
    /// A session that sent nothing for this long is closed.
    pub client_timeout: Duration,
    /// Time a connection without credentials has to send its `auth` frame.
    pub auth_timeout: Duration,
    /// Messages a session's mailbox takes: a backstop only, set so that the byte bound
    /// (`queue_bytes`) is always reached first.
    pub mailbox_frames: usize,
    /// Bytes the hub may hold for one client, undelivered in its mailbox or unsent in its
    /// write queue; more makes it a slow consumer (kicked).
    pub queue_bytes: usize,
    /// A client whose socket takes nothing for this long while frames wait for it is a slow
    /// consumer (kicked).
    pub write_timeout: Duration,
    /// `SO_SNDBUF` of each WebSocket connection: bounds the kernel memory a stuck client pins.
    pub socket_sndbuf: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            max_message_chars: 4000,
            max_rooms_per_session: 100,
            rate_per_sec: 20.0,
            rate_burst: 40.0,
            error_burst: 10.0,
            heartbeat: Duration::from_secs(30),
            client_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(10),
            mailbox_frames: (1 << 20) / DELIVERY_OVERHEAD + 1,
            queue_bytes: 1 << 20,
            write_timeout: Duration::from_secs(10),
            socket_sndbuf: 64 * 1024,
        }
    }
}
