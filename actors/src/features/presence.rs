//! Who is in which room on this instance, shared by all registry shards (a user's sessions
//! may sit on different worker threads). Counts sessions per user, so callers learn when a
//! user's first session joins a room and when the last one leaves; those transitions are
//! also reported to the roster (`roster.rs`), which mirrors them into Redis for the other
//! instances.

use std::collections::HashMap;

use actix::Recipient;
use dashmap::DashMap;

use crate::messages::{LocalMembers, PresenceChange};

use hub_wire::protocol::{Member, RoomId, UserId};

struct Presence {
    username: std::sync::Arc<str>,
    sessions: u32,
}

/// Room membership of this instance.
pub struct LocalPresence {
    rooms: DashMap<RoomId, HashMap<UserId, Presence>>,
    /// Told about every first-join and last-leave (while the room's entry is locked, so the
    /// changes of one room arrive in order).
    notify: Option<Recipient<PresenceChange>>,
    /// Most members [`LocalPresence::members`] lists (a room's listing is capped anyway, and
    /// copying a big room's whole local membership on every join was quadratic).
    member_limit: usize,
}

impl Default for LocalPresence {
    fn default() -> Self {
        LocalPresence {
            rooms: DashMap::new(),
            notify: None,
            member_limit: usize::MAX,
        }
    }
}

impl LocalPresence {
    /// Room membership that reports first-joins and last-leaves to `notify` and lists at most
    /// `member_limit` members per room.
    pub fn new(notify: Recipient<PresenceChange>, member_limit: usize) -> Self {
        LocalPresence {
            rooms: DashMap::new(),
            notify: Some(notify),
            member_limit,
        }
    }

    fn report(&self, room: &RoomId, member: Member, joined: bool) {
        if let Some(notify) = &self.notify {
            notify.do_send(PresenceChange {
                room: room.clone(),
                member,
                joined,
            });
        }
    }

    /// Adds one session of `member` to `room`; true when it is the user's first here.
    pub fn join(&self, room: &RoomId, member: &Member) -> bool {
        let mut users = self.rooms.entry(room.clone()).or_default();
        let entry = users
            .entry(member.user_id.clone())
            .or_insert_with(|| Presence {
                username: member.username.clone(),
                sessions: 0,
            });
        entry.sessions += 1;
        let first = entry.sessions == 1;
        if first {
            self.report(room, member.clone(), true);
        }
        first
    }

    /// Removes one session of `user` from `room`; true when it was the user's last here.
    pub fn leave(&self, room: &RoomId, user: &UserId) -> bool {
        let Some(mut users) = self.rooms.get_mut(room) else {
            return false;
        };
        let last = match users.get_mut(user) {
            Some(p) if p.sessions > 1 => {
                p.sessions -= 1;
                false
            }
            Some(_) => {
                if let Some(p) = users.remove(user) {
                    let member = Member {
                        user_id: user.clone(),
                        username: p.username,
                    };
                    self.report(room, member, false);
                }
                true
            }
            None => false,
        };
        let empty = users.is_empty();
        drop(users);
        if empty {
            self.rooms.remove_if(room, |_, users| users.is_empty());
        }
        last
    }

    /// Everyone in `room` on this instance, one entry per user.
    pub fn members(&self, room: &RoomId) -> LocalMembers {
        self.rooms
            .get(room)
            .map(|users| LocalMembers {
                members: users
                    .iter()
                    .take(self.member_limit)
                    .map(|(user_id, p)| Member {
                        user_id: user_id.clone(),
                        username: p.username.clone(),
                    })
                    .collect(),
                count: users.len(),
            })
            .unwrap_or_default()
    }

    /// Every (room, member) pair of this instance, for a full resync with Redis.
    pub fn snapshot(&self) -> Vec<(RoomId, Member)> {
        let mut all = Vec::new();
        for room in self.rooms.iter() {
            for (user_id, p) in room.value() {
                all.push((
                    room.key().clone(),
                    Member {
                        user_id: user_id.clone(),
                        username: p.username.clone(),
                    },
                ));
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sessions_per_user() {
        let p = LocalPresence::default();
        let room: RoomId = "r".into();
        let ann = Member {
            user_id: "1".into(),
            username: "Ann".into(),
        };
        assert!(p.join(&room, &ann));
        assert!(!p.join(&room, &ann), "second tab is not a new member");
        assert_eq!(p.members(&room).members, vec![ann.clone()]);
        assert!(!p.leave(&room, &ann.user_id));
        assert!(p.leave(&room, &ann.user_id));
        assert!(p.members(&room).members.is_empty());
        assert!(!p.leave(&room, &ann.user_id), "idempotent");
        assert!(p.snapshot().is_empty());
    }
}
