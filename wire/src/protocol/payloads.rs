//! Redis payloads: what services publish on the hub's channels, validated once by the
//! subscriber (and by the HTTP API before it publishes).

use super::*;

/// What a Redis channel is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind<'a> {
    /// `user:notifications:{id}`.
    User(&'a str),
    /// `ai:results`.
    AiResults,
    /// `ai:jobs`.
    JobStates,
    /// `chat:room:{id}`.
    Room(&'a str),
    /// `cache:invalidate`.
    CacheInvalidate,
    /// `analytics:events`.
    Analytics,
    /// `hub:presence`.
    Presence,
    /// `hub:room-access`.
    RoomAccess,
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
                AI_JOBS => ChannelKind::JobStates,
                CACHE_INVALIDATE => ChannelKind::CacheInvalidate,
                ANALYTICS_EVENTS => ChannelKind::Analytics,
                PRESENCE_EVENTS => ChannelKind::Presence,
                ROOM_ACCESS => ChannelKind::RoomAccess,
                _ => ChannelKind::Other,
            }
        }
    }

    /// Per-user and per-room channels: on Redis Cluster they use sharded pub/sub
    /// (`SPUBLISH`/`SSUBSCRIBE`, carried only by the shard of the channel's slot); the fixed
    /// channels use classic pub/sub, which every node carries.
    pub fn is_sharded(&self) -> bool {
        matches!(self, ChannelKind::User(_) | ChannelKind::Room(_))
    }

    /// Metric labels of the kinds (no ids), in [`ChannelKind::index`] order.
    pub const LABELS: [&'static str; 9] = [
        "user:notifications",
        AI_RESULTS,
        "chat:room",
        CACHE_INVALIDATE,
        ANALYTICS_EVENTS,
        PRESENCE_EVENTS,
        ROOM_ACCESS,
        "other",
        AI_JOBS,
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
            ChannelKind::RoomAccess => 6,
            ChannelKind::Other => 7,
            ChannelKind::JobStates => 8,
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
        /// The inbox id, when `relay_notify` published it (its id first, as `$inboxId`, see
        /// [`HUB_INBOX_ID`]); an `inboxId` in any other `PUBLISH` is delivered, never used.
        id: Option<MessageId>,
    },
    /// An AIResult for every session of `user`.
    AiResult {
        /// Recipient.
        user: UserId,
        /// `{"type":"ai-result","data":...}`.
        frame: Vec<u8>,
    },
    /// A job event for every session of `user`: an `ai-chunk` (`chunk`) or an `job-state` frame.
    JobEvent {
        /// Recipient.
        user: UserId,
        /// `{"type":"ai-chunk","data":{"jobId","seq","delta"}}` or
        /// `{"type":"job-state","data":{"jobId","state",...}}`.
        frame: Vec<u8>,
        /// A chunk (else a state change).
        chunk: bool,
        /// Its `jobId` (a numeric one as its digits).
        job: String,
        /// A chunk's `seq`; a `running` state change's `seq` (the last seq before its attempt);
        /// 0 for other state changes.
        seq: u64,
        /// The `attempt` of a `running` state change (a new attempt restarts the job's text).
        running: Option<u64>,
    },
    /// A ChatMessage for every member of `room`.
    Chat {
        /// Room.
        room: RoomId,
        /// `{"type":"chat-message","data":...}`.
        frame: Vec<u8>,
        /// The history id, when the hub's history script published the message (its id first,
        /// as `$id`, see [`HUB_CHAT_ID`]); `None` for any other `PUBLISH`.
        id: Option<MessageId>,
        /// The payload carried an `id` the history did not write (a service's own, e.g. `"42"`,
        /// even in stream id form): delivered as it is, never used to order or de-duplicate.
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
    /// `user` was taken out of `room`: cached room hook answers for the pair are dropped.
    RoomAccess {
        /// The user.
        user: UserId,
        /// The room.
        room: RoomId,
    },
    /// A hub message for every session of `user` (a payload on the user's channel whose first
    /// key is `$hub`; see [`HubMessage`]).
    Hub {
        /// Recipient.
        user: UserId,
        /// What it says.
        message: HubMessage,
    },
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
pub(super) enum IdValue<'a> {
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
    /// Refused: only the hub's own messages carry it, as their first key.
    #[serde(rename = "$hub", default)]
    hub: Option<serde::de::IgnoredAny>,
    /// Refused anywhere but first (where the inbox writes it, see [`HUB_INBOX_ID`]).
    #[serde(rename = "$inboxId", default)]
    marked: Option<serde::de::IgnoredAny>,
    /// `high`, `normal` or `low`.
    #[serde(default, borrow)]
    priority: Option<Cow<'a, str>>,
    /// 1-128 characters.
    #[serde(rename = "collapseKey", default, borrow)]
    collapse_key: Option<Cow<'a, str>>,
    /// Milliseconds since the epoch.
    #[serde(rename = "expiresAt", default)]
    expires_at: Option<f64>,
}

impl NotificationCheck<'_> {
    /// The inbox's fields (`docs/protocol.md#priorities-collapsing-and-expiry`), checked as
    /// `relay_notify` checks them.
    fn check_inbox_fields(&self) -> Result<(), PayloadError> {
        if let Some(p) = self.priority.as_deref() {
            if !matches!(p, "high" | "normal" | "low") {
                return Err(PayloadError(
                    "`priority` must be \"high\", \"normal\" or \"low\"".into(),
                ));
            }
        }
        if let Some(key) = self.collapse_key.as_deref() {
            if key.is_empty() || key.len() > 128 {
                return Err(PayloadError(
                    "`collapseKey` must be a string of 1-128 bytes".into(),
                ));
            }
        }
        if self.expires_at.is_some_and(|x| x.is_nan() || x < 0.0) {
            return Err(PayloadError(
                "`expiresAt` must be a time in milliseconds since the epoch".into(),
            ));
        }
        Ok(())
    }
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
    /// Refused anywhere but first (where the history writes it, see [`HUB_CHAT_ID`]).
    #[serde(rename = "$id", default)]
    marked: Option<serde::de::IgnoredAny>,
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
struct RoomAccessCheck<'a> {
    #[serde(rename = "userId", borrow)]
    user_id: IdValue<'a>,
    #[serde(borrow)]
    room: Cow<'a, str>,
}

/// The payload of `hub:room-access`: `{"userId","room"}`.
pub fn room_access_payload(user: &str, room: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"userId": user_id_json(user), "room": room}))
        .expect("JSON values serialize")
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

pub(super) fn check_object<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, PayloadError> {
    // serde accepts a JSON array for a struct; `docs/protocol.md` says "one JSON object".
    if trim_ascii(payload).first() != Some(&b'{') {
        return Err(PayloadError("payload is not a JSON object".into()));
    }
    serde_json::from_slice::<StrictJson>(payload)
        .map_err(|e| PayloadError(format!("invalid JSON: {e}")))?;
    serde_json::from_slice(payload).map_err(|e| PayloadError(format!("invalid payload: {e}")))
}

pub(super) fn check_user(
    id: &IdValue<'_>,
    channel_user: Option<&str>,
) -> Result<UserId, PayloadError> {
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

/// The key under which the history script publishes a chat message's id, first: `$` and the
/// `id` clients get. Only a message published so is one the hub wrote (its id orders, and
/// moves where a gap fill starts); a service's own `id`, stream-shaped or not, never does.
pub const HUB_CHAT_ID: &str = "$id";
/// The key under which `relay_notify` publishes a notification's inbox id, first: `$` and
/// the `inboxId` clients get (see [`HUB_CHAT_ID`]).
pub const HUB_INBOX_ID: &str = "$inboxId";

/// A payload as the hub's scripts publish it (`{"<key>":"...`, `key` starting with `$`)
/// becomes what clients get: the same with `key` without its `$`; `true` then. Anything
/// else is given back as it is.
fn unmark<'a>(payload: &'a [u8], key: &str) -> (Cow<'a, [u8]>, bool) {
    let trimmed = trim_ascii(payload);
    let marked = trimmed.len() > key.len() + 4
        && trimmed.starts_with(b"{\"")
        && trimmed[2..].starts_with(key.as_bytes())
        && trimmed[2 + key.len()..].starts_with(b"\":\"");
    if !marked {
        return (Cow::Borrowed(payload), false);
    }
    let mut out = Vec::with_capacity(trimmed.len() - 1);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(&trimmed[3..]);
    (Cow::Owned(out), true)
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
        ChannelKind::User(user) if is_hub_message(payload) => {
            let (user, message) = parse_hub_message(user, payload)?;
            Ok((Inbound::Hub { user, message }, None))
        }
        ChannelKind::User(user) => {
            let (payload, hub_written) = unmark(payload, HUB_INBOX_ID);
            let check: NotificationCheck = check_object(&payload)?;
            if check.hub.is_some() || check.marked.is_some() {
                let key = if check.hub.is_some() {
                    HUB_KEY
                } else {
                    HUB_INBOX_ID
                };
                return Err(PayloadError(format!(
                    "`{key}` is reserved for the hub's own messages"
                )));
            }
            check.check_inbox_fields()?;
            let user = check_user(&check.user_id, Some(user))?;
            let id = check.inbox_id.as_deref().and_then(stream_id);
            let inbound = Inbound::Notification {
                user,
                frame: envelope("notification", &payload),
                id: id.filter(|_| hub_written),
            };
            Ok((inbound, check.timestamp))
        }
        ChannelKind::AiResults => {
            let check: AiResultCheck = check_object(payload)?;
            if !matches!(&*check.status, "success" | "error" | "cancelled") {
                return Err(PayloadError(
                    "`status` must be \"success\", \"error\" or \"cancelled\"".into(),
                ));
            }
            let user = check_user(&check.user_id, None)?;
            let inbound = Inbound::AiResult {
                user,
                frame: envelope("ai-result", payload),
            };
            Ok((inbound, check.timestamp))
        }
        ChannelKind::JobStates => parse_job_event(payload).map(|event| (event, None)),
        ChannelKind::Room(room) => {
            let (payload, hub_written) = unmark(payload, HUB_CHAT_ID);
            let check: ChatCheck = check_object(&payload)?;
            if check.marked.is_some() {
                return Err(PayloadError(format!(
                    "`{HUB_CHAT_ID}` is reserved for the hub's own messages"
                )));
            }
            if check.room_id != room {
                return Err(PayloadError("roomId disagrees with the channel".into()));
            }
            if !is_valid_room(room) {
                return Err(PayloadError("invalid room name".into()));
            }
            check_user(&check.user_id, None)?;
            let id = match &check.id {
                Some(Value::String(s)) if hub_written => stream_id(s),
                _ => None,
            };
            let inbound = Inbound::Chat {
                room: room.into(),
                frame: envelope("chat-message", &payload),
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
            crate::glob::Pattern::new(&check.pattern)
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
        ChannelKind::RoomAccess => {
            let check: RoomAccessCheck = check_object(payload)?;
            if !is_valid_room(&check.room) {
                return Err(PayloadError("invalid room name".into()));
            }
            let user = check_user(&check.user_id, None)?;
            let inbound = Inbound::RoomAccess {
                user,
                room: check.room.as_ref().into(),
            };
            Ok((inbound, None))
        }
        ChannelKind::Other => Err(PayloadError(format!(
            "unexpected channel `{}`",
            clip(channel)
        ))),
    }
}

/// An `ai:jobs` event (`{"jobId","userId","event":"chunk","seq","delta"}` or
/// `{"jobId","userId","event":"state","state",...}`) as the frame its user gets.
fn parse_job_event(payload: &[u8]) -> Result<Inbound, PayloadError> {
    let Value::Object(mut m) = check_object::<Value>(payload)? else {
        return Err(PayloadError("a job event must be a JSON object".into()));
    };
    let user = match m.remove("userId") {
        Some(Value::String(s)) => check_user(&IdValue::Str(s.into()), None)?,
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {
            check_user(&IdValue::Str(n.to_string().into()), None)?
        }
        _ => return Err(PayloadError("`userId` is required".into())),
    };
    let job = match m.get("jobId") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(PayloadError("`jobId` is required".into())),
    };
    let (kind, chunk, seq, running) = match m.remove("event").as_ref().and_then(Value::as_str) {
        Some("chunk") => {
            let seq = m.get("seq").and_then(Value::as_u64);
            let Some(seq) = seq.filter(|_| m.get("delta").is_some_and(Value::is_string)) else {
                return Err(PayloadError("a chunk needs `seq` and `delta`".into()));
            };
            ("ai-chunk", true, seq, None)
        }
        Some("state") if m.get("state").is_some_and(Value::is_string) => {
            let running = (m.get("state").and_then(Value::as_str) == Some("running"))
                .then(|| m.get("attempt").and_then(Value::as_u64))
                .flatten();
            let base = running.and_then(|_| m.get("seq")?.as_u64()).unwrap_or(0);
            ("job-state", false, base, running)
        }
        _ => {
            return Err(PayloadError(
                "`event` must be \"chunk\" or \"state\" (with `state`)".into(),
            ))
        }
    };
    let data = serde_json::to_vec(&Value::Object(m)).expect("JSON serializes");
    Ok(Inbound::JobEvent {
        user,
        frame: envelope(kind, &data),
        chunk,
        job,
        seq,
        running,
    })
}
