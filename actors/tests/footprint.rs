//! What one idle session's structures weigh in memory (`size_of`, no allocator overhead):
//! the inline part of the breakdown in `docs/benchmarks.md#one-idle-connection`. Run with
//! `cargo test -p hub-actors --test footprint -- --nocapture` to print it. Each figure is
//! held to its current size as a ceiling, so a field that makes every idle session heavier
//! fails here first (raise a ceiling only with a reason, and the figure in the docs).

use std::mem::size_of;

use actix::{dev::ContextFut, Context};
use hub_actors::{
    hub::client::ClientCore,
    messages::SessionAddr,
    transports::{
        session::Session,
        socketio::hub::{HubApp, SioSession},
        transport::{Reader, Writer},
    },
};

/// The tokio task that runs an actor: its future plus tokio's task header and trailer
/// (scheduler links, state, waker slot; ~64-128 B, not counted here).
fn actor_future<A: actix::Actor<Context = Context<A>>>() -> usize {
    size_of::<ContextFut<A, Context<A>>>()
}

#[test]
fn an_idle_sessions_inline_state_stays_within_its_budget() {
    let rows: [(&str, usize, usize); 9] = [
        ("native Session (actor)", size_of::<Session>(), 496),
        ("  ClientCore", size_of::<ClientCore>(), 240),
        ("  transport Reader", size_of::<Reader>(), 80),
        ("  transport Writer", size_of::<Writer>(), 112),
        (
            "native task future (ContextFut)",
            actor_future::<Session>(),
            832,
        ),
        (
            "Socket.IO session actor (EngineSocket)",
            size_of::<SioSession>(),
            752,
        ),
        ("  HubApp", size_of::<HubApp>(), 288),
        (
            "Socket.IO task future (ContextFut)",
            actor_future::<SioSession>(),
            1088,
        ),
        (
            "SessionAddr (registry handle)",
            size_of::<SessionAddr>(),
            16,
        ),
    ];
    for (name, size, ceiling) in rows {
        println!("{name:<45} {size:>5} B (ceiling {ceiling})");
    }
    for (name, size, ceiling) in rows {
        assert!(size <= ceiling, "{name}: {size} B, over its {ceiling} B");
    }
}
