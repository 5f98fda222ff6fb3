//! Hub messages: what the hub itself tells every session of a user, on every instance. They
//! travel on the user's own channel `user:notifications:{id}` (so only the instances holding
//! the user hear them, and they keep their order with the user's notifications) as a JSON
//! object whose **first key is `"$hub"`**, naming the kind:
//! `{"$hub":"<kind>","userId":"<id>",...}`.
//!
//! Only the hub writes them ([`HubMessage::payload`]): services must not send `$hub`
//! (`POST /api/notify` and `relay_notify` refuse a notification carrying it, and a
//! notification with a `$hub` key that is not its first is an invalid payload).
//!
//! Two sorts of kinds:
//! - a **command** ([`HubCommand`]) is for the session core to act on (close the session,
//!   leave a room): parsed once here, shared by every recipient session;
//! - a client-visible **event** would carry its client frame instead, which the subscriber
//!   encodes once (`common/outbound.rs`) for every recipient, like a notification.
//!
//! Kinds: `disconnect`, `room-remove`, `room-add`, `takeover` (commands) and `inbox-state`
//! (an event: the user's unread count and what changed, published by the inbox's Redis
//! functions).
//!
//! Adding a kind: a variant (of [`HubCommand`] for a command, of [`HubMessage`] with its frame
//! for an event), its name in [`HubMessage::kind`] and [`parse_hub_message`], and what to do
//! with it: the core's match on [`HubCommand`], or the subscriber's match on [`HubMessage`]
//! (which turns an event into the shared encoded frame).

use super::payloads::{check_object, check_user, IdValue};
use super::*;

/// The key that makes a payload on a user channel a hub message when it comes first.
pub const HUB_KEY: &str = "$hub";

/// A hub message, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum HubMessage {
    /// For the session core of each of the user's sessions to act on.
    Command(HubCommand),
    /// `inbox-state`: for each of the user's sessions to pass on as an `inbox-state` event.
    InboxState(InboxState),
}

/// The user's inbox changed (`inbox-state`): the unread count, and what changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboxState {
    /// Unread notifications now.
    pub unread: u64,
    /// Marked read one by one.
    pub read: Vec<MessageId>,
    /// Every notification up to this one was marked read.
    pub up_to: Option<MessageId>,
    /// No longer in the inbox (deleted, or replaced through its `collapseKey`).
    pub removed: Vec<MessageId>,
    /// A low-priority notification kept in the inbox but not pushed (over the user's cap).
    pub held: Option<MessageId>,
}

impl InboxState {
    /// The client-visible part: `{"unread":N,"read"?:[...],"upTo"?:..,"removed"?:[...],
    /// "held"?:..}`.
    pub fn data(&self) -> Map<String, Value> {
        let ids = |ids: &[MessageId]| Value::from_iter(ids.iter().map(|id| id.to_string()));
        let mut data = Map::new();
        data.insert("unread".into(), Value::from(self.unread));
        if !self.read.is_empty() {
            data.insert("read".into(), ids(&self.read));
        }
        if let Some(up_to) = self.up_to {
            data.insert("upTo".into(), Value::from(up_to.to_string()));
        }
        if !self.removed.is_empty() {
            data.insert("removed".into(), ids(&self.removed));
        }
        if let Some(held) = self.held {
            data.insert("held".into(), Value::from(held.to_string()));
        }
        data
    }

    /// The native frame `{"type":"inbox-state","data":{...}}`.
    pub fn frame(&self) -> Vec<u8> {
        let data = serde_json::to_vec(&self.data()).expect("JSON maps serialize");
        envelope("inbox-state", &data)
    }
}

/// What the session core does for a hub message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubCommand {
    /// `disconnect`: close the session (`POST /api/users/{userId}/disconnect`).
    Disconnect,
    /// `room-remove` (`"room"`): leave the room, telling the client `left` with reason
    /// `removed` (`DELETE /api/rooms/{room}/members/{userId}`).
    RoomRemove {
        /// The room.
        room: RoomId,
    },
    /// `room-add` (`"room"`): join the room as if the client had asked, without the access
    /// check (`PUT /api/rooms/{room}/members/{userId}`).
    RoomAdd {
        /// The room.
        room: RoomId,
    },
    /// `takeover`: a new connection presented the resume token `pid` (32 hex digits) of a
    /// session of the user, on any instance. Without `kept`, the session holding that token
    /// closes as replaced and is kept for resume; with `kept` (sent after a session was
    /// written to Redis), a connection waiting to resume that token takes its record.
    Takeover {
        /// The resume token (the session's private id).
        pid: String,
        /// The session was kept (its record is in Redis).
        kept: bool,
    },
}

impl HubMessage {
    /// The kind, as named by `$hub`.
    pub fn kind(&self) -> &'static str {
        match self {
            HubMessage::Command(HubCommand::Disconnect) => "disconnect",
            HubMessage::Command(HubCommand::RoomRemove { .. }) => "room-remove",
            HubMessage::Command(HubCommand::RoomAdd { .. }) => "room-add",
            HubMessage::Command(HubCommand::Takeover { .. }) => "takeover",
            HubMessage::InboxState(_) => "inbox-state",
        }
    }

    /// The payload the hub publishes on `user:notifications:{user}`.
    pub fn payload(&self, user: &str) -> Vec<u8> {
        let mut object = Map::new();
        object.insert(HUB_KEY.into(), Value::from(self.kind()));
        object.insert("userId".into(), user_id_json(user));
        match self {
            HubMessage::Command(HubCommand::Disconnect) => {}
            HubMessage::Command(HubCommand::RoomRemove { room } | HubCommand::RoomAdd { room }) => {
                object.insert("room".into(), Value::from(&**room));
            }
            HubMessage::Command(HubCommand::Takeover { pid, kept }) => {
                object.insert("pid".into(), Value::from(pid.as_str()));
                if *kept {
                    object.insert("kept".into(), Value::Bool(true));
                }
            }
            HubMessage::InboxState(state) => object.extend(state.data()),
        }
        // `$` sorts before every letter: `$hub` is the first key of the serialized map.
        serde_json::to_vec(&object).expect("JSON maps serialize")
    }
}

/// True when the payload's first key is `$hub` (a hub message, not a notification).
pub fn is_hub_message(payload: &[u8]) -> bool {
    let Some(rest) = trim_ascii(payload).strip_prefix(b"{") else {
        return false;
    };
    trim_ascii(rest).starts_with(b"\"$hub\"")
}

#[derive(Deserialize)]
struct HubCheck<'a> {
    #[serde(rename = "$hub", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "userId", borrow)]
    user_id: IdValue<'a>,
    /// `room-remove`, `room-add`.
    #[serde(default, borrow)]
    room: Option<Cow<'a, str>>,
    /// `takeover`.
    #[serde(default, borrow)]
    pid: Option<Cow<'a, str>>,
    #[serde(default)]
    kept: Option<bool>,
    /// `inbox-state`.
    #[serde(default)]
    unread: Option<u64>,
    #[serde(default)]
    read: Option<Vec<String>>,
    #[serde(rename = "upTo", default)]
    up_to: Option<String>,
    #[serde(default)]
    removed: Option<Vec<String>>,
    #[serde(default)]
    held: Option<String>,
}

/// Inbox ids, all valid.
fn inbox_ids(ids: Option<&[String]>) -> Result<Vec<MessageId>, PayloadError> {
    ids.unwrap_or_default()
        .iter()
        .map(|id| {
            stream_id(id).ok_or_else(|| PayloadError("`inbox-state` ids must be inbox ids".into()))
        })
        .collect()
}

/// An optional inbox id, valid.
fn inbox_id(id: Option<&str>) -> Result<Option<MessageId>, PayloadError> {
    id.map(|id| {
        stream_id(id).ok_or_else(|| PayloadError("`inbox-state` ids must be inbox ids".into()))
    })
    .transpose()
}

/// True for a resume token: 32 hex digits.
fn is_pid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Validates a hub message received on the channel of `channel_user`.
pub fn parse_hub_message(
    channel_user: &str,
    payload: &[u8],
) -> Result<(UserId, HubMessage), PayloadError> {
    let check: HubCheck = check_object(payload)?;
    let user = check_user(&check.user_id, Some(channel_user))?;
    let room = || match check.room.as_deref() {
        Some(room) if is_valid_room(room) => Ok(RoomId::from(room)),
        _ => Err(PayloadError(format!(
            "`{}` needs a valid `room`",
            clip(&check.kind)
        ))),
    };
    let message = match &*check.kind {
        "disconnect" => HubMessage::Command(HubCommand::Disconnect),
        "room-remove" => HubMessage::Command(HubCommand::RoomRemove { room: room()? }),
        "room-add" => HubMessage::Command(HubCommand::RoomAdd { room: room()? }),
        "takeover" => match check.pid.as_deref() {
            Some(pid) if is_pid(pid) => HubMessage::Command(HubCommand::Takeover {
                pid: pid.to_owned(),
                kept: check.kept.unwrap_or(false),
            }),
            _ => {
                return Err(PayloadError(
                    "takeover needs `pid`, a resume token of 32 hex digits".into(),
                ))
            }
        },
        "inbox-state" => HubMessage::InboxState(InboxState {
            unread: check
                .unread
                .ok_or_else(|| PayloadError("`inbox-state` needs `unread`".into()))?,
            read: inbox_ids(check.read.as_deref())?,
            up_to: inbox_id(check.up_to.as_deref())?,
            removed: inbox_ids(check.removed.as_deref())?,
            held: inbox_id(check.held.as_deref())?,
        }),
        other => {
            return Err(PayloadError(format!(
                "unknown hub message kind `{}`",
                clip(other)
            )))
        }
    };
    Ok((user, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_key_of_hub_makes_a_hub_message() {
        let disconnect = HubMessage::Command(HubCommand::Disconnect);
        let payload = disconnect.payload("42");
        assert_eq!(payload, br#"{"$hub":"disconnect","userId":42}"#);
        assert!(is_hub_message(&payload));
        assert_eq!(
            parse_inbound("user:notifications:42", &payload),
            Ok(Inbound::Hub {
                user: "42".into(),
                message: disconnect.clone()
            })
        );
        let spaced = br#" {  "$hub" : "disconnect", "userId": "a@b" }"#;
        assert!(is_hub_message(spaced));
        assert_eq!(
            parse_hub_message("a@b", spaced).unwrap(),
            ("a@b".into(), disconnect)
        );
        assert!(!is_hub_message(br#"{"userId":1,"$hub":"disconnect"}"#));
        let remove = HubMessage::Command(HubCommand::RoomRemove { room: "r-1".into() });
        let payload = remove.payload("u");
        assert_eq!(
            payload,
            br#"{"$hub":"room-remove","room":"r-1","userId":"u"}"#
        );
        assert_eq!(parse_hub_message("u", &payload).unwrap().1, remove);
        let add = HubMessage::Command(HubCommand::RoomAdd { room: "r-1".into() });
        assert_eq!(parse_hub_message("u", &add.payload("u")).unwrap().1, add);
        assert!(!is_hub_message(br#"["$hub"]"#));
    }

    #[test]
    fn takeover_names_a_resume_token_and_may_say_it_was_kept() {
        let pid = "0123456789abcdef0123456789ABCDEF".to_owned();
        for kept in [false, true] {
            let takeover = HubMessage::Command(HubCommand::Takeover {
                pid: pid.clone(),
                kept,
            });
            let payload = takeover.payload("ann");
            assert!(is_hub_message(&payload));
            assert_eq!(parse_hub_message("ann", &payload).unwrap().1, takeover);
        }
        let asked = HubMessage::Command(HubCommand::Takeover {
            pid: pid.clone(),
            kept: false,
        });
        assert_eq!(
            String::from_utf8(asked.payload("7")).unwrap(),
            format!(r#"{{"$hub":"takeover","pid":"{pid}","userId":7}}"#)
        );
    }

    #[test]
    fn inbox_state_is_an_event_with_the_unread_count() {
        let lua = br#"{"$hub":"inbox-state","userId":"7","unread":2,"read":["5-0","6-1"],"removed":["4-0"]}"#;
        let (user, message) = parse_hub_message("7", lua).unwrap();
        assert_eq!(&*user, "7");
        let HubMessage::InboxState(state) = &message else {
            panic!("an inbox-state: {message:?}")
        };
        assert_eq!(
            String::from_utf8(state.frame()).unwrap(),
            r#"{"type":"inbox-state","data":{"read":["5-0","6-1"],"removed":["4-0"],"unread":2}}"#
        );
        assert_eq!(
            parse_hub_message("7", &message.payload("7")).unwrap().1,
            message
        );
        for bad in [
            r#"{"$hub":"inbox-state","userId":7}"#,
            r#"{"$hub":"inbox-state","userId":7,"unread":-1}"#,
            r#"{"$hub":"inbox-state","userId":7,"unread":1,"read":["x"]}"#,
            r#"{"$hub":"inbox-state","userId":7,"unread":1,"upTo":"5"}"#,
        ] {
            assert!(parse_hub_message("7", bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_hub_messages_are_invalid_payloads() {
        let on_user_1 = |payload: &str| parse_inbound("user:notifications:1", payload.as_bytes());
        for bad in [
            r#"{"$hub":"dance","userId":1}"#,
            r#"{"$hub":"disconnect","userId":2}"#,
            r#"{"$hub":"disconnect"}"#,
            r#"{"$hub":7,"userId":1}"#,
            r#"{"$hub":"disconnect","userId":1"#,
            r#"{"$hub":"room-remove","userId":1}"#,
            r#"{"$hub":"room-add","userId":1,"room":"a b"}"#,
        ] {
            assert!(on_user_1(bad).is_err(), "{bad}");
        }
        let bad_pid = r#"{"$hub":"takeover","userId":1,"pid":"../x"}"#;
        assert!(on_user_1(bad_pid).is_err());
        let later = r#"{"userId":1,"type":"t","title":"t","message":"m","$hub":"disconnect"}"#;
        let err = on_user_1(later).unwrap_err();
        assert!(err.0.contains("$hub"), "{err}");
    }
}
