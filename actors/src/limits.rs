//! Per-session limits (PROTOCOL section 4, "Limits") and the token bucket that enforces rates.

use std::time::{Duration, Instant};

/// Limits applied to every session. All are configurable; `Default` holds the contract's
/// defaults.
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
    /// Frames that may wait in a session's mailbox; a fan-out to a full mailbox kicks the
    /// session (slow consumer).
    pub mailbox_frames: usize,
    /// Bytes a session may hold unsent (the socket refused them); more kicks the session.
    pub queue_bytes: usize,
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
            mailbox_frames: 64,
            queue_bytes: 256 * 1024,
            socket_sndbuf: 64 * 1024,
        }
    }
}

/// A token bucket: `capacity` tokens, refilled at `rate` per second.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f32,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(capacity: f64) -> Self {
        TokenBucket {
            tokens: capacity as f32,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, rate: f64, capacity: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f32).min(capacity as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let start = Instant::now();
        let mut b = TokenBucket::full(3.0);
        assert!((0..3).all(|_| b.take(start, 1.0, 3.0)));
        assert!(!b.take(start, 1.0, 3.0));
        assert!(b.take(start + Duration::from_millis(1001), 1.0, 3.0));
        assert!(!b.take(start + Duration::from_millis(1002), 1.0, 3.0));
    }
}
