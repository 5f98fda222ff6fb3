//! The relay-hub actor system.
//!
//! # Layout (layers, each depending only on those above it in this list)
//! - `hub-wire` (its own crate): every wire format, pure (`hub_wire::protocol`).
//! - [`common`]: what every layer shares: [`auth`](common::auth) (with its [`keys`](common::keys)), [`limits`](common::limits), [`metrics`](common::metrics), [`error`](common::error),
//!   [`queued`](common::queued) (the bytes held for one client and why a slow consumer is kicked),
//!   [`backlog`](common::backlog), [`outbound`](common::outbound) (an event encoded at most once per wire protocol).
//! - [`messages`]: every message between actors and the transport-neutral session handle;
//!   read it to learn the system.
//! - [`connections`]: the Redis [`pubsub`](connections::pubsub) connection (RESP2, read only as fast as consumed)
//!   and the command connection ([`publisher`](connections::publisher)); the identity provider's key set ([`jwks`](connections::jwks)).
//! - [`features`]: [`history`](features::history) (per-room chat streams), [`inbox`](features::inbox) (per-user notification
//!   streams, the `relay_notify` function), [`recovery`](features::recovery) (what a pub/sub outage hid, from
//!   both), [`presence`](features::presence) and [`roster`](features::roster) (room presence here and across instances),
//!   [`analytics`](features::analytics), [`canary`](features::canary).
//! - [`hub`]: the actors at the core: [`registry`](hub::registry) shards, the [`subscriber`](hub::subscriber), and the
//!   protocol-independent session core [`client`](hub::client).
//! - [`transports`]: the ways in: the native [`session`](transports::session) over [`transport`](transports::transport), and
//!   [`engineio`](transports::engineio) with [`socketio`](transports::socketio) on top ([`socketio::hub`](transports::socketio::hub) makes a Socket.IO connection a
//!   hub session).
//!
//! The job queue lives in its own crate, `hub-jobs`. Each module has one name, its path in its
//! layer (`crate::common::auth`); nothing is re-exported under a second one.
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
//! together, counted in [`queued::QueuedBytes`](common::queued::QueuedBytes)) or its socket takes nothing for the write
//! timeout; it is kicked (`docs/delivery.md`).

#![warn(missing_docs)]

pub mod common;
pub mod connections;
pub mod features;
pub mod hub;
pub mod messages;
pub mod transports;
