//! What the subscriber recovers after a pub/sub outage: messages published to a room or a
//! user while the hub was not subscribed (Redis restarting, the connection being rebuilt).
//! Chat is in the room's history and notifications sent through the inbox are in the user's
//! inbox, so after resubscribing the subscriber reads each channel's gap from there and
//! delivers it, then the live messages it held back meanwhile, minus exact copies.
//!
//! Where a gap starts: the id of the last message dispatched on the channel, or, before any,
//! the moment the channel was subscribed or asked for while it could not be (an id from the hub's clock; a clock far ahead of
//! Redis's would skip what came just after the subscription).
//!
//! From the moment a new connection is made after a loss ([`Recovery::suspend`]) until a
//! channel's gap has been read, its live messages are held: none is dispatched before the
//! gap, and none moves the gap's start.

use std::collections::HashMap;

use futures_util::future::LocalBoxFuture;

use crate::{
    common::error::HubError,
    common::metrics::Metrics,
    features::history::{History, Recent},
    features::inbox::Inbox,
    messages::{ChannelKey, Item},
};

use hub_wire::protocol::{
    now_ms, parse_inbound_timed, Inbound, MessageId, ROOM_PREFIX, USER_PREFIX,
};

/// A message to dispatch on a channel: its client frame and its history or inbox id, or a hub
/// message for the user's sessions (in the same stream, so it keeps its order).
pub struct Held {
    /// `{"type":...,"data":...}` (empty for a hub message).
    pub frame: Vec<u8>,
    /// Its history or inbox id, if it has one.
    pub id: Option<MessageId>,
    /// A hub message, ready to dispatch (on a user channel; never in a stream).
    pub hub: Option<Item>,
}

impl Held {
    /// A chat message or notification.
    pub fn frame(frame: Vec<u8>, id: Option<MessageId>) -> Held {
        Held {
            frame,
            id,
            hub: None,
        }
    }

    /// A hub message.
    pub fn hub(item: Item) -> Held {
        Held {
            frame: Vec::new(),
            id: None,
            hub: Some(item),
        }
    }
}

/// Where a channel's gap starts.
#[derive(Clone, Copy, Debug)]
pub struct GapStart {
    /// The gap is what came after this id.
    pub last: MessageId,
    /// `last` is a message's id (not just the moment of subscribing): the stream should
    /// still hold it, or messages were lost.
    pub dispatched: bool,
}

/// A gap read in flight: resolves with what the channel's stream holds after `last`.
pub type GapRead = LocalBoxFuture<'static, Result<Recent, HubError>>;

/// Gap state of every room and user channel of the instance.
#[derive(Default)]
pub struct Recovery {
    history: Option<History>,
    inbox: Option<Inbox>,
    /// Where each channel's next gap fill starts, and whether that is a message's id (not
    /// just the moment of subscribing).
    last: HashMap<ChannelKey, (MessageId, bool)>,
    /// Channels whose gap is to be read or being read, with the live messages held back
    /// meanwhile (delivered after the gap, so that order holds).
    filling: HashMap<ChannelKey, Filling>,
    /// Per channel, the ids a gap fill just delivered (ascending): their live copies can still
    /// be on the pub/sub connection (the gap read, on another connection, may overtake
    /// them) and are dropped; forgotten once a newer message arrives live.
    filled: HashMap<ChannelKey, Vec<MessageId>>,
}

/// A channel waiting for its gap.
#[derive(Default)]
struct Filling {
    /// Live messages held back, in order.
    held: Vec<Held>,
    /// Its read is in flight.
    reading: bool,
}

impl Recovery {
    /// Recovers chat from `history` (when set) and notifications from `inbox` (when set).
    pub fn new(history: Option<History>, inbox: Option<Inbox>) -> Self {
        Recovery {
            history,
            inbox,
            ..Recovery::default()
        }
    }

    /// The inbox, if notifications are recovered.
    pub fn inbox(&self) -> Option<&Inbox> {
        self.inbox.as_ref()
    }

    fn recovers(&self, key: &ChannelKey) -> bool {
        match key {
            ChannelKey::Room(_) => self.history.is_some(),
            ChannelKey::User(_) => self.inbox.is_some(),
        }
    }

    /// Redis confirmed a subscription, or the channel is wanted while the connection cannot
    /// subscribe it (down, being rebuilt): a gap can start no earlier than now.
    pub fn subscribed(&mut self, key: &ChannelKey) {
        if self.recovers(key) {
            let now = MessageId {
                ms: now_ms(),
                seq: 0,
            };
            self.last.entry(key.clone()).or_insert((now, false));
        }
    }

    /// The channel is no longer subscribed.
    pub fn forget(&mut self, key: &ChannelKey) {
        self.last.remove(key);
        self.filling.remove(key);
        self.filled.remove(key);
    }

    /// A message was dispatched on `key`: the next gap starts after it. (Recorded even
    /// before the subscription's confirmation was handled: a message can arrive first.)
    pub fn dispatched(&mut self, key: &ChannelKey, id: Option<MessageId>) {
        let Some(id) = id else { return };
        if let Some(last) = self.last.get_mut(key) {
            *last = (id, true);
        } else if self.recovers(key) {
            // The key is cloned only the first time (this runs for every message).
            self.last.insert(key.clone(), (id, true));
        }
    }

    /// Takes a live message: held back while its channel's gap is pending, dropped when a
    /// gap fill already delivered it (counted), otherwise given back to dispatch.
    pub fn admit(&mut self, key: &ChannelKey, held: Held, metrics: &Metrics) -> Option<Held> {
        if let Some(filling) = self.filling.get_mut(key) {
            filling.held.push(held);
            return None;
        }
        if let (Some(filled), Some(id)) = (self.filled.get(key), held.id) {
            if filled.binary_search(&id).is_ok() {
                duplicates(key, metrics).inc();
                return None;
            }
            if filled.last().is_some_and(|last| id > *last) {
                self.filled.remove(key);
            }
        }
        Some(held)
    }

    /// A new connection was made after a loss: every channel's live messages are held until
    /// its gap has been read.
    pub fn suspend(&mut self) {
        for key in self.last.keys() {
            self.filling.entry(key.clone()).or_default();
        }
    }

    /// One channel's subscription was lost (its master failed, on a cluster): its live
    /// messages are held until its gap has been read.
    pub fn suspend_one(&mut self, key: &ChannelKey) {
        if self.last.contains_key(key) {
            self.filling.entry(key.clone()).or_default();
        }
    }

    /// Starts the gap of every suspended channel that is `ready` (resubscribed: read earlier,
    /// the gap would miss what comes before the subscription) and not under way yet; returns
    /// each channel with where its gap starts, for [`Recovery::read`].
    pub fn start(&mut self, ready: impl Fn(&ChannelKey) -> bool) -> Vec<(ChannelKey, GapStart)> {
        let mut gaps = Vec::new();
        let (history, inbox) = (self.history.is_some(), self.inbox.is_some());
        for (key, filling) in self.filling.iter_mut() {
            let Some(&(last, dispatched)) = self.last.get(key) else {
                continue;
            };
            let recovers = match key {
                ChannelKey::Room(_) => history,
                ChannelKey::User(_) => inbox,
            };
            if filling.reading || !recovers || !ready(key) {
                continue;
            }
            filling.reading = true;
            gaps.push((key.clone(), GapStart { last, dispatched }));
        }
        gaps
    }

    /// The read of `key`'s gap (again, after a failed one), or `None` when the channel no
    /// longer waits for it (forgotten, or filled).
    pub fn read(&self, key: &ChannelKey, start: GapStart) -> Option<GapRead> {
        if !self.filling.contains_key(key) {
            return None;
        }
        let last = start.last;
        match (key, &self.history, &self.inbox) {
            (ChannelKey::Room(room), Some(history), _) => {
                let (history, room) = (history.clone(), room.clone());
                Some(Box::pin(async move { history.after(&room, last).await }))
            }
            (ChannelKey::User(user), _, Some(inbox)) => {
                let (inbox, user) = (inbox.clone(), user.clone());
                Some(Box::pin(async move { inbox.after(&user, last).await }))
            }
            _ => None,
        }
    }

    /// A gap read finished: what to dispatch on `key`, in order (the missed messages, then the
    /// held ones that are not copies of them). Counts what it fills and drops.
    pub fn finish(
        &mut self,
        key: &ChannelKey,
        start: GapStart,
        read: Result<Recent, HubError>,
        metrics: &Metrics,
    ) -> Vec<Held> {
        let Some(Filling { held, .. }) = self.filling.remove(key) else {
            return Vec::new();
        };
        let channel = match key {
            ChannelKey::Room(room) => format!("{ROOM_PREFIX}{room}"),
            ChannelKey::User(user) => format!("{USER_PREFIX}{user}"),
        };
        let last = start.last;
        let mut out = Vec::new();
        match read {
            Ok(recent) => {
                if recent.recovered == Some(false) && start.dispatched {
                    log::warn!(
                        "{channel}: its stream no longer reaches back to {last}; messages \
                         missed during the outage before the oldest kept one are lost"
                    );
                }
                // The ids are the stream's own (what clients get carries them unmarked).
                for (raw, id) in recent.messages.into_iter().zip(recent.ids) {
                    let frame = match parse_inbound_timed(&channel, raw.get().as_bytes()) {
                        Ok((Inbound::Chat { frame, .. }, _)) => frame,
                        Ok((Inbound::Notification { frame, .. }, _)) => frame,
                        _ => continue,
                    };
                    if id > last {
                        out.push(Held::frame(frame, Some(id)));
                    }
                }
            }
            Err(e) => log::warn!("{channel}: gap after reconnect not read: {e}"),
        }
        let filled: Vec<MessageId> = out.iter().filter_map(|h| h.id).collect();
        match key {
            ChannelKey::Room(_) => &metrics.chat_gap_filled,
            ChannelKey::User(_) => &metrics.notifications_gap_filled,
        }
        .inc_by(filled.len() as u64);
        for message in held {
            if message
                .id
                .is_some_and(|id| filled.binary_search(&id).is_ok())
            {
                duplicates(key, metrics).inc();
            } else {
                out.push(message);
            }
        }
        if !filled.is_empty() {
            self.filled.insert(key.clone(), filled);
        }
        out
    }
}

/// The counter of live copies dropped on `key`'s kind of channel.
fn duplicates<'a>(key: &ChannelKey, metrics: &'a Metrics) -> &'a prometheus::IntCounter {
    match key {
        ChannelKey::Room(_) => &metrics.chat_duplicates,
        ChannelKey::User(_) => &metrics.notification_duplicates,
    }
}
