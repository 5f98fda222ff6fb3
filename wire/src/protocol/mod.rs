//! Wire types of the hub's protocol (`docs/protocol.md`), one contract per file:
//! `client_frames` (what a client sends, parsed and validated), `server_frames` (the JSON of
//! the hub's replies and events), `payloads` (what services publish to Redis, validated) and
//! `hub_messages` (what the hub itself tells every session of a user, on the user's channel);
//! `room_patterns` holds the room name patterns of token claims and settings.
//! This file holds what they share: ids, channel names, error codes, topics.
//!
//! Everything here is pure: parse a frame or payload, or build the JSON of a reply. The
//! actors call these functions; tests and fuzzers call them directly.

mod client_frames;
mod hub_messages;
mod payloads;
mod room_patterns;
mod server_frames;

use std::{borrow::Cow, fmt, sync::Arc};

use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue, Map, Value};

pub use client_frames::*;
pub use hub_messages::*;
pub use payloads::*;
pub use room_patterns::*;
pub use server_frames::*;

/// A user id in its canonical string form (the suffix of `user:notifications:{id}`).
pub type UserId = Arc<str>;
/// A validated room id (the suffix of `chat:room:{id}`).
pub type RoomId = Arc<str>;

/// Prefix of the per-user notification channels.
pub const USER_PREFIX: &str = "user:notifications:";
/// Prefix of the per-room chat channels.
pub const ROOM_PREFIX: &str = "chat:room:";
/// Fixed channel carrying AI job results.
pub const AI_RESULTS: &str = "ai:results";
/// Fixed channel carrying AI job events: streamed chunks and state changes, published by the
/// job queue's Redis functions (`docs/jobs.md`).
pub const AI_JOBS: &str = "ai:jobs";
/// Fixed channel carrying cache invalidations.
pub const CACHE_INVALIDATE: &str = "cache:invalidate";
/// Fixed channel carrying analytics events.
pub const ANALYTICS_EVENTS: &str = "analytics:events";
/// Hub-internal channel carrying room presence changes (a user's first session joined a
/// room on any instance, or its last one left). Every instance subscribes to it and delivers
/// each event to its local members of the room; see `roster.rs` for who publishes.
pub const PRESENCE_EVENTS: &str = "hub:presence";
/// Hub-internal channel telling every instance that a user was taken out of a room
/// (`DELETE /api/rooms/{room}/members/{userId}`): each drops its cached room hook answers for
/// the pair.
pub const ROOM_ACCESS: &str = "hub:room-access";
/// The channels every instance subscribes to for its whole life.
pub const FIXED_CHANNELS: [&str; 6] = [
    AI_RESULTS,
    AI_JOBS,
    CACHE_INVALIDATE,
    ANALYTICS_EVENTS,
    PRESENCE_EVENTS,
    ROOM_ACCESS,
];

/// Error codes of error frames (`docs/protocol.md#error-codes`); `unavailable` is for a request
/// the hub could not carry out because Redis is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, unknown or missing fields.
    BadRequest,
    /// A `type` the hub does not know.
    UnknownType,
    /// Not authenticated, or a bad token.
    Unauthorized,
    /// Authenticated but not allowed (admin topic, room limit).
    Forbidden,
    /// A room operation on a room the session has not joined.
    NotInRoom,
    /// The session exceeded its frame rate.
    RateLimited,
    /// A chat message over the character limit.
    TooLarge,
    /// A room name outside `[A-Za-z0-9:_.-]{1,64}`.
    InvalidRoom,
    /// Redis could not take the request; retry later.
    Unavailable,
}

impl ErrorCode {
    /// Every code, for metrics label pre-registration.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotInRoom,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::InvalidRoom,
        ErrorCode::Unavailable,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Topics a session can subscribe to with `subscribe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `cache-invalidate` frames.
    Cache,
    /// `analytics` snapshots (admin only with JWT auth).
    Analytics,
}

impl Topic {
    /// Both topics.
    pub const ALL: [Topic; 2] = [Topic::Cache, Topic::Analytics];

    /// The topic name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Cache => "cache",
            Topic::Analytics => "analytics",
        }
    }

    /// A bit for compact topic sets.
    pub fn bit(self) -> u8 {
        match self {
            Topic::Cache => 1,
            Topic::Analytics => 2,
        }
    }

    fn parse(s: &str) -> Option<Topic> {
        match s {
            "cache" => Some(Topic::Cache),
            "analytics" => Some(Topic::Analytics),
            _ => None,
        }
    }
}

/// Checks a room name against `[A-Za-z0-9:_.-]{1,64}`.
pub fn validate_room(room: &str) -> Result<(), ClientError> {
    if is_valid_room(room) {
        Ok(())
    } else {
        Err(ClientError::new(
            ErrorCode::InvalidRoom,
            "room names are 1-64 characters of A-Z a-z 0-9 : _ . -",
        ))
    }
}

/// True for a room name matching `[A-Za-z0-9:_.-]{1,64}`.
pub fn is_valid_room(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-'))
}

/// True for a user id of 1-128 characters of `A-Z a-z 0-9 : _ . - @`.
pub fn is_valid_user_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-' | b'@'))
}

/// Renders a user id for JSON: ids that are canonical integers become numbers (so
/// `?userId=123` yields `"userId":123`), every other id stays a string.
pub fn user_id_json(id: &str) -> Value {
    let canonical = !id.is_empty()
        && id.len() <= 18
        && id.bytes().all(|b| b.is_ascii_digit())
        && (id == "0" || !id.starts_with('0'));
    match id.parse::<u64>() {
        Ok(n) if canonical => Value::from(n),
        _ => Value::from(id),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The id of a chat message in its room's history: a Redis stream entry id
/// (`<milliseconds>-<sequence>`). Ids of one room grow with every message, so they order
/// the room's history and let a reconnecting client say what it saw last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl MessageId {
    /// Parses `<ms>-<seq>` (or a bare `<ms>`, meaning sequence 0).
    pub fn parse(s: &str) -> Option<MessageId> {
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(MessageId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An id in Redis stream form (`<ms>-<seq>`, as the hub's scripts write it); anything else
/// (a service's own id such as `"42"`) is not one.
fn stream_id(s: &str) -> Option<MessageId> {
    s.contains('-').then(|| MessageId::parse(s)).flatten()
}

/// Puts `"id":"<id>"` first into a JSON object's text, exactly as the history script does
/// in Redis before publishing (`{"a":1}` -> `{"id":"5-0","a":1}`). `object` must be a
/// non-empty JSON object.
pub fn with_message_id(object: &[u8], id: &str) -> Vec<u8> {
    with_field_first(object, "id", id)
}

/// Puts `"<key>":"<value>"` first into a non-empty JSON object's text (`key` and `value`
/// need no escaping: ids written by the hub's scripts).
pub fn with_field_first(object: &[u8], key: &str, value: &str) -> Vec<u8> {
    let object = trim_ascii(object);
    let rest = object.get(1..).unwrap_or_default();
    let mut out = Vec::with_capacity(object.len() + key.len() + value.len() + 8);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(rest);
    out
}

/// Shortens user-supplied text quoted back in error messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

fn trim_ascii(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &raw[start..end]
}

#[cfg(test)]
mod tests;
