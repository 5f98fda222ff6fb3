//! Routing what Redis sends: each message parsed and validated once, encoded once, and queued
//! for the shards holding its recipients; one hand-over per shard per batch.

use super::*;
use crate::common::error::HubError;
use crate::features::job_gaps::{JobEvent, JobEventKind};

/// Limits warn lines for bad payloads so that a flood of them cannot flood the log.
pub(super) struct WarnLimiter {
    window_start: Instant,
    emitted: u32,
    suppressed: u64,
}

impl WarnLimiter {
    pub(super) fn new() -> Self {
        WarnLimiter {
            window_start: Instant::now(),
            emitted: 0,
            suppressed: 0,
        }
    }

    pub(super) fn allow(&mut self) -> bool {
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

/// What a hub message brings each of the user's sessions: a command, parsed once, for their
/// cores to act on, or a client-visible event (`inbox-state`), encoded here once.
fn hub_item(message: HubMessage, metrics: &Metrics) -> Item {
    match message {
        HubMessage::Command(command) => Item::Command(Arc::new(command)),
        HubMessage::InboxState(state) => {
            if state.held.is_some() {
                metrics.notifications_held.inc();
            }
            Item::Event(Arc::new(Outbound::from_envelope(
                OutKind::InboxState,
                &state.frame(),
            )))
        }
    }
}

impl Subscriber {
    /// The shards needing `key` (a bit set) and the target they deliver it to.
    fn local(&self, key: ChannelKey) -> Option<(u64, Target)> {
        let shards = self.channels.get(&key)?.shards;
        let target = match key {
            ChannelKey::User(user) => Target::User(user),
            ChannelKey::Room(room) => Target::Room(room),
        };
        Some((shards, target))
    }

    /// Queues the frame for the shards needing `key`; returns them (a bit set, 0 for none).
    pub(super) fn dispatch(
        &mut self,
        key: ChannelKey,
        frame: &[u8],
        kind: OutKind,
        order: Option<MessageId>,
    ) -> u64 {
        let Some((shards, target)) = self.local(key) else {
            return 0;
        };
        self.send_to(shards, target, frame, kind, order);
        shards
    }

    /// Routes an event that came on a fixed channel to `key`'s local sessions. With one ingest
    /// connection this one knows which shards hold them; with several, `key` may belong to
    /// another connection, so every shard gets it and delivers to its own members only.
    pub(super) fn dispatch_fixed(&mut self, key: ChannelKey, frame: &[u8], kind: OutKind) -> u64 {
        if self.slot.total <= 1 {
            return self.dispatch(key, frame, kind, None);
        }
        let target = match key {
            ChannelKey::User(user) => Target::User(user),
            ChannelKey::Room(room) => Target::Room(room),
        };
        self.send_to(u64::MAX, target, frame, kind, None);
        u64::MAX
    }

    /// Feeds `hub_deliver_latency_ms` once per event that was handed to at least one shard.
    pub(super) fn observe_latency(&self, shards: u64, timestamp_ms: Option<f64>) {
        if let (true, Some(ts)) = (shards != 0, timestamp_ms) {
            self.metrics.observe_deliver_latency(ts);
        }
    }

    /// Handles a message on the canary channel; false for any other channel.
    pub(super) fn route_canary(&self, msg: &Message) -> bool {
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
    pub(super) fn dispatch_ordered(&mut self, key: ChannelKey, held: Held) -> u64 {
        if self.channels.contains_key(&key) {
            self.recovery.dispatched(&key, held.id);
        }
        if let Some(item) = held.hub {
            let Some((shards, target)) = self.local(key) else {
                return 0;
            };
            self.queue(shards, target, item, None);
            return shards;
        }
        let kind = match key {
            ChannelKey::Room(_) => OutKind::Chat,
            ChannelKey::User(_) => OutKind::Notification,
        };
        self.dispatch(key, &held.frame, kind, held.id)
    }

    /// Dispatches a live message, unless its channel's gap is being read (then it waits).
    pub(super) fn dispatch_live(&mut self, key: ChannelKey, held: Held) -> u64 {
        match self.recovery.admit(&key, held, &self.metrics) {
            Some(held) => self.dispatch_ordered(key, held),
            None => 0,
        }
    }

    /// Reads, for every local room and user, what was appended to its history or inbox since
    /// the last message it got; live messages wait until that is delivered. At most
    /// [`GAP_READS`] reads run at once; a failed one (Redis slow past its timeout, a dropped
    /// connection) is tried again, up to [`GAP_READ_TRIES`] times.
    pub(super) fn fill_gaps(&mut self, ctx: &mut Context<Self>) {
        let channels = &self.channels;
        let subscribed = |key: &ChannelKey| channels.get(key).is_some_and(|c| c.subscribed);
        let gaps = self.recovery.start(subscribed);
        self.gap_queue
            .extend(gaps.into_iter().map(|(key, start)| (key, start, 0)));
        if self.fixed_subscribed {
            self.start_job_gaps();
        }
        self.read_gaps(ctx);
    }

    /// Starts queued gap reads (rooms' and users', then jobs') while fewer than [`GAP_READS`]
    /// run.
    pub(super) fn read_gaps(&mut self, ctx: &mut Context<Self>) {
        while self.gap_reads < GAP_READS {
            let Some((key, start, tries)) = self.gap_queue.pop_front() else {
                return self.read_job_gaps(ctx);
            };
            let Some(read) = self.recovery.read(&key, start) else {
                continue;
            };
            self.spawn_gap_read(
                ctx,
                (key, start),
                tries,
                read,
                |(key, _)| format!("gap of {key:?}"),
                |act, (key, start), tries| act.gap_queue.push_back((key, start, tries)),
                |act, (key, start), res| {
                    for held in act.recovery.finish(&key, start, res, &act.metrics) {
                        act.dispatch_ordered(key.clone(), held);
                    }
                },
            );
        }
    }

    /// Runs one gap read of `key` (its `tries`-th retry): an error is retried later, with
    /// backoff, up to [`GAP_READ_TRIES`] tries in all, through `requeue`; otherwise `done`
    /// takes the result. Then the queued reads go on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spawn_gap_read<K: 'static, T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        key: K,
        tries: u32,
        read: futures_util::future::LocalBoxFuture<'static, Result<T, HubError>>,
        describe: fn(&K) -> String,
        requeue: fn(&mut Self, K, u32),
        done: fn(&mut Self, K, Result<T, HubError>),
    ) {
        self.gap_reads += 1;
        ctx.spawn(fut::wrap_future::<_, Self>(read).map(move |res, act, ctx| {
            act.gap_reads -= 1;
            match res {
                Err(e) if tries + 1 < GAP_READ_TRIES => {
                    act.metrics.gap_read_errors.inc();
                    warn!("{} not read ({e}); trying again", describe(&key));
                    let delay = GAP_RETRY * 2u32.pow(tries);
                    ctx.run_later(delay, move |act, ctx| {
                        requeue(act, key, tries + 1);
                        act.read_gaps(ctx);
                    });
                }
                res => {
                    if res.is_err() {
                        act.metrics.gap_read_errors.inc();
                    }
                    done(act, key, res);
                    act.flush_batches();
                }
            }
            act.read_gaps(ctx);
        }));
    }

    /// Loads the inbox function on every connection (a restarted Redis without persistence
    /// lost it).
    pub(super) fn reload_inbox(&mut self, ctx: &mut Context<Self>) {
        if let Some(inbox) = self.recovery.inbox().cloned() {
            ctx.spawn(fut::wrap_future(async move {
                if let Err(e) = inbox.load().await {
                    warn!("after reconnecting: {e}");
                }
            }));
        }
    }

    /// Queues a frame for the shards in `shards`; [`Self::flush_batches`] sends the queue.
    pub(super) fn send_to(
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
        self.queue(shards, target, Item::Event(Arc::new(event)), order);
    }

    /// Queues an event or command for the shards in `shards`.
    fn queue(&mut self, shards: u64, target: Target, item: Item, order: Option<MessageId>) {
        let msg = Dispatch {
            target,
            item,
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
    pub(super) fn flush_batches(&mut self) {
        for (i, queued) in self.batches.iter_mut().enumerate() {
            if queued.is_empty() {
                continue;
            }
            if let Some(addr) = &self.shards[i] {
                let bytes = queued.iter().map(|d| d.item.bytes() + FRAME_OVERHEAD).sum();
                addr.do_send(DispatchBatch {
                    frames: std::mem::take(queued),
                    credit: self.backlog.take(bytes),
                });
            } else {
                queued.clear();
            }
        }
    }

    pub(super) fn route(&mut self, msg: Message) {
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
                self.dispatch_live(ChannelKey::User(user), Held::frame(frame, id))
            }
            // In the user's stream, in order with its notifications.
            Inbound::Hub { user, message } => self.dispatch_live(
                ChannelKey::User(user),
                Held::hub(hub_item(message, &self.metrics)),
            ),
            Inbound::AiResult { user, frame } => self.dispatch_result(user, frame),
            Inbound::JobEvent {
                user,
                frame,
                chunk,
                job,
                seq,
                running,
            } => self.dispatch_job(JobEvent {
                job,
                user,
                frame,
                kind: match chunk {
                    true => JobEventKind::Chunk(seq),
                    false => JobEventKind::State(running.map(|_| seq)),
                },
            }),
            Inbound::Chat {
                room,
                frame,
                id,
                foreign_id,
            } => {
                if foreign_id {
                    self.metrics.chat_foreign_ids.inc();
                }
                self.dispatch_live(ChannelKey::Room(room), Held::frame(frame, id))
            }
            // Every instance hears every presence event; only those with local members of the
            // room (a subscribed room channel) deliver it.
            Inbound::Presence { room, frame } => {
                self.dispatch_fixed(ChannelKey::Room(room), &frame, OutKind::Presence)
            }
            Inbound::CacheInvalidate { pattern, frame } => {
                for sink in &self.sinks {
                    sink.cache_invalidate(&pattern);
                }
                let target = Target::Topic(Topic::Cache);
                self.send_to(u64::MAX, target, &frame, OutKind::Cache, None);
                u64::MAX
            }
            Inbound::RoomAccess { user, room } => {
                for sink in &self.sinks {
                    sink.room_removed(&user, &room);
                }
                0
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
