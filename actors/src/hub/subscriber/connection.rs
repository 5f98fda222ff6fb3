//! The subscriber's side of the Redis connection: connecting with capped exponential
//! backoff, one batched `SUBSCRIBE`/`UNSUBSCRIBE` round at a time (so requests never race;
//! per master on a cluster), a PING per link, and noticing a lost link. On one server a lost
//! connection is resubscribed whole; on a cluster only the failed master's link is replaced
//! (`repair`) and only its channels are resubscribed and gap-filled, while the other masters'
//! channels keep flowing and the fixed channels move to a master that answers. Reading stops
//! while the shards are more than the backlog cap behind.

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

/// Awaits a command's confirmation on `link`. Confirmations travel behind the messages Redis
/// sent before them, so a subscribe during a flood (or while the hub has paused reading for
/// its backlog) can take long on a healthy connection: the link counts as dead only when
/// `timeout` passes with no byte read from it (from that link: bytes from other masters
/// vouch for nothing), while the hub was not the one pausing; that is counted in
/// `unresponsive`.
pub(super) async fn confirmed(
    link: &Link,
    (backlog, unresponsive): (&Backlog, &IntCounter),
    timeout: Duration,
    what: &str,
    command: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let mut command = std::pin::pin!(command);
    let mut reads = link.reads();
    loop {
        match tokio::time::timeout(timeout, &mut command).await {
            Ok(result) => return result.map_err(|e| format!("{what}: {e}")),
            Err(_) => {
                let now = link.reads();
                if now == reads && !backlog.is_full() {
                    unresponsive.inc();
                    return Err(format!("{what}: no answer for {timeout:?}"));
                }
                reads = now;
            }
        }
    }
}

/// One link's share of a (un)subscribe round.
struct Plan {
    link: Link,
    subscribe: Vec<String>,
    sub_keys: Vec<ChannelKey>,
    unsubscribe: Vec<String>,
    unsub_keys: Vec<ChannelKey>,
    /// `subscribe` includes the fixed channels.
    fixed: bool,
}

/// The plan for `link` in `plans` (added when missing).
fn plan_for<'a>(plans: &'a mut Vec<Plan>, link: &Link) -> &'a mut Plan {
    let at = match plans.iter().position(|p| p.link.id() == link.id()) {
        Some(at) => at,
        None => {
            plans.push(Plan {
                link: link.clone(),
                subscribe: Vec::new(),
                sub_keys: Vec::new(),
                unsubscribe: Vec::new(),
                unsub_keys: Vec::new(),
                fixed: false,
            });
            plans.len() - 1
        }
    };
    &mut plans[at]
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
        let connect = async move { pubsub::connect(&target, None, timeout).await };
        ctx.spawn(
            fut::wrap_future::<_, Self>(connect).map(move |res, act, ctx| {
                if generation != act.generation {
                    return;
                }
                match res {
                    Ok((sink, fresh)) => {
                        act.conn = Some(Connection {
                            sink,
                            streams: HashMap::new(),
                        });
                        act.install(ctx, None, fresh);
                        // Also on the first connection: channels asked for before it have gaps.
                        act.recovery.suspend();
                        act.dirty = act.channels.keys().cloned().collect();
                        for ch in act.channels.values_mut() {
                            ch.queued = true;
                        }
                        act.reconcile(ctx);
                        act.update_connected(ctx);
                    }
                    Err(e) => {
                        warn!("redis pub/sub connect to {} failed: {e}", act.target);
                        act.retry_later(ctx);
                    }
                }
            }),
        );
    }

    /// Reads the links' streams in `fresh`; with `sink`, replaces the links with those (a
    /// repair): links no longer there are dropped, and channels whose master changed are
    /// resubscribed (their gap filled once they are).
    fn install(
        &mut self,
        ctx: &mut Context<Self>,
        sink: Option<Commands>,
        fresh: Vec<(u64, pubsub::Messages)>,
    ) {
        let generation = self.generation;
        let (backlog, metrics) = (self.backlog.clone(), self.metrics.clone());
        let Some(conn) = &mut self.conn else { return };
        for (id, messages) in fresh {
            let events = Gated::new(messages, backlog.clone(), &metrics)
                .ready_chunks(DISPATCH_BATCH)
                .map(Event::Messages)
                .chain(stream::once(async move { Event::Ended(generation, id) }));
            conn.streams.insert(id, ctx.add_stream(events));
        }
        let Some(sink) = sink else { return };
        let gone: Vec<u64> = (conn.streams.keys())
            .filter(|id| sink.link(**id).is_none())
            .copied()
            .collect();
        for id in gone {
            if let Some(stream) = conn.streams.remove(&id) {
                ctx.cancel_future(stream);
            }
            if let Some(link) = conn.sink.link(id) {
                link.close("no longer a master");
            }
        }
        conn.sink = sink;
        let sink = conn.sink.clone();
        let moved: Vec<ChannelKey> = (self.channels.iter())
            .filter(|(key, ch)| {
                ch.subscribed && sink.link_of(&channel_name(key)).map(Link::id) != Some(ch.link)
            })
            .map(|(key, _)| key.clone())
            .collect();
        self.resubscribe(moved);
        if self.fixed_subscribed && sink.fixed().id() != self.fixed_link {
            self.set_fixed(false);
        }
    }

    /// `keys` are no longer subscribed (their master failed or changed): queued to be
    /// subscribed again, their live messages held until their gap is read.
    fn resubscribe(&mut self, keys: Vec<ChannelKey>) {
        for key in keys {
            if let Some(ch) = self.channels.get_mut(&key) {
                ch.subscribed = false;
                self.recovery.suspend_one(&key);
                self.mark_dirty(&key);
            }
        }
    }

    pub(super) fn retry_later(&mut self, ctx: &mut Context<Self>) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    /// The connection is gone: forget what Redis had and reconnect; waiters stay.
    pub(super) fn lost(&mut self, ctx: &mut Context<Self>, why: &str) {
        if let Some(conn) = self.conn.take() {
            for (_, stream) in conn.streams {
                ctx.cancel_future(stream);
            }
        }
        self.generation += 1;
        self.syncing = false;
        self.pinging.clear();
        self.repairing = false;
        self.set_fixed(false);
        self.count_lost();
        self.set_nodes_down(0);
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

    /// Link `id` failed (its socket ended, a command on it failed, or it stopped answering).
    /// On one server that is the connection lost; on a cluster only that master's channels
    /// (and the fixed channels, when it carried them) are resubscribed, once a master serves
    /// its slots again.
    pub(super) fn node_lost(&mut self, ctx: &mut Context<Self>, id: u64, why: &str) {
        let Some(conn) = &mut self.conn else { return };
        if conn.sink.single() {
            return self.lost(ctx, why);
        }
        let Some(link) = conn.sink.link(id).cloned() else {
            return;
        };
        let stream = conn.streams.remove(&id);
        if stream.is_none() && !link.is_up() {
            return; // already handled
        }
        if let Some(stream) = stream {
            ctx.cancel_future(stream);
        }
        link.close(why);
        self.pinging.remove(&id);
        let on_link: Vec<ChannelKey> = (self.channels.iter())
            .filter(|(_, ch)| ch.subscribed && ch.link == id)
            .map(|(key, _)| key.clone())
            .collect();
        warn!(
            "redis pub/sub: master {} lost ({why}); its {} channels are resubscribed once it \
             or a replica serves its slots",
            link.addr(),
            on_link.len()
        );
        self.resubscribe(on_link);
        if self.fixed_link == id {
            self.set_fixed(false);
        }
        self.update_connected(ctx);
        self.reconcile(ctx);
    }

    /// Reconnects the links that are down (reading the slot map anew) after the backoff,
    /// unless that is already under way.
    fn schedule_repair(&mut self, ctx: &mut Context<Self>) {
        if self.repairing || self.stopping {
            return;
        }
        self.repairing = true;
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        let generation = self.generation;
        ctx.run_later(delay, move |act, ctx| {
            if generation == act.generation {
                act.repair(ctx);
            }
        });
    }

    fn repair(&mut self, ctx: &mut Context<Self>) {
        let Some(previous) = self.conn.as_ref().map(|c| c.sink.clone()) else {
            self.repairing = false;
            return;
        };
        let generation = self.generation;
        let (target, timeout) = (self.target.clone(), self.command_timeout);
        let connect = async move { pubsub::connect(&target, Some(&previous), timeout).await };
        ctx.spawn(
            fut::wrap_future::<_, Self>(connect).map(move |res, act, ctx| {
                if generation != act.generation {
                    return;
                }
                act.repairing = false;
                match res {
                    Ok((sink, fresh)) => {
                        // A master new to the hub (a promoted replica) may lack the function.
                        if !fresh.is_empty() && act.slot.index == 0 {
                            act.reload_inbox(ctx);
                        }
                        act.install(ctx, Some(sink), fresh);
                    }
                    Err(e) => warn!("redis pub/sub: reconnecting to {} failed: {e}", act.target),
                }
                act.reconcile(ctx);
                act.update_connected(ctx);
            }),
        );
    }

    /// Sets `hub_redis_connected` (and this connection's share of `hub_redis_nodes_down`)
    /// from the links, and repairs those that are down.
    pub(super) fn update_connected(&mut self, ctx: &mut Context<Self>) {
        let Some(conn) = &self.conn else {
            return self.count_lost();
        };
        // One server's link ending is the connection lost, handled by `lost`.
        let down = match conn.sink.single() {
            true => 0,
            false => conn.sink.links().iter().filter(|l| !l.is_up()).count(),
        };
        self.set_nodes_down(down as i64);
        if down > 0 {
            self.count_lost();
            return self.schedule_repair(ctx);
        }
        if !self.fixed_subscribed {
            return self.count_lost();
        }
        if self.syncing || self.counted {
            return;
        }
        self.count_connected();
        self.backoff = MIN_BACKOFF;
        if self.ever_connected {
            self.metrics.redis_reconnects.inc();
            info!(
                "redis pub/sub reconnected; {} channels subscribed",
                self.channels.len()
            );
        } else {
            info!("redis pub/sub connected");
        }
        self.ever_connected = true;
    }

    /// Whether this connection has the fixed channels subscribed; connection 0 shares it with
    /// the others, which confirm interests only while it has.
    fn set_fixed(&mut self, up: bool) {
        if !up {
            if let Some(gaps) = self.job_gaps.as_mut() {
                gaps.suspend();
            }
        }
        self.fixed_subscribed = up;
        if self.slot.index == 0 {
            self.slot.fixed.send_replace(up);
        }
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

    /// Sends one batched SUBSCRIBE/UNSUBSCRIBE per link for everything that differs from what
    /// Redis has, unless a round is already in flight (its completion calls this again).
    /// Channels whose master is down stay queued until it is replaced.
    pub(super) fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(sink) = self.conn.as_ref().map(|c| c.sink.clone()) else {
            return;
        };
        if self.syncing {
            return;
        }
        let mut plans: Vec<Plan> = Vec::new();
        if !self.fixed_subscribed && sink.fixed().is_up() {
            let plan = plan_for(&mut plans, sink.fixed());
            plan.subscribe.extend(self.fixed_channels());
            plan.fixed = true;
        }
        let mut parked = Vec::new();
        for key in std::mem::take(&mut self.dirty) {
            let Some(ch) = self.channels.get_mut(&key) else {
                continue;
            };
            ch.queued = false;
            match (ch.wanted(), ch.subscribed) {
                (true, false) => {
                    let name = channel_name(&key);
                    match sink.link_of(&name) {
                        Some(link) if link.is_up() => {
                            let plan = plan_for(&mut plans, link);
                            plan.subscribe.push(name);
                            plan.sub_keys.push(key);
                        }
                        _ => parked.push(key),
                    }
                }
                (false, true) => match sink.link(ch.link) {
                    Some(link) if link.is_up() => {
                        let plan = plan_for(&mut plans, link);
                        plan.unsubscribe.push(channel_name(&key));
                        plan.unsub_keys.push(key);
                    }
                    // Its link is gone, and the subscription with it.
                    _ => self.forget(&key),
                },
                (false, false) => {
                    self.forget(&key);
                }
                (true, true) => {}
            }
        }
        for key in parked {
            self.mark_dirty(&key);
        }
        if plans.is_empty() {
            return;
        }
        self.syncing = true;
        let generation = self.generation;
        let timeout = self.command_timeout;
        let (backlog, unresponsive) = (
            self.backlog.clone(),
            self.metrics.redis_unresponsive.clone(),
        );
        let rounds = plans.into_iter().map(move |plan| {
            let (backlog, unresponsive) = (backlog.clone(), unresponsive.clone());
            async move {
                let link = &plan.link;
                let watch = (&*backlog, &unresponsive);
                let result = async {
                    if let Some(first) = plan.subscribe.first() {
                        let n = plan.subscribe.len();
                        let what = format!("subscribe {first} ({n} channels) on {}", link.addr());
                        let command = link.subscribe(&plan.subscribe);
                        confirmed(link, watch, timeout, &what, command).await?;
                    }
                    if let Some(first) = plan.unsubscribe.first() {
                        let what = format!("unsubscribe {first} on {}", link.addr());
                        let command = link.unsubscribe(&plan.unsubscribe);
                        confirmed(link, watch, timeout, &what, command).await?;
                    }
                    Ok::<_, String>(())
                }
                .await;
                (plan, result)
            }
        });
        let sync = futures_util::future::join_all(rounds);
        ctx.spawn(
            fut::wrap_future::<_, Self>(sync).map(move |results, act, ctx| {
                if generation != act.generation {
                    return;
                }
                act.syncing = false;
                for (plan, result) in results {
                    if generation != act.generation {
                        return;
                    }
                    let id = plan.link.id();
                    let current = act.conn.as_ref().and_then(|c| c.sink.link(id));
                    match result {
                        Ok(()) if current.is_some_and(Link::is_up) => {
                            if plan.fixed {
                                act.set_fixed(true);
                                act.fixed_link = id;
                                if act.slot.index == 0 {
                                    act.reload_inbox(ctx);
                                }
                            }
                            act.synced(plan.sub_keys, plan.unsub_keys, id);
                        }
                        result => {
                            for key in plan.sub_keys.iter().chain(&plan.unsub_keys) {
                                act.mark_dirty(key);
                            }
                            if let Err(e) = result {
                                act.node_lost(ctx, id, &e);
                            }
                        }
                    }
                }
                if generation != act.generation {
                    return;
                }
                act.fill_gaps(ctx);
                act.update_connected(ctx);
                act.reconcile(ctx);
            }),
        );
    }

    pub(super) fn synced(
        &mut self,
        sub_keys: Vec<ChannelKey>,
        unsub_keys: Vec<ChannelKey>,
        link: u64,
    ) {
        for key in sub_keys {
            if let Some(ch) = self.channels.get_mut(&key) {
                self.recovery.subscribed(&key);
                ch.subscribed = true;
                ch.link = link;
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

    /// PINGs every link that is up and not already being pinged: a master that stops
    /// answering is taken for dead after the command timeout, even while others send.
    pub(super) fn ping(&mut self, ctx: &mut Context<Self>) {
        let Some(conn) = &self.conn else { return };
        let links: Vec<Link> = (conn.sink.links().iter())
            .filter(|l| l.is_up() && !self.pinging.contains(&l.id()))
            .cloned()
            .collect();
        let generation = self.generation;
        for link in links {
            let id = link.id();
            self.pinging.insert(id);
            let timeout = self.command_timeout;
            let (backlog, unresponsive) = (
                self.backlog.clone(),
                self.metrics.redis_unresponsive.clone(),
            );
            let ping = async move {
                let what = format!("ping {}", link.addr());
                let watch = (&*backlog, &unresponsive);
                confirmed(&link, watch, timeout, &what, link.ping()).await
            };
            ctx.spawn(fut::wrap_future::<_, Self>(ping).map(move |res, act, ctx| {
                if generation != act.generation {
                    return;
                }
                act.pinging.remove(&id);
                if let Err(e) = res {
                    act.node_lost(ctx, id, &e);
                }
            }));
        }
    }
}
