//! Backpressure between the Redis subscriber and the registry shards.
//!
//! The subscriber hands each batch of frames to the shards' mailboxes (another thread). When
//! the shards fan out more slowly than Redis delivers, those mailboxes would grow without
//! bound. Instead, every batch carries a [`Credit`] for its size, returned when the shard has
//! handled the batch. While more than the cap is outstanding, the subscriber stops reading
//! from Redis ([`Backlog::poll_room`]). Redis then buffers on its side, and drops the
//! subscriber when its output-buffer limit is reached. The hub notices, counts the drop and
//! reconnects.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use prometheus::IntGauge;

/// Bytes of fan-out work handed to the shards and not yet done.
#[derive(Debug)]
pub struct Backlog {
    /// The outstanding bytes of this backlog (one per ingest connection).
    own: AtomicI64,
    /// The outstanding bytes of every ingest connection, as `/metrics` shows them.
    bytes: IntGauge,
    cap: i64,
    waker: AtomicWaker,
}

impl Backlog {
    /// A backlog that lets the subscriber read while at most `cap` bytes are outstanding,
    /// counted in `gauge`.
    pub fn new(cap: usize, gauge: IntGauge) -> Arc<Backlog> {
        Arc::new(Backlog {
            own: AtomicI64::new(0),
            bytes: gauge,
            cap: i64::try_from(cap).unwrap_or(i64::MAX),
            waker: AtomicWaker::new(),
        })
    }

    /// Records `bytes` of work; they count until the returned credit is dropped.
    pub fn take(self: &Arc<Self>, bytes: usize) -> Credit {
        self.own.fetch_add(bytes as i64, Ordering::SeqCst);
        self.bytes.add(bytes as i64);
        Credit {
            backlog: self.clone(),
            bytes,
        }
    }

    /// Bytes outstanding.
    pub fn bytes(&self) -> usize {
        self.own.load(Ordering::SeqCst).max(0) as usize
    }

    /// Whether more than the cap is outstanding (the subscriber is not reading).
    pub fn is_full(&self) -> bool {
        self.own.load(Ordering::SeqCst) > self.cap
    }

    /// Ready while the backlog is within its cap; otherwise wakes `cx` once it is again.
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.is_full() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A credit returned between the check and the registration must not be missed.
        if !self.is_full() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A claim on part of the backlog; dropping it (after the work is done, or with an undelivered
/// message) gives the bytes back.
#[derive(Debug)]
pub struct Credit {
    backlog: Arc<Backlog>,
    bytes: usize,
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.backlog
            .own
            .fetch_sub(self.bytes as i64, Ordering::SeqCst);
        self.backlog.bytes.sub(self.bytes as i64);
        // Wakes the subscriber if it waits (a no-op otherwise).
        if !self.backlog.is_full() {
            self.backlog.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Wake;

    use super::*;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn reading_stops_above_the_cap_and_resumes_when_credits_return() {
        let gauge = IntGauge::new("backlog", "test").unwrap();
        let backlog = Backlog::new(100, gauge.clone());
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = flag.clone().into();
        let mut cx = Context::from_waker(&waker);

        let a = backlog.take(60);
        assert!(backlog.poll_room(&mut cx).is_ready(), "60 of 100");
        let b = backlog.take(60);
        assert!(backlog.poll_room(&mut cx).is_pending(), "120 of 100");
        assert_eq!(backlog.bytes(), 120);
        assert_eq!(gauge.get(), 120);

        drop(b);
        assert!(
            flag.0.load(Ordering::SeqCst),
            "crossing back under the cap wakes"
        );
        assert!(backlog.poll_room(&mut cx).is_ready());
        drop(a);
        assert_eq!(backlog.bytes(), 0);
        assert_eq!(gauge.get(), 0);
    }
}
