//! The native sessions' heartbeat: one timer per worker thread for every session on it,
//! instead of an interval (a boxed item and a timer entry, 126 B of heap) per session
//! (`docs/benchmarks.md`, "One idle connection").
//!
//! A session joins the wheel of its thread when it starts; every `period` the wheel sends
//! [`Heartbeat`] to each session still alive and forgets the ones that stopped (until then it
//! keeps only a weak handle). So a session's first ping comes at most one period after it
//! started, and the idle timeout is checked every period, as before.

use std::{
    cell::RefCell,
    rc::{Rc, Weak},
    time::Duration,
};

use actix::{Message, WeakAddr};

use crate::transports::session::Session;

/// A tick of the thread's heartbeat: ping the client, or close it when it has been silent
/// past the client timeout.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat;

struct Wheel {
    period: Duration,
    members: RefCell<Vec<WeakAddr<Session>>>,
}

thread_local! {
    /// This thread's wheel; the ticking task owns it, so it goes with the runtime.
    static WHEEL: RefCell<Weak<Wheel>> = const { RefCell::new(Weak::new()) };
}

/// Adds a session to its thread's wheel (started on first use, one per period).
pub fn join(session: WeakAddr<Session>, period: Duration) {
    WHEEL.with(|slot| {
        let mut slot = slot.borrow_mut();
        let wheel = match slot.upgrade() {
            Some(wheel) if wheel.period == period => wheel,
            _ => {
                let wheel = Rc::new(Wheel {
                    period,
                    members: RefCell::new(Vec::new()),
                });
                *slot = Rc::downgrade(&wheel);
                actix_rt::spawn(run(wheel.clone()));
                wheel
            }
        };
        wheel.members.borrow_mut().push(session);
    });
}

async fn run(wheel: Rc<Wheel>) {
    let mut ticks = actix_rt::time::interval(wheel.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        ticks.tick().await;
        let mut members = wheel.members.borrow_mut();
        members.retain(|weak| match weak.upgrade() {
            Some(addr) => {
                addr.do_send(Heartbeat);
                true
            }
            None => false,
        });
        let live = members.len();
        if members.capacity() > 64 && live < members.capacity() / 4 {
            members.shrink_to(live * 2);
        }
    }
}
