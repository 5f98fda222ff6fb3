//! Session resume in the core, the same for both ways in (native `/ws` and Socket.IO): the
//! session's [`Tracker`] (an offset for every event it writes, its rooms' cursors), the events
//! that wait for the client's proofs ([`Paced`]), taking the record a reconnecting client
//! names and resuming from it ([`ClientCore::restore`]), and keeping the session in Redis when
//! its transport drops. The records, their Redis key and the offset arithmetic are in
//! [`crate::features::session_resume`]; hosts only encode the offset and the token, carry
//! proofs in their pings, and say when their transport dropped.
//!
//! A resumable session hands its client at most [`RING_MAX`] stream events and half its queue
//! bound in bytes that the client has not proven it read; the rest waits here, in order, until
//! a pong (a ping is sent for it). So a connection that died silently never takes more than
//! the ring can place, and a replay of any size goes out as fast as the client reads it,
//! without counting against the queue bound.
//!
//! [`RING_MAX`]: crate::features::session_resume::RING_MAX

use super::*;
use crate::features::session_resume::{plan, Pid, Proof, Taken, Tracker};

/// What a connecting client asks of session resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// A fresh session that can be resumed later.
    Start,
    /// Continue the session `pid` (`None`: a token that is no private id), whose last event
    /// the client saw had `offset` (`None`: an offset that is no number).
    Continue {
        /// The private id.
        pid: Option<Pid>,
        /// The last offset seen.
        offset: Option<u64>,
    },
}

impl From<protocol::ResumeAsk> for Ask {
    fn from(ask: protocol::ResumeAsk) -> Ask {
        match ask {
            protocol::ResumeAsk::Start => Ask::Start,
            protocol::ResumeAsk::Continue { token, offset } => Ask::Continue {
                pid: Pid::parse(&token),
                offset: Some(offset),
            },
        }
    }
}

/// A resumable session's state: its tracker and what waits for the client's proofs.
pub(super) struct Resumable {
    pub(super) tracker: Tracker,
    /// In order; empty (and unallocated) while the client keeps up.
    paced: VecDeque<Paced>,
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
                let stream = order.is_some() && !matches!(scope, Scope::Topic(_));
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

/// "From now on" in stream ids (this host's clock).
fn now_id() -> MessageId {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    MessageId { ms, seq: 0 }
}

impl ClientCore {
    /// What the client asked of session resume (`auth` may still ask instead).
    pub fn set_resume_ask(&mut self, ask: Option<Ask>) {
        self.resume_ask = ask;
    }

    fn start_tracking(&mut self, tracker: Tracker) {
        self.resume = Some(Box::new(Resumable {
            tracker,
            paced: VecDeque::new(),
        }));
    }

    /// Registers the authenticated session. When the hub keeps sessions and the client asked,
    /// the session is resumable, and with a token of the same user whose offset can be
    /// placed, it resumes ([`ClientCore::restore`]); otherwise it connects normally.
    pub fn connect(&mut self, io: &mut impl ClientIo) {
        let ask = self.resume_ask.take();
        self.resume_asked = matches!(ask, Some(Ask::Continue { .. }));
        let (Some(store), Some(ask)) = (self.env.resume.clone(), ask) else {
            return self.register(io);
        };
        let inbox = self
            .inbox_since
            .map_or_else(|| Cursor::After(now_id()), Cursor::Seen);
        self.start_tracking(Tracker::new(inbox));
        let Ask::Continue { pid, offset } = ask else {
            return self.register(io);
        };
        let Some(pid) = pid else {
            self.count_resume("refused");
            return self.register(io);
        };
        let user = self.user().to_owned();
        self.busy.get_or_insert_default();
        // Taken on a task of its own: when the session ends before it can use the record, the
        // record is written back instead of being lost with the session.
        let (tx, rx) = tokio::sync::oneshot::channel();
        actix::spawn(async move {
            let taken = store.take(pid, &user).await;
            if let Err(Ok(Taken::Record(record))) = tx.send(taken) {
                put_back(&store, pid, &record).await;
            }
        });
        io.spawn(Step::new(async move {
            let taken = rx
                .await
                .unwrap_or_else(|_| Err(HubError::Redis("the take was abandoned".into())));
            Resumed(Outcome::Taken { pid, offset, taken })
        }));
    }

    /// The record a resume asked for was read (and deleted when it was the user's): resumes
    /// when the client's offset can be placed in it, otherwise connects normally.
    pub(super) fn recover(
        &mut self,
        pid: Pid,
        offset: Option<u64>,
        taken: Result<Taken, HubError>,
        io: &mut impl ClientIo,
    ) {
        let (id, user) = (self.id, self.user().to_owned());
        let refused = match taken {
            Err(e) => {
                warn!("session {id:x}: resume record unreadable: {e}");
                "error"
            }
            Ok(Taken::Nothing) => "expired",
            Ok(Taken::OtherUser) => {
                log::info!("session {id:x} of user {user}: resume refused: another user's token");
                "refused"
            }
            Ok(Taken::Record(record)) => match offset.and_then(|o| Some((o, plan(&record, o)?))) {
                Some((offset, plan)) => {
                    self.start_tracking(Tracker::resumed(pid, &record, &plan, offset));
                    self.restoring = true;
                    return self.restore(plan.inbox, plan.rooms, io);
                }
                None => {
                    log::info!(
                        "session {id:x} of user {user}: resume refused: offset {offset:?} \
                         outside {}..={}",
                        record.floor,
                        record.seq
                    );
                    "refused"
                }
            },
        };
        self.count_resume(refused);
        self.register(io);
    }

    /// The session ended while its resume was being taken: a record it took goes back.
    pub(super) fn give_back(&self, pid: Pid, taken: Result<Taken, HubError>) {
        if let (Ok(Taken::Record(record)), Some(store)) = (taken, self.env.resume.clone()) {
            actix::spawn(async move { put_back(&store, pid, &record).await });
        }
    }

    /// Counts a resume asked for, by result.
    pub(super) fn count_resume(&self, result: &str) {
        self.env
            .metrics
            .sio_recoveries
            .with_label_values(&[result])
            .inc();
    }

    /// What `connected` says about resume: the session's token, and whether it resumed.
    pub(super) fn resumption(&self, recovered: Option<bool>, resumed: bool) -> Resumption {
        Resumption {
            recovered,
            token: self.resume.as_ref().map(|r| r.tracker.pid.to_string()),
            resumed: self.resume_asked.then_some(resumed),
        }
    }

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
        let Some(r) = self.resume.as_mut() else {
            return io.deliver(&event, None);
        };
        if !self.queued.try_add(counted) {
            return io.kick(KickReason::QueueFull);
        }
        r.paced.push_back(Paced::Event {
            event,
            scope,
            order,
            counted,
        });
        self.pump(io);
    }

    /// Writes a replayed event (`order` its stream id): at once, or in a resumable session
    /// after what waits, without counting against the queue bound.
    pub(super) fn write_replay(
        &mut self,
        event: Arc<Outbound>,
        scope: Scope,
        order: MessageId,
        io: &mut impl ClientIo,
    ) {
        match self.resume.as_mut() {
            None => io.deliver(&event, None),
            Some(r) => r.paced.push_back(Paced::Event {
                event,
                scope,
                order: Some(order),
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
        let window = self.env.limits.queue_bytes / 2;
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
                let from = match (&scope, order) {
                    (Scope::User, Some(id)) => Some((None, id)),
                    (Scope::Room(room), Some(id)) => Some((Some(room), id)),
                    _ => None,
                };
                let offset = r.tracker.next(from, event.native().len());
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

    /// The transport dropped (not a goodbye, not a close by the hub for the client's fault,
    /// except at shutdown): writes the session to Redis so the client can resume it, on any
    /// instance, within the window. Also while the session was being restored from a record
    /// (taken, `connected` not sent yet): the record is written back. Once per session.
    pub fn keep_for_resume(&mut self) {
        let Some(resumable) = self.resume.take() else {
            return;
        };
        let Some(store) = self.env.resume.clone() else {
            return;
        };
        if !self.registered && !self.restoring {
            return;
        }
        let tracker = &resumable.tracker;
        let record = tracker.record(self.user());
        let (metrics, id, pid) = (self.env.metrics.clone(), self.id, tracker.pid);
        actix::spawn(async move {
            let result = match store.save(pid, &record).await {
                Ok(()) => "saved",
                Err(e) => {
                    warn!("session {id:x}: not kept for resume: {e}");
                    "failed"
                }
            };
            metrics
                .sio_recovery_saves
                .with_label_values(&[result])
                .inc();
        });
    }
}

/// Writes a taken record back (the session that took it ended before using it).
async fn put_back(
    store: &crate::features::session_resume::ResumeStore,
    pid: Pid,
    record: &crate::features::session_resume::Record,
) {
    if let Err(e) = store.save(pid, record).await {
        warn!("resume record {pid} taken by a session that ended, not written back: {e}");
    }
}
