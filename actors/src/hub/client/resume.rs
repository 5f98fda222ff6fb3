//! Session resume in the core, the same for both ways in (native `/ws` and Socket.IO): the
//! session's [`Tracker`] (an offset for every event it writes, its rooms' cursors), taking the
//! record a reconnecting client names and resuming from it ([`ClientCore::restore`]), and
//! keeping the session in Redis when its transport drops. The records, their Redis key and the
//! offset arithmetic are in [`crate::features::session_resume`]; hosts only encode the offset and the
//! token, and say when their transport dropped.

use super::*;
use crate::features::session_resume::{plan, Pid, Taken, Tracker};

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

/// "From now on" in stream ids (this host's clock).
fn now_id() -> MessageId {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    MessageId { ms, seq: 0 }
}

/// The offset of the next event written to a resumable session (`None`: not resumable);
/// `order` is its stream id when it comes from the inbox or a room's history.
pub(super) fn next_offset(
    tracker: &mut Option<Box<Tracker>>,
    scope: &Scope,
    order: Option<MessageId>,
) -> Option<u64> {
    let tracker = tracker.as_mut()?;
    let from = match (scope, order) {
        (Scope::User, Some(id)) => Some((None, id)),
        (Scope::Room(room), Some(id)) => Some((Some(room), id)),
        _ => None,
    };
    Some(tracker.next(from))
}

impl ClientCore {
    /// What the client asked of session resume (`auth` may still ask instead).
    pub fn set_resume_ask(&mut self, ask: Option<Ask>) {
        self.resume_ask = ask;
    }

    /// Registers the authenticated session (once its token passed the revocation check). When
    /// the hub keeps sessions and the client asked, the session is resumable, and with a token
    /// of the same user whose offset can be placed, it resumes ([`ClientCore::restore`]);
    /// otherwise it connects normally.
    pub(super) fn connect_checked(&mut self, io: &mut impl ClientIo) {
        let ask = self.resume_ask.take();
        self.resume_asked = matches!(ask, Some(Ask::Continue { .. }));
        let (Some(store), Some(ask)) = (self.env.resume.clone(), ask) else {
            return self.register(io);
        };
        let inbox = self
            .inbox_since
            .map_or_else(|| Cursor::After(now_id()), Cursor::Seen);
        self.resume = Some(Box::new(Tracker::new(inbox)));
        let Ask::Continue { pid, offset } = ask else {
            return self.register(io);
        };
        let Some(pid) = pid else {
            self.count_resume("refused");
            return self.register(io);
        };
        let user = self.user().to_owned();
        self.busy.get_or_insert_default();
        io.spawn(Step::new(async move {
            let taken = store.take(pid, &user).await;
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
            Ok(Taken::Record(record)) => match offset.and_then(|o| plan(&record, o)) {
                Some(plan) => {
                    self.resume = Some(Box::new(Tracker::resumed(pid, &record, &plan)));
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
            token: self.resume.as_ref().map(|t| t.pid.to_string()),
            resumed: self.resume_asked.then_some(resumed),
        }
    }

    /// The client proved it read what was sent before the previous ping (a pong).
    pub fn pong(&mut self) {
        if let Some(tracker) = self.resume.as_mut() {
            tracker.pong();
        }
    }

    /// The transport dropped (not a goodbye, not a close by the hub, except at shutdown):
    /// writes the session to Redis so the client can resume it, on any instance, within the
    /// window. Once per session.
    pub fn keep_for_resume(&mut self) {
        let Some(tracker) = self.resume.take() else {
            return;
        };
        let Some(store) = self.env.resume.clone() else {
            return;
        };
        if !self.registered {
            return;
        }
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
