//! Chat history: one capped Redis stream per room (`chat:history:{roomId}`), used by the
//! session (`chat-message`, `join-room`) and the HTTP API (`POST /api/chat/{roomId}`,
//! `GET /api/rooms/{roomId}`).
//!
//! A message is appended and published by one Lua script, so the stream's order is the
//! channel's order and no message is in one without the other. The stream entry id becomes
//! the message's `id`; the script puts it first into the JSON it publishes, and readers put it
//! back the same way ([`protocol::with_message_id`]), so history and live copies are
//! byte-identical.

use std::{sync::Arc, sync::LazyLock, time::Duration};

use log::warn;
use redis::Script;
use serde_json::value::RawValue;

use crate::{
    common::error::HubError,
    connections::publisher::{request_id, retry_on_dead_connection, Publisher, REQUEST_TTL},
    features::session_resume::Cursor,
};

use hub_wire::protocol::{self, MessageId, ROOM_PREFIX};

/// Prefix of the per-room history streams.
pub const HISTORY_PREFIX: &str = "chat:history:";

/// The stream field holding a message (the ChatMessage JSON without its `id`).
const FIELD: &str = "m";

/// KEYS[1] history stream, KEYS[2] the request's key ([`request_key`]). ARGV: `PUBLISH` or
/// `SPUBLISH`, channel, message JSON object without `id`, max length, TTL in ms (0: none),
/// the request key's TTL in ms. A request that already ran (a retry after its connection
/// dropped) gets its id back and changes nothing. Otherwise appends, trims exactly, refreshes
/// the TTL,
/// publishes the message with its new id first as `$id` (the hub's mark,
/// [`protocol::HUB_CHAT_ID`]; clients get it as `id`), returns the id.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local done = redis.call('GET', KEYS[2])
if done then return done end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[4], '*', 'm', ARGV[3])
if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
redis.call(ARGV[1], ARGV[2], '{"$id":"' .. id .. '",' .. string.sub(ARGV[3], 2))
redis.call('SET', KEYS[2], id, 'PX', ARGV[6])
return id
"#,
    )
});

/// How much history is kept and handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Messages in `joined` for a join without `since` (`HUB_HISTORY_LIMIT`).
    pub join_limit: usize,
    /// Messages kept per room; older ones are trimmed (`HUB_HISTORY_MAXLEN`).
    pub max_len: usize,
    /// A room's history is deleted after this long without a message (`HUB_HISTORY_TTL_SECS`);
    /// `None` keeps it forever.
    pub ttl: Option<Duration>,
    /// Most bytes of history in one `joined` frame; older messages beyond it are left out.
    pub max_bytes: usize,
    /// Most messages a recovery (`since`) reads from Redis; a longer gap is answered as a
    /// reload (`recovered: false`) with the latest messages (`HUB_HISTORY_RECOVERY_LIMIT`).
    /// Bounds what one join can make Redis do.
    pub recovery_limit: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            join_limit: 50,
            max_len: 1000,
            ttl: Some(Duration::from_secs(7 * 24 * 3600)),
            max_bytes: 128 * 1024,
            recovery_limit: 100,
        }
    }
}

/// What a join gets from the history.
#[derive(Debug, Default)]
pub struct Recent {
    /// Messages, oldest first, each with its `id`.
    pub messages: Vec<Box<RawValue>>,
    /// With `since`: whether `messages` are exactly everything after it.
    pub recovered: Option<bool>,
    /// The ids of `messages`, ascending: live copies of these are duplicates.
    pub ids: Vec<MessageId>,
}

/// What `GET /api/rooms/{roomId}` tells about a room's history.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Messages held (at most the configured maximum length).
    pub count: u64,
    /// The newest message's id.
    pub last_id: Option<MessageId>,
}

pub(crate) type Entry = (String, Vec<(String, Vec<u8>)>);

/// History of every room, on the instance's command connection. Cheap to clone.
#[derive(Clone)]
pub struct History {
    publisher: Publisher,
    config: Arc<HistoryConfig>,
}

/// The key remembering one append to `room` for [`REQUEST_TTL`]:
/// `chat:request:{chat:room:ROOM}:<request id>`, in the slot of the room's channel and history.
pub fn request_key(room: &str, request: &str) -> String {
    format!("chat:request:{{{ROOM_PREFIX}{room}}}:{request}")
}

/// The stream key of a room: `chat:history:{room}`, or on a cluster
/// `chat:history:{chat:room:{room}}`, whose hash tag puts it in the slot of the room's channel
/// (the append script publishes there with `SPUBLISH`, which must stay in the script's slot).
pub fn key(room: &str, cluster: bool) -> String {
    if cluster {
        format!("{HISTORY_PREFIX}{{{ROOM_PREFIX}{room}}}")
    } else {
        format!("{HISTORY_PREFIX}{room}")
    }
}

fn redis_error(what: &str, room: &str, e: redis::RedisError) -> HubError {
    HubError::Redis(format!("{what} {HISTORY_PREFIX}{room}: {e}"))
}

impl History {
    /// History through `publisher`'s connection.
    pub fn new(publisher: Publisher, config: HistoryConfig) -> Self {
        History {
            publisher,
            config: Arc::new(config),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// The stream key of `room` (see [`key`]).
    fn key(&self, room: &str) -> String {
        key(room, self.publisher.is_cluster())
    }

    /// Appends a ChatMessage (a JSON object without `id`, validated by the caller) to the
    /// room's history and publishes it to `chat:room:{room}`, atomically, once: a retry after
    /// a dropped connection carries the same request id. Returns its id.
    pub async fn append(&self, room: &str, message: &[u8]) -> Result<MessageId, HubError> {
        if !message.starts_with(b"{") || message.len() < 3 {
            return Err(HubError::Redis(format!(
                "append to {HISTORY_PREFIX}{room}: not a non-empty JSON object"
            )));
        }
        let ttl_ms = self.config.ttl.map_or(0, |t| t.as_millis() as u64);
        let mut invocation = APPEND.key(self.key(room));
        let channel = format!("{ROOM_PREFIX}{room}");
        invocation
            .key(request_key(room, &request_id()))
            .arg(self.publisher.publish_command(&channel))
            .arg(&channel)
            .arg(message)
            .arg(self.config.max_len)
            .arg(ttl_ms)
            .arg(REQUEST_TTL.as_millis() as u64);
        let id: String = retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let invocation = &invocation;
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
        .map_err(|e| {
            self.publisher.count_error();
            redis_error("append to", room, e)
        })?;
        MessageId::parse(&id).ok_or_else(|| {
            HubError::Redis(format!("append to {HISTORY_PREFIX}{room}: odd id `{id}`"))
        })
    }

    /// The history a join gets: the latest [`HistoryConfig::join_limit`] messages, or with
    /// `since` everything after it. `recovered` is false when `since` is no longer in the
    /// history (trimmed, expired, or never there) or more than
    /// [`HistoryConfig::recovery_limit`] messages came after it: then the latest messages
    /// are returned instead, for the client to reload. Redis reads at most
    /// `recovery_limit + 2` plus `join_limit` entries for one join.
    pub async fn recent(&self, room: &str, since: Option<MessageId>) -> Result<Recent, HubError> {
        let Some(since) = since else {
            let messages = self.latest(room).await?;
            return Ok(select(&self.config, &self.key(room), messages, None));
        };
        // Newest first, down to `since` itself: one more than the limit tells a longer gap.
        let limit = self.config.recovery_limit;
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.key(room))
            .arg("+")
            .arg(since.to_string())
            .arg("COUNT")
            .arg(limit + 2);
        let mut entries: Vec<Entry> = self
            .query(&cmd)
            .await
            .map_err(|e| redis_error("XREVRANGE", room, e))?;
        entries.reverse();
        let still_there = entries
            .first()
            .and_then(|(id, _)| MessageId::parse(id))
            .is_some_and(|first| first == since);
        if !still_there || entries.len() > limit + 1 {
            let messages = self.latest(room).await?;
            let mut recent = select(&self.config, &self.key(room), messages, Some(since));
            recent.recovered = Some(false);
            return Ok(recent);
        }
        let newer = entries.into_iter().skip(1).collect();
        Ok(select(&self.config, &self.key(room), newer, Some(since)))
    }

    /// Every message of the room after `since` (the gap a pub/sub outage left), oldest
    /// first; see `read_after`.
    pub async fn after(&self, room: &str, since: MessageId) -> Result<Recent, HubError> {
        let read = StreamRead {
            key: &self.key(room),
            with_id: protocol::with_message_id,
            max_len: self.config.max_len,
            max_bytes: usize::MAX,
        };
        read_after(&self.publisher, read, since).await
    }

    /// What a resumed session missed in `room` after `cursor`, at most
    /// [`HistoryConfig::recovery_limit`] messages; see `read_since`.
    pub async fn since(&self, room: &str, cursor: Cursor) -> Result<Recent, HubError> {
        let read = StreamRead {
            key: &self.key(room),
            with_id: protocol::with_message_id,
            max_len: self.config.max_len,
            max_bytes: self.config.max_bytes,
        };
        read_since(&self.publisher, read, cursor, self.config.recovery_limit).await
    }

    /// The latest `join_limit` entries, oldest first.
    async fn latest(&self, room: &str) -> Result<Vec<Entry>, HubError> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.key(room))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(self.config.join_limit);
        let mut entries: Vec<Entry> = self
            .query(&cmd)
            .await
            .map_err(|e| redis_error("XREVRANGE", room, e))?;
        entries.reverse();
        Ok(entries)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            async move { cmd.query_async(&mut conn).await }
        })
        .await
    }

    /// How many messages the room's history holds, and the newest id.
    pub async fn stats(&self, room: &str) -> Result<HistoryStats, HubError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN")
            .arg(self.key(room))
            .cmd("XREVRANGE")
            .arg(self.key(room))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let (count, last): (u64, Vec<Entry>) = retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let pipe = &pipe;
            async move { pipe.query_async(&mut conn).await }
        })
        .await
        .map_err(|e| redis_error("XLEN", room, e))?;
        Ok(HistoryStats {
            count,
            last_id: last.first().and_then(|(id, _)| MessageId::parse(id)),
        })
    }
}

/// What [`read_after`] reads: one capped stream of JSON objects.
pub(crate) struct StreamRead<'a> {
    /// The stream's key.
    pub key: &'a str,
    /// Puts an entry's id into its JSON object.
    pub with_id: fn(&[u8], &str) -> Vec<u8>,
    /// Most entries read.
    pub max_len: usize,
    /// Most bytes of messages returned (the newest are kept).
    pub max_bytes: usize,
}

/// `XRANGE key start + COUNT count`.
async fn xrange(
    publisher: &Publisher,
    key: &str,
    start: String,
    count: usize,
) -> Result<Vec<Entry>, HubError> {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(key).arg(start).arg("+").arg("COUNT").arg(count);
    retry_on_dead_connection(|| {
        let mut conn = publisher.connection();
        let cmd = &cmd;
        async move { cmd.query_async(&mut conn).await }
    })
    .await
    .map_err(|e| HubError::Redis(format!("XRANGE {key}: {e}")))
}

/// Every entry after `since`, oldest first. `recovered` is true when that is exactly what
/// followed `since` (it is still in the stream and nothing was cut); when `since` was
/// trimmed (or never there), what is kept after it is still returned, with `false`.
pub(crate) async fn read_after(
    publisher: &Publisher,
    read: StreamRead<'_>,
    since: MessageId,
) -> Result<Recent, HubError> {
    let entries = xrange(publisher, read.key, since.to_string(), read.max_len + 1).await?;
    let still_there = entries
        .first()
        .and_then(|(id, _)| MessageId::parse(id))
        .is_some_and(|first| first == since);
    let newer = entries
        .into_iter()
        .filter(|(id, _)| MessageId::parse(id).is_some_and(|id| id > since))
        .collect();
    let mut recent = select_as(read.key, read.with_id, read.max_bytes, newer, Some(since));
    recent.recovered = recent.recovered.map(|complete| complete && still_there);
    Ok(recent)
}

/// Every entry after `cursor` (a resumed session's, see [`crate::features::session_resume`]), oldest
/// first. `recovered` is true when that is exactly what followed it: a [`Cursor::Seen`] id
/// still in the stream, at most `limit` entries, nothing cut by the byte budget.
pub(crate) async fn read_since(
    publisher: &Publisher,
    read: StreamRead<'_>,
    cursor: Cursor,
    limit: usize,
) -> Result<Recent, HubError> {
    let (start, since) = match cursor {
        Cursor::Seen(id) => (id.to_string(), id),
        Cursor::After(id) => (format!("({id}"), id),
    };
    let entries = xrange(publisher, read.key, start, limit + 2).await?;
    let still_there = match cursor {
        Cursor::After(_) => true,
        Cursor::Seen(id) => entries
            .first()
            .and_then(|(first, _)| MessageId::parse(first))
            .is_some_and(|first| first == id),
    };
    let newer: Vec<Entry> = entries
        .into_iter()
        .filter(|(id, _)| MessageId::parse(id).is_some_and(|id| id > since))
        .collect();
    let complete = still_there && newer.len() <= limit;
    let mut recent = select_as(read.key, read.with_id, read.max_bytes, newer, Some(since));
    recent.recovered = recent.recovered.map(|uncut| uncut && complete);
    Ok(recent)
}

/// Turns entries (oldest first) into messages, keeping the newest that fit the byte
/// budget. With `since`, a cut makes the result a reload (`recovered: false`).
fn select(
    config: &HistoryConfig,
    key: &str,
    entries: Vec<Entry>,
    since: Option<MessageId>,
) -> Recent {
    select_as(
        key,
        protocol::with_message_id,
        config.max_bytes,
        entries,
        since,
    )
}

/// [`select`] for any stream: `with_id` puts an entry's id into its JSON object, and at
/// most `max_bytes` of messages are kept.
pub(crate) fn select_as(
    stream: &str,
    with_id: fn(&[u8], &str) -> Vec<u8>,
    max_bytes: usize,
    entries: Vec<Entry>,
    since: Option<MessageId>,
) -> Recent {
    let mut messages = Vec::with_capacity(entries.len());
    let mut ids = Vec::with_capacity(entries.len());
    let mut bytes = 0;
    let mut cut = false;
    for (id, fields) in entries.into_iter().rev() {
        let Some(raw) = fields.into_iter().find(|(f, _)| f == FIELD).map(|(_, v)| v) else {
            warn!("{stream} entry {id} has no `{FIELD}` field; skipped");
            continue;
        };
        let text = with_id(&raw, &id);
        let message = String::from_utf8(text)
            .ok()
            .and_then(|t| RawValue::from_string(t).ok());
        let (Some(message), Some(parsed)) = (message, MessageId::parse(&id)) else {
            warn!("{stream} entry {id} is not a JSON object; skipped");
            continue;
        };
        bytes += message.get().len() + 1;
        if bytes > max_bytes && !messages.is_empty() {
            cut = true;
            break;
        }
        ids.push(parsed);
        messages.push(message);
    }
    messages.reverse();
    ids.reverse();
    Recent {
        messages,
        recovered: since.map(|_| !cut),
        ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, text: &str) -> Entry {
        let json = format!(r#"{{"roomId":"r","message":"{text}"}}"#);
        (id.into(), vec![(FIELD.into(), json.into_bytes())])
    }

    #[test]
    fn select_puts_ids_first_and_keeps_order() {
        let config = HistoryConfig::default();
        let recent = select(
            &config,
            "r",
            vec![entry("1-0", "a"), entry("2-0", "b")],
            None,
        );
        let texts: Vec<&str> = recent.messages.iter().map(|m| m.get()).collect();
        assert_eq!(
            texts,
            [
                r#"{"id":"1-0","roomId":"r","message":"a"}"#,
                r#"{"id":"2-0","roomId":"r","message":"b"}"#
            ]
        );
        assert_eq!(recent.recovered, None);
        assert_eq!(
            recent.ids,
            [MessageId { ms: 1, seq: 0 }, MessageId { ms: 2, seq: 0 }]
        );
    }

    #[test]
    fn select_keeps_the_newest_that_fit_and_flags_a_cut_recovery() {
        let config = HistoryConfig {
            max_bytes: 100,
            ..HistoryConfig::default()
        };
        let entries: Vec<Entry> = (1..=5)
            .map(|i| entry(&format!("{i}-0"), &"x".repeat(20)))
            .collect();
        let recent = select(&config, "r", entries.clone(), None);
        assert_eq!(
            recent.messages.len(),
            1,
            "one ~60-byte message fits in 100 bytes"
        );
        assert!(recent.messages[0].get().starts_with(r#"{"id":"5-0""#));
        let since = MessageId::parse("0-1");
        assert_eq!(select(&config, "r", entries, since).recovered, Some(false));
        let bad = vec![(
            "9-0".to_string(),
            vec![(FIELD.to_string(), b"not json".to_vec())],
        )];
        assert!(
            select(&config, "r", bad, None).messages.is_empty(),
            "junk is skipped"
        );
    }
}
