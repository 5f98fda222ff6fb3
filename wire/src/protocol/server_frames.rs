//! Server frames: the JSON of the hub's replies and events (built once, shared by every
//! recipient).

use super::*;

fn with_id(mut frame: Value, id: &Option<Value>) -> Vec<u8> {
    if let (Some(id), Value::Object(map)) = (id, &mut frame) {
        map.insert("id".into(), id.clone());
    }
    serde_json::to_vec(&frame).expect("JSON values always serialize")
}

/// `{"type":"connected","sessionId":...,"userId":...,"recovered"?:...,"resume"?:...,"resumed"?:...}`.
pub fn connected_frame(session_id: &str, user_id: &str, resume: &Resumption) -> Vec<u8> {
    let mut frame =
        json!({"type": "connected", "sessionId": session_id, "userId": user_id_json(user_id)});
    if let Some(recovered) = resume.recovered {
        frame["recovered"] = Value::Bool(recovered);
    }
    if let Some(token) = &resume.token {
        frame["resume"] = Value::String(token.clone());
    }
    if let Some(resumed) = resume.resumed {
        frame["resumed"] = Value::Bool(resumed);
    }
    if let Some(unread) = resume.unread {
        frame["unread"] = Value::from(unread);
    }
    with_id(frame, &None)
}

/// What `connected` says about recovery: `recovered` (with `since`), `resume` (the token of
/// a resumable session) and `resumed` (when the client asked to resume).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resumption {
    /// With `since`: every notification since follows.
    pub recovered: Option<bool>,
    /// The token to resume this session with.
    pub token: Option<String>,
    /// With a `resume` token: the session was resumed.
    pub resumed: Option<bool>,
    /// Unread notifications in the user's inbox (`None`: it could not be read).
    pub unread: Option<u64>,
}

/// One notification of an inbox page.
#[derive(Debug, Serialize)]
pub struct InboxItem {
    /// The notification as delivered (with its `inboxId` first).
    pub data: Box<RawValue>,
    /// The user marked it read.
    pub read: bool,
}

/// A page of a user's inbox, newest first.
#[derive(Debug, Default, Serialize)]
pub struct InboxPage {
    /// The notifications.
    pub items: Vec<InboxItem>,
    /// Unread notifications in the whole inbox.
    pub unread: u64,
    /// Older ones follow (ask again with `before` the last item's `inboxId`).
    pub more: bool,
}

/// `{"type":"inbox-page","items":[{"data":{...},"read":false},...],"unread":N,"more":false,
/// "id"?:...}`.
pub fn inbox_page_frame(page: &InboxPage, id: &Option<Value>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Frame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        items: &'a [InboxItem],
        unread: u64,
        more: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: &'a Option<Value>,
    }
    serde_json::to_vec(&Frame {
        kind: "inbox-page",
        items: &page.items,
        unread: page.unread,
        more: page.more,
        id,
    })
    .expect("the inbox-page frame always serializes")
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
    /// In a resumable session, the reply's offset: it moves the room's place like an event.
    pub offset: Option<u64>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
}

/// `{"type":"joined","room":...,"history":[...],"members":[...],"memberCount"?:...,
/// "recovered"?:...,"id"?:...,"offset"?:...}`.
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
        offset: info.offset,
    })
    .expect("the joined frame always serializes")
}

/// `{"type":"left","room":...,"reason"?:...}` (`reason` when the hub took the session out of
/// the room: `removed`).
pub fn left_frame(room: &str, reason: Option<&str>, id: &Option<Value>) -> Vec<u8> {
    let mut frame = json!({"type": "left", "room": room});
    if let Some(reason) = reason {
        frame["reason"] = json!(reason);
    }
    with_id(frame, id)
}

/// `{"type":"token-refreshed","expiresAt":...}`: a fresh token was accepted.
pub fn token_refreshed_frame(expires_at: u64, id: &Option<Value>) -> Vec<u8> {
    with_id(
        json!({"type": "token-refreshed", "expiresAt": expires_at}),
        id,
    )
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
    with_id(error_json(err, json!({"type": "error"})), &err.id)
}

/// `code`, `message` and (when the error is about one) `room` of an error, added to `base`
/// (an object): the body of the native error frame and of Socket.IO's errors.
pub fn error_json(err: &ClientError, mut base: Value) -> Value {
    base["code"] = json!(err.code.as_str());
    base["message"] = json!(&*err.message);
    if let Some(room) = &err.room {
        base["room"] = json!(&**room);
    }
    base
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

/// `{"type":"job-cancel","jobId","status"}`: the answer to `cancel-job` (`status`:
/// `cancelled`, or `finished` when the job had already ended).
pub fn job_cancel_frame(job: &str, status: &str, id: &Option<Value>) -> Vec<u8> {
    with_id(
        json!({"type": "job-cancel", "jobId": job, "status": status}),
        id,
    )
}

/// `{"type":"job-watched","jobId","state","seq","chunks":[{"seq","delta"}...]}`: the answer to
/// `watch-job`: the job's state, its last seq, and the kept chunks after the asked seq.
pub fn job_watched_frame(
    job: &str,
    state: &str,
    last: u64,
    chunks: &[(u64, String)],
    id: &Option<Value>,
) -> Vec<u8> {
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|(seq, delta)| json!({"seq": seq, "delta": delta}))
        .collect();
    with_id(
        json!({"type": "job-watched", "jobId": job, "state": state, "seq": last,
               "chunks": chunks}),
        id,
    )
}
