//! Rooms in the core: joining (who may: [`crate::features::room_access`]; exactly once and in
//! order with the room's history), leaving, posting, and what the application does to a
//! session's rooms through hub messages (`room-remove`, `room-add`).

use super::*;
use crate::features::user_limits::UserAction;

/// How a join started: by the client (checked), or by the application (`room-add`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinKind {
    /// `join-room`: the room's rules and the user's join rate apply.
    Asked,
    /// `room-add`: the application granted it.
    Granted,
}

impl ClientCore {
    pub(super) fn in_room(&self, room: &RoomId) -> bool {
        self.rooms.iter().any(|r| r.room == *room)
    }

    /// Joins a room and answers `joined` with its history and members.
    ///
    /// First the access check and the user's join rate (for a join the client asked for):
    /// a refused session never touches the room. Then exactly once and in order: the registry
    /// adds the session to the room and resolves once the room channel is subscribed; only then
    /// is the history read. So every message is either in the history read or published after
    /// it, and then delivered live. Live copies that arrive meanwhile are held in the core, and
    /// after `joined` those whose ids it carried are dropped.
    pub(super) fn join(
        &mut self,
        (room, since, token): (RoomId, Option<MessageId>, Option<String>),
        kind: JoinKind,
        id: Option<Value>,
        io: &mut impl ClientIo,
    ) {
        let Some(identity) = self.identity.clone() else {
            return;
        };
        let max = self.env.limits.max_rooms_per_session;
        let already = self.in_room(&room);
        if !already && self.rooms.len() >= max {
            let message = format!("a session may be in at most {max} rooms");
            let err = error_with_id(ErrorCode::Forbidden, message, id).in_room(room);
            return self.reject(err, io);
        }
        let (env, session) = (self.env.clone(), self.id);
        let checked = !already && kind == JoinKind::Asked;
        self.busy.get_or_insert_default().joining = Some(room.clone());
        io.spawn(Step::new(async move {
            let result = async {
                if checked {
                    admit(&env, &identity, &room, token.as_deref()).await?;
                }
                let join = Join {
                    id: session,
                    room: room.clone(),
                };
                let local = env
                    .registry
                    .send(join)
                    .await
                    .map_err(|_| JoinFailure::Registry)?;
                // Queued here rather than at Redis, where a storm of joins would time out.
                let _turn = env.join_reads.acquire().await;
                let (recent, members) = futures_util::future::join(
                    env.history.recent(&room, since),
                    env.members.list(&room, local),
                )
                .await;
                match (recent, members) {
                    (Ok(recent), Ok(members)) => Ok((recent, members)),
                    (Err(e), _) | (_, Err(e)) => Err(JoinFailure::Redis(e)),
                }
            }
            .await;
            Resumed(Outcome::Joined {
                room,
                id,
                since,
                already,
                result,
            })
        }));
    }

    pub(super) fn joined(
        &mut self,
        room: RoomId,
        id: Option<Value>,
        since: Option<MessageId>,
        already: bool,
        result: Result<(Recent, MemberList), JoinFailure>,
        io: &mut impl ClientIo,
    ) {
        let removed = self.busy.as_ref().is_some_and(|f| f.join_removed);
        match result {
            Ok(_) if removed => {
                // Removed by the application while joining: out again, nothing of it shown.
                self.env.registry.do_send(Leave {
                    id: self.id,
                    room: room.clone(),
                });
                let message = format!("removed from `{room}` while joining it");
                let err = error_with_id(ErrorCode::Forbidden, message, id).in_room(room);
                self.reject(err, io);
            }
            Ok((recent, members)) => {
                let last = recent
                    .ids
                    .last()
                    .copied()
                    .or(since.filter(|_| recent.recovered == Some(true)));
                match self.rooms.iter_mut().find(|r| r.room == room) {
                    Some(joined) => joined.delivered = recent.ids,
                    None => self.rooms.push(JoinedRoom {
                        room: room.clone(),
                        delivered: recent.ids,
                    }),
                }
                let info = JoinInfo {
                    history: recent.messages,
                    members: members.members,
                    member_count: Some(members.count),
                    recovered: recent.recovered,
                    offset: None,
                };
                self.write_joined(room, info, last, id, io);
            }
            Err(JoinFailure::Refused(mut err)) => {
                err.id = id;
                self.reject(err, io);
            }
            Err(JoinFailure::Registry) => self.reject(
                error_with_id(ErrorCode::Unavailable, "registry unavailable", id),
                io,
            ),
            Err(JoinFailure::Redis(e)) => {
                debug!("session {}: join {room}: {e}", self.id);
                if !already {
                    self.env.registry.do_send(Leave {
                        id: self.id,
                        room: room.clone(),
                    });
                }
                let message = "the room's history could not be read; try again";
                self.reject(error_with_id(ErrorCode::Unavailable, message, id), io);
            }
        }
    }

    /// Takes the session out of a room it is in.
    pub(super) fn leave(&mut self, room: &RoomId) {
        self.rooms.retain(|r| r.room != *room);
        if let Some(r) = self.resume.as_mut() {
            r.tracker.left(room);
        }
        self.env.registry.do_send(Leave {
            id: self.id,
            room: room.clone(),
        });
    }

    /// `room-remove`: out of the room at once, told `left` with reason `removed`; a join of it
    /// in flight ends refused, one waiting is dropped.
    pub(super) fn removed_from(&mut self, room: RoomId, io: &mut impl ClientIo) {
        if let Some(flight) = self.busy.as_mut() {
            flight
                .deferred
                .retain(|d| !matches!(d, Deferred::Granted(r) if *r == room));
            if flight.joining.as_ref() == Some(&room) {
                flight.join_removed = true;
            }
        }
        if self.in_room(&room) {
            self.leave(&room);
            self.env.metrics.room_removals.inc();
            io.reply(
                Reply::Left {
                    room,
                    reason: Some("removed"),
                },
                None,
            );
        }
    }

    /// `room-add`: joins the room as if the client had asked (it gets `joined`), without the
    /// access check; after whatever is in flight.
    pub(super) fn added_to(&mut self, room: RoomId, io: &mut impl ClientIo) {
        if let Some(flight) = self.busy.as_mut() {
            flight.deferred.push_back(Deferred::Granted(room));
            return;
        }
        if !self.in_room(&room) {
            self.join((room, None, None), JoinKind::Granted, None, io);
        }
    }

    /// Appends a chat message to the room's history and publishes it (one Redis script),
    /// after the user's message rate and, with a hook, its `publish` answer. One at a time: the
    /// client's next requests wait for it, so its messages reach Redis, and every member, in
    /// the order it sent them.
    pub(super) fn publish(
        &mut self,
        (room, message): (RoomId, String),
        identity: &Arc<Identity>,
        id: Option<Value>,
        io: &mut impl ClientIo,
    ) {
        if !self.in_room(&room) {
            return self.reject(not_in_room(&room, id), io);
        }
        let payload = protocol::chat_payload(&room, &identity.user_id, &identity.name, &message);
        let (env, identity, session) = (self.env.clone(), identity.clone(), self.id);
        self.busy.get_or_insert_default();
        io.spawn(Step::new(async move {
            let result = async {
                over_user_rate(&env, &identity.user_id, UserAction::Chat, &room).await?;
                env.rooms
                    .may_post(&identity, &room)
                    .await
                    .map_err(|refused| refused.error)?;
                env.history.append(&room, &payload).await.map_err(|e| {
                    debug!("session {session}: {e}");
                    let message = "the message could not be published; try again";
                    ClientError::new(ErrorCode::Unavailable, message).in_room(room.clone())
                })
            }
            .await;
            Resumed(Outcome::Published { room, id, result })
        }));
    }
}

/// The checks of a join the client asked for: the user's join rate, then the room's rules.
async fn admit(
    env: &SessionEnv,
    identity: &Identity,
    room: &RoomId,
    token: Option<&str>,
) -> Result<(), JoinFailure> {
    over_user_rate(env, &identity.user_id, UserAction::Join, room)
        .await
        .map_err(JoinFailure::Refused)?;
    env.rooms
        .may_join(identity, room, token)
        .await
        .map(|_| ())
        .map_err(|refused| JoinFailure::Refused(refused.error))
}

/// `Err(rate_limited)` when `user` used up its budget for `action` across all its sessions
/// (counted); `Err(unavailable)` when Redis could not say.
async fn over_user_rate(
    env: &SessionEnv,
    user: &str,
    action: UserAction,
    room: &RoomId,
) -> Result<(), ClientError> {
    match env.user_limits.take(user, action).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            env.metrics.user_rate_limited(action.as_str());
            let rate = env.user_limits.rate(action);
            let what = match action {
                UserAction::Chat => "chat messages",
                UserAction::Join => "joins",
            };
            let message = format!(
                "too many {what} from this user across all its sessions: {} per second, burst {}",
                rate.per_sec, rate.burst
            );
            Err(ClientError::new(ErrorCode::RateLimited, message).in_room(room.clone()))
        }
        Err(e) => {
            warn!("{e}");
            let message = "the user's rate could not be checked; try again";
            Err(ClientError::new(ErrorCode::Unavailable, message).in_room(room.clone()))
        }
    }
}
