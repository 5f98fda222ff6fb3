//! The registry actor: one shard per HTTP worker thread, holding that thread's sessions by id,
//! by user, by room and by topic. It fans a dispatched frame out to the matching sessions'
//! mailboxes, counting the bytes in each session's [`QueuedBytes`] (a session past its bound
//! is a slow consumer: kicked), and tells the subscriber when it needs a user or room channel
//! and when it no longer does.
//!
//! The fan-out runs on the sessions' own thread: after each batch the shard yields, so the
//! sessions it delivered to take their events out of their mailboxes and write them to their
//! sockets before the next batch comes. A session's mailbox holds at most one batch's share
//! while the hub is busy, and what its bound counts beyond that is what its client did not
//! read.

use std::{
    collections::{hash_map::Entry, HashMap, HashSet},
    sync::Arc,
};

use actix::{fut, prelude::*};
use log::info;

use crate::{
    common::auth::Identity,
    common::metrics::Metrics,
    common::queued::{KickReason, QueuedBytes},
    features::presence::LocalPresence,
    messages::{
        ChannelKey, CloseAll, Deliver, Delivery, Dispatch, DispatchBatch, Ingest, Interest, Item,
        Join, Leave, LocalMembers, Pending, Register, Scope, SessionAddr, SessionId, SetTopic,
        ShardId, Target, Unregister,
    },
};

use hub_wire::protocol::{Member, RoomId, Topic, UserId};

/// A registered session.
struct Registered {
    addr: SessionAddr,
    identity: Arc<Identity>,
    rooms: Vec<SessionRoom>,
    queued: Arc<QueuedBytes>,
}

/// A room a session joined.
struct SessionRoom {
    room: RoomId,
    /// Counted in the local presence: only once the room's channel is subscribed, so the
    /// presence event this may publish finds the room known to the subscriber.
    listed: bool,
}

/// Counts and logs a session dropped as a slow consumer (one line per kick: kicks are rare
/// and worth an operator's attention).
pub fn report_kick(metrics: &Metrics, session: SessionId, user: &str, reason: KickReason) {
    metrics.slow_consumer(reason);
    info!("session {session:x} of user {user} dropped as a slow consumer: {reason}");
}

/// One registry shard.
pub struct Registry {
    shard: ShardId,
    subscribers: Ingest,
    metrics: Arc<Metrics>,
    presence: Arc<LocalPresence>,
    sessions: HashMap<SessionId, Registered>,
    /// Sessions still waiting for their `auth` frame (only shutdown needs them).
    pending: HashMap<SessionId, SessionAddr>,
    users: HashMap<UserId, Vec<SessionId>>,
    rooms: HashMap<RoomId, HashSet<SessionId>>,
    topics: HashMap<Topic, HashSet<SessionId>>,
    /// Reused by `dispatch` to group a batch per session (keeps its capacity).
    scratch: HashMap<SessionId, Deliver>,
}

impl Registry {
    /// An empty shard; start it on the worker thread whose sessions it will hold.
    pub fn new(
        shard: ShardId,
        subscribers: Ingest,
        metrics: Arc<Metrics>,
        presence: Arc<LocalPresence>,
    ) -> Self {
        Registry {
            shard,
            subscribers,
            metrics,
            presence,
            sessions: HashMap::new(),
            pending: HashMap::new(),
            users: HashMap::new(),
            rooms: HashMap::new(),
            topics: HashMap::new(),
            scratch: HashMap::new(),
        }
    }

    fn subscriber(&self, key: &ChannelKey) -> &Recipient<Interest> {
        &self.subscribers[key.ingest_index(self.subscribers.len())]
    }

    fn interest(&self, key: ChannelKey, on: bool) -> RecipientRequest<Interest> {
        self.subscriber(&key).send(Interest {
            shard: self.shard,
            key,
            on,
        })
    }

    fn release(&self, key: ChannelKey) {
        self.subscriber(&key).do_send(Interest {
            shard: self.shard,
            key,
            on: false,
        });
    }

    /// Removes a session everywhere; releases channels it was the last local user of.
    fn remove(&mut self, id: SessionId) {
        self.pending.remove(&id);
        let Some(entry) = self.sessions.remove(&id) else {
            return;
        };
        let user = &entry.identity.user_id;
        if let Some(ids) = self.users.get_mut(user) {
            ids.retain(|s| *s != id);
            if ids.is_empty() {
                self.users.remove(user);
                self.release(ChannelKey::User(user.clone()));
            }
        }
        for joined in entry.rooms {
            self.leave(id, &joined.room);
            if joined.listed {
                self.presence.leave(&joined.room, user);
            }
        }
        for (topic, set) in self.topics.iter_mut() {
            if set.remove(&id) {
                self.metrics.topic_subscriber(*topic, -1);
            }
        }
    }

    fn leave(&mut self, id: SessionId, room: &RoomId) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                self.rooms.remove(room);
                self.release(ChannelKey::Room(room.clone()));
            }
        }
    }

    /// Fans a batch of events out: groups them per recipient (in order) and sends each
    /// session one [`Deliver`]. A session whose queued bytes would pass its bound is a slow
    /// consumer: kicked. (The mailbox's own capacity is a backstop the byte bound reaches
    /// first: a burst the client will read never overflows it.)
    fn dispatch(&mut self, batch: Vec<Dispatch>) {
        let mut grouped: HashMap<SessionId, Deliver> = std::mem::take(&mut self.scratch);
        for msg in batch {
            let recipients = match &msg.target {
                Target::User(user) => self
                    .users
                    .get(user)
                    .map(|ids| group(&mut grouped, ids.iter(), &msg, Scope::User)),
                Target::Room(room) => self
                    .rooms
                    .get(room)
                    .map(|ids| group(&mut grouped, ids.iter(), &msg, Scope::Room(room.clone()))),
                Target::Topic(topic) => self
                    .topics
                    .get(topic)
                    .map(|ids| group(&mut grouped, ids.iter(), &msg, Scope::Topic(*topic))),
            };
            if let Item::Event(event) = &msg.item {
                self.metrics.frames_out(
                    event.kind(),
                    recipients.unwrap_or(0),
                    event.native().len(),
                );
            }
        }
        let mut dropped = Vec::new();
        for (id, deliver) in grouped.drain() {
            let Some(session) = self.sessions.get(&id) else {
                continue;
            };
            let bytes = deliver.bytes;
            if !session.queued.try_add(bytes) {
                dropped.push((id, Some(KickReason::QueueFull)));
                continue;
            }
            if let Err(e) = session.addr.try_deliver(deliver) {
                session.queued.sub(bytes);
                dropped.push((
                    id,
                    matches!(e, SendError::Full(_)).then_some(KickReason::MailboxFull),
                ));
            }
        }
        self.scratch = grouped;
        for (id, kicked) in dropped {
            if let (Some(reason), Some(session)) = (kicked, self.sessions.get(&id)) {
                session.addr.kick(reason);
                report_kick(&self.metrics, id, &session.identity.user_id, reason);
            }
            self.remove(id);
        }
    }
}

/// Adds `msg` to the queued deliveries of each of `ids`; returns how many.
fn group<'a>(
    grouped: &mut HashMap<SessionId, Deliver>,
    ids: impl Iterator<Item = &'a SessionId>,
    msg: &Dispatch,
    scope: Scope,
) -> usize {
    let mut n = 0;
    for id in ids {
        let delivery = Delivery {
            item: msg.item.clone(),
            scope: scope.clone(),
            order: msg.order,
        };
        match grouped.entry(*id) {
            Entry::Occupied(mut queued) => queued.get_mut().push(delivery),
            Entry::Vacant(slot) => {
                slot.insert(Deliver::one(delivery));
            }
        }
        n += 1;
    }
    n
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Register> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        self.pending.remove(&msg.id);
        let user = msg.identity.user_id.clone();
        self.sessions.insert(
            msg.id,
            Registered {
                addr: msg.addr,
                identity: msg.identity,
                rooms: Vec::new(),
                queued: msg.queued,
            },
        );
        self.users.entry(user.clone()).or_default().push(msg.id);
        // Asked even when another local session of the user already asked: that one's
        // subscription may still be unconfirmed, and `connected` means "subscribed".
        let subscribed = self.interest(ChannelKey::User(user), true);
        Box::pin(async move {
            let _ = subscribed.await;
        })
    }
}

impl Handler<Pending> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Pending, _: &mut Context<Self>) {
        self.pending.insert(msg.id, msg.addr);
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        self.remove(msg.id);
    }
}

impl Handler<Join> for Registry {
    type Result = ResponseActFuture<Self, LocalMembers>;

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return Box::pin(fut::ready(LocalMembers::default()));
        };
        if !entry.rooms.iter().any(|r| r.room == msg.room) {
            entry.rooms.push(SessionRoom {
                room: msg.room.clone(),
                listed: false,
            });
        }
        self.rooms
            .entry(msg.room.clone())
            .or_default()
            .insert(msg.id);
        // Asked for every join: an earlier local member's subscription may be unconfirmed.
        let subscribed = self.interest(ChannelKey::Room(msg.room.clone()), true);
        let (id, room) = (msg.id, msg.room);
        Box::pin(
            fut::wrap_future::<_, Self>(async move {
                let _ = subscribed.await;
            })
            .map(move |_, act, _| {
                act.list_member(id, &room);
                act.presence.members(&room)
            }),
        )
    }
}

impl Registry {
    /// Counts a session that is still in `room` in the local presence, once.
    fn list_member(&mut self, id: SessionId, room: &RoomId) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(joined) = entry.rooms.iter_mut().find(|r| r.room == *room) else {
            return;
        };
        if !joined.listed {
            joined.listed = true;
            let member = Member {
                user_id: entry.identity.user_id.clone(),
                username: entry.identity.name.clone(),
            };
            self.presence.join(room, &member);
        }
    }
}

impl Handler<Leave> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return;
        };
        let Some(at) = entry.rooms.iter().position(|r| r.room == msg.room) else {
            return;
        };
        if entry.rooms.swap_remove(at).listed {
            let user = entry.identity.user_id.clone();
            self.presence.leave(&msg.room, &user);
        }
        self.leave(msg.id, &msg.room);
    }
}

impl Handler<SetTopic> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SetTopic, _: &mut Context<Self>) {
        if !self.sessions.contains_key(&msg.id) {
            return;
        }
        let set = self.topics.entry(msg.topic).or_default();
        let changed = if msg.on {
            set.insert(msg.id)
        } else {
            set.remove(&msg.id)
        };
        if changed {
            let delta = if msg.on { 1 } else { -1 };
            self.metrics.topic_subscriber(msg.topic, delta);
        }
    }
}

impl Handler<Dispatch> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Dispatch, _: &mut Context<Self>) {
        self.dispatch(vec![msg]);
    }
}

impl Handler<DispatchBatch> for Registry {
    type Result = ();

    fn handle(&mut self, batch: DispatchBatch, ctx: &mut Context<Self>) {
        self.dispatch(batch.frames);
        // The sessions it went to run before the next batch: the shard's mailbox may hold many
        // batches (the subscriber reads on another thread), and handling them all at once
        // would pile them up in the mailboxes of sessions that have no turn meanwhile.
        ctx.wait(fut::wrap_future(tokio::task::yield_now()));
        // `batch.credit` drops here: the subscriber may read more.
    }
}

impl Handler<CloseAll> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: CloseAll, _: &mut Context<Self>) -> usize {
        let pending: Vec<SessionId> = self.pending.keys().take(msg.max).copied().collect();
        for id in &pending {
            if let Some(addr) = self.pending.remove(id) {
                addr.close(msg.code, msg.reason);
            }
        }
        let rest = msg.max - pending.len();
        let chosen: Vec<SessionId> = self.sessions.keys().take(rest).copied().collect();
        for id in &chosen {
            if let Some(entry) = self.sessions.get(id) {
                entry.addr.close(msg.code, msg.reason);
            }
            self.remove(*id);
        }
        pending.len() + chosen.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    use super::*;
    use crate::messages::{Kick, PresenceChange, SessionHandle};

    /// A subscriber that confirms a subscription only when told to.
    #[derive(Default)]
    struct Subscriber {
        unconfirmed: Vec<oneshot::Sender<()>>,
    }

    impl Actor for Subscriber {
        type Context = Context<Self>;
    }

    impl Handler<Interest> for Subscriber {
        type Result = ResponseFuture<()>;

        fn handle(&mut self, _: Interest, _: &mut Context<Self>) -> Self::Result {
            let (tx, rx) = oneshot::channel();
            self.unconfirmed.push(tx);
            Box::pin(async move {
                let _ = rx.await;
            })
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct ConfirmAll;

    impl Handler<ConfirmAll> for Subscriber {
        type Result = ();

        fn handle(&mut self, _: ConfirmAll, _: &mut Context<Self>) {
            for tx in self.unconfirmed.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    /// Records the presence changes the roster would publish.
    struct Roster(Arc<Mutex<Vec<PresenceChange>>>);

    impl Actor for Roster {
        type Context = Context<Self>;
    }

    impl Handler<PresenceChange> for Roster {
        type Result = ();

        fn handle(&mut self, change: PresenceChange, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(change);
        }
    }

    /// A shard whose subscriber confirms subscriptions only when told to, and that subscriber.
    fn registry_of(roster: Recipient<PresenceChange>) -> (Addr<Registry>, Addr<Subscriber>) {
        let subscriber = Subscriber::default().start();
        let presence = Arc::new(LocalPresence::new(roster, 100));
        let registry = Registry::new(
            0,
            Arc::new([subscriber.clone().recipient()]),
            Arc::new(Metrics::new()),
            presence,
        )
        .start();
        (registry, subscriber)
    }

    /// Session 7 of user 1 (Ann) registering at `addr`.
    fn ann(addr: SessionAddr, queued: Arc<QueuedBytes>) -> Register {
        let identity = Arc::new(Identity {
            user_id: "1".into(),
            name: "Ann".into(),
            admin: false,
            expires_at: None,
            issued_at: None,
            rooms: None,
        });
        Register {
            id: 7,
            identity,
            addr,
            queued,
        }
    }

    /// A session actor on the registry's thread that records the most bytes it ever found
    /// queued for it when it took a delivery out of its mailbox, and whether it was kicked.
    #[derive(Default)]
    struct Reader {
        queued: Option<Arc<QueuedBytes>>,
        most: Arc<Mutex<usize>>,
        kicked: Arc<Mutex<bool>>,
    }

    impl Actor for Reader {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Reader {
        type Result = ();

        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            let queued = self.queued.as_ref().expect("set");
            let mut most = self.most.lock().unwrap();
            *most = (*most).max(queued.get());
            queued.sub(msg.bytes);
        }
    }

    impl Handler<Kick> for Reader {
        type Result = ();

        fn handle(&mut self, _: Kick, _: &mut Context<Self>) {
            *self.kicked.lock().unwrap() = true;
        }
    }

    impl Handler<crate::messages::Close> for Reader {
        type Result = ();

        fn handle(&mut self, _: crate::messages::Close, _: &mut Context<Self>) {}
    }

    /// Forty batches of 64 KiB for one session are in the shard's mailbox at once (2.5 MiB,
    /// past the default bound of 1 MiB): the session takes each batch's events before the
    /// next batch is fanned out, so it never holds more than one, and is not kicked.
    #[test]
    fn a_burst_of_batches_never_piles_up_in_a_waiting_sessions_mailbox() {
        actix::System::new().block_on(async {
            let roster = Roster(Arc::new(Mutex::new(Vec::new()))).start();
            let (registry, subscriber) = registry_of(roster.recipient());
            let queued = Arc::new(QueuedBytes::new(1 << 20));
            let reader = Reader {
                queued: Some(queued.clone()),
                ..Reader::default()
            };
            let (most, kicked) = (reader.most.clone(), reader.kicked.clone());
            registry.do_send(ann(SessionAddr::new(reader.start()), queued));
            let backlog = crate::common::backlog::Backlog::new(
                usize::MAX,
                prometheus::IntGauge::new("backlog", "test").unwrap(),
            );
            let event = Arc::new(crate::common::outbound::Outbound::from_envelope(
                crate::common::metrics::OutKind::Notification,
                format!(r#"{{"type":"notification","data":"{}"}}"#, "x".repeat(1000)).as_bytes(),
            ));
            let batch = || DispatchBatch {
                frames: (0..64)
                    .map(|_| Dispatch {
                        target: Target::User("1".into()),
                        item: crate::messages::Item::Event(event.clone()),
                        order: None,
                    })
                    .collect(),
                credit: backlog.take(0),
            };
            for _ in 0..40 {
                registry.do_send(batch());
            }
            // Answered once the shard went through every batch before it.
            registry
                .send(Join {
                    id: 8,
                    room: "r".into(),
                })
                .await
                .unwrap();
            subscriber.send(ConfirmAll).await.unwrap();
            let one_batch = 64 * (event.native().len() + crate::common::queued::DELIVERY_OVERHEAD);
            let most = *most.lock().unwrap();
            assert!(most > 0, "the session got its events");
            assert!(
                most <= one_batch,
                "at most one batch waited: {most} > {one_batch}"
            );
            assert!(!*kicked.lock().unwrap(), "not kicked");
        });
    }

    struct Session;

    impl SessionHandle for Session {
        fn try_deliver(&self, _: Deliver) -> Result<(), actix::dev::SendError<Deliver>> {
            Ok(())
        }
        fn kick(&self, _: KickReason) {}
        fn close(&self, _: u16, _: &'static str) {}
    }

    /// The presence event of a first join may reach the subscriber before it hears of the
    /// room (it comes back from Redis on the fixed presence channel): the member is listed
    /// only once the room's channel is confirmed, so the event always finds the room known.
    #[test]
    fn a_member_is_listed_only_once_its_room_is_subscribed() {
        actix::System::new().block_on(async {
            let changes = Arc::new(Mutex::new(Vec::new()));
            let roster = Roster(changes.clone()).start();
            let (registry, subscriber) = registry_of(roster.clone().recipient());
            registry.do_send(ann(
                SessionAddr::new(Session),
                Arc::new(QueuedBytes::new(1 << 20)),
            ));
            let join = registry.send(Join {
                id: 7,
                room: "r".into(),
            });
            // A join of an unknown session answers at once: the registry has handled the one
            // before it. Then the roster has handled what the registry sent it.
            let nobody = Join {
                id: 8,
                room: "r".into(),
            };
            registry.send(nobody).await.unwrap();
            let rooms_changed = || async {
                let marker = PresenceChange {
                    room: "marker".into(),
                    member: Member {
                        user_id: "0".into(),
                        username: "".into(),
                    },
                    joined: true,
                };
                roster.send(marker).await.unwrap();
                let mut changes = changes.lock().unwrap();
                let rooms: Vec<String> = changes.iter().map(|c| c.room.to_string()).collect();
                changes.clear();
                rooms
            };
            assert_eq!(
                rooms_changed().await,
                ["marker"],
                "not listed while unconfirmed"
            );
            subscriber.send(ConfirmAll).await.unwrap();
            assert_eq!(join.await.unwrap().count, 1, "listed once confirmed");
            assert_eq!(rooms_changed().await, ["r", "marker"]);
        });
    }
}
