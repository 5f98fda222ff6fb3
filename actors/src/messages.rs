//! Every message between actors. These types are the API of the actor system: reading this
//! file tells the whole message flow (see the crate docs for the picture).

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::{
    auth::Identity,
    metrics::OutKind,
    protocol::{Member, RoomId, Topic, UserId},
    registry::Registry,
    session::Session,
};

/// Identifies a session within an instance.
pub type SessionId = u64;

/// Identifies a registry shard (one per HTTP worker thread).
pub type ShardId = usize;

/// The most shards an instance runs (shard sets are `u64` bit masks).
pub const MAX_SHARDS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Session -> Registry
// ---------------------------------------------------------------------------------------------

/// A session authenticated and wants its user's events. Resolves once this instance is
/// subscribed to the user's channel (or immediately while Redis is down: the subscription
/// is made when Redis returns), so `connected` means "notifications will reach you".
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    /// The session.
    pub id: SessionId,
    /// Who it is.
    pub identity: Arc<Identity>,
    /// Where to deliver its frames.
    pub addr: Addr<Session>,
}

/// A session is waiting for its `auth` frame (tracked so that shutdown can close it too).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pending {
    /// The session.
    pub id: SessionId,
    /// Its address.
    pub addr: Addr<Session>,
}

/// A session ended (or gave up waiting for auth). Idempotent: unknown ids are ignored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    /// The session.
    pub id: SessionId,
}

/// A session joins a room. Resolves, once this instance is subscribed to the room channel,
/// with the room's members on this shard.
#[derive(Message)]
#[rtype(result = "Vec<Member>")]
pub struct Join {
    /// The session.
    pub id: SessionId,
    /// The room.
    pub room: RoomId,
}

/// A session leaves a room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// The session.
    pub id: SessionId,
    /// The room.
    pub room: RoomId,
}

/// A session subscribes to or unsubscribes from a topic.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTopic {
    /// The session.
    pub id: SessionId,
    /// The topic.
    pub topic: Topic,
    /// Subscribe (`true`) or unsubscribe.
    pub on: bool,
}

// ---------------------------------------------------------------------------------------------
// Subscriber -> Registry
// ---------------------------------------------------------------------------------------------

/// Who a dispatched frame is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every session of a user.
    User(UserId),
    /// Every session in a room.
    Room(RoomId),
    /// Every session subscribed to a topic.
    Topic(Topic),
}

/// A frame, encoded once, for every local session matching `target`.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Dispatch {
    /// Recipients.
    pub target: Target,
    /// The complete WebSocket frame, shared by every recipient.
    pub frame: Bytes,
    /// For metrics.
    pub kind: OutKind,
}

/// Frames for one shard from one batch of Redis messages, in order (one cross-thread message
/// per batch instead of one per frame).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DispatchBatch(pub Vec<Dispatch>);

/// Close every session of the shard (graceful shutdown). Resolves with how many were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
}

// ---------------------------------------------------------------------------------------------
// Registry -> Subscriber
// ---------------------------------------------------------------------------------------------

/// A registry shard introduces itself to the subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachShard {
    /// Its id, below [`MAX_SHARDS`].
    pub id: ShardId,
    /// Its address.
    pub addr: Addr<Registry>,
}

/// The per-user or per-room channel a shard needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKey {
    /// `user:notifications:{id}`.
    User(UserId),
    /// `chat:room:{id}`.
    Room(RoomId),
}

/// A shard's first local session for a key appeared (`on`), or its last one left.
/// With `on`, resolves once Redis confirmed the subscription (or at once while Redis is down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Interest {
    /// The shard.
    pub shard: ShardId,
    /// The channel.
    pub key: ChannelKey,
    /// Needed (`true`) or no longer needed.
    pub on: bool,
}

/// Unsubscribe from everything and close the pub/sub connection (graceful shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSubscriber;

// ---------------------------------------------------------------------------------------------
// Registry -> Session
// ---------------------------------------------------------------------------------------------

/// Why a session receives a frame; the session drops frames for rooms or topics it has left
/// meanwhile.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Addressed to the user.
    User,
    /// Addressed to a room.
    Room(RoomId),
    /// Addressed to a topic.
    Topic(Topic),
}

/// A frame for one session (bounded: sent with `try_send`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The encoded frame.
    pub frame: Bytes,
    /// What it was addressed to.
    pub scope: Scope,
}

/// The session's mailbox overflowed: it is dropped as a slow consumer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick;

/// Close the session with a code (graceful shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
}
