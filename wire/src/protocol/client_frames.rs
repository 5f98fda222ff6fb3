//! Client frames: what a client sends over `/ws` (and, mapped from events, over Socket.IO),
//! parsed and validated.

use super::*;

use crate::limits::Limits;

/// What a client asked for in one frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `{"type":"auth","token":...,"since"?:...,"resume"?:...,"offset"?:...}`: first-frame
    /// authentication.
    Auth {
        /// The JWT.
        token: String,
        /// The last `inboxId` the client saw: it gets the notifications sent since.
        since: Option<MessageId>,
        /// Session resume asked for (ignored on a live session).
        resume: Option<ResumeAsk>,
    },
    /// `{"type":"ping"}`.
    Ping,
    /// `{"type":"join-room","room":...,"since"?:...,"token"?:...}`.
    JoinRoom {
        /// The validated room id.
        room: RoomId,
        /// The last history id the client saw, for recovery.
        since: Option<MessageId>,
        /// A room token granting this join (`docs/security.md#room-access`).
        token: Option<String>,
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
    /// `{"type":"cancel-job","jobId":...}`: cancel one of the user's jobs.
    CancelJob {
        /// The job id (valid id form).
        job: String,
    },
    /// `{"type":"watch-job","jobId":...,"after"?:seq}`: the text one of the user's jobs
    /// streamed so far (after `after`), in a `job-watched` reply.
    WatchJob {
        /// The job id (valid id form).
        job: String,
        /// The last seq the client has (0: none).
        after: u64,
    },
    /// `{"type":"mark-read","ids":[...]}` or `{"type":"mark-read","upTo":...}`.
    MarkRead(Marks),
    /// `{"type":"inbox-page","before"?:...,"limit"?:...}`.
    InboxPage {
        /// Notifications older than this inbox id (`None`: the newest).
        before: Option<MessageId>,
        /// How many at most (1 to [`INBOX_PAGE_MAX`]).
        limit: usize,
    },
}

/// Most ids one `mark-read` may name.
pub const MARK_READ_MAX_IDS: usize = 100;
/// Most notifications one `inbox-page` returns.
pub const INBOX_PAGE_MAX: usize = 100;
/// Notifications an `inbox-page` without `limit` returns.
pub const INBOX_PAGE_DEFAULT: usize = 20;

/// Which notifications a `mark-read` marks read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marks {
    /// These (at most [`MARK_READ_MAX_IDS`]).
    Ids(Vec<MessageId>),
    /// Every one up to this inbox id, included.
    UpTo(MessageId),
}

impl Marks {
    /// Validates a `mark-read`'s `ids` or `upTo` (exactly one of them).
    pub fn take(map: &mut Map<String, Value>) -> Result<Marks, ClientError> {
        let bad = |m: String| Err(ClientError::new(ErrorCode::BadRequest, m));
        let id = |v: &Value| v.as_str().and_then(MessageId::parse);
        match (map.remove("ids"), map.remove("upTo")) {
            (Some(Value::Array(ids)), None) => {
                if ids.is_empty() || ids.len() > MARK_READ_MAX_IDS {
                    return bad(format!("`ids` takes 1 to {MARK_READ_MAX_IDS} inbox ids"));
                }
                match ids.iter().map(id).collect::<Option<Vec<_>>>() {
                    Some(ids) => Ok(Marks::Ids(ids)),
                    None => bad("`ids` must be inbox ids like \"1764520000123-0\"".into()),
                }
            }
            (None, Some(up_to)) => match id(&up_to) {
                Some(up_to) => Ok(Marks::UpTo(up_to)),
                None => bad("`upTo` must be an inbox id like \"1764520000123-0\"".into()),
            },
            (Some(_), None) => bad("`ids` must be a list of inbox ids".into()),
            _ => bad("give `ids` (a list of inbox ids) or `upTo` (an inbox id)".into()),
        }
    }
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
            Request::CancelJob { .. } => "cancel-job",
            Request::WatchJob { .. } => "watch-job",
            Request::MarkRead(_) => "mark-read",
            Request::InboxPage { .. } => "inbox-page",
        }
    }
}

/// What a native client asks of session resume when it authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeAsk {
    /// `"resume":true`: make this session resumable (events carry offsets).
    Start,
    /// `"resume":"<token>","offset"?:<n>`: resume the session that token names, whose last
    /// event the client saw had offset `offset` (0, the default: none).
    Continue {
        /// The `resume` token of the `connected` frame the client got before.
        token: String,
        /// The last event offset the client saw.
        offset: u64,
    },
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
    /// The room it is about, when it is about one (a refused join or post).
    pub room: Option<RoomId>,
}

impl ClientError {
    /// An error without an `id`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ClientError {
            code,
            message: message.into(),
            id: None,
            room: None,
        }
    }

    /// The same error, naming `room`.
    pub fn in_room(mut self, room: RoomId) -> Self {
        self.room = Some(room);
        self
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
            resume: take_resume(map)?,
        },
        "join-room" => {
            let room = take_room(map)?;
            let since = take_since(map)?;
            let token = take_optional_string(map, "token")?;
            Request::JoinRoom { room, since, token }
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
        "cancel-job" => Request::CancelJob {
            job: take_job_id(map)?,
        },
        "watch-job" => {
            let job = take_job_id(map)?;
            let after = match map.remove("after") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) if n.is_u64() => n.as_u64().unwrap_or(0),
                Some(_) => {
                    return Err(ClientError::new(
                        ErrorCode::BadRequest,
                        "`after` must be a non-negative integer (a chunk seq)",
                    ))
                }
            };
            Request::WatchJob { job, after }
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
        "mark-read" => Request::MarkRead(Marks::take(map)?),
        "inbox-page" => {
            let before = match take_optional_string(map, "before")? {
                None => None,
                Some(s) => Some(MessageId::parse(&s).ok_or_else(|| {
                    ClientError::new(
                        ErrorCode::BadRequest,
                        "`before` must be an inbox id like \"1764520000123-0\"",
                    )
                })?),
            };
            let limit = match map.remove("limit") {
                None | Some(Value::Null) => INBOX_PAGE_DEFAULT,
                Some(Value::Number(n))
                    if n.as_u64()
                        .is_some_and(|n| (1..=INBOX_PAGE_MAX as u64).contains(&n)) =>
                {
                    n.as_u64().unwrap_or_default() as usize
                }
                Some(_) => {
                    return Err(ClientError::new(
                        ErrorCode::BadRequest,
                        format!("`limit` must be an integer from 1 to {INBOX_PAGE_MAX}"),
                    ))
                }
            };
            Request::InboxPage { before, limit }
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

/// An `auth` frame's optional `resume` (`true` or a token) and `offset` (with a token).
fn take_resume(map: &mut Map<String, Value>) -> Result<Option<ResumeAsk>, ClientError> {
    let bad = |m: &'static str| Err(ClientError::new(ErrorCode::BadRequest, m));
    let offset = match map.remove("offset") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(_) => return bad("`offset` must be a non-negative integer"),
    };
    match (map.remove("resume"), offset) {
        (None | Some(Value::Null) | Some(Value::Bool(false)), None) => Ok(None),
        (Some(Value::Bool(true)), None) => Ok(Some(ResumeAsk::Start)),
        (Some(Value::String(token)), offset) => Ok(Some(ResumeAsk::Continue {
            token,
            offset: offset.unwrap_or(0),
        })),
        (None | Some(Value::Null | Value::Bool(_)), Some(_)) => {
            bad("`offset` goes with a `resume` token")
        }
        (Some(_), _) => bad("`resume` must be true or a token (a string)"),
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

/// A `jobId`: 1-128 characters of `A-Z a-z 0-9 : _ . -` (a number is taken as its digits).
fn take_job_id(map: &mut Map<String, Value>) -> Result<String, ClientError> {
    let id = match map.remove("jobId") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        _ => String::new(),
    };
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-'));
    if !ok {
        return Err(ClientError::new(
            ErrorCode::BadRequest,
            "`jobId` must be 1-128 characters of A-Z a-z 0-9 : _ . -",
        ));
    }
    Ok(id)
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
