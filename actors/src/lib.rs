//! The relay-hub actor system.
//!
//! # Layout
//! - [`protocol`]: client frames, server frames, Redis payloads, validation (pure functions).
//! - [`messages`]: every message between actors; read it to learn the system.
//! - [`client`]: the protocol-independent session core (auth, limits, rooms, history
//!   recovery, chat, topics), hosted by both kinds of session.
//! - [`session`]: the native session actor, one per `/ws` WebSocket connection.
//! - [`registry`]: the registry actor, one shard per HTTP worker thread.
//! - [`subscriber`]: the Redis pub/sub actor, one per instance.
//! - [`transport`]: WebSocket framing over the socket a session owns (the swappable part).
//! - [`pubsub`]: the subscriber's Redis connection (RESP2, read only as fast as consumed).
//! - [`publisher`]: publishing to Redis on its own connection.
//! - [`presence`]: who is in which room on this instance, shared by the shards.
//! - [`jobs`]: the reliable AI job queue in Redis and the embeddable worker runtime.
//! - [`roster`]: room presence across instances in Redis (heartbeats, dead-instance reaping,
//!   presence events); an actor fed by [`presence`].
//! - [`history`]: per-room chat history in Redis streams (append-and-publish, recovery).
//! - [`analytics`]: the analytics aggregator actor (fed by `analytics:events`, pushes
//!   snapshots to topic `analytics`).
//! - [`canary`]: the health canary (a round trip through Redis on the instance's own channel).
//! - [`auth`], [`limits`], [`metrics`], [`error`]: what the actors share.
//! - [`engineio`], [`socketio`]: the Engine.IO v4 session actor and the Socket.IO v5 layer on
//!   top of it; [`socketio::hub`] makes a Socket.IO connection a hub session (a second way in,
//!   for `socket.io-client`).
//! - [`outbound`]: an event for many sessions, encoded at most once per wire protocol.
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
//! Local delivery only happens through Redis, so nothing arrives twice. A session whose
//! mailbox is full when a frame is fanned out is a slow consumer: the registry kicks it.

#![warn(missing_docs)]

pub mod analytics;
pub mod auth;
pub mod auth_budget;
pub mod backlog;
pub mod canary;
pub mod client;
pub mod engineio;
pub mod error;
pub mod history;
pub mod jobs;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod outbound;
pub mod presence;
pub mod protocol;
pub mod publisher;
pub mod pubsub;
pub mod registry;
pub mod roster;
pub mod session;
pub mod socketio;
pub mod subscriber;
pub mod transport;
