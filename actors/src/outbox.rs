//! A session's delivery queue: the registry shard pushes fanned-out frames into it, the session
//! drains it as a stream. It replaces one actix message per delivery (`try_send(Deliver)`: a
//! boxed envelope and a queue node allocated per recipient, then the mailbox machinery) with a
//! push onto a queue that keeps its small allocation, which is most of the fan-out cost once
//! the frame is encoded (see the commit that introduced it and `bench/README.md`).
//!
//! The bound is the same as the mailbox's was ([`crate::limits::Limits::mailbox_frames`]): a
//! push to a full outbox is refused and the registry kicks the session as a slow consumer.
//! When the session ends, its [`Deliveries`] stream is dropped and pushes are refused as
//! closed, so the registry forgets it.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use futures_util::Stream;

use crate::messages::Scope;

/// Queued frames beyond which a drained queue gives its allocation back (an idle session
/// then holds at most this many empty slots).
const KEEP_SLOTS: usize = 8;

/// One delivery: the encoded frame and what it was addressed to.
pub struct Delivery {
    /// The complete WebSocket frame, shared with every other recipient.
    pub frame: Bytes,
    /// Why this session gets it (the session drops frames for rooms or topics it left).
    pub scope: Scope,
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its maximum: the session is not keeping up.
    Full,
    /// The session has ended.
    Closed,
}

struct State {
    frames: VecDeque<Delivery>,
    capacity: usize,
    waker: Option<Waker>,
    closed: bool,
}

/// The queue, shared by the registry entry and the session. The mutex is never contended in
/// practice: a shard and its sessions run on one thread.
pub struct Outbox {
    state: Mutex<State>,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                capacity: capacity.max(1),
                waker: None,
                closed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame and wakes the session.
    pub fn push(&self, frame: Bytes, scope: Scope) -> Result<(), Refused> {
        let waker = {
            let mut s = self.lock();
            if s.closed {
                return Err(Refused::Closed);
            }
            if s.frames.len() >= s.capacity {
                return Err(Refused::Full);
            }
            s.frames.push_back(Delivery { frame, scope });
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Refuses further pushes and drops what is queued.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.frames = VecDeque::new();
        s.waker = None;
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session's end: a stream of deliveries. Dropping it closes the outbox.
pub struct Deliveries(Arc<Outbox>);

impl Deliveries {
    /// The stream draining `outbox`.
    pub fn new(outbox: Arc<Outbox>) -> Deliveries {
        Deliveries(outbox)
    }
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let mut s = self.0.lock();
        if let Some(d) = s.frames.pop_front() {
            if s.frames.is_empty() && s.frames.capacity() > KEEP_SLOTS {
                s.frames = VecDeque::new();
            }
            return Poll::Ready(Some(d));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn bounded_and_closed_on_drop() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(Bytes::from_static(b"a"), Scope::User), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"b"), Scope::User), Ok(()));
        assert_eq!(
            outbox.push(Bytes::from_static(b"c"), Scope::User),
            Err(Refused::Full)
        );
        let mut stream = Deliveries::new(outbox.clone());
        let first = futures_util::FutureExt::now_or_never(stream.next()).flatten();
        assert_eq!(&first.unwrap().frame[..], b"a");
        assert_eq!(outbox.len(), 1);
        drop(stream);
        assert_eq!(
            outbox.push(Bytes::from_static(b"d"), Scope::User),
            Err(Refused::Closed)
        );
        assert!(outbox.is_empty());
    }
}
