//! Session resume in the core, the same for both ways in (native `/ws` and Socket.IO): taking
//! the record a reconnecting client names and resuming from it ([`ClientCore::restore`]),
//! taking a session over from the live connection that still holds its token (`takeover`),
//! and keeping the session in Redis when its transport drops. The session's offsets and
//! cursors are its [`Tracker`], paced by the client's proofs (`pacing.rs`); the records, their
//! Redis key and the offset arithmetic are in [`crate::features::session_resume`]. Hosts only
//! encode the offset and the token, carry proofs in their pings, and say when their transport
//! dropped.
//!
//! A resumable session's key in Redis always says where it is: its live mark while it lives
//! (written with its registration), its record once kept (a transport drop, a slow consumer,
//! a shutdown, or a takeover), nothing once it ended otherwise. A client that comes back
//! before the hub noticed its drop finds the mark: its new session registers (so it hears the
//! user's hub messages), asks the live one to hand over (`takeover`), and takes the record
//! when the old session says it was kept (`takeover` with `kept`, sent after every save), or
//! once the wait is over: [`HANDOVER_WAIT`] after its own ask came back to it through Redis,
//! plus the time that took (the `kept` comes back the same way), so that a hub whose
//! subscriptions lag (out of CPU) does not give up on a session that is merely slow to hear
//! the ask; at most [`HANDOVER_LIMIT`] after the ask.

use std::time::Duration;

use super::pacing::Resumable;
use super::*;
use crate::features::session_resume::{plan, Pid, Plan, ResumeStore, Taken, Tracker};
use hub_wire::protocol::HubMessage;

/// How long a resume waits for the live session holding its token to say it was kept, from
/// the moment its ask came back to its own instance (plus the time that took).
pub const HANDOVER_WAIT: Duration = Duration::from_secs(2);

/// The longest a resume waits for a handover, from its ask (an ask that never comes back).
pub const HANDOVER_LIMIT: Duration = Duration::from_secs(10);

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

/// A resume waiting for the live session holding its token to hand it over.
pub(super) struct Handover {
    pid: Pid,
    offset: Option<u64>,
    /// The live session was asked (a `takeover` published), and when.
    asked: Option<std::time::Instant>,
    /// The ask came back to this session (so every instance holding the user heard it).
    heard: bool,
    /// A `kept` for the token came before the ask.
    noticed: bool,
    /// The record is being taken again.
    taking: bool,
}

/// "From now on" in stream ids (this host's clock).
fn now_id() -> MessageId {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    MessageId { ms, seq: 0 }
}

/// Takes the record of `pid` for `user` on a task of its own: when the session ends before it
/// can use the record, the record is written back instead of being lost with the session.
fn take(
    store: ResumeStore,
    pid: Pid,
    user: String,
) -> impl std::future::Future<Output = Result<Taken, HubError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    actix::spawn(async move {
        let taken = store.take(pid, &user).await;
        if let Err(Ok(Taken::Record(record))) = tx.send(taken) {
            put_back(&store, pid, &record).await;
        }
    });
    async move {
        rx.await
            .unwrap_or_else(|_| Err(HubError::Redis("the take was abandoned".into())))
    }
}

/// Writes a taken record back (the session that took it ended before using it).
async fn put_back(store: &ResumeStore, pid: Pid, record: &crate::features::session_resume::Record) {
    // The address only caps records per client address; a record written back is listed
    // under its user alone.
    if let Err(e) = store.save(pid, record, None).await {
        warn!("resume record {pid} taken by a session that ended, not written back: {e}");
    }
}

impl ClientCore {
    /// What the client asked of session resume (`auth` may still ask instead).
    pub fn set_resume_ask(&mut self, ask: Option<Ask>) {
        self.resume_ask = ask;
    }

    /// Registers the authenticated session (once its token passed the revocation check). When
    /// the hub keeps sessions and the client asked, the session is resumable, and with a token
    /// of the same user whose offset can be placed, it resumes (restoring its rooms and
    /// replaying what the client missed); when the token names a live session, it takes that
    /// session over; otherwise it connects normally.
    pub(super) fn connect_checked(&mut self, io: &mut impl ClientIo) {
        let ask = self.resume_ask.take();
        self.resume_asked = matches!(ask, Some(Ask::Continue { .. }));
        let (Some(store), Some(ask)) = (self.env.resume.clone(), ask) else {
            return self.register(io);
        };
        let inbox = self
            .inbox_since
            .map_or_else(|| Cursor::After(now_id()), Cursor::Seen);
        self.resume = Some(Resumable::new(Tracker::new(inbox)));
        let Ask::Continue { pid, offset } = ask else {
            return self.register(io);
        };
        let Some(pid) = pid else {
            self.count_resume("refused");
            return self.register(io);
        };
        self.busy.get_or_insert_default();
        self.spawn_take(store, pid, offset, false, io);
    }

    /// Takes the record of `pid` ([`take`]) and feeds it to [`ClientCore::recover`].
    fn spawn_take(
        &self,
        store: ResumeStore,
        pid: Pid,
        offset: Option<u64>,
        registered: bool,
        io: &mut impl ClientIo,
    ) {
        let taken = take(store, pid, self.user().to_owned());
        io.spawn(Step::new(async move {
            let taken = taken.await;
            Resumed(Outcome::Taken {
                pid,
                offset,
                taken,
                registered,
            })
        }));
    }

    /// The record a resume asked for was read (and replaced by this session's live mark when
    /// it was the user's): resumes when the client's offset can be placed in it; asks the
    /// live session holding the token to hand over; otherwise connects normally.
    /// `registered`: the session registered already, waiting for a handover.
    pub(super) fn recover(
        &mut self,
        pid: Pid,
        offset: Option<u64>,
        taken: Result<Taken, HubError>,
        registered: bool,
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
            Ok(Taken::Live) => match self.handover.as_deref_mut() {
                None => return self.await_handover(pid, offset, io),
                Some(h) if h.asked.is_none() && h.noticed => return self.take_again(io),
                Some(h) if h.asked.is_none() => return self.ask_handover(io),
                Some(h) => {
                    log::info!(
                        "session {id:x} of user {user}: resume refused: the live session \
                         holding the token did not hand it over within {:?} (the ask {})",
                        h.asked.map(|t| t.elapsed()).unwrap_or_default(),
                        if h.heard {
                            "came back"
                        } else {
                            "never came back"
                        }
                    );
                    "expired"
                }
            },
            Ok(Taken::Record(record)) => match offset.and_then(|o| Some((o, plan(&record, o)?))) {
                Some((offset, plan)) => {
                    self.handover = None;
                    self.resume = Some(Resumable::new(Tracker::resumed(
                        pid, &record, &plan, offset,
                    )));
                    self.restoring = true;
                    return self.restore(plan, registered, io);
                }
                None => {
                    log::info!(
                        "session {id:x} of user {user}: resume refused: offset {offset:?} \
                         outside {}..={}",
                        record.floor,
                        record.seq
                    );
                    // The take left this session's mark under the token: it goes.
                    if let Some(store) = self.env.resume.clone() {
                        actix::spawn(async move {
                            let _ = store.forget(pid).await;
                        });
                    }
                    "refused"
                }
            },
        };
        self.handover = None;
        self.count_resume(refused);
        if registered {
            let finish = self.registered_step();
            io.spawn(Step::new(finish(true)));
        } else {
            self.register(io);
        }
    }

    /// The token's session lives (or its instance died before keeping it): registers, so that
    /// the user's hub messages reach this session, then takes the record again (the old
    /// session may have been kept meanwhile) before asking it to hand over.
    fn await_handover(&mut self, pid: Pid, offset: Option<u64>, io: &mut impl ClientIo) {
        let Some(request) = self.registration(io) else {
            return;
        };
        self.handover = Some(Box::new(Handover {
            pid,
            offset,
            asked: None,
            heard: false,
            noticed: false,
            taking: true,
        }));
        let (store, user) = (self.env.resume.clone(), self.user().to_owned());
        io.spawn(Step::new(async move {
            if request.await.is_err() {
                return Resumed(Outcome::Registered {
                    ok: false,
                    missed: None,
                    unread: None,
                });
            }
            let taken = match store {
                Some(store) => take(store, pid, user).await,
                None => Ok(Taken::Nothing),
            };
            Resumed(Outcome::Taken {
                pid,
                offset,
                taken,
                registered: true,
            })
        }));
    }

    /// Asks the live session holding the token to hand it over (`takeover`, on the user's
    /// channel, heard by every instance holding the user): the wait starts when the ask comes
    /// back ([`ClientCore::on_takeover`]), and ends at [`HANDOVER_LIMIT`] at the latest.
    fn ask_handover(&mut self, io: &mut impl ClientIo) {
        let Some(h) = self.handover.as_deref_mut() else {
            return;
        };
        h.asked = Some(std::time::Instant::now());
        h.taking = false;
        let pid = h.pid;
        let (publisher, user) = (self.env.publisher.clone(), self.user().to_owned());
        let id = self.id;
        actix::spawn(async move {
            let ask = HubMessage::Command(HubCommand::Takeover {
                pid: pid.to_string(),
                kept: false,
            });
            if let Err(e) = publisher.publish_hub(&user, &ask).await {
                warn!("session {id:x}: takeover not asked: {e}");
            }
        });
        io.spawn(Step::new(async move {
            tokio::time::sleep(HANDOVER_LIMIT).await;
            Resumed(Outcome::HandoverTimeout { pid })
        }));
    }

    /// This session's own ask for `pid` came back: the session holding it, wherever it is,
    /// has heard it too (or its instance is gone). It gets [`HANDOVER_WAIT`] from now plus
    /// the time the ask took (its `kept` takes the same way back).
    fn ask_heard(&mut self, pid: Pid, io: &mut impl ClientIo) {
        let Some(h) = self
            .handover
            .as_deref_mut()
            .filter(|h| h.pid == pid && !h.heard)
        else {
            return;
        };
        let Some(asked) = h.asked else {
            return;
        };
        h.heard = true;
        let wait = HANDOVER_WAIT + asked.elapsed();
        io.spawn(Step::new(async move {
            tokio::time::sleep(wait).await;
            Resumed(Outcome::HandoverTimeout { pid })
        }));
    }

    /// Takes the record the handover waits for again.
    fn take_again(&mut self, io: &mut impl ClientIo) {
        let (Some(h), Some(store)) = (self.handover.as_deref_mut(), self.env.resume.clone()) else {
            return;
        };
        h.taking = true;
        let (pid, offset) = (h.pid, h.offset);
        self.spawn_take(store, pid, offset, true, io);
    }

    /// The live session did not say it was kept in time (the first of the two waits to end):
    /// one last take.
    pub(super) fn handover_timeout(&mut self, pid: Pid, io: &mut impl ClientIo) {
        if self
            .handover
            .as_deref()
            .is_some_and(|h| h.pid == pid && !h.taking)
        {
            self.take_again(io);
        }
    }

    /// A `takeover` hub message for `pid` (as written): without `kept`, this session closes
    /// as replaced when it holds that token, kept for resume (and a handover that asked for
    /// it starts its wait, [`ClientCore::ask_heard`]); with `kept`, a handover waiting for it
    /// takes the record.
    pub(super) fn on_takeover(
        &mut self,
        pid: &str,
        kept: bool,
        io: &mut impl ClientIo,
    ) -> ControlFlow<()> {
        let Some(pid) = Pid::parse(pid) else {
            return ControlFlow::Continue(());
        };
        if kept {
            if let Some(h) = self.handover.as_deref_mut().filter(|h| h.pid == pid) {
                if h.asked.is_none() {
                    h.noticed = true;
                } else if !h.taking {
                    self.take_again(io);
                }
            }
            return ControlFlow::Continue(());
        }
        self.ask_heard(pid, io);
        let holds = self.resume.as_ref().is_some_and(|r| r.tracker.pid == pid);
        if !holds || !(self.registered || self.restoring) {
            return ControlFlow::Continue(());
        }
        log::info!(
            "session {:x} of user {}: replaced by a new connection with its resume token",
            self.id,
            self.user()
        );
        self.env.metrics.takeovers.inc();
        self.keep_for_resume();
        io.close(close::REPLACED, "replaced by a new connection");
        ControlFlow::Break(())
    }

    /// Marks this resumable session live in Redis (see the module docs); a no-op future when
    /// it is not resumable.
    pub(super) fn live_mark(&self) -> LocalBoxFuture<'static, ()> {
        let (Some(store), Some(r)) = (self.env.resume.clone(), self.resume.as_ref()) else {
            return Box::pin(async {});
        };
        let (pid, user, id) = (r.tracker.pid, self.user().to_owned(), self.id);
        Box::pin(async move {
            if let Err(e) = store.mark_live(pid, &user).await {
                warn!("session {id:x}: not marked live (a takeover will not find it): {e}");
            }
        })
    }

    /// The session ended without being kept: its live mark goes.
    pub(super) fn forget_mark(&mut self) {
        let Some(r) = self.resume.take() else {
            return;
        };
        let Some(store) = self.env.resume.clone() else {
            return;
        };
        if self.registered || self.restoring {
            let pid = r.tracker.pid;
            actix::spawn(async move {
                if let Err(e) = store.forget(pid).await {
                    warn!("{e}");
                }
            });
        }
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
            unread: None,
        }
    }

    /// Registers a resumed session: rejoins the plan's rooms (through the registry, as joins
    /// do) and reads what followed each cursor, the inbox's and each job's too, then answers
    /// `Connected` with `recovered: true` and writes the missed notifications, then each
    /// room's missed messages (room by room, in the order given), then each job's missed
    /// chunks, before any live event. When any read is incomplete (a gap longer than the
    /// history or inbox keeps, or a read that failed), the rooms are left and `recovered` is
    /// false: a normal connect, except that the notifications and chunks read are still
    /// written (as with `since`).
    ///
    /// `registered`: the session is registered already (it waited for a live session to hand
    /// the token over).
    pub(super) fn restore(&mut self, plan: Plan, registered: bool, io: &mut impl ClientIo) {
        let Plan { inbox, rooms, jobs } = plan;
        let register = if registered {
            None
        } else {
            let Some(request) = self.registration(io) else {
                return;
            };
            Some(request)
        };
        self.busy.get_or_insert_default();
        let (id, env, user) = (self.id, self.env.clone(), self.user().to_owned());
        let registry = env.registry.clone();
        io.spawn(Step::new(async move {
            if let Some(register) = register {
                if register.await.is_err() {
                    let inbox = Err(HubError::Redis("registry unavailable".into()));
                    return Resumed(Outcome::Restored {
                        ok: false,
                        inbox,
                        rooms: Vec::new(),
                        jobs: Vec::new(),
                        unread: None,
                    });
                }
            }
            // Every room subscribed before reading: what the reads miss arrives live.
            let joins = rooms.iter().map(|(room, _)| {
                registry.send(Join {
                    id,
                    room: room.clone(),
                })
            });
            let joined = futures_util::future::join_all(joins).await;
            let _turn = env.join_reads.acquire().await;
            let reads = rooms.iter().zip(&joined).map(|((room, cursor), joined)| {
                let history = &env.history;
                async move {
                    match joined {
                        Ok(_) => Some(history.since(room, *cursor).await),
                        Err(_) => None,
                    }
                }
            });
            // Registered before reading: a chunk the reads miss arrives live.
            let chunks = jobs
                .iter()
                .map(|(job, after)| super::jobs::kept_chunks(&env, &user, job, *after));
            let (inbox, reads, chunks, unread) = futures_util::future::join4(
                env.inbox.since(&user, inbox),
                futures_util::future::join_all(reads),
                futures_util::future::join_all(chunks),
                env.inbox.unread(&user),
            )
            .await;
            let rooms = rooms.into_iter().map(|(room, _)| room).zip(reads).collect();
            let jobs = jobs.into_iter().map(|(job, _)| job).zip(chunks).collect();
            Resumed(Outcome::Restored {
                ok: true,
                inbox,
                rooms,
                jobs,
                unread: Some(unread),
            })
        }));
    }

    /// The reads of a [`ClientCore::restore`] are back.
    pub(super) fn restored(
        &mut self,
        inbox: Result<Recent, HubError>,
        rooms: Vec<(RoomId, Option<Result<Recent, HubError>>)>,
        jobs: Vec<super::jobs::ChunkRead>,
        unread: Option<Result<u64, HubError>>,
        io: &mut impl ClientIo,
    ) {
        self.tracked = true;
        self.restoring = false;
        let Some(identity) = self.identity.clone() else {
            return;
        };
        let complete =
            |read: &Result<Recent, HubError>| matches!(read, Ok(r) if r.recovered == Some(true));
        let recovered = complete(&inbox)
            && rooms
                .iter()
                .all(|(_, read)| read.as_ref().is_some_and(complete))
            && jobs.iter().all(|(_, read)| read.is_ok());
        if !recovered {
            if let Some(r) = self.resume.as_mut() {
                // A new token: the old one's mark goes, the new one is marked live.
                let old = r.tracker.pid;
                r.tracker.restart();
                if let Some(store) = self.env.resume.clone() {
                    let mark = self.live_mark();
                    actix::spawn(async move {
                        let _ = store.forget(old).await;
                        mark.await;
                    });
                }
            }
        }
        self.count_resume(if recovered { "recovered" } else { "incomplete" });
        let inbox = inbox
            .map_err(|e| {
                self.env.metrics.inbox_read_errors.inc();
                warn!(
                    "session {:x}: the inbox could not be read again: {e}",
                    self.id
                )
            })
            .ok();
        io.reply(
            Reply::Connected {
                session_id: format!("{}-{:x}", self.env.instance_id, self.id),
                user_id: identity.user_id.clone(),
                resumption: Resumption {
                    unread: self.unread_of(unread),
                    ..self.resumption(None, recovered)
                },
            },
            None,
        );
        if let Some(inbox) = inbox {
            self.env
                .metrics
                .notifications_replayed
                .inc_by(inbox.messages.len() as u64);
            replay(self, OutKind::Notification, &Scope::User, &inbox, io);
            self.replayed.get_or_insert_default().inbox = inbox.ids;
        }
        for (room, read) in rooms {
            match read {
                Some(Ok(read)) if recovered => {
                    let scope = Scope::Room(room.clone());
                    self.rooms.push(JoinedRoom {
                        room,
                        delivered: Vec::new(),
                    });
                    replay(self, OutKind::Chat, &scope, &read, io);
                    if let Some(joined) = self.rooms.last_mut() {
                        joined.delivered = read.ids;
                    }
                }
                Some(_) => self.env.registry.do_send(Leave { id: self.id, room }),
                None => {}
            }
        }
        for (job, read) in jobs {
            match read {
                Ok(chunks) => self.replay_chunks(job, &chunks, io),
                Err(e) => warn!(
                    "session {:x}: chunks of job {job} not replayed: {e}",
                    self.id
                ),
            }
        }
        self.registered = true;
        self.watch_expiry(io);
        self.pump(io);
        self.unbusy(io);
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
        let (metrics, id, pid, peer) = (self.env.metrics.clone(), self.id, tracker.pid, self.peer);
        actix::spawn(async move {
            let result = match store.save(pid, &record, peer).await {
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
