//! Pacing a resumable session: it hands its client at most [`RING_MAX`] stream events and half
//! its queue bound in bytes that the client has not proven it read ([`Tracker::has_room`]);
//! what comes beyond ([`Paced`]) waits here, in order, until a pong, and a ping is sent for it.
//! So a connection that died silently never takes more than the ring can place, a burst or a
//! replay of any size goes out as fast as the client reads it (a replay without counting
//! against the queue bound), and a `joined` keeps its place among the events it is ordered
//! with. Sessions that are not resumable write straight through.
//!
//! [`RING_MAX`]: crate::features::session_resume::RING_MAX

use super::*;
use crate::features::session_resume::Tracker;

/// A resumable session's state: its tracker and what waits for the client's proofs.
pub(super) struct Resumable {
    pub(super) tracker: Tracker,
    /// In order; empty (and unallocated) while the client keeps up.
    paced: VecDeque<Paced>,
}

impl Resumable {
    /// True while events wait for the client's proofs.
    pub(super) fn paced_waiting(&self) -> bool {
        !self.paced.is_empty()
    }

    /// A session tracked by `tracker`, nothing waiting.
    pub(super) fn new(tracker: Tracker) -> Box<Resumable> {
        Box::new(Resumable {
            tracker,
            paced: VecDeque::new(),
        })
    }
}

/// Something written to a resumable session that waits for room ([`Tracker::has_room`]).
pub(super) enum Paced {
    /// An event for `scope` (`order`: its stream id); `counted` bytes of it are in the
    /// session's queued bytes (0 for a replay: its size is bounded by the reads, and it must
    /// not count against the queue bound).
    Event {
        event: Arc<Outbound>,
        scope: Scope,
        order: Option<MessageId>,
        counted: usize,
    },
    /// A `joined` reply: it moves the room's cursor, so it keeps its place among the events.
    Joined {
        room: RoomId,
        info: JoinInfo,
        last: Option<MessageId>,
        id: Option<Value>,
    },
}

impl Paced {
    /// Its bytes, and whether it takes a ring entry.
    fn size(&self) -> (usize, bool) {
        match self {
            Paced::Event {
                event,
                scope,
                order,
                ..
            } => {
                let stream = event.kind() == OutKind::AiChunk
                    || (order.is_some() && !matches!(scope, Scope::Topic(_)));
                (event.native().len(), stream)
            }
            Paced::Joined { info, .. } => (joined_bytes(info), true),
        }
    }

    fn counted(&self) -> usize {
        match self {
            Paced::Event { counted, .. } => *counted,
            Paced::Joined { .. } => 0,
        }
    }
}

/// About the size of a `joined` frame.
fn joined_bytes(info: &JoinInfo) -> usize {
    128 + info
        .history
        .iter()
        .map(|m| m.get().len() + 1)
        .sum::<usize>()
}

impl ClientCore {
    /// What a ping sent now asks a resumable session's client to prove (`None`: not
    /// resumable). Hosts carry it in their heartbeat pings too.
    pub fn proof_point(&self) -> Option<Proof> {
        self.resume.as_ref().map(|r| r.tracker.proof_point())
    }

    /// The client answered a ping that carried `proof`: it read everything sent before it.
    /// What waited for that goes out.
    pub fn proved(&mut self, proof: Proof, io: &mut impl ClientIo) {
        if let Some(r) = self.resume.as_mut() {
            r.tracker.prove(proof);
            self.pump(io);
            if !io.behind() {
                self.drained(io);
            }
        }
    }

    /// Writes an event the client wants: at once, or in a resumable session after what waits
    /// for room. A live event that waits counts against the queue bound.
    pub(super) fn write(&mut self, delivery: Delivery, io: &mut impl ClientIo) {
        let counted = delivery.cost();
        let Delivery {
            item: Item::Event(event),
            scope,
            order,
        } = delivery
        else {
            return;
        };
        if event.kind() == OutKind::AiChunk && order.is_none() {
            return self.write_chunk(event, scope, counted, io);
        }
        self.release_chunks(io);
        self.write_event(event, scope, order, counted, io);
    }

    /// [`ClientCore::write`] for an event that is not held (`counted`: its bytes in the
    /// session's queued bytes, should it wait).
    pub(super) fn write_event(
        &mut self,
        event: Arc<Outbound>,
        scope: Scope,
        order: Option<MessageId>,
        counted: usize,
        io: &mut impl ClientIo,
    ) {
        let window = self.window();
        let Some(r) = self.resume.as_mut() else {
            return io.deliver(&event, None);
        };
        let mut item = Paced::Event {
            event,
            scope,
            order,
            counted: 0,
        };
        let (bytes, stream) = item.size();
        if r.paced.is_empty() && r.tracker.has_room(bytes, stream, window) {
            // The common case: nothing waits, and the client keeps up.
            self.emit(item, io);
            return self.ask_if_short(io);
        }
        if !self.queued.try_add(counted) {
            return io.kick(KickReason::QueueFull);
        }
        if let Paced::Event { counted: c, .. } = &mut item {
            *c = counted;
        }
        r.paced.push_back(item);
        self.pump(io);
    }

    /// True while the session is still in the room or topic `scope` names.
    fn still_wanted(&self, scope: &Scope) -> bool {
        match scope {
            Scope::User => true,
            Scope::Room(room) => self.in_room(room),
            Scope::Topic(topic) => self.topics & topic.bit() != 0,
        }
    }

    /// What a resumable session may have out unproven, in bytes: half its queue bound.
    fn window(&self) -> usize {
        self.env.limits.queue_bytes / 2
    }

    /// Writes a replayed event (`order` its stream id; `None` for a job's chunks): at once,
    /// or in a resumable session after what waits, without counting against the queue bound.
    pub(super) fn write_replay(
        &mut self,
        event: Arc<Outbound>,
        scope: Scope,
        order: Option<MessageId>,
        io: &mut impl ClientIo,
    ) {
        self.release_chunks(io);
        match self.resume.as_mut() {
            None => io.deliver(&event, None),
            Some(r) => r.paced.push_back(Paced::Event {
                event,
                scope,
                order,
                counted: 0,
            }),
        }
    }

    /// Answers `joined`: at once, or in a resumable session in its place among the events,
    /// with its offset.
    pub(super) fn write_joined(
        &mut self,
        room: RoomId,
        info: JoinInfo,
        last: Option<MessageId>,
        id: Option<Value>,
        io: &mut impl ClientIo,
    ) {
        self.release_chunks(io);
        match self.resume.as_mut() {
            None => io.reply(Reply::Joined { room, info, last }, id),
            Some(r) => {
                r.paced.push_back(Paced::Joined {
                    room,
                    info,
                    last,
                    id,
                });
                self.pump(io);
            }
        }
    }

    /// Writes what waits, in order, while the client has room; asks for a proof when it
    /// runs short.
    pub(super) fn pump(&mut self, io: &mut impl ClientIo) {
        let window = self.window();
        loop {
            let Some(r) = self.resume.as_mut() else {
                return;
            };
            let Some(next) = r.paced.front() else {
                break;
            };
            let (bytes, stream) = next.size();
            if !r.tracker.has_room(bytes, stream, window) {
                break;
            }
            let next = r.paced.pop_front().expect("checked");
            self.queued.sub(next.counted());
            self.emit(next, io);
        }
        self.ask_if_short(io);
    }

    /// Asks for a proof (a ping) when the session runs short of room or is blocked; frees
    /// the queue once nothing waits.
    fn ask_if_short(&mut self, io: &mut impl ClientIo) {
        let window = self.window();
        let Some(r) = self.resume.as_mut() else {
            return;
        };
        let blocked = !r.paced.is_empty();
        if r.tracker.should_ask(blocked, window) {
            r.tracker.asked();
            io.ping(r.tracker.proof_point());
        }
        if !blocked && r.paced.capacity() > 0 {
            r.paced = VecDeque::new();
        }
    }

    /// Writes one paced item with its offset.
    fn emit(&mut self, item: Paced, io: &mut impl ClientIo) {
        match item {
            Paced::Event {
                event,
                scope,
                order,
                ..
            } => {
                if !self.still_wanted(&scope) {
                    self.env.metrics.dropped_deliveries.inc();
                    return;
                }
                let Some(r) = self.resume.as_mut() else {
                    return;
                };
                if event.kind() == OutKind::InboxState {
                    // A snapshot, not numbered: a resumed session's `connected` has the count.
                    return io.deliver(&event, None);
                }
                let bytes = event.native().len();
                if event.kind() == OutKind::AiChunk {
                    if let Some((job, seq)) = super::jobs::chunk_head(event.data()) {
                        let offset = r.tracker.chunk(&job, seq, bytes);
                        return io.deliver(&event, Some(offset));
                    }
                }
                let from = match (&scope, order) {
                    (Scope::User, Some(id)) => Some((None, id)),
                    (Scope::Room(room), Some(id)) => Some((Some(room), id)),
                    _ => None,
                };
                let offset = r.tracker.next(from, bytes);
                io.deliver(&event, Some(offset));
            }
            Paced::Joined {
                room,
                mut info,
                last,
                id,
            } => {
                let Some(r) = self.resume.as_mut() else {
                    return;
                };
                let cursor = last.map_or(Cursor::After(MessageId::default()), Cursor::Seen);
                info.offset = Some(r.tracker.joined(&room, cursor, joined_bytes(&info)));
                io.reply(Reply::Joined { room, info, last }, id);
            }
        }
    }
}
