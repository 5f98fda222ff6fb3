//! The relay-hub actor system.
//!
//! # Layout (layers, each depending only on those above it in this list)
//! - `hub-wire` (its own crate): every wire format, pure ([`protocol`] is re-exported here).
//! - [`common`]: what every layer shares: [`auth`] (with its [`keys`]), [`limits`], [`metrics`], [`error`],
//!   [`queued`] (the bytes held for one client and why a slow consumer is kicked),
//!   [`backlog`], [`outbound`] (an event encoded at most once per wire protocol).
//! - [`messages`]: every message between actors and the transport-neutral session handle;
//!   read it to learn the system.
//! - [`connections`]: the Redis [`pubsub`] connection (RESP2, read only as fast as consumed)
//!   and the command connection ([`publisher`]); the identity provider's key set ([`jwks`]).
//! - [`features`]: [`history`] (per-room chat streams), [`inbox`] (per-user notification
//!   streams, the `relay_notify` function), [`recovery`] (what a pub/sub outage hid, from
//!   both), [`presence`] and [`roster`] (room presence here and across instances),
//!   [`analytics`], [`canary`].
//! - [`hub`]: the actors at the core: [`registry`] shards, the [`subscriber`], and the
//!   protocol-independent session core [`client`].
//! - [`transports`]: the ways in: the native [`session`] over [`transport`], and
//!   [`engineio`] with [`socketio`] on top ([`socketio::hub`] makes a Socket.IO connection a
//!   hub session).
//!
//! The job queue lives in its own crate, `hub-jobs`.
//!
//! # Message flow
//! ```text
//! Redis --PUBLISH--> Subscriber --DispatchBatch(events encoded once)--> Registry shard(s)
//!                        ^                                              |
//!                        | Interest(user/room channel on/off)           | try_send(Deliver):
//!                        |                                              | one per session
//!                        |                                              v per batch
//!                    Registry <--Register/Join/Leave/Unregister--- Session (native or
//!                                                                  Socket.IO) --> socket
//!                                                                       |
//! client frame --> Session --chat: history script (XADD + PUBLISH)--> Redis --> every instance
//!
//! LocalPresence (first join / last leave) --PresenceChange--> Roster --script--> Redis
//!     --PUBLISH hub:presence--> Subscriber of every instance --Dispatch--> room members
//! ```
//! Local delivery only happens through Redis, so nothing arrives twice. A session is a slow
//! consumer when more than its queue bound waits for its client (mailbox and write queue
//! together, counted in [`queued::QueuedBytes`]) or its socket takes nothing for the write
//! timeout; it is kicked (`docs/delivery.md`).

#![warn(missing_docs)]

pub mod common;
pub mod connections;
pub mod features;
pub mod hub;
pub mod messages;
pub mod transports;

pub use common::{
    auth, auth_budget, backlog, error, keys, limits, metrics, outbound, queued, random,
};
pub use connections::{jwks, publisher, pubsub};
pub use features::{analytics, canary, history, inbox, presence, recovery, roster, session_resume};
pub use hub::{client, registry, subscriber};
pub use hub_wire::protocol;
pub use transports::{engineio, session, socketio, transport};
