//! Per-user limits across all of a user's sessions on every instance: chat messages and joins
//! per second (`HUB_USER_MESSAGES_PER_SEC`, `HUB_USER_JOINS_PER_SEC` and their bursts), so
//! that fifty tabs do not get fifty times the budget. Each is a token bucket kept in Redis
//! (`hub:limit:{user:notifications:ID}:<action>`, GCRA in one script on Redis's clock), checked
//! on the command connection before the message is appended or the join is made.

use std::sync::LazyLock;

use redis::Script;

use crate::{
    common::error::HubError,
    connections::publisher::{retry_on_dead_connection, Publisher},
};

use hub_wire::protocol::USER_PREFIX;

/// A rate: `per_sec` per second, `burst` at once; `per_sec` 0 turns the limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Sustained rate.
    pub per_sec: u32,
    /// Most at once.
    pub burst: u32,
}

impl Rate {
    /// Chat messages per user per second across all its sessions, and the burst, by default.
    pub const DEFAULT_MESSAGES: Rate = Rate {
        per_sec: 10,
        burst: 20,
    };

    /// Joins per user per second across all its sessions, and the burst, by default (a page
    /// opening its rooms in several tabs joins many at once).
    pub const DEFAULT_JOINS: Rate = Rate {
        per_sec: 10,
        burst: 50,
    };
}

/// What is limited per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAction {
    /// A chat message.
    Chat,
    /// A `join-room`.
    Join,
}

impl UserAction {
    /// The metric label and key suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            UserAction::Chat => "chat",
            UserAction::Join => "join",
        }
    }
}

/// The limits of every user, in Redis. Cheap to clone.
#[derive(Clone)]
pub struct UserLimits {
    publisher: Publisher,
    chat: Rate,
    join: Rate,
}

/// The key of `user`'s bucket for `action`.
pub fn key(user: &str, action: UserAction) -> String {
    format!("hub:limit:{{{USER_PREFIX}{user}}}:{}", action.as_str())
}

impl UserLimits {
    /// Limits of `chat` messages and `join`s per user.
    pub fn new(publisher: Publisher, chat: Rate, join: Rate) -> Self {
        UserLimits {
            publisher,
            chat,
            join,
        }
    }

    /// The rate of `action`.
    pub fn rate(&self, action: UserAction) -> Rate {
        match action {
            UserAction::Chat => self.chat,
            UserAction::Join => self.join,
        }
    }

    /// Takes one `action` from `user`'s budget: `Ok(false)` when it is used up.
    pub async fn take(&self, user: &str, action: UserAction) -> Result<bool, HubError> {
        let rate = self.rate(action);
        if rate.per_sec == 0 {
            return Ok(true);
        }
        let mut invocation = GCRA.key(key(user, action));
        invocation.arg(rate.per_sec).arg(rate.burst.max(1));
        retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let invocation = &invocation;
            async move { invocation.invoke_async::<i64>(&mut conn).await }
        })
        .await
        .map(|allowed| allowed == 1)
        .map_err(|e| HubError::Redis(format!("limit {}: {e}", key(user, action))))
    }
}

/// KEYS[1] the bucket; ARGV[1] per second, ARGV[2] burst. 1 when allowed (and taken), 0 when
/// not. The key holds the theoretical arrival time in microseconds on Redis's clock.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat + interval - now > tolerance then return 0 end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 1
"#,
    )
});
