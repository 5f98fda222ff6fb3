//! Caps on session resume records ([`crate::features::session_resume`]): each record is listed
//! under its user (`sio:recovery:user:{id}`) and its client's address
//! (`sio:recovery:addr:{address}`, IPv6 per /64), sorted sets of private ids by expiry; past
//! `HUB_RESUME_RECORDS_PER_USER` or `HUB_RESUME_RECORDS_PER_ADDRESS` the oldest records are
//! deleted (a record holds 10-40 KB for the recovery window). The user's list also lets
//! `POST /api/users/{userId}/disconnect` delete every record of the user, and
//! `DELETE /api/rooms/{room}/members/{userId}` take the room out of them.

use std::{net::IpAddr, sync::LazyLock, time::Duration};

use redis::Script;

use crate::{
    common::client_addr::limit_key,
    common::error::HubError,
    common::metrics::Metrics,
    connections::publisher::{retry_on_dead_connection, Publisher},
    features::session_resume::{key, Pid, Record},
};

/// Most records kept per user and per client address; past them the oldest go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordCaps {
    /// `HUB_RESUME_RECORDS_PER_USER`.
    pub per_user: usize,
    /// `HUB_RESUME_RECORDS_PER_ADDRESS`.
    pub per_address: usize,
}

impl Default for RecordCaps {
    fn default() -> Self {
        RecordCaps {
            per_user: 16,
            per_address: 256,
        }
    }
}

/// The key listing a user's records.
pub fn user_index(user: &str) -> String {
    format!("sio:recovery:user:{user}")
}

/// The key listing the records of a client address.
pub fn address_index(addr: IpAddr) -> String {
    format!("sio:recovery:addr:{}", limit_key(addr))
}

/// Where a record is listed.
pub struct Listed<'a> {
    /// Its user.
    pub user: &'a str,
    /// Its client's address, when known.
    pub addr: Option<IpAddr>,
    /// The recovery window.
    pub window: Duration,
}

/// Lists the record `pid` (about to be written) under its user and address, and deletes the
/// oldest records past the caps (counted in `metrics`).
pub async fn list(
    publisher: &Publisher,
    pid: Pid,
    listed: Listed<'_>,
    caps: RecordCaps,
    metrics: Option<&Metrics>,
) -> Result<(), HubError> {
    let indexes = std::iter::once((user_index(listed.user), caps.per_user, "user")).chain(
        listed
            .addr
            .map(|a| (address_index(a), caps.per_address, "address")),
    );
    for (index, cap, label) in indexes {
        let mut invocation = INDEX.key(&index);
        invocation
            .arg(pid.to_string())
            .arg(listed.window.as_millis() as u64)
            .arg(cap);
        let evicted: Vec<String> = retry_on_dead_connection(|| {
            let mut conn = publisher.connection();
            let invocation = &invocation;
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
        .map_err(|e| HubError::Redis(format!("index {index}: {e}")))?;
        if let Some(metrics) = metrics.filter(|_| !evicted.is_empty()) {
            metrics.resume_evicted(label, evicted.len());
        }
        delete(publisher, evicted.iter().filter_map(|p| Pid::parse(p))).await?;
    }
    Ok(())
}

/// Deletes every record of `user`; returns how many there were.
pub async fn forget_user(publisher: &Publisher, user: &str) -> Result<usize, HubError> {
    let index = user_index(user);
    let deleted = delete(publisher, listed(publisher, user).await?.into_iter()).await?;
    let mut del = redis::cmd("DEL");
    del.arg(&index);
    query::<()>(publisher, &del)
        .await
        .map_err(|e| HubError::Redis(format!("DEL {index}: {e}")))?;
    Ok(deleted)
}

/// Takes `room` out of every record of `user` (`DELETE /api/rooms/{room}/members/{userId}`:
/// a session resumed later does not come back into it); returns how many records had it.
/// A record is rewritten only while it exists (`SET XX KEEPTTL`): one taken meanwhile stays
/// taken.
pub async fn forget_room(publisher: &Publisher, user: &str, room: &str) -> Result<usize, HubError> {
    let mut changed = 0;
    for pid in listed(publisher, user).await? {
        let mut get = redis::cmd("GET");
        get.arg(key(pid));
        let raw: Option<Vec<u8>> = query(publisher, &get)
            .await
            .map_err(|e| HubError::Redis(format!("GET {}: {e}", key(pid))))?;
        let Some(mut record) = raw.and_then(|r| serde_json::from_slice::<Record>(&r).ok()) else {
            continue;
        };
        if !record.rooms.iter().any(|(r, _)| &**r == room) {
            continue;
        }
        record.rooms.retain(|(r, _)| &**r != room);
        let mut set = redis::cmd("SET");
        set.arg(key(pid))
            .arg(serde_json::to_vec(&record).expect("a record serializes"))
            .arg("XX")
            .arg("KEEPTTL");
        query::<Option<String>>(publisher, &set)
            .await
            .map_err(|e| HubError::Redis(format!("SET {}: {e}", key(pid))))?;
        changed += 1;
    }
    Ok(changed)
}

/// The private ids listed under `user`.
async fn listed(publisher: &Publisher, user: &str) -> Result<Vec<Pid>, HubError> {
    let index = user_index(user);
    let mut range = redis::cmd("ZRANGE");
    range.arg(&index).arg(0).arg(-1);
    let pids: Vec<String> = query(publisher, &range)
        .await
        .map_err(|e| HubError::Redis(format!("ZRANGE {index}: {e}")))?;
    Ok(pids.iter().filter_map(|p| Pid::parse(p)).collect())
}

/// Deletes records (one key per command: on a cluster they live in different slots); returns
/// how many existed.
async fn delete(publisher: &Publisher, pids: impl Iterator<Item = Pid>) -> Result<usize, HubError> {
    let mut deleted = 0;
    for pid in pids {
        let mut del = redis::cmd("DEL");
        del.arg(key(pid));
        deleted += query::<usize>(publisher, &del)
            .await
            .map_err(|e| HubError::Redis(format!("DEL {}: {e}", key(pid))))?;
    }
    Ok(deleted)
}

async fn query<T: redis::FromRedisValue>(
    publisher: &Publisher,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    retry_on_dead_connection(|| {
        let mut conn = publisher.connection();
        async move { cmd.query_async(&mut conn).await }
    })
    .await
}

/// KEYS[1] a user's or address's index; ARGV[1] a private id, ARGV[2] the window (ms), ARGV[3]
/// the cap. Lists the id until the window ends, forgets the ids whose window ended, and returns
/// the oldest ids past the cap (removed from the index; the caller deletes their records).
static INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
local evicted = {}
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], over)
  for i = 1, #popped, 2 do evicted[#evicted + 1] = popped[i] end
end
return evicted
"#,
    )
});
