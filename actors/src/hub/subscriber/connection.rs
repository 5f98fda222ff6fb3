//! The subscriber's side of the Redis connection: connecting with capped exponential
//! backoff, one batched `SUBSCRIBE`/`UNSUBSCRIBE` at a time (so requests never race), pings,
//! and noticing a lost connection (then everything is resubscribed). Reading stops while the
//! shards are more than the backlog cap behind.

use super::*;

/// The pub/sub message stream, read only while the shards' backlog has room.
pub(super) struct Gated {
    inner: pubsub::Messages,
    backlog: Arc<Backlog>,
    pauses: IntCounter,
    paused: bool,
}

impl Gated {
    pub(super) fn new(inner: pubsub::Messages, backlog: Arc<Backlog>, metrics: &Metrics) -> Gated {
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

/// Awaits a command's confirmation. Confirmations travel behind the messages Redis sent
/// before them, so a subscribe during a flood (or while the hub has paused reading for its
/// backlog) can take long on a healthy connection: the connection counts as dead only when
/// `timeout` passes with no byte read from it, while the hub was not the one pausing.
pub(super) async fn confirmed(
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

impl Subscriber {
    pub(super) fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        let target = self.target.clone();
        let timeout = self.command_timeout;
        let connect = async move {
            tokio::time::timeout(timeout, pubsub::connect(&target))
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
                        act.recovery.suspend();
                        act.dirty = act.channels.keys().cloned().collect();
                        for ch in act.channels.values_mut() {
                            ch.queued = true;
                        }
                        act.reconcile(ctx);
                    }
                    Err(e) => {
                        warn!("redis pub/sub connect to {} failed: {e}", act.target);
                        act.retry_later(ctx);
                    }
                }
            }),
        );
    }

    pub(super) fn retry_later(&mut self, ctx: &mut Context<Self>) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    /// The connection is gone: forget what Redis had, wake waiters, reconnect.
    pub(super) fn lost(&mut self, ctx: &mut Context<Self>, why: &str) {
        if let Some(conn) = self.conn.take() {
            ctx.cancel_future(conn.stream);
        }
        self.generation += 1;
        self.syncing = false;
        self.ping_in_flight = false;
        self.fixed_subscribed = false;
        if self.slot.index == 0 {
            self.slot.fixed.send_replace(false);
        }
        self.count_lost();
        let recovery = &mut self.recovery;
        self.channels.retain(|key, ch| {
            if !ch.wanted() {
                recovery.forget(key);
            }
            ch.wanted()
        });
        // Waiters stay: their sessions get `connected`/`joined` once resubscribed. A channel
        // never subscribed yet has its gap start from now (filled once it is).
        for (key, ch) in self.channels.iter_mut() {
            recovery.subscribed(key);
            ch.subscribed = false;
            ch.queued = false;
        }
        self.dirty.clear();
        if self.stopping {
            return;
        }
        warn!("redis pub/sub connection lost ({why}); reconnecting");
        self.retry_later(ctx);
    }

    /// Drops a channel nobody needs any more.
    pub(super) fn forget(&mut self, key: &ChannelKey) {
        self.channels.remove(key);
        self.recovery.forget(key);
    }

    pub(super) fn mark_dirty(&mut self, key: &ChannelKey) {
        if let Some(ch) = self.channels.get_mut(key) {
            if !ch.queued {
                ch.queued = true;
                self.dirty.push(key.clone());
            }
        }
    }

    /// Sends one batched SUBSCRIBE/UNSUBSCRIBE for everything that differs from what Redis
    /// has, unless a batch is already in flight (its completion calls this again).
    pub(super) fn reconcile(&mut self, ctx: &mut Context<Self>) {
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
            subscribe.extend(self.fixed_channels());
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
                act.count_connected();
                act.backoff = MIN_BACKOFF;
                if act.slot.index == 0 {
                    act.slot.fixed.send_replace(true);
                    act.reload_inbox(ctx);
                }
                // Also on the first connection: channels asked for before it have gaps.
                act.fill_gaps(ctx);
                if act.ever_connected {
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

    pub(super) fn synced(&mut self, sub_keys: Vec<ChannelKey>, unsub_keys: Vec<ChannelKey>) {
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

    pub(super) fn ping(&mut self, ctx: &mut Context<Self>) {
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
}
