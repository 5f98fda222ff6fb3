//! Every message between actors. These types are the API of the actor system: reading this
//! file tells the whole message flow (see the crate docs for the picture).

use std::sync::Arc;

use actix::prelude::*;

use actix::dev::ToEnvelope;

use crate::{
    common::auth::Identity,
    common::backlog::Credit,
    common::outbound::Outbound,
    common::queued::{KickReason, QueuedBytes},
};

use hub_wire::protocol::{HubCommand, Member, MessageId, RoomId, Topic, UserId};

/// Identifies a session within an instance.
pub type SessionId = u64;

/// Identifies a registry shard (one per HTTP worker thread).
pub type ShardId = usize;

/// The most shards an instance runs (shard sets are `u64` bit masks).
pub const MAX_SHARDS: usize = 64;

/// What the core can do to a session, whatever its transport. A transport provides an actor
/// that handles [`Deliver`], [`Kick`] and [`Close`]; its address is the handle, so a new
/// transport never touches the core.
pub trait SessionHandle: Send + Sync {
    /// Delivers events if the session's mailbox has room (fan-out never blocks).
    fn try_deliver(&self, msg: Deliver) -> Result<(), SendError<Deliver>>;
    /// Drops the session as a slow consumer (sent once, past the mailbox bound).
    fn kick(&self, reason: KickReason);
    /// Closes the session with a WebSocket close code (or its transport's equivalent).
    fn close(&self, code: u16, reason: &'static str);
}

impl<A> SessionHandle for Addr<A>
where
    A: Actor + Handler<Deliver> + Handler<Kick> + Handler<Close>,
    A::Context: ToEnvelope<A, Deliver> + ToEnvelope<A, Kick> + ToEnvelope<A, Close>,
{
    fn try_deliver(&self, msg: Deliver) -> Result<(), SendError<Deliver>> {
        self.try_send(msg)
    }

    fn kick(&self, reason: KickReason) {
        self.do_send(Kick(reason));
    }

    fn close(&self, code: u16, reason: &'static str) {
        self.do_send(Close { code, reason });
    }
}

/// A session as the registry holds it: its transport-neutral handle.
#[derive(Clone)]
pub struct SessionAddr(Arc<dyn SessionHandle>);

impl SessionAddr {
    /// The handle of a session actor.
    pub fn new(handle: impl SessionHandle + 'static) -> Self {
        SessionAddr(Arc::new(handle))
    }
}

impl std::ops::Deref for SessionAddr {
    type Target = dyn SessionHandle;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

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
    pub addr: SessionAddr,
    /// The bytes held for the client, which the registry adds its deliveries to.
    pub queued: Arc<QueuedBytes>,
}

/// A session is waiting for its `auth` frame (tracked so that shutdown can close it too).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pending {
    /// The session.
    pub id: SessionId,
    /// Its address.
    pub addr: SessionAddr,
}

/// A session ended (or gave up waiting for auth). Idempotent: unknown ids are ignored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    /// The session.
    pub id: SessionId,
}

/// A session joins a room. Resolves, once this instance is subscribed to the room channel,
/// with the room's members on this instance.
#[derive(Message)]
#[rtype(result = "LocalMembers")]
pub struct Join {
    /// The session.
    pub id: SessionId,
    /// The room.
    pub room: RoomId,
}

/// A room's members on this instance (the answer to [`Join`]): at most the listing limit,
/// and how many there are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalMembers {
    /// Members (at most the limit).
    pub members: Vec<Member>,
    /// How many users of the room this instance holds.
    pub count: usize,
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

/// What a dispatch brings each of its recipient sessions, shared by all of them.
#[derive(Clone, Debug)]
pub enum Item {
    /// An event for the client, encoded once per wire protocol.
    Event(Arc<Outbound>),
    /// A hub command for the session core to act on (parsed once; see
    /// [`hub_wire::protocol::HubMessage`]).
    Command(Arc<HubCommand>),
}

impl Item {
    /// The bytes it will put on a client's socket (0 for a command).
    pub fn bytes(&self) -> usize {
        match self {
            Item::Event(event) => event.native().len(),
            Item::Command(_) => 0,
        }
    }
}

/// An event, encoded once per wire protocol, or a hub command, for every local session
/// matching `target`.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Dispatch {
    /// Recipients.
    pub target: Target,
    /// The event or command, shared by every recipient.
    pub item: Item,
    /// The history id of a chat message (sessions that just received it in `joined` drop
    /// the live copy).
    pub order: Option<MessageId>,
}

/// Frames for one shard from one batch of Redis messages, in order (one cross-thread message
/// per batch instead of one per frame).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DispatchBatch {
    /// The frames, in the order Redis delivered them.
    pub frames: Vec<Dispatch>,
    /// The batch's share of the subscriber's backlog, given back when the batch is dropped.
    pub credit: Credit,
}

/// Close up to `max` sessions of the shard (graceful shutdown, in batches); they are
/// unregistered at once. Resolves with how many were told to close (0: none left).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
    /// Most sessions to close now.
    pub max: usize,
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
    /// Where its batches go.
    pub addr: Recipient<DispatchBatch>,
}

/// The per-user or per-room channel a shard needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKey {
    /// `user:notifications:{id}`.
    User(UserId),
    /// `chat:room:{id}`.
    Room(RoomId),
}

impl ChannelKey {
    /// Which of `connections` ingest connections carries this channel: always the same one,
    /// so a channel's messages keep their order.
    pub fn ingest_index(&self, connections: usize) -> usize {
        use std::hash::{Hash, Hasher};
        if connections <= 1 {
            return 0;
        }
        // SipHash with fixed keys: the same spread on every run and instance.
        let mut hasher = std::hash::DefaultHasher::new();
        self.hash(&mut hasher);
        (hasher.finish() % connections as u64) as usize
    }
}

/// The subscribers of an instance's ingest connections, indexed as
/// [`ChannelKey::ingest_index`] spreads the channels.
pub type Ingest = Arc<[Recipient<Interest>]>;

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

/// One event (or hub command) for one session, and what it was addressed to.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The event or command, shared by every recipient.
    pub item: Item,
    /// What it was addressed to.
    pub scope: Scope,
    /// The history id of a chat message, if it has one.
    pub order: Option<MessageId>,
}

/// Events for one session, in order. The registry sends one per session per batch of events,
/// so a burst costs one message, not one per frame; its bytes are counted in the session's
/// [`QueuedBytes`] until the session takes them out of its mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The first event.
    pub first: Delivery,
    /// The others of the batch (empty, with no allocation, for a single event).
    pub more: Vec<Delivery>,
    /// What the events count in the session's [`QueuedBytes`] (frames plus overhead).
    pub bytes: usize,
}

impl Deliver {
    /// A message holding one event.
    pub fn one(first: Delivery) -> Self {
        let bytes = first.cost();
        Deliver {
            first,
            more: Vec::new(),
            bytes,
        }
    }

    /// Adds an event.
    pub fn push(&mut self, delivery: Delivery) {
        self.bytes += delivery.cost();
        self.more.push(delivery);
    }
}

impl Delivery {
    /// What the delivery counts against the session's queue bound.
    pub fn cost(&self) -> usize {
        self.item.bytes() + crate::common::queued::DELIVERY_OVERHEAD
    }
}

impl IntoIterator for Deliver {
    type Item = Delivery;
    type IntoIter = std::iter::Chain<std::iter::Once<Delivery>, std::vec::IntoIter<Delivery>>;

    /// The events, in order.
    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.more)
    }
}

/// The registry dropped the session as a slow consumer (already unregistered and counted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick(pub KickReason);

/// Close the session with a code (graceful shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
}

// ---------------------------------------------------------------------------------------------
// Subscriber -> sinks (hooks, called on the subscriber's thread)
// ---------------------------------------------------------------------------------------------

/// Hooks for events that are not fanned out to sessions as they are.
pub trait InboundSink: Send + Sync {
    /// Called for every valid `cache:invalidate` payload.
    fn cache_invalidate(&self, _pattern: &str) {}
    /// Called for every valid `analytics:events` payload.
    fn analytics(&self, _event: hub_wire::protocol::AnalyticsEvent) {}
    /// Called for every message on the instance's canary channel.
    fn canary(&self, _payload: &[u8]) {}
    /// Called when `user` was taken out of `room` (`hub:room-access`).
    fn room_removed(&self, _user: &UserId, _room: &RoomId) {}
}

// ---------------------------------------------------------------------------------------------
// Local presence -> Roster
// ---------------------------------------------------------------------------------------------

/// A user's first session on this instance joined a room (`joined`), or its last one left.
/// Sent while the local presence entry is locked, so the roster sees the changes of one room
/// in the order they happened.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct PresenceChange {
    /// The room.
    pub room: RoomId,
    /// The user.
    pub member: Member,
    /// First local session joined (`true`) or last one left.
    pub joined: bool,
}

/// Remove this instance from the shared presence (graceful shutdown): its entries are
/// deleted and leave events published, as if it had died, but at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRoster;

// ---------------------------------------------------------------------------------------------
// Subscriber (through its analytics sink) and HTTP API -> Analytics
// ---------------------------------------------------------------------------------------------

/// A valid `analytics:events` payload for the aggregator (sent with `try_send`: a full
/// mailbox drops the event and counts it in `hub_analytics_dropped_total`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordEvent(pub hub_wire::protocol::AnalyticsEvent);

/// Asks the aggregator for its current snapshot (the JSON of `GET /api/analytics`).
#[derive(Message)]
#[rtype(result = "serde_json::Value")]
pub struct GetSnapshot;
