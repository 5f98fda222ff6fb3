//! Wire types of the hub's protocol (`docs/protocol.md`): client frames, server frames and the
//! Redis channel payloads, with their validation.
//!
//! Everything here is pure: parse a frame or payload, or build the JSON of a reply. The
//! actors call these functions; tests and fuzzers call them directly.

use std::{borrow::Cow, fmt, sync::Arc};

use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue, Map, Value};

use crate::limits::Limits;

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
/// Fixed channel carrying cache invalidations.
pub const CACHE_INVALIDATE: &str = "cache:invalidate";
/// Fixed channel carrying analytics events.
pub const ANALYTICS_EVENTS: &str = "analytics:events";
/// Hub-internal channel carrying room presence changes (a user's first session joined a
/// room on any instance, or its last one left). Every instance subscribes to it and delivers
/// each event to its local members of the room; see `roster.rs` for who publishes.
pub const PRESENCE_EVENTS: &str = "hub:presence";
/// The channels every instance subscribes to for its whole life.
pub const FIXED_CHANNELS: [&str; 4] = [
    AI_RESULTS,
    CACHE_INVALIDATE,
    ANALYTICS_EVENTS,
    PRESENCE_EVENTS,
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

/// What a client asked for in one frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `{"type":"auth","token":...,"since"?:...}`: first-frame authentication.
    Auth {
        /// The JWT.
        token: String,
        /// The last `inboxId` the client saw: it gets the notifications sent since.
        since: Option<MessageId>,
    },
    /// `{"type":"ping"}`.
    Ping,
    /// `{"type":"join-room","room":...,"since"?:...}`.
    JoinRoom {
        /// The validated room id.
        room: RoomId,
        /// The last history id the client saw, for recovery.
        since: Option<MessageId>,
    },
    /// `{"type":"leave-room","room":...}`.
    LeaveRoom {
        /// The validated room id.
        room: RoomId,
    },
    /// `{"type":"chat-message","room":...,"message":...}`.
    ChatMessage {
        /// The validated room id.
        room: RoomId,
        /// The message text (length checked).
        message: String,
    },
    /// `{"type":"subscribe","topic":...}`.
    Subscribe(Topic),
    /// `{"type":"unsubscribe","topic":...}`.
    Unsubscribe(Topic),
}

impl Request {
    /// The frame type, as a metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Request::Auth { .. } => "auth",
            Request::Ping => "ping",
            Request::JoinRoom { .. } => "join-room",
            Request::LeaveRoom { .. } => "leave-room",
            Request::ChatMessage { .. } => "chat-message",
            Request::Subscribe(_) => "subscribe",
            Request::Unsubscribe(_) => "unsubscribe",
        }
    }
}

/// A parsed client frame: the request and the `id` to echo.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientFrame {
    /// The frame's `id` (number or string), echoed in the reply.
    pub id: Option<Value>,
    /// The request.
    pub request: Request,
}

/// A frame the hub refuses, answered with an error frame.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientError {
    /// The error code.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: Cow<'static, str>,
    /// The offending frame's `id`, when it had a valid one.
    pub id: Option<Value>,
}

impl ClientError {
    /// An error without an `id`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ClientError {
            code,
            message: message.into(),
            id: None,
        }
    }

    fn with_id(mut self, id: &Option<Value>) -> Self {
        self.id = id.clone();
        self
    }
}

/// Parses and validates one client text frame.
pub fn parse_client_frame(text: &str, limits: &Limits) -> Result<ClientFrame, ClientError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ClientError::new(ErrorCode::BadRequest, format!("invalid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ClientError::new(
            ErrorCode::BadRequest,
            "a frame must be a JSON object",
        ));
    };
    let id = match map.remove("id") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::Number(_) | Value::String(_))) => Some(v),
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "`id` must be a number or a string",
            ))
        }
    };
    let kind = match map.remove("type") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad(&id, "`type` must be a string")),
        None => return Err(bad(&id, "missing field `type`")),
    };
    let request = parse_request(&kind, &mut map, limits).map_err(|e| e.with_id(&id))?;
    Ok(ClientFrame { id, request })
}

fn bad(id: &Option<Value>, message: impl Into<Cow<'static, str>>) -> ClientError {
    ClientError::new(ErrorCode::BadRequest, message).with_id(id)
}

/// Keys of `chat-message` frames that the hub sets itself and therefore ignores.
const HUB_SET_CHAT_KEYS: [&str; 3] = ["userId", "username", "timestamp"];

/// Validates the fields of a request of type `kind` (the frame's keys besides `type` and
/// `id`); shared by the native frame parser and the Socket.IO event mapping.
pub fn parse_request(
    kind: &str,
    map: &mut Map<String, Value>,
    limits: &Limits,
) -> Result<Request, ClientError> {
    let request = match kind {
        "ping" => Request::Ping,
        "auth" => Request::Auth {
            token: take_string(map, "token")?,
            since: take_since(map)?,
        },
        "join-room" => {
            let room = take_room(map)?;
            let since = take_since(map)?;
            Request::JoinRoom { room, since }
        }
        "leave-room" => Request::LeaveRoom {
            room: take_room(map)?,
        },
        "chat-message" => {
            for key in HUB_SET_CHAT_KEYS {
                map.remove(key);
            }
            let room = take_room(map)?;
            let message = take_string(map, "message")?;
            check_message(&message, limits)?;
            Request::ChatMessage { room, message }
        }
        "subscribe" | "unsubscribe" => {
            let name = take_string(map, "topic")?;
            let topic = Topic::parse(&name).ok_or_else(|| {
                ClientError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "unknown topic `{}` (expected `cache` or `analytics`)",
                        clip(&name)
                    ),
                )
            })?;
            if kind == "subscribe" {
                Request::Subscribe(topic)
            } else {
                Request::Unsubscribe(topic)
            }
        }
        other => {
            return Err(ClientError::new(
                ErrorCode::UnknownType,
                format!("unknown frame type `{}`", clip(other)),
            ))
        }
    };
    if let Some(key) = map.keys().next() {
        return Err(ClientError::new(
            ErrorCode::BadRequest,
            format!("unknown field `{}` for `{kind}`", clip(key)),
        ));
    }
    Ok(request)
}

/// Shortens user-supplied text quoted back in error messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

fn take_string(map: &mut Map<String, Value>, key: &'static str) -> Result<String, ClientError> {
    match map.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ClientError::new(
            ErrorCode::BadRequest,
            format!("`{key}` must be a string"),
        )),
        None => Err(ClientError::new(
            ErrorCode::BadRequest,
            format!("missing field `{key}`"),
        )),
    }
}

/// An optional `since` (a history or inbox id).
fn take_since(map: &mut Map<String, Value>) -> Result<Option<MessageId>, ClientError> {
    take_optional_string(map, "since")?
        .map(|s| parse_since(&s))
        .transpose()
}

/// Parses a `since` a client sent (`?since=` or a frame's field).
pub fn parse_since(s: &str) -> Result<MessageId, ClientError> {
    MessageId::parse(s).ok_or_else(|| {
        ClientError::new(
            ErrorCode::BadRequest,
            format!(
                "`since` must be a message id like \"1764520000123-0\", not `{}`",
                clip(s)
            ),
        )
    })
}

fn take_optional_string(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, ClientError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ClientError::new(
            ErrorCode::BadRequest,
            format!("`{key}` must be a string"),
        )),
    }
}

/// The frame's room: `room`, or `roomId` as the ChatMessage shape names it (both may be given
/// if they agree).
fn take_room(map: &mut Map<String, Value>) -> Result<RoomId, ClientError> {
    let room = match (
        take_optional_string(map, "room")?,
        take_optional_string(map, "roomId")?,
    ) {
        (Some(room), None) | (None, Some(room)) => room,
        (Some(room), Some(alias)) if room == alias => room,
        (Some(_), Some(_)) => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "`room` and `roomId` name different rooms (give one of them)",
            ))
        }
        (None, None) => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "missing field `room` (or `roomId`)",
            ))
        }
    };
    validate_room(&room)?;
    Ok(room.into())
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

/// Checks a chat message: not empty, at most `max_message_chars` characters.
pub fn check_message(message: &str, limits: &Limits) -> Result<(), ClientError> {
    if message.is_empty() {
        return Err(ClientError::new(
            ErrorCode::BadRequest,
            "`message` must not be empty",
        ));
    }
    if message.chars().nth(limits.max_message_chars).is_some() {
        return Err(ClientError::new(
            ErrorCode::TooLarge,
            format!(
                "chat messages are limited to {} characters",
                limits.max_message_chars
            ),
        ));
    }
    Ok(())
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

// ---------------------------------------------------------------------------------------------
// Server frames
// ---------------------------------------------------------------------------------------------

fn with_id(mut frame: Value, id: &Option<Value>) -> Vec<u8> {
    if let (Some(id), Value::Object(map)) = (id, &mut frame) {
        map.insert("id".into(), id.clone());
    }
    serde_json::to_vec(&frame).expect("JSON values always serialize")
}

/// `{"type":"connected","sessionId":...,"userId":...,"recovered"?:...}`.
pub fn connected_frame(session_id: &str, user_id: &str, recovered: Option<bool>) -> Vec<u8> {
    let mut frame =
        json!({"type": "connected", "sessionId": session_id, "userId": user_id_json(user_id)});
    if let Some(recovered) = recovered {
        frame["recovered"] = Value::Bool(recovered);
    }
    with_id(frame, &None)
}

/// `{"type":"pong","timestamp":...}`.
pub fn pong_frame(id: &Option<Value>) -> Vec<u8> {
    with_id(json!({"type": "pong", "timestamp": now_ms()}), id)
}

/// A member of a room as listed in `joined`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's user id.
    pub user_id: UserId,
    /// The member's display name.
    pub username: Arc<str>,
}

/// What `joined` carries besides the room name.
#[derive(Clone, Debug, Default)]
pub struct JoinInfo {
    /// Recent messages, oldest first (raw ChatMessage JSON, forwarded unchanged).
    pub history: Vec<Box<RawValue>>,
    /// Everyone in the room (at most the configured limit).
    pub members: Vec<Member>,
    /// How many users are in the room (`memberCount`), when known.
    pub member_count: Option<usize>,
    /// `Some(false)` when `since` asked for more than the history still holds.
    pub recovered: Option<bool>,
}

/// The `joined` frame as serialized (history messages are written raw, not re-encoded).
#[derive(Serialize)]
struct JoinedFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    history: &'a [Box<RawValue>],
    members: Vec<Value>,
    #[serde(rename = "memberCount", skip_serializing_if = "Option::is_none")]
    member_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: &'a Option<Value>,
}

/// `{"type":"joined","room":...,"history":[...],"members":[...],"memberCount"?:...,
/// "recovered"?:...}`.
pub fn joined_frame(room: &str, info: &JoinInfo, id: &Option<Value>) -> Vec<u8> {
    let members: Vec<Value> = info
        .members
        .iter()
        .map(|m| json!({"userId": user_id_json(&m.user_id), "username": &*m.username}))
        .collect();
    serde_json::to_vec(&JoinedFrame {
        kind: "joined",
        room,
        history: &info.history,
        members,
        member_count: info.member_count,
        recovered: info.recovered,
        id,
    })
    .expect("the joined frame always serializes")
}

/// `{"type":"left","room":...}`.
pub fn left_frame(room: &str, id: &Option<Value>) -> Vec<u8> {
    with_id(json!({"type": "left", "room": room}), id)
}

/// `{"type":"subscribed"|"unsubscribed","topic":...}`.
pub fn topic_frame(subscribed: bool, topic: Topic, id: &Option<Value>) -> Vec<u8> {
    let kind = if subscribed {
        "subscribed"
    } else {
        "unsubscribed"
    };
    with_id(json!({"type": kind, "topic": topic.as_str()}), id)
}

/// `{"type":"error","code":...,"message":...,"id"?:...}`.
pub fn error_frame(err: &ClientError) -> Vec<u8> {
    with_id(
        json!({"type": "error", "code": err.code.as_str(), "message": &*err.message}),
        &err.id,
    )
}

/// `{"type":"presence","room":...,"event":"join"|"leave","userId":...,"username":...}`.
pub fn presence_frame(room: &str, joined: bool, member: &Member) -> Vec<u8> {
    with_id(
        json!({
            "type": "presence",
            "room": room,
            "event": if joined { "join" } else { "leave" },
            "userId": user_id_json(&member.user_id),
            "username": &*member.username,
        }),
        &None,
    )
}

/// The start of a `presence` frame, up to and including `"username":`; the username as a
/// JSON string and a closing `}` complete it. The roster's Redis scripts publish events built
/// this way, because only Redis knows at that moment whether the change is the user's first
/// join or last leave (and, for a dead instance's entries, the user's name).
pub fn presence_prefix(room: &str, joined: bool, user_id: &str) -> String {
    format!(
        "{{\"type\":\"presence\",\"room\":{},\"event\":\"{}\",\"userId\":{},\"username\":",
        Value::from(room),
        if joined { "join" } else { "leave" },
        user_id_json(user_id),
    )
}

/// The ChatMessage JSON the hub publishes for a session's `chat-message`.
pub fn chat_payload(room: &str, user_id: &str, username: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "roomId": room,
        "userId": user_id_json(user_id),
        "username": username,
        "message": message,
        "timestamp": now_ms(),
    }))
    .expect("JSON values always serialize")
}

/// `{"type":<kind>,"data":<raw>}` built around an already validated JSON payload, so that
/// unknown keys reach clients unchanged and the payload is not re-serialized.
pub fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
    let raw = trim_ascii(raw);
    let mut out = Vec::with_capacity(raw.len() + kind.len() + 20);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(raw);
    out.push(b'}');
    out
}

/// Where the `data` value sits in a frame built by [`envelope`] for `kind`.
pub fn envelope_data(kind: &str, frame: &[u8]) -> std::ops::Range<usize> {
    let start = b"{\"type\":\"".len() + kind.len() + b"\",\"data\":".len();
    start..frame.len() - 1
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

// ---------------------------------------------------------------------------------------------
// Redis payloads
// ---------------------------------------------------------------------------------------------

/// What a Redis channel is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind<'a> {
    /// `user:notifications:{id}`.
    User(&'a str),
    /// `ai:results`.
    AiResults,
    /// `chat:room:{id}`.
    Room(&'a str),
    /// `cache:invalidate`.
    CacheInvalidate,
    /// `analytics:events`.
    Analytics,
    /// `hub:presence`.
    Presence,
    /// Anything else.
    Other,
}

impl ChannelKind<'_> {
    /// Classifies a channel name.
    pub fn of(channel: &str) -> ChannelKind<'_> {
        if let Some(id) = channel.strip_prefix(USER_PREFIX) {
            ChannelKind::User(id)
        } else if let Some(id) = channel.strip_prefix(ROOM_PREFIX) {
            ChannelKind::Room(id)
        } else {
            match channel {
                AI_RESULTS => ChannelKind::AiResults,
                CACHE_INVALIDATE => ChannelKind::CacheInvalidate,
                ANALYTICS_EVENTS => ChannelKind::Analytics,
                PRESENCE_EVENTS => ChannelKind::Presence,
                _ => ChannelKind::Other,
            }
        }
    }

    /// Metric labels of the kinds (no ids), in [`ChannelKind::index`] order.
    pub const LABELS: [&'static str; 7] = [
        "user:notifications",
        AI_RESULTS,
        "chat:room",
        CACHE_INVALIDATE,
        ANALYTICS_EVENTS,
        PRESENCE_EVENTS,
        "other",
    ];

    /// Position of this kind in [`ChannelKind::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            ChannelKind::User(_) => 0,
            ChannelKind::AiResults => 1,
            ChannelKind::Room(_) => 2,
            ChannelKind::CacheInvalidate => 3,
            ChannelKind::Analytics => 4,
            ChannelKind::Presence => 5,
            ChannelKind::Other => 6,
        }
    }
}

/// A validated Redis payload and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// A Notification for every session of `user`; `frame` is the full client frame JSON.
    Notification {
        /// Recipient.
        user: UserId,
        /// `{"type":"notification","data":...}`.
        frame: Vec<u8>,
        /// The inbox id, when it went through the user's inbox (`inboxId`, stream id form).
        id: Option<MessageId>,
    },
    /// An AIResult for every session of `user`.
    AiResult {
        /// Recipient.
        user: UserId,
        /// `{"type":"ai-result","data":...}`.
        frame: Vec<u8>,
    },
    /// A ChatMessage for every member of `room`.
    Chat {
        /// Room.
        room: RoomId,
        /// `{"type":"chat-message","data":...}`.
        frame: Vec<u8>,
        /// The history id, when the message went through the hub's history (a string `id` in
        /// stream id form, `<ms>-<seq>`); `None` for a plain `PUBLISH` without one.
        id: Option<MessageId>,
        /// The payload carried an `id` that is not a history id (a service's own, e.g. `"42"`):
        /// delivered as it is, never used to order or de-duplicate.
        foreign_id: bool,
    },
    /// A presence change for every member of `room`.
    Presence {
        /// Room.
        room: RoomId,
        /// The `presence` frame, forwarded as published.
        frame: Vec<u8>,
    },
    /// A cache invalidation for local caches and `cache` topic subscribers.
    CacheInvalidate {
        /// The glob pattern.
        pattern: String,
        /// `{"type":"cache-invalidate","data":...}`.
        frame: Vec<u8>,
    },
    /// An analytics event for the aggregator.
    Analytics(AnalyticsEvent),
}

/// An `analytics:events` payload.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AnalyticsEvent {
    /// Event name, e.g. `ai_query`.
    pub event: String,
    /// Optional user.
    #[serde(rename = "userId", default)]
    pub user_id: Option<Value>,
    /// Event data (an object).
    pub data: Map<String, Value>,
    /// Optional event time in ms (a non-numeric value is ignored).
    #[serde(default, deserialize_with = "lenient_ms")]
    pub timestamp: Option<f64>,
}

/// The `data` fields of an analytics event that the aggregator reads; an event whose `data`
/// has a string `model` is an AI query of that model. Each is optional, but when present it
/// must have the type given here.
pub mod analytics_fields {
    /// `data.model`: string, 1-128 characters.
    pub const MODEL: &str = "model";
    /// `data.latencyMs`: number of milliseconds, >= 0.
    pub const LATENCY_MS: &str = "latencyMs";
    /// `data.tokens`: integer >= 0.
    pub const TOKENS: &str = "tokens";
    /// `data.cost`: number >= 0 (whatever currency the services use, e.g. USD).
    pub const COST: &str = "cost";
}

/// Longest analytics event name and model name (they become map keys and metric labels).
pub const MAX_ANALYTICS_NAME: usize = 128;

impl AnalyticsEvent {
    /// `data.model`, when the event is an AI query.
    pub fn model(&self) -> Option<&str> {
        self.data.get(analytics_fields::MODEL)?.as_str()
    }

    /// A numeric `data` field.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.data.get(key)?.as_f64()
    }

    /// Checks the name and the types of the fields the aggregator reads.
    fn check(&self) -> Result<(), PayloadError> {
        let name_ok = |s: &str| !s.is_empty() && s.chars().count() <= MAX_ANALYTICS_NAME;
        if !name_ok(&self.event) {
            return Err(PayloadError(format!(
                "`event` must be 1-{MAX_ANALYTICS_NAME} characters"
            )));
        }
        if let Some(model) = self.data.get(analytics_fields::MODEL) {
            if !model.as_str().is_some_and(name_ok) {
                return Err(PayloadError(format!(
                    "`data.model` must be a string of 1-{MAX_ANALYTICS_NAME} characters"
                )));
            }
        }
        for key in [analytics_fields::LATENCY_MS, analytics_fields::COST] {
            if let Some(v) = self.data.get(key) {
                if !v.as_f64().is_some_and(|n| n.is_finite() && n >= 0.0) {
                    return Err(PayloadError(format!("`data.{key}` must be a number >= 0")));
                }
            }
        }
        if let Some(v) = self.data.get(analytics_fields::TOKENS) {
            if v.as_u64().is_none() {
                return Err(PayloadError(format!(
                    "`data.{}` must be an integer >= 0",
                    analytics_fields::TOKENS
                )));
            }
        }
        Ok(())
    }
}

/// Why a Redis payload was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadError(pub String);

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user id as services write it: a string or an integer.
enum IdValue<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
}

/// By hand rather than `#[serde(untagged)]`, which buffers the value and builds (allocates) an
/// error for each variant that does not match: for a numeric `userId`, on every notification.
impl<'de: 'a, 'a> Deserialize<'de> for IdValue<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Id<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Id<'a> {
            type Value = IdValue<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<IdValue<'a>, E> {
                Ok(IdValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<IdValue<'a>, E> {
                Ok(IdValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<IdValue<'a>, E> {
                Ok(IdValue::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<IdValue<'a>, E> {
                Ok(IdValue::UInt(v))
            }
        }
        d.deserialize_any(Id(std::marker::PhantomData))
    }
}

impl IdValue<'_> {
    fn canonical(&self) -> Cow<'_, str> {
        match self {
            IdValue::Str(s) => Cow::Borrowed(s),
            IdValue::Int(n) => Cow::Owned(n.to_string()),
            IdValue::UInt(n) => Cow::Owned(n.to_string()),
        }
    }
}

#[derive(Deserialize)]
#[allow(dead_code)] // fields are checked for presence and type, then the raw JSON is forwarded
struct NotificationCheck<'a> {
    #[serde(rename = "inboxId", default, borrow)]
    inbox_id: Option<Cow<'a, str>>,
    #[serde(rename = "userId", borrow)]
    user_id: IdValue<'a>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(default, deserialize_with = "lenient_ms")]
    timestamp: Option<f64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct AiResultCheck<'a> {
    #[serde(rename = "jobId", borrow)]
    job_id: IdValue<'a>,
    #[serde(rename = "userId", borrow)]
    user_id: IdValue<'a>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(default, deserialize_with = "lenient_ms")]
    timestamp: Option<f64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct ChatCheck<'a> {
    /// Optional: set by the hub's history script; services may put their own ids here.
    #[serde(default)]
    id: Option<Value>,
    #[serde(rename = "roomId", borrow)]
    room_id: Cow<'a, str>,
    #[serde(rename = "userId", borrow)]
    user_id: IdValue<'a>,
    #[serde(borrow)]
    username: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
    timestamp: f64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct PresenceCheck<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(rename = "userId", borrow)]
    user_id: IdValue<'a>,
    #[serde(borrow)]
    username: Cow<'a, str>,
}

#[derive(Deserialize)]
struct CacheCheck<'a> {
    #[serde(borrow)]
    pattern: Cow<'a, str>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    reason: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_ms")]
    timestamp: Option<f64>,
}

/// Reads an optional `timestamp` for latency metrics without making it part of validation:
/// a number is kept, anything else (an ISO string, null) is accepted and ignored.
fn lenient_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ms {
        Number(f64),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Ms::deserialize(d)? {
        Ms::Number(ms) => Some(ms),
        Ms::Other(_) => None,
    })
}

/// Walks a whole JSON document with full string validation (UTF-8, escapes, surrogate
/// pairs) and no allocation. Typed checks skip unknown fields without validating them, and
/// the raw payload is forwarded to clients as is, so it must be strictly valid as a whole.
struct StrictJson;

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictJson)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictJson {
    type Value = StrictJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_i64<E>(self, _: i64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_u64<E>(self, _: u64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_f64<E>(self, _: f64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_str<E>(self, _: &str) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_unit<E>(self) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictJson, A::Error> {
        while seq.next_element::<StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StrictJson, A::Error> {
        while map.next_entry::<StrictJson, StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }
}

fn check_object<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, PayloadError> {
    // serde accepts a JSON array for a struct; `docs/protocol.md` says "one JSON object".
    if trim_ascii(payload).first() != Some(&b'{') {
        return Err(PayloadError("payload is not a JSON object".into()));
    }
    serde_json::from_slice::<StrictJson>(payload)
        .map_err(|e| PayloadError(format!("invalid JSON: {e}")))?;
    serde_json::from_slice(payload).map_err(|e| PayloadError(format!("invalid payload: {e}")))
}

fn check_user(id: &IdValue<'_>, channel_user: Option<&str>) -> Result<UserId, PayloadError> {
    let id = id.canonical();
    if !is_valid_user_id(&id) {
        return Err(PayloadError(format!("invalid userId `{}`", clip(&id))));
    }
    if let Some(expected) = channel_user {
        if *id != *expected {
            return Err(PayloadError(format!(
                "userId `{}` disagrees with the channel",
                clip(&id)
            )));
        }
    }
    Ok(id.as_ref().into())
}

/// Validates a payload received on `channel` and turns it into what the hub delivers.
pub fn parse_inbound(channel: &str, payload: &[u8]) -> Result<Inbound, PayloadError> {
    parse_inbound_timed(channel, payload).map(|(inbound, _)| inbound)
}

/// [`parse_inbound`], also returning the payload's numeric `timestamp` (ms) when it has one,
/// read in the same pass (for the publish-to-deliver latency metric).
pub fn parse_inbound_timed(
    channel: &str,
    payload: &[u8],
) -> Result<(Inbound, Option<f64>), PayloadError> {
    match ChannelKind::of(channel) {
        ChannelKind::User(user) => {
            let check: NotificationCheck = check_object(payload)?;
            let user = check_user(&check.user_id, Some(user))?;
            let inbound = Inbound::Notification {
                user,
                frame: envelope("notification", payload),
                id: check.inbox_id.as_deref().and_then(stream_id),
            };
            Ok((inbound, check.timestamp))
        }
        ChannelKind::AiResults => {
            let check: AiResultCheck = check_object(payload)?;
            if check.status != "success" && check.status != "error" {
                return Err(PayloadError(
                    "`status` must be \"success\" or \"error\"".into(),
                ));
            }
            let user = check_user(&check.user_id, None)?;
            let inbound = Inbound::AiResult {
                user,
                frame: envelope("ai-result", payload),
            };
            Ok((inbound, check.timestamp))
        }
        ChannelKind::Room(room) => {
            let check: ChatCheck = check_object(payload)?;
            if check.room_id != room {
                return Err(PayloadError("roomId disagrees with the channel".into()));
            }
            if !is_valid_room(room) {
                return Err(PayloadError("invalid room name".into()));
            }
            check_user(&check.user_id, None)?;
            let id = match &check.id {
                Some(Value::String(s)) => stream_id(s),
                _ => None,
            };
            let inbound = Inbound::Chat {
                room: room.into(),
                frame: envelope("chat-message", payload),
                id,
                foreign_id: id.is_none() && check.id.is_some(),
            };
            Ok((inbound, Some(check.timestamp)))
        }
        ChannelKind::Presence => {
            let check: PresenceCheck = check_object(payload)?;
            if check.kind != "presence" {
                return Err(PayloadError("`type` must be \"presence\"".into()));
            }
            if check.event != "join" && check.event != "leave" {
                return Err(PayloadError("`event` must be \"join\" or \"leave\"".into()));
            }
            if !is_valid_room(&check.room) {
                return Err(PayloadError("invalid room name".into()));
            }
            check_user(&check.user_id, None)?;
            let inbound = Inbound::Presence {
                room: check.room.as_ref().into(),
                frame: trim_ascii(payload).to_vec(),
            };
            Ok((inbound, None))
        }
        ChannelKind::CacheInvalidate => {
            let check: CacheCheck = check_object(payload)?;
            relay_cache::Pattern::new(&check.pattern)
                .map_err(|e| PayloadError(format!("invalid `pattern`: {e}")))?;
            let inbound = Inbound::CacheInvalidate {
                pattern: check.pattern.into_owned(),
                frame: envelope("cache-invalidate", payload),
            };
            Ok((inbound, check.timestamp))
        }
        ChannelKind::Analytics => {
            let event: AnalyticsEvent = check_object(payload)?;
            event.check()?;
            let timestamp = event.timestamp;
            Ok((Inbound::Analytics(event), timestamp))
        }
        ChannelKind::Other => Err(PayloadError(format!(
            "unexpected channel `{}`",
            clip(channel)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientFrame, ClientError> {
        parse_client_frame(text, &Limits::default())
    }

    #[test]
    fn ping_with_id() {
        let f = parse(r#"{"type":"ping","id":7}"#).unwrap();
        assert_eq!(f.request, Request::Ping);
        assert_eq!(f.id, Some(json!(7)));
    }

    #[test]
    fn errors_carry_codes_and_ids() {
        assert_eq!(parse("nope").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(parse("[1]").unwrap_err().code, ErrorCode::BadRequest);
        let e = parse(r#"{"type":"dance","id":"a"}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::UnknownType, Some(json!("a"))));
        let e = parse(r#"{"type":"join-room","id":1}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("room"));
        let e = parse(r#"{"type":"ping","extra":1}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = parse(r#"{"type":"join-room","room":"bad room"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRoom);
        let long = "x".repeat(4001);
        let e = parse(&format!(
            r#"{{"type":"chat-message","room":"r","message":"{long}"}}"#
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
        let e = parse(r#"{"type":"subscribe","topic":"weather"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn chat_ignores_identity_fields() {
        let f = parse(r#"{"type":"chat-message","room":"r1","message":"hi","userId":"666","username":"evil"}"#)
            .unwrap();
        assert_eq!(
            f.request,
            Request::ChatMessage {
                room: "r1".into(),
                message: "hi".into()
            }
        );
    }

    #[test]
    fn room_id_names_the_room_as_well_as_room() {
        let chat = |frame: &str| parse(frame).map(|f| f.request);
        let expected = Request::ChatMessage {
            room: "r1".into(),
            message: "hi".into(),
        };
        for frame in [
            r#"{"type":"chat-message","roomId":"r1","message":"hi"}"#,
            r#"{"type":"chat-message","room":"r1","roomId":"r1","message":"hi"}"#,
        ] {
            assert_eq!(chat(frame), Ok(expected.clone()), "{frame}");
        }
        assert_eq!(
            chat(r#"{"type":"join-room","roomId":"r1","since":"5-0"}"#),
            Ok(Request::JoinRoom {
                room: "r1".into(),
                since: MessageId::parse("5-0"),
            })
        );
        assert_eq!(
            chat(r#"{"type":"leave-room","roomId":"r1"}"#),
            Ok(Request::LeaveRoom { room: "r1".into() })
        );
        let e = parse(r#"{"type":"chat-message","room":"r1","roomId":"r2","message":"hi"}"#)
            .unwrap_err();
        assert!(e.message.contains("different rooms"), "{}", e.message);
        let e = parse(r#"{"type":"leave-room","roomId":"bad room"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRoom);
        let e = parse(r#"{"type":"leave-room","roomId":7}"#).unwrap_err();
        assert_eq!(e.message, "`roomId` must be a string");
    }

    #[test]
    fn message_limit_counts_characters_not_bytes() {
        let ok = "é".repeat(4000);
        assert!(check_message(&ok, &Limits::default()).is_ok());
    }

    #[test]
    fn deep_nesting_is_a_bad_request() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(&deep).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn rooms_and_user_ids() {
        assert!(is_valid_room("room-123:a_b.c"));
        assert!(!is_valid_room(""));
        assert!(!is_valid_room(&"a".repeat(65)));
        assert!(!is_valid_room("é"));
        assert_eq!(user_id_json("123"), json!(123));
        assert_eq!(user_id_json("0123"), json!("0123"));
        assert_eq!(user_id_json("alice"), json!("alice"));
    }

    #[test]
    fn notification_payloads() {
        let ok = br#"{"userId":12,"type":"info","title":"t","message":"m","extra":{"k":1}}"#;
        match parse_inbound("user:notifications:12", ok).unwrap() {
            Inbound::Notification { user, frame, .. } => {
                assert_eq!(&*user, "12");
                let v: Value = serde_json::from_slice(&frame).unwrap();
                assert_eq!(v["type"], "notification");
                assert_eq!(v["data"]["extra"]["k"], 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse_inbound("user:notifications:13", ok).is_err());
        assert!(parse_inbound("user:notifications:12", b"not json").is_err());
        assert!(parse_inbound("user:notifications:12", br#"{"userId":12}"#).is_err());
        assert!(parse_inbound("user:notifications:12", br#"[12,"a","b","c"]"#).is_err());
        // Unknown fields are forwarded verbatim, so they must be strictly valid too.
        let lone_surrogate = br#"{"userId":12,"type":"i","title":"t","message":"m","x":"\ud800"}"#;
        assert!(parse_inbound("user:notifications:12", lone_surrogate).is_err());
        let mut bad_utf8 = br#"{"userId":12,"type":"i","title":"t","message":"m","x":""#.to_vec();
        bad_utf8.extend_from_slice(b"\xff\"}");
        assert!(parse_inbound("user:notifications:12", &bad_utf8).is_err());
    }

    #[test]
    fn other_payloads() {
        let ai = br#"{"jobId":"j1","userId":"u1","status":"success","result":{"a":1}}"#;
        assert!(matches!(
            parse_inbound(AI_RESULTS, ai),
            Ok(Inbound::AiResult { .. })
        ));
        let bad_status = br#"{"jobId":"j1","userId":"u1","status":"maybe"}"#;
        assert!(parse_inbound(AI_RESULTS, bad_status).is_err());
        let chat = br#"{"roomId":"r","userId":1,"username":"a","message":"m","timestamp":1}"#;
        assert!(matches!(
            parse_inbound("chat:room:r", chat),
            Ok(Inbound::Chat { .. })
        ));
        assert!(parse_inbound("chat:room:other", chat).is_err());
        let cache = br#"{"pattern":"user:*","reason":"update"}"#;
        assert!(matches!(
            parse_inbound(CACHE_INVALIDATE, cache),
            Ok(Inbound::CacheInvalidate { .. })
        ));
        let ev = br#"{"event":"ai_query","data":{"model":"m","latencyMs":12}}"#;
        assert!(matches!(
            parse_inbound(ANALYTICS_EVENTS, ev),
            Ok(Inbound::Analytics(_))
        ));
        assert!(parse_inbound(ANALYTICS_EVENTS, br#"{"event":"x"}"#).is_err());
    }

    #[test]
    fn message_ids_parse_order_and_splice() {
        let a = MessageId::parse("1764520000123-0").unwrap();
        let b = MessageId::parse("1764520000123-7").unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "1764520000123-7");
        assert_eq!(MessageId::parse("17"), Some(MessageId { ms: 17, seq: 0 }));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "1 -2",
            "99999999999999999999999-0",
        ] {
            assert_eq!(MessageId::parse(bad), None, "{bad}");
        }
        assert_eq!(
            with_message_id(br#" {"a":1}"#, "5-0"),
            br#"{"id":"5-0","a":1}"#.to_vec()
        );
    }

    #[test]
    fn join_since_must_be_a_message_id() {
        let f = parse(r#"{"type":"join-room","room":"r","since":"12-3"}"#).unwrap();
        assert_eq!(
            f.request,
            Request::JoinRoom {
                room: "r".into(),
                since: Some(MessageId { ms: 12, seq: 3 })
            }
        );
        let e = parse(r#"{"type":"join-room","room":"r","since":"yesterday"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn chat_ids_and_presence_events() {
        let chat =
            br#"{"id":"7-1","roomId":"r","userId":1,"username":"a","message":"m","timestamp":1}"#;
        match parse_inbound("chat:room:r", chat).unwrap() {
            Inbound::Chat { id, .. } => assert_eq!(id, Some(MessageId { ms: 7, seq: 1 })),
            other => panic!("unexpected {other:?}"),
        }
        for foreign in [r#"42"#, r#""42""#, r#""99999999999999999""#, r#""x-1""#] {
            let chat = format!(
                r#"{{"id":{foreign},"roomId":"r","userId":1,"username":"a","message":"m","timestamp":1}}"#
            );
            assert!(
                matches!(
                    parse_inbound("chat:room:r", chat.as_bytes()),
                    Ok(Inbound::Chat {
                        id: None,
                        foreign_id: true,
                        ..
                    })
                ),
                "{foreign}"
            );
        }
        let ann = Member {
            user_id: "12".into(),
            username: "Ann \"A\"".into(),
        };
        let built = format!(
            "{}{}}}",
            presence_prefix("r", true, "12"),
            Value::from("Ann \"A\"")
        );
        let a: Value = serde_json::from_str(&built).unwrap();
        let b: Value = serde_json::from_slice(&presence_frame("r", true, &ann)).unwrap();
        assert_eq!(a, b);
        match parse_inbound(PRESENCE_EVENTS, built.as_bytes()).unwrap() {
            Inbound::Presence { room, frame } => {
                assert_eq!(&*room, "r");
                assert_eq!(frame, built.as_bytes());
            }
            other => panic!("unexpected {other:?}"),
        }
        let bad = br#"{"type":"presence","room":"r","event":"dance","userId":1,"username":"a"}"#;
        assert!(parse_inbound(PRESENCE_EVENTS, bad).is_err());
    }

    #[test]
    fn joined_frames_carry_raw_history() {
        let info = JoinInfo {
            history: vec![RawValue::from_string(
                r#"{"id":"1-0","n":12345678901234567890123}"#.into(),
            )
            .unwrap()],
            members: vec![],
            member_count: Some(0),
            recovered: Some(true),
        };
        let text = String::from_utf8(joined_frame("r", &info, &Some(json!(4)))).unwrap();
        assert!(
            text.contains(r#""history":[{"id":"1-0","n":12345678901234567890123}]"#),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (v["recovered"].clone(), v["id"].clone()),
            (json!(true), json!(4))
        );
        let plain = joined_frame("r", &JoinInfo::default(), &None);
        let v: Value = serde_json::from_slice(&plain).unwrap();
        assert!(v.get("recovered").is_none() && v.get("id").is_none());
    }

    #[test]
    fn cache_patterns_must_parse() {
        for bad in [
            r#"{"pattern":""}"#,
            r#"{"pattern":"user:["}"#,
            r#"{"pattern":"a\\"}"#,
        ] {
            assert!(
                parse_inbound(CACHE_INVALIDATE, bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        let ok = br#"{"pattern":"user:[0-9]*","timestamp":5}"#;
        let (_, ts) = parse_inbound_timed(CACHE_INVALIDATE, ok).unwrap();
        assert_eq!(ts, Some(5.0));
    }

    #[test]
    fn analytics_fields_are_typed() {
        for bad in [
            r#"{"event":"","data":{}}"#,
            r#"{"event":"q","data":{"model":7}}"#,
            r#"{"event":"q","data":{"model":""}}"#,
            r#"{"event":"q","data":{"latencyMs":"fast"}}"#,
            r#"{"event":"q","data":{"latencyMs":-1}}"#,
            r#"{"event":"q","data":{"tokens":1.5}}"#,
            r#"{"event":"q","data":{"cost":-0.1}}"#,
            r#"{"event":"q","data":[]}"#,
        ] {
            assert!(
                parse_inbound(ANALYTICS_EVENTS, bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        let ok = br#"{"event":"ai_query","data":{"model":"m","latencyMs":1.5,"tokens":3,"cost":0.25,"x":[1]}}"#;
        let Ok(Inbound::Analytics(ev)) = parse_inbound(ANALYTICS_EVENTS, ok) else {
            panic!("valid event refused");
        };
        assert_eq!(ev.model(), Some("m"));
        assert_eq!(ev.number(analytics_fields::COST), Some(0.25));
    }

    #[test]
    fn timestamps_are_read_leniently() {
        let n = br#"{"userId":1,"type":"t","title":"t","message":"m","timestamp":1700000000000}"#;
        let (_, ts) = parse_inbound_timed("user:notifications:1", n).unwrap();
        assert_eq!(ts, Some(1.7e12));
        let iso = br#"{"userId":1,"type":"t","title":"t","message":"m","timestamp":"2024-01-01"}"#;
        let (_, ts) = parse_inbound_timed("user:notifications:1", iso).unwrap();
        assert_eq!(ts, None, "a non-numeric timestamp is not an error");
    }
}
