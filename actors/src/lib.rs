//! The relay-hub actor system.
//!
//! # Layout
//! - [`protocol`]: client frames, server frames, Redis payloads, validation (pure functions).
//! - [`messages`]: every message between actors; read it to learn the system.
//! - [`session`]: the session actor, one per WebSocket connection.
//! - [`registry`]: the registry actor, one shard per HTTP worker thread.
//! - [`subscriber`]: the Redis pub/sub actor, one per instance.
//! - [`transport`]: WebSocket framing over the socket a session owns (the swappable part).
//! - [`pubsub`]: the subscriber's Redis connection (RESP2, read only as fast as consumed).
//! - [`publisher`]: publishing to Redis on its own connection.
//! - [`presence`]: who is in which room on this instance, shared by the shards.
//! - [`auth`], [`limits`], [`metrics`], [`error`]: what the actors share.
//!
//! # Message flow
//! ```text
//! Redis --PUBLISH--> Subscriber --Dispatch(frame encoded once)--> Registry shard(s)
//!                        ^                                              |
//!                        | Interest(user/room channel on/off)           | try_send(Deliver)
//!                        |                                              v
//!                    Registry <--Register/Join/Leave/Unregister--- Session --> socket
//!                                                                       |
//! client frame --> Session --chat publish (Publisher)--> Redis --> every instance, this one too
//! ```
//! Local delivery only happens through Redis, so nothing arrives twice. A session whose
//! mailbox is full when a frame is fanned out is a slow consumer: the registry kicks it.

#![warn(missing_docs)]

pub mod auth;
pub mod error;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod publisher;
pub mod pubsub;
pub mod registry;
pub mod session;
pub mod subscriber;
pub mod transport;
