//! The notification inbox: one capped Redis stream per user (`inbox:{user:notifications:ID}`,
//! the hash tag keeps it in the slot of the user's channel), written together with the
//! publish by one Redis function, `relay_notify`, which the hub loads at startup (and again
//! after Redis lost it in a restart).
//!
//! A notification that went through the inbox carries its stream id as `inboxId`. A client
//! that reconnects with the last `inboxId` it saw gets what it missed (see
//! [`crate::hub::client`]), and after a pub/sub outage the subscriber delivers from the inbox what
//! its users missed meanwhile. Services publish through the inbox with
//! `FCALL relay_notify 1 inbox:{user:notifications:ID} <Notification JSON>`; a plain
//! `PUBLISH` to `user:notifications:ID` still works, best effort and without an `inboxId`.
//!
//! The same library (`inbox.lua`) keeps each user's read state next to the inbox and answers
//! for it: `relay_inbox_read` (mark read by ids or up to one), `relay_inbox_delete`,
//! `relay_inbox_unread`, `relay_inbox_page` and `relay_inbox_range` (what a reconnecting
//! session missed, expired ones left out). Every change of the unread count publishes an
//! `inbox-state` hub message on the user's channel, so every session of the user, on every
//! instance, learns it in order with the notifications.

use std::{sync::Arc, time::Duration};

use log::info;
use redis::Value as RedisValue;
use serde_json::value::RawValue;

use crate::{
    common::error::HubError,
    connections::publisher::{request_id, retry_on_dead_connection, Publisher, REQUEST_TTL},
    features::history::{select_as, Entry, Recent},
    features::session_resume::Cursor,
};

use hub_wire::protocol::{self, InboxItem, InboxPage, Marks, MessageId, HUB_INBOX_ID, USER_PREFIX};

/// The Redis function services call instead of `PUBLISH`.
pub const FUNCTION: &str = "relay_notify";

/// How much each user's inbox keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxConfig {
    /// Notifications kept per user; older ones are trimmed (`HUB_INBOX_MAXLEN`).
    pub max_len: usize,
    /// An inbox is deleted after this long without a notification (`HUB_INBOX_TTL_SECS`).
    pub ttl: Duration,
    /// Most bytes of missed notifications replayed to one reconnecting session (the oldest
    /// beyond it are left out, and the session is told `recovered: false`).
    pub max_bytes: usize,
    /// Low-priority notifications pushed live per user and minute; more are kept in the
    /// inbox only (`HUB_INBOX_LOW_PER_MINUTE`, 0: no cap).
    pub low_per_minute: u64,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            max_len: 100,
            ttl: Duration::from_secs(24 * 3600),
            max_bytes: 128 * 1024,
            low_per_minute: 10,
        }
    }
}

/// The key remembering one `relay_notify` call for [`REQUEST_TTL`] (its optional second key):
/// `inbox:request:{user:notifications:ID}:<request id>`, in the slot of the user's inbox.
pub fn request_key(user: &str, request: &str) -> String {
    format!("inbox:request:{{{USER_PREFIX}{user}}}:{request}")
}

/// The inbox key of a user.
pub fn key(user: &str) -> String {
    format!("inbox:{{{USER_PREFIX}{user}}}")
}

/// Puts `"inboxId":"<id>"` first into a notification's JSON object: what clients get from a
/// notification `relay_notify` published (with `$inboxId` first, see [`HUB_INBOX_ID`]).
pub fn with_inbox_id(object: &[u8], id: &str) -> Vec<u8> {
    protocol::with_field_first(object, "inboxId", id)
}

/// The function library, with this instance's limits (the last instance to start sets them
/// for every caller; run every instance with the same settings). On a cluster it publishes
/// with `SPUBLISH` (the key's hash tag is the channel, so both are in the function's slot).
fn library(config: &InboxConfig, cluster: bool) -> String {
    include_str!("inbox.lua")
        .replace("__MAXLEN__", &config.max_len.to_string())
        .replace("__TTL_MS__", &config.ttl.as_millis().to_string())
        .replace("__LOW_PER_MINUTE__", &config.low_per_minute.to_string())
        .replace("__REQUEST_TTL_MS__", &REQUEST_TTL.as_millis().to_string())
        .replace("__HUB_INBOX_ID__", HUB_INBOX_ID)
        .replace("__PUBLISH__", if cluster { "SPUBLISH" } else { "PUBLISH" })
}

/// Every user's inbox, on the instance's command connection. Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    publisher: Publisher,
    config: Arc<InboxConfig>,
    /// Other function libraries loaded with it (the job queue's): `(name, source)`.
    libraries: Arc<Vec<(String, String)>>,
}

/// A reply that is not what the function returns.
fn odd(function: &str, reply: &RedisValue) -> HubError {
    HubError::Redis(format!("FCALL {function}: unexpected reply {reply:?}"))
}

fn text(value: &RedisValue) -> Option<&str> {
    match value {
        RedisValue::BulkString(b) => std::str::from_utf8(b).ok(),
        RedisValue::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn int(value: &RedisValue) -> Option<i64> {
    match value {
        RedisValue::Int(n) => Some(*n),
        _ => None,
    }
}

impl Inbox {
    /// The inbox through `publisher`'s connection.
    pub fn new(publisher: Publisher, config: InboxConfig) -> Self {
        Inbox {
            publisher,
            config: Arc::new(config),
            libraries: Arc::default(),
        }
    }

    /// Also loads the function library `source` (named `name`) whenever it loads its own,
    /// so a restarted Redis gets it back too.
    pub fn with_library(mut self, name: &str, source: String) -> Self {
        Arc::make_mut(&mut self.libraries).push((name.to_string(), source));
        self
    }

    /// Loads (or replaces) the inbox's functions in Redis, and the libraries given with
    /// [`Inbox::with_library`].
    pub async fn load(&self) -> Result<(), HubError> {
        let cluster = self.publisher.is_cluster();
        self.load_library(FUNCTION, &library(&self.config, cluster))
            .await?;
        info!(
            "redis function {FUNCTION} loaded (inbox of {} per user)",
            self.config.max_len
        );
        for (name, source) in self.libraries.iter() {
            self.load_library(name, source).await?;
            info!("redis function library {name} loaded");
        }
        Ok(())
    }

    /// `FUNCTION LOAD REPLACE source`; on a cluster the connection sends it to every master
    /// (each holds its functions).
    async fn load_library(&self, name: &str, source: &str) -> Result<(), HubError> {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(source);
        let _: String = retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let cmd = &cmd;
            async move { cmd.query_async(&mut conn).await }
        })
        .await
        .map_err(|e| HubError::Redis(format!("FUNCTION LOAD {name}: {e}")))?;
        Ok(())
    }

    /// `FCALL function 1 <user's inbox> args...` (with a `request`, `2 <inbox> <its request
    /// key>`: a retry after a dropped connection then runs once), loading the library first
    /// when Redis lost it (a restart without persistence).
    async fn fcall<T: redis::FromRedisValue>(
        &self,
        function: &str,
        user: &str,
        request: Option<&str>,
        args: &[&str],
    ) -> Result<T, HubError> {
        let mut cmd = redis::cmd("FCALL");
        match request {
            Some(request) => cmd
                .arg(function)
                .arg(2)
                .arg(key(user))
                .arg(request_key(user, request)),
            None => cmd.arg(function).arg(1).arg(key(user)),
        };
        for arg in args {
            cmd.arg(*arg);
        }
        let call = || {
            retry_on_dead_connection(|| {
                let mut conn = self.publisher.connection();
                let cmd = &cmd;
                async move { cmd.query_async::<T>(&mut conn).await }
            })
        };
        let reply = match call().await {
            Err(e) if e.to_string().contains("Function not found") => {
                self.load().await?;
                call().await
            }
            other => other,
        };
        reply.map_err(|e| {
            self.publisher.count_error();
            HubError::Redis(format!("FCALL {function} {}: {e}", key(user)))
        })
    }

    /// Appends a Notification (a JSON object, validated by the caller) to `user`'s inbox and
    /// publishes it, atomically, once: a retry after a dropped connection carries the same
    /// request key. Returns its inbox id and how many instances received it live (0 when it
    /// was held back, a low-priority one over the user's cap, or a retry found it done).
    pub async fn notify(&self, user: &str, payload: &[u8]) -> Result<(MessageId, i64), HubError> {
        let payload = std::str::from_utf8(payload)
            .map_err(|_| HubError::Redis(format!("FCALL {FUNCTION}: the payload is not UTF-8")))?;
        let (id, receivers): (String, i64) = self
            .fcall(FUNCTION, user, Some(&request_id()), &[payload])
            .await?;
        let id = MessageId::parse(&id)
            .ok_or_else(|| HubError::Redis(format!("FCALL {FUNCTION}: odd id `{id}`")))?;
        Ok((id, receivers))
    }

    /// Unread notifications in `user`'s inbox (kept, not expired, not marked read).
    pub async fn unread(&self, user: &str) -> Result<u64, HubError> {
        let n: i64 = self.fcall("relay_inbox_unread", user, None, &[]).await?;
        Ok(n.max(0) as u64)
    }

    /// Marks notifications of `user` read; every session of the user gets `inbox-state`
    /// when that changed anything. Returns the unread count.
    pub async fn mark_read(&self, user: &str, marks: &Marks) -> Result<u64, HubError> {
        let ids: Vec<String> = match marks {
            Marks::Ids(ids) => std::iter::once("ids".to_owned())
                .chain(ids.iter().map(MessageId::to_string))
                .collect(),
            Marks::UpTo(id) => vec!["upTo".to_owned(), id.to_string()],
        };
        let args: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (unread, _changed): (i64, i64) =
            self.fcall("relay_inbox_read", user, None, &args).await?;
        Ok(unread.max(0) as u64)
    }

    /// Deletes one notification of `user`. Returns whether it was there, and the unread
    /// count.
    pub async fn delete(&self, user: &str, id: MessageId) -> Result<(bool, u64), HubError> {
        let id = id.to_string();
        let (deleted, unread): (i64, i64) =
            self.fcall("relay_inbox_delete", user, None, &[&id]).await?;
        Ok((deleted == 1, unread.max(0) as u64))
    }

    /// At most `limit` of `user`'s notifications older than `before` (the newest without),
    /// newest first, each with its read flag.
    pub async fn page(
        &self,
        user: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<InboxPage, HubError> {
        const NAME: &str = "relay_inbox_page";
        let before = before.map(|id| id.to_string()).unwrap_or_default();
        let reply: RedisValue = self
            .fcall(NAME, user, None, &[&before, &limit.to_string()])
            .await?;
        let RedisValue::Array(values) = &reply else {
            return Err(odd(NAME, &reply));
        };
        let (Some(unread), Some(more)) =
            (values.first().and_then(int), values.get(1).and_then(int))
        else {
            return Err(odd(NAME, &reply));
        };
        let mut page = InboxPage {
            items: Vec::new(),
            unread: unread.max(0) as u64,
            more: more == 1,
        };
        for item in values[2..].chunks(3) {
            let [id, payload, read] = item else {
                return Err(odd(NAME, &reply));
            };
            let (Some(id), Some(payload), Some(read)) = (text(id), text(payload), int(read)) else {
                return Err(odd(NAME, &reply));
            };
            let json = String::from_utf8(with_inbox_id(payload.as_bytes(), id)).ok();
            match json.and_then(|j| RawValue::from_string(j).ok()) {
                Some(data) => page.items.push(InboxItem {
                    data,
                    read: read == 1,
                }),
                None => log::warn!("{} entry {id} is not a JSON object; skipped", key(user)),
            }
        }
        Ok(page)
    }

    /// `relay_inbox_range`: the entries from `start` (expired ones left out), and the id
    /// after which every entry is still kept (`None`: no inbox).
    async fn range(
        &self,
        user: &str,
        start: &str,
        count: usize,
    ) -> Result<(Option<MessageId>, Vec<Entry>), HubError> {
        const NAME: &str = "relay_inbox_range";
        let reply: RedisValue = self
            .fcall(NAME, user, None, &[start, &count.to_string()])
            .await?;
        let RedisValue::Array(values) = &reply else {
            return Err(odd(NAME, &reply));
        };
        let Some(floor) = values.first().and_then(text) else {
            return Err(odd(NAME, &reply));
        };
        let mut entries = Vec::with_capacity(values.len() / 2);
        for pair in values[1..].chunks(2) {
            let [id, payload] = pair else {
                return Err(odd(NAME, &reply));
            };
            let (Some(id), RedisValue::BulkString(payload)) = (text(id), payload) else {
                return Err(odd(NAME, &reply));
            };
            entries.push((id.to_owned(), vec![("m".to_owned(), payload.clone())]));
        }
        Ok((MessageId::parse(floor), entries))
    }

    /// The notifications `user` was sent after `since`, oldest first, each with its
    /// `inboxId`; `recovered` says whether that is all of them (nothing after `since` was
    /// trimmed, and the replay's byte budget took everything). Expired ones are left out.
    pub async fn after(&self, user: &str, since: MessageId) -> Result<Recent, HubError> {
        let max = self.config.max_len;
        let (floor, entries) = self.range(user, &format!("({since}"), max).await?;
        let intact = floor.is_some_and(|floor| since >= floor);
        let mut recent = select_as(
            &key(user),
            with_inbox_id,
            self.config.max_bytes,
            entries,
            Some(since),
        );
        recent.recovered = recent.recovered.map(|uncut| uncut && intact);
        Ok(recent)
    }

    /// What a resumed session of `user` missed after `cursor`, oldest first: `recovered`
    /// when that is exactly what followed it (a [`Cursor::Seen`] id after which nothing was
    /// trimmed, nothing cut by the byte budget).
    pub async fn since(&self, user: &str, cursor: Cursor) -> Result<Recent, HubError> {
        let limit = self.config.max_len;
        let (floor, entries) = match cursor {
            Cursor::Seen(id) | Cursor::After(id) => {
                self.range(user, &format!("({id}"), limit + 1).await?
            }
        };
        let (since, intact) = match cursor {
            Cursor::After(id) => (id, true),
            Cursor::Seen(id) => (id, floor.is_some_and(|floor| id >= floor)),
        };
        let complete = intact && entries.len() <= limit;
        let mut recent = select_as(
            &key(user),
            with_inbox_id,
            self.config.max_bytes,
            entries,
            Some(since),
        );
        recent.recovered = recent.recovered.map(|uncut| uncut && complete);
        Ok(recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_slot_of_the_channel_and_ids_go_first() {
        assert_eq!(key("42"), "inbox:{user:notifications:42}");
        assert_eq!(
            with_inbox_id(br#"{"userId":"42"}"#, "5-0"),
            br#"{"inboxId":"5-0","userId":"42"}"#
        );
        let lib = library(&InboxConfig::default(), false);
        assert!(lib.contains("local MAXLEN = 100\n"));
        assert!(lib.contains("local LOW_PER_MINUTE = 10\n"));
        assert!(lib.contains("redis.call('PUBLISH', channel"));
        assert!(!lib.contains("__"), "every placeholder is filled");
        assert!(library(&InboxConfig::default(), true).contains("redis.call('SPUBLISH', channel"));
        assert!(lib.contains("register_function('relay_notify'"));
        assert!(lib.contains("local HUB_INBOX_ID = '$inboxId'\n"));
    }
}
