//! The Redis subscriber actor: the instance's one pub/sub connection.
//!
//! It keeps the set of channels the instance needs (the fixed channels, `hub:presence` among
//! them, plus a
//! `user:notifications:{id}` or `chat:room:{id}` channel per user or room with a local
//! session, refcounted per registry shard), and reconciles Redis with it: one batched
//! `SUBSCRIBE`/`UNSUBSCRIBE` at a time, so requests never race. Each message is parsed and
//! validated once, encoded once as a WebSocket frame, and sent to the shards that hold its
//! recipients; while the shards are more than [`BACKLOG_CAP`] behind, it stops reading Redis.
//! When the connection drops (or stops answering pings) it reconnects with capped
//! exponential backoff and resubscribes the whole set.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use actix::{fut, prelude::*};
use futures_util::{stream, Stream, StreamExt};
use log::{info, warn};
use prometheus::IntCounter;
use tokio::sync::oneshot;

use crate::{
    backlog::Backlog,
    history::History,
    inbox::Inbox,
    messages::{
        AttachShard, ChannelKey, Dispatch, DispatchBatch, Interest, StopSubscriber, Target,
        MAX_SHARDS,
    },
    metrics::{Metrics, OutKind},
    outbound::Outbound,
    protocol::{
        parse_inbound_timed, ChannelKind, Inbound, MessageId, Topic, FIXED_CHANNELS, ROOM_PREFIX,
        USER_PREFIX,
    },
    pubsub::{self, Commands, Message},
    recovery::{Held, Recovery},
    registry::Registry,
};

/// Backoff before the first reconnect attempt; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between reconnect attempts: messages published after Redis returns and before
/// the hub resubscribes are lost for every channel but chat (filled from history), so keep it
/// short; a refused connect costs next to nothing.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Default limit for connecting, and for a (un)subscribe or ping round trip during which
/// nothing at all arrives from Redis (see [`confirmed`]).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the connection is checked with a PING.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Most Redis messages routed before their frames are handed to the shards in one message.
const DISPATCH_BATCH: usize = 256;
/// Default for the most bytes of frames handed to the shards and not yet fanned out; above it
/// the subscriber stops reading Redis (see [`crate::backlog`]). With the connection's
/// read-ahead ([`pubsub::HIGH_WATER`]) this bounds what a flood can make the hub hold.
pub const BACKLOG_CAP: usize = 4 << 20;
/// Bookkeeping counted per frame in the backlog besides its bytes (the dispatch entry, the
/// shared event and its recipient key).
const FRAME_OVERHEAD: usize = 128;
/// At most this many "dropped payload" warnings per window; the rest are counted.
const WARNINGS_PER_WINDOW: u32 = 10;
const WARNING_WINDOW: Duration = Duration::from_secs(10);

/// The pub/sub message stream, read only while the shards' backlog has room.
struct Gated {
    inner: pubsub::Messages,
    backlog: Arc<Backlog>,
    pauses: IntCounter,
    paused: bool,
}

impl Gated {
    fn new(inner: pubsub::Messages, backlog: Arc<Backlog>, metrics: &Metrics) -> Gated {
        Gated {
            inner,
            backlog,
            pauses: metrics.redis_read_pauses.clone(),
            paused: false,
        }
    }
}

impl Stream for Gated {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Message>> {
        if self.backlog.poll_room(cx).is_pending() {
            if !self.paused {
                self.paused = true;
                self.pauses.inc();
            }
            return Poll::Pending;
        }
        self.paused = false;
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[derive(Default)]
struct Channel {
    /// Shards (bits) with a local session needing this channel.
    shards: u64,
    /// Redis confirmed the subscription on the current connection.
    subscribed: bool,
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
    Ended(u64),
}

struct Connection {
    sink: Commands,
    stream: SpawnHandle,
}

/// Limits warn lines for bad payloads so that a flood of them cannot flood the log.
struct WarnLimiter {
    window_start: Instant,
    emitted: u32,
    suppressed: u64,
}

impl WarnLimiter {
    fn allow(&mut self) -> bool {
        if self.window_start.elapsed() > WARNING_WINDOW {
            if self.suppressed > 0 {
                warn!(
                    "{} more invalid payloads dropped in the last {:?} (see hub_invalid_payloads_total)",
                    self.suppressed, WARNING_WINDOW
                );
            }
            self.window_start = Instant::now();
            self.emitted = 0;
            self.suppressed = 0;
        }
        self.emitted += 1;
        if self.emitted > WARNINGS_PER_WINDOW {
            self.suppressed += 1;
        }
        self.emitted <= WARNINGS_PER_WINDOW
    }
}

/// Awaits a command's confirmation. Confirmations travel behind the messages Redis sent
/// before them, so a subscribe during a flood (or while the hub has paused reading for its
/// backlog) can take long on a healthy connection: the connection counts as dead only when
/// `timeout` passes with no byte read from it, while the hub was not the one pausing.
async fn confirmed(
    sink: &Commands,
    backlog: &Backlog,
    timeout: Duration,
    what: &str,
    command: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let mut command = std::pin::pin!(command);
    let mut reads = sink.reads();
    loop {
        match tokio::time::timeout(timeout, &mut command).await {
            Ok(result) => return result.map_err(|e| format!("{what}: {e}")),
            Err(_) => {
                let now = sink.reads();
                if now == reads && !backlog.is_full() {
                    return Err(format!("{what}: no answer from Redis for {timeout:?}"));
                }
                reads = now;
            }
        }
    }
}

/// Hooks for events that are not fanned out to sessions as they are.
pub trait InboundSink: Send + Sync {
    /// Called for every valid `cache:invalidate` payload.
    fn cache_invalidate(&self, _pattern: &str) {}
    /// Called for every valid `analytics:events` payload.
    fn analytics(&self, _event: crate::protocol::AnalyticsEvent) {}
    /// Called for every message on the instance's canary channel (see [`Subscriber::with_canary`]).
    fn canary(&self, _payload: &[u8]) {}
}

/// The pub/sub actor.
pub struct Subscriber {
    client: redis::Client,
    metrics: Arc<Metrics>,
    sinks: Vec<Arc<dyn InboundSink>>,
    shards: Vec<Option<Addr<Registry>>>,
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
    syncing: bool,
    ping_in_flight: bool,
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
}

impl Subscriber {
    /// A subscriber for `client`; connects when started.
    pub fn new(client: redis::Client, metrics: Arc<Metrics>) -> Self {
        let backlog = Backlog::new(BACKLOG_CAP, metrics.dispatch_backlog_bytes.clone());
        Subscriber {
            client,
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
            syncing: false,
            ping_in_flight: false,
            backoff: MIN_BACKOFF,
            ever_connected: false,
            stopping: false,
            warnings: WarnLimiter {
                window_start: Instant::now(),
                emitted: 0,
                suppressed: 0,
            },
            canary: None,
            command_timeout: COMMAND_TIMEOUT,
            recovery: Recovery::default(),
        }
    }

    /// After a reconnect, delivers from `history` the chat messages each local room missed
    /// while the pub/sub connection was down, and from `inbox` (when set) the notifications
    /// each local user missed; also reloads the inbox function Redis may have lost.
    pub fn with_recovery(mut self, history: History, inbox: Option<Inbox>) -> Self {
        self.recovery = Recovery::new(Some(history), inbox);
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

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        let info = self.client.get_connection_info().clone();
        let timeout = self.command_timeout;
        let connect = async move {
            tokio::time::timeout(timeout, pubsub::connect(&info))
                .await
                .map_err(|_| "timed out".to_string())?
        };
        ctx.spawn(
            fut::wrap_future::<_, Self>(connect).map(move |res, act, ctx| {
                if generation != act.generation {
                    return;
                }
                match res {
                    Ok((sink, stream)) => {
                        let events = Gated::new(stream, act.backlog.clone(), &act.metrics)
                            .ready_chunks(DISPATCH_BATCH)
                            .map(Event::Messages)
                            .chain(stream::once(async move { Event::Ended(generation) }));
                        let stream = ctx.add_stream(events);
                        act.conn = Some(Connection { sink, stream });
                        if act.ever_connected {
                            act.recovery.suspend();
                        }
                        act.dirty = act.channels.keys().cloned().collect();
                        for ch in act.channels.values_mut() {
                            ch.queued = true;
                        }
                        act.reconcile(ctx);
                    }
                    Err(e) => {
                        warn!(
                            "redis pub/sub connect to {:?} failed: {e}",
                            act.client.get_connection_info().addr()
                        );
                        act.retry_later(ctx);
                    }
                }
            }),
        );
    }

    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    /// The connection is gone: forget what Redis had, wake waiters, reconnect.
    fn lost(&mut self, ctx: &mut Context<Self>, why: &str) {
        if let Some(conn) = self.conn.take() {
            ctx.cancel_future(conn.stream);
        }
        self.generation += 1;
        self.syncing = false;
        self.ping_in_flight = false;
        self.fixed_subscribed = false;
        self.metrics.redis_connected.set(0);
        let recovery = &mut self.recovery;
        self.channels.retain(|key, ch| {
            if !ch.wanted() {
                recovery.forget(key);
            }
            ch.wanted()
        });
        for ch in self.channels.values_mut() {
            ch.subscribed = false;
            ch.queued = false;
            ch.waiters.clear();
        }
        self.dirty.clear();
        if self.stopping {
            return;
        }
        warn!("redis pub/sub connection lost ({why}); reconnecting");
        self.retry_later(ctx);
    }

    /// Drops a channel nobody needs any more.
    fn forget(&mut self, key: &ChannelKey) {
        self.channels.remove(key);
        self.recovery.forget(key);
    }

    fn mark_dirty(&mut self, key: &ChannelKey) {
        if let Some(ch) = self.channels.get_mut(key) {
            if !ch.queued {
                ch.queued = true;
                self.dirty.push(key.clone());
            }
        }
    }

    /// Sends one batched SUBSCRIBE/UNSUBSCRIBE for everything that differs from what Redis
    /// has, unless a batch is already in flight (its completion calls this again).
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(sink) = self.conn.as_ref().map(|c| c.sink.clone()) else {
            return;
        };
        if self.syncing {
            return;
        }
        let mut subscribe: Vec<String> = Vec::new();
        let mut unsubscribe: Vec<String> = Vec::new();
        let mut sub_keys = Vec::new();
        let mut unsub_keys = Vec::new();
        let with_fixed = !self.fixed_subscribed;
        if with_fixed {
            subscribe.extend(FIXED_CHANNELS.iter().map(|c| c.to_string()));
            subscribe.extend(self.canary.clone());
        }
        for key in std::mem::take(&mut self.dirty) {
            let Some(ch) = self.channels.get_mut(&key) else {
                continue;
            };
            ch.queued = false;
            match (ch.wanted(), ch.subscribed) {
                (true, false) => {
                    subscribe.push(channel_name(&key));
                    sub_keys.push(key);
                }
                (false, true) => {
                    unsubscribe.push(channel_name(&key));
                    unsub_keys.push(key);
                }
                (false, false) => {
                    self.forget(&key);
                }
                (true, true) => {}
            }
        }
        if subscribe.is_empty() && unsubscribe.is_empty() {
            return;
        }
        self.syncing = true;
        let generation = self.generation;
        let (backlog, timeout) = (self.backlog.clone(), self.command_timeout);
        let sync = async move {
            if !subscribe.is_empty() {
                let what = format!("subscribe {} ({} channels)", subscribe[0], subscribe.len());
                let command = sink.subscribe(&subscribe);
                confirmed(&sink, &backlog, timeout, &what, command).await?;
            }
            if !unsubscribe.is_empty() {
                let what = format!("unsubscribe {}", unsubscribe[0]);
                let command = sink.unsubscribe(&unsubscribe);
                confirmed(&sink, &backlog, timeout, &what, command).await?;
            }
            Ok::<_, String>(())
        };
        ctx.spawn(fut::wrap_future::<_, Self>(sync).map(move |res, act, ctx| {
            if generation != act.generation {
                return;
            }
            act.syncing = false;
            if let Err(e) = res {
                return act.lost(ctx, &e);
            }
            if with_fixed {
                act.fixed_subscribed = true;
                act.metrics.redis_connected.set(1);
                act.backoff = MIN_BACKOFF;
                act.reload_inbox(ctx);
                if act.ever_connected {
                    act.fill_gaps(ctx);
                    act.metrics.redis_reconnects.inc();
                    info!(
                        "redis pub/sub reconnected; {} channels resubscribed",
                        act.channels.len()
                    );
                } else {
                    info!("redis pub/sub connected");
                }
                act.ever_connected = true;
            }
            act.synced(sub_keys, unsub_keys);
            act.reconcile(ctx);
        }));
    }

    fn synced(&mut self, sub_keys: Vec<ChannelKey>, unsub_keys: Vec<ChannelKey>) {
        for key in sub_keys {
            if let Some(ch) = self.channels.get_mut(&key) {
                self.recovery.subscribed(&key);
                ch.subscribed = true;
                for waiter in ch.waiters.drain(..) {
                    let _ = waiter.send(());
                }
                if !ch.wanted() {
                    self.mark_dirty(&key);
                }
            }
        }
        for key in unsub_keys {
            if let Some(ch) = self.channels.get_mut(&key) {
                ch.subscribed = false;
                if ch.wanted() {
                    self.mark_dirty(&key);
                } else {
                    self.forget(&key);
                }
            }
        }
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        let Some(conn) = &self.conn else { return };
        if self.ping_in_flight || !self.fixed_subscribed {
            return;
        }
        self.ping_in_flight = true;
        let generation = self.generation;
        let sink = conn.sink.clone();
        let (backlog, timeout) = (self.backlog.clone(), self.command_timeout);
        let ping = async move { confirmed(&sink, &backlog, timeout, "ping", sink.ping()).await };
        ctx.spawn(fut::wrap_future::<_, Self>(ping).map(move |res, act, ctx| {
            if generation != act.generation {
                return;
            }
            act.ping_in_flight = false;
            if let Err(e) = res {
                act.lost(ctx, &e);
            }
        }));
    }

    /// Queues the frame for the shards needing `key`; returns them (a bit set, 0 for none).
    fn dispatch(
        &mut self,
        key: ChannelKey,
        frame: &[u8],
        kind: OutKind,
        order: Option<MessageId>,
    ) -> u64 {
        let Some(shards) = self.channels.get(&key).map(|ch| ch.shards) else {
            return 0;
        };
        let target = match key {
            ChannelKey::User(user) => Target::User(user),
            ChannelKey::Room(room) => Target::Room(room),
        };
        self.send_to(shards, target, frame, kind, order);
        shards
    }

    /// Feeds `hub_deliver_latency_ms` once per event that was handed to at least one shard.
    fn observe_latency(&self, shards: u64, timestamp_ms: Option<f64>) {
        if let (true, Some(ts)) = (shards != 0, timestamp_ms) {
            self.metrics.observe_deliver_latency(ts);
        }
    }

    /// Handles a message on the canary channel; false for any other channel.
    fn route_canary(&self, msg: &Message) -> bool {
        if self.canary.as_deref() != Some(msg.channel()) {
            return false;
        }
        for sink in &self.sinks {
            sink.canary(msg.payload());
        }
        true
    }

    /// Dispatches a chat message or notification and remembers its id as where the channel's
    /// next gap fill starts. Nothing is dropped by id here: an `id` from a service's own
    /// payload must never hide other messages.
    fn dispatch_ordered(&mut self, key: ChannelKey, held: Held) -> u64 {
        if self.channels.contains_key(&key) {
            self.recovery.dispatched(&key, held.id);
        }
        let kind = match key {
            ChannelKey::Room(_) => OutKind::Chat,
            ChannelKey::User(_) => OutKind::Notification,
        };
        self.dispatch(key, &held.frame, kind, held.id)
    }

    /// Dispatches a live message, unless its channel's gap is being read (then it waits).
    fn dispatch_live(&mut self, key: ChannelKey, held: Held) -> u64 {
        match self.recovery.hold(&key, held) {
            Some(held) => self.dispatch_ordered(key, held),
            None => 0,
        }
    }

    /// Reads, for every local room and user, what was appended to its history or inbox since
    /// the last message it got; live messages wait until that is delivered.
    fn fill_gaps(&mut self, ctx: &mut Context<Self>) {
        for (key, start, read) in self.recovery.start() {
            ctx.spawn(fut::wrap_future::<_, Self>(read).map(move |res, act, _| {
                for held in act.recovery.finish(&key, start, res, &act.metrics) {
                    act.dispatch_ordered(key.clone(), held);
                }
                act.flush_batches();
            }));
        }
    }

    /// Loads the inbox function on every connection (a restarted Redis without persistence
    /// lost it).
    fn reload_inbox(&mut self, ctx: &mut Context<Self>) {
        if let Some(inbox) = self.recovery.inbox().cloned() {
            ctx.spawn(fut::wrap_future(async move {
                if let Err(e) = inbox.load().await {
                    warn!("after reconnecting: {e}");
                }
            }));
        }
    }

    /// Queues a frame for the shards in `shards`; [`Self::flush_batches`] sends the queue.
    fn send_to(
        &mut self,
        shards: u64,
        target: Target,
        frame: &[u8],
        kind: OutKind,
        order: Option<MessageId>,
    ) {
        // Inbound frames are envelopes `{"type","data"}`, except presence frames, which are
        // their own payload.
        let event = match kind {
            OutKind::Presence => Outbound::whole(kind, frame),
            _ => Outbound::from_envelope(kind, frame),
        };
        let msg = Dispatch {
            target,
            event: Arc::new(event),
            order,
        };
        for (i, shard) in self.shards.iter().enumerate() {
            if shards & (1 << i) != 0 && shard.is_some() {
                self.batches[i].push(msg.clone());
            }
        }
    }

    /// Sends each shard the frames queued for it, in one message: one cross-thread hand-over
    /// (allocation, queue push, wake-up) per batch of Redis messages instead of per message.
    fn flush_batches(&mut self) {
        for (i, queued) in self.batches.iter_mut().enumerate() {
            if queued.is_empty() {
                continue;
            }
            if let Some(addr) = &self.shards[i] {
                let bytes = queued
                    .iter()
                    .map(|d| d.event.native().len() + FRAME_OVERHEAD)
                    .sum();
                addr.do_send(DispatchBatch {
                    frames: std::mem::take(queued),
                    credit: self.backlog.take(bytes),
                });
            } else {
                queued.clear();
            }
        }
    }

    fn route(&mut self, msg: Message) {
        if self.route_canary(&msg) {
            return;
        }
        let channel = msg.channel();
        let kind = ChannelKind::of(channel);
        self.metrics.redis_message(&kind);
        let (inbound, timestamp) = match parse_inbound_timed(channel, msg.payload()) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.metrics.invalid_payload(&kind);
                if self.warnings.allow() {
                    warn!("dropped payload on {channel}: {e}");
                }
                return;
            }
        };
        let shards = match inbound {
            Inbound::Notification { user, frame, id } => {
                self.dispatch_live(ChannelKey::User(user), Held { frame, id })
            }
            Inbound::AiResult { user, frame } => {
                self.dispatch(ChannelKey::User(user), &frame, OutKind::AiResult, None)
            }
            Inbound::Chat {
                room,
                frame,
                id,
                foreign_id,
            } => {
                if foreign_id {
                    self.metrics.chat_foreign_ids.inc();
                }
                self.dispatch_live(ChannelKey::Room(room), Held { frame, id })
            }
            // Every instance hears every presence event; only those with local members of the
            // room (a subscribed room channel) deliver it.
            Inbound::Presence { room, frame } => {
                self.dispatch(ChannelKey::Room(room), &frame, OutKind::Presence, None)
            }
            Inbound::CacheInvalidate { pattern, frame } => {
                for sink in &self.sinks {
                    sink.cache_invalidate(&pattern);
                }
                let target = Target::Topic(Topic::Cache);
                self.send_to(u64::MAX, target, &frame, OutKind::Cache, None);
                u64::MAX
            }
            Inbound::Analytics(event) => {
                if let Some((last, rest)) = self.sinks.split_last() {
                    for sink in rest {
                        sink.analytics(event.clone());
                    }
                    last.analytics(event);
                }
                0
            }
        };
        self.observe_latency(shards, timestamp);
    }
}

impl Actor for Subscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.redis_connected.set(0);
        self.connect(ctx);
        ctx.run_interval(PING_INTERVAL, |act, ctx| act.ping(ctx));
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
            Event::Ended(generation) if generation == self.generation => {
                self.lost(ctx, "connection closed")
            }
            Event::Ended(_) => {}
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

    fn handle(&mut self, msg: Interest, ctx: &mut Context<Self>) -> Self::Result {
        let bit = 1u64 << (msg.shard % MAX_SHARDS);
        let connected = self.conn.is_some();
        let ch = self.channels.entry(msg.key.clone()).or_default();
        let was_wanted = ch.wanted();
        if msg.on {
            ch.shards |= bit;
        } else {
            ch.shards &= !bit;
        }
        let changed = was_wanted != ch.wanted();
        let wait = (msg.on && !ch.subscribed && connected).then(|| {
            let (tx, rx) = oneshot::channel();
            ch.waiters.push(tx);
            rx
        });
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
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.unsubscribe(&[])).await;
            }
        };
        Box::pin(fut::wrap_future::<_, Self>(unsubscribe).map(|_, act, ctx| {
            act.lost(ctx, "shutting down");
            info!("redis pub/sub unsubscribed and closed");
        }))
    }
}
