//! What the hub holds for one client and has not yet written to its socket, in bytes: the
//! events the registry put in the session's mailbox plus the frames waiting in its write
//! queue. The registry adds to it when it fans out, the session moves bytes from the mailbox
//! part to its writer, and the writer takes off what the socket accepted.
//!
//! This is how the hub tells a slow client from a busy hub: a session whose worker thread is
//! busy (a join storm) holds a burst in its mailbox for a moment, which costs bytes, not a
//! kick; a client that stops reading lets its bytes pile up past [`QueuedBytes::limit`], or
//! stops its socket from taking anything for the write timeout (see [`crate::transports::session`]).

use std::{
    fmt,
    sync::atomic::{AtomicUsize, Ordering},
};

pub use hub_wire::limits::DELIVERY_OVERHEAD;

/// Bytes held for one client, with the bound past which it is a slow consumer.
#[derive(Debug)]
pub struct QueuedBytes {
    bytes: AtomicUsize,
    limit: usize,
}

impl QueuedBytes {
    /// An empty count with a bound of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        QueuedBytes {
            bytes: AtomicUsize::new(0),
            limit,
        }
    }

    /// Adds `n` bytes unless that passes the bound while something is already held (a single
    /// frame larger than the bound is still taken when nothing waits). `false`: refused.
    pub fn try_add(&self, n: usize) -> bool {
        let before = self.bytes.fetch_add(n, Ordering::Relaxed);
        if before > 0 && before + n > self.limit {
            self.bytes.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Takes `n` bytes off (they were written, or dropped).
    pub fn sub(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn get(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Why a session was dropped as a slow consumer (the `reason` label of
/// `hub_slow_consumer_kicks_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KickReason {
    /// More than the session's queue bound waited for the client.
    QueueFull,
    /// The socket took nothing for the write timeout while frames waited.
    WriteTimeout,
    /// The mailbox refused a message although the byte bound had room (a backstop that the
    /// byte bound should always reach first).
    MailboxFull,
}

impl KickReason {
    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            KickReason::QueueFull => "queue_full",
            KickReason::WriteTimeout => "write_timeout",
            KickReason::MailboxFull => "mailbox_full",
        }
    }
}

impl fmt::Display for KickReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KickReason::QueueFull => "more bytes queued for it than the session queue allows",
            KickReason::WriteTimeout => "its socket took nothing for the write timeout",
            KickReason::MailboxFull => "its mailbox was full",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_refuses_past_the_limit_but_takes_one_big_frame_when_empty() {
        let q = QueuedBytes::new(100);
        assert!(
            q.try_add(500),
            "a lone frame bigger than the bound is taken"
        );
        assert!(!q.try_add(1), "nothing more while over the bound");
        q.sub(500);
        assert!(q.try_add(60));
        assert!(q.try_add(40));
        assert!(!q.try_add(1));
        assert_eq!(q.get(), 100);
    }
}
