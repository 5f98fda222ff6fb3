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

use std::{sync::Arc, time::Duration};

use log::info;

use crate::{
    common::error::HubError,
    connections::publisher::{request_id, retry_on_dead_connection, Publisher, REQUEST_TTL},
    features::history::{read_after, read_since, Recent, StreamRead},
    features::session_resume::Cursor,
};

use hub_wire::protocol::{self, MessageId, HUB_INBOX_ID, USER_PREFIX};

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
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            max_len: 100,
            ttl: Duration::from_secs(24 * 3600),
            max_bytes: 128 * 1024,
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
    format!(
        r#"#!lua name=relayhub
local MAXLEN = {max_len}
local TTL_MS = {ttl_ms}
local REQUEST_TTL_MS = {request_ttl_ms}
local function fail(why)
  return redis.error_reply('ERR relay_notify: ' .. why)
end
redis.register_function('{FUNCTION}', function(keys, args)
  local key, payload = keys[1], args[1]
  if key == nil or payload == nil then
    return fail('call FCALL {FUNCTION} 1 inbox:{{user:notifications:ID}} <Notification JSON>')
  end
  local ok, n = pcall(cjson.decode, payload)
  if not ok or type(n) ~= 'table' or string.sub(payload, 1, 1) ~= '{{' then
    return fail('the payload must be a JSON object (starting with {{)')
  end
  local user = n.userId
  if type(user) == 'number' and user == math.floor(user) then
    user = string.format('%d', user)
  end
  if type(user) ~= 'string' or not string.match(user, '^[%w:_.@-]+$') or #user > 128 then
    return fail('userId (a string or an integer: 1-128 of A-Z a-z 0-9 : _ . - @) is required')
  end
  if n.inboxId ~= nil then
    return fail('inboxId is set by the inbox; leave it out')
  end
  if n['$hub'] ~= nil then
    return fail("$hub is reserved for the hub's own messages; leave it out")
  end
  if n['{HUB_INBOX_ID}'] ~= nil then
    return fail("{HUB_INBOX_ID} is reserved for the inbox; leave it out")
  end
  for _, field in ipairs({{'type', 'title', 'message'}}) do
    if type(n[field]) ~= 'string' then return fail(field .. ' (string) is required') end
  end
  local channel = '{USER_PREFIX}' .. user
  if key ~= 'inbox:{{' .. channel .. '}}' then
    return fail('KEYS[1] must be inbox:{{' .. channel .. '}}')
  end
  local request = keys[2]
  if request ~= nil then
    local prefix = 'inbox:request:{{' .. channel .. '}}:'
    if string.sub(request, 1, #prefix) ~= prefix or #request == #prefix then
      return fail('KEYS[2], if given, must be ' .. prefix .. '<request id>')
    end
    local done = redis.call('GET', request)
    if done then return {{done, 0}} end
  end
  local id = redis.call('XADD', key, 'MAXLEN', '=', MAXLEN, '*', 'm', payload)
  redis.call('PEXPIRE', key, TTL_MS)
  local receivers = redis.call('{publish}', channel,
    '{{"{HUB_INBOX_ID}":"' .. id .. '",' .. string.sub(payload, 2))
  if request ~= nil then
    redis.call('SET', request, id, 'PX', REQUEST_TTL_MS)
  end
  return {{id, receivers}}
end)
"#,
        max_len = config.max_len,
        ttl_ms = config.ttl.as_millis(),
        request_ttl_ms = REQUEST_TTL.as_millis(),
        publish = if cluster { "SPUBLISH" } else { "PUBLISH" },
    )
}

/// Every user's inbox, on the instance's command connection. Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    publisher: Publisher,
    config: Arc<InboxConfig>,
    /// Other function libraries loaded with it (the job queue's): `(name, source)`.
    libraries: Arc<Vec<(String, String)>>,
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

    /// Loads (or replaces) `relay_notify` in Redis, and the libraries given with
    /// [`Inbox::with_library`].
    pub async fn load(&self) -> Result<(), HubError> {
        let mut cmd = redis::cmd("FUNCTION");
        let cluster = self.publisher.is_cluster();
        // On a cluster the connection sends this to every master (each holds its functions).
        cmd.arg("LOAD")
            .arg("REPLACE")
            .arg(library(&self.config, cluster));
        let _: String = retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let cmd = &cmd;
            async move { cmd.query_async(&mut conn).await }
        })
        .await
        .map_err(|e| HubError::Redis(format!("FUNCTION LOAD {FUNCTION}: {e}")))?;
        info!(
            "redis function {FUNCTION} loaded (inbox of {} per user)",
            self.config.max_len
        );
        for (name, source) in self.libraries.iter() {
            let mut cmd = redis::cmd("FUNCTION");
            cmd.arg("LOAD").arg("REPLACE").arg(source);
            let _: String = retry_on_dead_connection(|| {
                let mut conn = self.publisher.connection();
                let cmd = &cmd;
                async move { cmd.query_async(&mut conn).await }
            })
            .await
            .map_err(|e| HubError::Redis(format!("FUNCTION LOAD {name}: {e}")))?;
            info!("redis function library {name} loaded");
        }
        Ok(())
    }

    /// Appends a Notification (a JSON object, validated by the caller) to `user`'s inbox and
    /// publishes it, atomically, once: a retry after a dropped connection carries the same
    /// request key. Returns its inbox id and how many instances received it (0 when a retry
    /// found it done).
    pub async fn notify(&self, user: &str, payload: &[u8]) -> Result<(MessageId, i64), HubError> {
        let request = request_id();
        let reply = match self.call(user, &request, payload).await {
            Err(e) if e.to_string().contains("Function not found") => {
                self.load().await?;
                self.call(user, &request, payload).await
            }
            other => other,
        };
        let (id, receivers): (String, i64) = reply.map_err(|e| {
            self.publisher.count_error();
            HubError::Redis(format!("FCALL {FUNCTION} {}: {e}", key(user)))
        })?;
        let id = MessageId::parse(&id)
            .ok_or_else(|| HubError::Redis(format!("FCALL {FUNCTION}: odd id `{id}`")))?;
        Ok((id, receivers))
    }

    async fn call(
        &self,
        user: &str,
        request: &str,
        payload: &[u8],
    ) -> redis::RedisResult<(String, i64)> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(FUNCTION)
            .arg(2)
            .arg(key(user))
            .arg(request_key(user, request))
            .arg(payload);
        retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let cmd = &cmd;
            async move { cmd.query_async(&mut conn).await }
        })
        .await
    }

    /// The notifications `user` was sent after `since`, oldest first, each with its
    /// `inboxId`; `recovered` says whether that is all of them.
    pub async fn after(&self, user: &str, since: MessageId) -> Result<Recent, HubError> {
        let read = StreamRead {
            key: &key(user),
            with_id: with_inbox_id,
            max_len: self.config.max_len,
            max_bytes: self.config.max_bytes,
        };
        read_after(&self.publisher, read, since).await
    }

    /// What a resumed session of `user` missed after `cursor`; see `history::read_since`.
    pub async fn since(&self, user: &str, cursor: Cursor) -> Result<Recent, HubError> {
        let read = StreamRead {
            key: &key(user),
            with_id: with_inbox_id,
            max_len: self.config.max_len,
            max_bytes: self.config.max_bytes,
        };
        read_since(&self.publisher, read, cursor, self.config.max_len).await
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
        assert!(lib.contains("redis.call('PUBLISH', channel"));
        assert!(library(&InboxConfig::default(), true).contains("redis.call('SPUBLISH', channel"));
        assert!(lib.contains("register_function('relay_notify'"));
        assert!(lib.contains(r#"'{"$inboxId":"' .. id"#));
    }
}
