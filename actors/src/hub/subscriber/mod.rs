//! The Redis subscriber actor: one of the instance's pub/sub ("ingest") connections.
//!
//! An instance runs `HUB_INGEST_CONNECTIONS` of them, each on a thread of its own; each
//! user and room channel belongs to one ([`ChannelKey::ingest_index`], so a channel's
//! messages keep their order), and the first also carries the fixed channels. Presence
//! events and AI results arrive on fixed channels but are addressed to a room or user whose
//! channel may belong to another connection: with more than one connection they go to every
//! shard, and each shard delivers them to its local members only.
//!
//! It keeps the set of channels the instance needs (the fixed channels, `hub:presence` among
//! them, plus a `user:notifications:{id}` or `chat:room:{id}` channel per user or room with a
//! local session, refcounted per registry shard) and reconciles Redis with it
//! (`connection.rs`); it parses and validates each message once, encodes it once as a
//! WebSocket frame, and hands it to the shards that hold its recipients (`routing.rs`). What
//! rooms and users missed while the connection was down is filled in from their histories
//! and inboxes ([`crate::features::recovery`]).

mod connection;
mod jobs;
mod routing;

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use actix::{fut, prelude::*};
use futures_util::{stream, Stream, StreamExt};
use hub_store::Store;
use log::{info, warn};
use prometheus::IntCounter;
use tokio::sync::{oneshot, watch};

use crate::{
    common::backlog::Backlog,
    common::metrics::{Metrics, OutKind},
    common::outbound::Outbound,
    connections::pubsub::{self, Commands, Link, Message},
    features::history::History,
    features::inbox::Inbox,
    features::job_gaps::JobGaps,
    features::recovery::{GapStart, Held, Recovery},
    messages::{
        AttachShard, ChannelKey, Dispatch, DispatchBatch, InboundSink, Interest, Item,
        StopSubscriber, Target, MAX_SHARDS,
    },
};

use hub_wire::protocol::{
    parse_inbound_timed, ChannelKind, HubMessage, Inbound, MessageId, Topic, FIXED_CHANNELS,
    ROOM_PREFIX, USER_PREFIX,
};
use routing::WarnLimiter;

/// Backoff before the first reconnect attempt; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between reconnect attempts: messages published after Redis returns and before
/// the hub resubscribes are lost for every channel but chat and inbox notifications (filled
/// from histories and inboxes), so keep it short; a refused connect costs next to nothing.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Default limit for connecting, and for a (un)subscribe or ping round trip during which
/// nothing at all arrives from Redis (see `connection::confirmed`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each link (each master's, on a cluster) is checked with a PING.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Most Redis messages routed before their frames are handed to the shards in one message.
const DISPATCH_BATCH: usize = 256;
/// Default for the most bytes of frames handed to the shards and not yet fanned out; above it
/// the subscriber stops reading Redis (see [`crate::common::backlog`]). With the connection's
/// read-ahead ([`pubsub::HIGH_WATER`]) this bounds what a flood can make the hub hold.
pub const BACKLOG_CAP: usize = 4 << 20;
/// Bookkeeping counted per frame in the backlog besides its bytes (the dispatch entry, the
/// shared event and its recipient key).
const FRAME_OVERHEAD: usize = 128;
/// Most gap reads in flight per connection after a reconnect; the others wait their turn.
pub const GAP_READS: usize = 32;
/// Tries per gap read before its gap is given up (its held live messages then go out).
const GAP_READ_TRIES: u32 = 5;
/// Wait before a failed gap read is tried again; doubles per try.
const GAP_RETRY: Duration = Duration::from_millis(100);
/// At most this many "dropped payload" warnings per window; the rest are counted.
const WARNINGS_PER_WINDOW: u32 = 10;
const WARNING_WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Channel {
    /// Shards (bits) with a local session needing this channel.
    shards: u64,
    /// Redis confirmed the subscription on the current connection...
    subscribed: bool,
    /// ...on this link (its master's, on a cluster).
    link: u64,
    /// Already listed in `dirty`.
    queued: bool,
    /// Interest requests waiting for the subscription.
    waiters: Vec<oneshot::Sender<()>>,
}

impl Channel {
    fn wanted(&self) -> bool {
        self.shards != 0
    }
}

fn channel_name(key: &ChannelKey) -> String {
    match key {
        ChannelKey::User(id) => format!("{USER_PREFIX}{id}"),
        ChannelKey::Room(id) => format!("{ROOM_PREFIX}{id}"),
    }
}

enum Event {
    /// Messages that were ready together (at most [`DISPATCH_BATCH`]).
    Messages(Vec<Message>),
    /// A link's stream ended: (generation, link).
    Ended(u64, u64),
}

struct Connection {
    sink: Commands,
    /// Each link's stream, by link id.
    streams: HashMap<u64, SpawnHandle>,
}

/// Subscribed instead of the fixed channels by every ingest connection but the first, so
/// that each has a first confirmation that marks it connected. Nothing is published on it.
pub const INGEST_HELLO: &str = "hub:ingest";

/// Which ingest connection a subscriber is, of how many, and how many of them are connected
/// (shared: `hub_redis_connected` is 1 only while all are).
#[derive(Clone, Debug)]
pub struct IngestSlot {
    /// This connection's index (0 carries the fixed channels).
    pub index: usize,
    /// Ingest connections of the instance.
    pub total: usize,
    /// How many are connected now.
    pub connected: Arc<AtomicUsize>,
    /// Whether connection 0 has the fixed channels (AI results, presence) subscribed now:
    /// the other connections confirm an interest only once it has (shared).
    pub fixed: Arc<watch::Sender<bool>>,
}

impl IngestSlot {
    /// Connection `index` of `total`, sharing `connected` and `fixed` with the others.
    pub fn new(index: usize, total: usize, shared: &IngestSlot) -> IngestSlot {
        IngestSlot {
            index,
            total,
            connected: shared.connected.clone(),
            fixed: shared.fixed.clone(),
        }
    }
}

impl Default for IngestSlot {
    fn default() -> Self {
        IngestSlot {
            index: 0,
            total: 1,
            connected: Arc::default(),
            fixed: Arc::new(watch::channel(false).0),
        }
    }
}

/// The pub/sub actor.
pub struct Subscriber {
    target: Store,
    metrics: Arc<Metrics>,
    sinks: Vec<Arc<dyn InboundSink>>,
    shards: Vec<Option<Recipient<DispatchBatch>>>,
    /// Frames routed in the current batch, per shard, not yet sent.
    batches: Vec<Vec<Dispatch>>,
    /// Fan-out work handed to the shards and not yet done.
    backlog: Arc<Backlog>,
    channels: HashMap<ChannelKey, Channel>,
    dirty: Vec<ChannelKey>,
    conn: Option<Connection>,
    /// Bumped on every connect attempt and loss; stale callbacks compare it.
    generation: u64,
    fixed_subscribed: bool,
    /// The link the fixed channels are subscribed on.
    fixed_link: u64,
    syncing: bool,
    /// Links with a PING in flight.
    pinging: HashSet<u64>,
    /// Reconnecting the links that are down is scheduled or under way.
    repairing: bool,
    /// This connection's share of `hub_redis_nodes_down`.
    nodes_down: i64,
    backoff: Duration,
    ever_connected: bool,
    stopping: bool,
    warnings: WarnLimiter,
    /// This instance's own canary channel, subscribed like the fixed channels.
    canary: Option<String>,
    /// See [`COMMAND_TIMEOUT`].
    command_timeout: Duration,
    /// What rooms and users missed while the connection was down.
    recovery: Recovery,
    /// Gaps waiting for a turn to be read (with the tries made), at most [`GAP_READS`] read
    /// at once (`gap_reads`).
    gap_queue: std::collections::VecDeque<(ChannelKey, GapStart, u32)>,
    gap_reads: usize,
    /// Jobs followed for the chunks missed while the fixed channels are lost (the first
    /// connection's).
    job_gaps: Option<JobGaps>,
    /// Jobs waiting for a turn to read their gap (with the tries made), sharing `gap_reads`.
    job_queue: std::collections::VecDeque<(String, u32)>,
    slot: IngestSlot,
    /// Counted in `slot.connected`.
    counted: bool,
}

impl Subscriber {
    /// A subscriber for `target`; connects when started.
    pub fn new(target: Store, metrics: Arc<Metrics>) -> Self {
        let backlog = Backlog::new(BACKLOG_CAP, metrics.dispatch_backlog_bytes.clone());
        Subscriber {
            target,
            metrics,
            sinks: Vec::new(),
            shards: vec![None; MAX_SHARDS],
            batches: vec![Vec::new(); MAX_SHARDS],
            backlog,
            channels: HashMap::new(),
            dirty: Vec::new(),
            conn: None,
            generation: 0,
            fixed_subscribed: false,
            fixed_link: 0,
            syncing: false,
            pinging: HashSet::new(),
            repairing: false,
            nodes_down: 0,
            backoff: MIN_BACKOFF,
            ever_connected: false,
            stopping: false,
            warnings: WarnLimiter::new(),
            canary: None,
            command_timeout: COMMAND_TIMEOUT,
            recovery: Recovery::default(),
            gap_queue: Default::default(),
            gap_reads: 0,
            job_gaps: None,
            job_queue: Default::default(),
            slot: IngestSlot::default(),
            counted: false,
        }
    }

    /// Makes this subscriber ingest connection `slot.index` of `slot.total`.
    pub fn with_ingest_slot(mut self, slot: IngestSlot) -> Self {
        self.slot = slot;
        self
    }

    /// The channels subscribed for the connection's whole life.
    fn fixed_channels(&self) -> Vec<String> {
        if self.slot.index != 0 {
            return vec![INGEST_HELLO.to_string()];
        }
        let fixed = FIXED_CHANNELS.iter().map(|c| c.to_string());
        fixed.chain(self.canary.clone()).collect()
    }

    /// This connection is up: `hub_redis_connected` turns 1 once every one is.
    fn count_connected(&mut self) {
        if !self.counted {
            self.counted = true;
            let up = self.slot.connected.fetch_add(1, Ordering::SeqCst) + 1;
            if up >= self.slot.total {
                self.metrics.redis_connected.set(1);
            }
        }
    }

    /// This connection is down.
    fn count_lost(&mut self) {
        if self.counted {
            self.counted = false;
            self.slot.connected.fetch_sub(1, Ordering::SeqCst);
        }
        self.metrics.redis_connected.set(0);
    }

    /// Masters (of a cluster) this connection cannot read now.
    fn set_nodes_down(&mut self, down: i64) {
        self.metrics.redis_nodes_down.add(down - self.nodes_down);
        self.nodes_down = down;
    }

    /// After a reconnect, delivers from `history` the chat messages each local room missed
    /// while the pub/sub connection was down, and from `inbox` (when set) the notifications
    /// each local user missed; also reloads the inbox function Redis may have lost.
    pub fn with_recovery(mut self, history: History, inbox: Option<Inbox>) -> Self {
        self.recovery = Recovery::new(Some(history), inbox);
        self
    }

    /// After a reconnect, delivers the chunks each job followed recorded while the fixed
    /// channels were lost, read through `publisher` ([`crate::features::job_gaps`]). Only for
    /// the first ingest connection (the one with the fixed channels).
    pub fn with_job_gaps(mut self, publisher: crate::connections::publisher::Publisher) -> Self {
        self.job_gaps = Some(JobGaps::new(publisher));
        self
    }

    /// Also subscribes to `channel` for the whole life of the connection and hands its
    /// messages to the sinks' [`InboundSink::canary`] (the health check's round trip).
    pub fn with_canary(mut self, channel: String) -> Self {
        self.canary = Some(channel);
        self
    }

    /// Stops reading Redis while more than `bytes` of frames wait for the shards (default
    /// [`BACKLOG_CAP`]).
    pub fn with_backlog_cap(mut self, bytes: usize) -> Self {
        self.backlog = Backlog::new(bytes, self.metrics.dispatch_backlog_bytes.clone());
        self
    }

    /// How long a command may wait with nothing arriving from Redis before the connection is
    /// taken for dead (default [`COMMAND_TIMEOUT`]).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Adds a hook for cache invalidations and analytics events.
    pub fn with_sink(mut self, sink: Arc<dyn InboundSink>) -> Self {
        self.sinks.push(sink);
        self
    }
}

impl Actor for Subscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.redis_connected.set(0);
        self.connect(ctx);
        ctx.run_interval(PING_INTERVAL, |act, ctx| {
            act.ping(ctx);
            act.forget_idle_jobs();
        });
    }
}

impl StreamHandler<Event> for Subscriber {
    fn handle(&mut self, event: Event, ctx: &mut Context<Self>) {
        match event {
            Event::Messages(batch) => {
                for msg in batch {
                    self.route(msg);
                }
                self.flush_batches();
            }
            Event::Ended(generation, link) if generation == self.generation => {
                self.node_lost(ctx, link, "connection closed")
            }
            Event::Ended(..) => {}
        }
    }

    /// A pub/sub stream ending is a lost connection, handled above; the actor lives on.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<AttachShard> for Subscriber {
    type Result = ();

    fn handle(&mut self, msg: AttachShard, _: &mut Context<Self>) {
        if msg.id < MAX_SHARDS {
            self.shards[msg.id] = Some(msg.addr);
        }
    }
}

impl Handler<Interest> for Subscriber {
    type Result = ResponseFuture<()>;

    /// Resolves once the channel is subscribed (and, on a connection other than the first,
    /// once the first has the fixed channels): `connected` and `joined` wait for it, across
    /// outages. A channel asked for while the connection is down or being rebuilt has its gap
    /// start recorded now, and is filled from its stream once subscribed.
    fn handle(&mut self, msg: Interest, ctx: &mut Context<Self>) -> Self::Result {
        let bit = 1u64 << (msg.shard % MAX_SHARDS);
        let up = self.fixed_subscribed;
        let ch = self.channels.entry(msg.key.clone()).or_default();
        let was_wanted = ch.wanted();
        if msg.on {
            ch.shards |= bit;
        } else {
            ch.shards &= !bit;
        }
        let changed = was_wanted != ch.wanted();
        let wait = (msg.on && !ch.subscribed).then(|| {
            let (tx, rx) = oneshot::channel();
            ch.waiters.push(tx);
            rx
        });
        if wait.is_some() && !up {
            self.recovery.subscribed(&msg.key);
        }
        let fixed = (msg.on && self.slot.index != 0).then(|| self.slot.fixed.subscribe());
        if changed {
            if !ch.queued {
                ch.queued = true;
                self.dirty.push(msg.key.clone());
            }
            let delta = if was_wanted { -1 } else { 1 };
            match msg.key {
                ChannelKey::User(_) => self.metrics.users.add(delta),
                ChannelKey::Room(_) => self.metrics.rooms.add(delta),
            }
            self.reconcile(ctx);
        }
        Box::pin(async move {
            if let Some(rx) = wait {
                let _ = rx.await;
            }
            if let Some(mut fixed) = fixed {
                let _ = fixed.wait_for(|up| *up).await;
            }
        })
    }
}

impl Handler<StopSubscriber> for Subscriber {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopSubscriber, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let sink = self.conn.as_ref().map(|c| c.sink.clone());
        let unsubscribe = async move {
            if let Some(sink) = sink {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.unsubscribe_all()).await;
            }
        };
        Box::pin(fut::wrap_future::<_, Self>(unsubscribe).map(|_, act, ctx| {
            act.lost(ctx, "shutting down");
            info!("redis pub/sub unsubscribed and closed");
        }))
    }
}
