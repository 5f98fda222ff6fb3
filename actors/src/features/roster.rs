//! Room presence across instances, kept in Redis. One roster actor per instance mirrors the
//! instance's local presence ([`crate::features::presence::LocalPresence`]) into Redis, keeps the
//! instance's heartbeat alive, and removes the entries of instances whose heartbeat expired.
//!
//! # Redis layout
//! Every key starts with the hash tag `{presence}`, so all of them are in one slot: the
//! scripts below touch a room's hash and an instance's set together, which Redis Cluster
//! allows only within a slot. (Presence changes at the rate users join and leave rooms, which
//! one node carries easily; messages and history are spread over the cluster.)
//! - `{presence}:room:ROOM` (hash): `n:{userId}` = the user's name as a JSON string,
//!   `c:{userId}` = how many instances hold a session of the user in the room.
//! - `{presence}:instance:ID:pairs` (set): the `"{room} {userId}"` pairs instance `ID`
//!   counted.
//! - `{presence}:instance:ID` (string with a TTL): the instance's heartbeat.
//! - `{presence}:instances` (set): instance ids that may hold presence entries.
//!
//! # Events
//! Each change runs one Lua script that updates the counts and, when a user's first instance
//! joined or last instance left the room, publishes a `presence` frame on the fixed channel
//! [`PRESENCE_EVENTS`] in the same atomic step; every
//! instance subscribes to it and delivers the frame to its local members of the room. The
//! per-instance set makes every script idempotent (a join of a pair already counted, or a
//! leave of one already gone, changes nothing), so a change may be retried or replayed by a
//! full resync without double counting or duplicate events.
//!
//! # Dead instances
//! The heartbeat key is refreshed every third of the TTL. Every instance checks the others'
//! heartbeats just as often; for an instance whose key expired it runs the leave script on
//! each of its pairs (guarded: a step is skipped once the instance's heartbeat is back), so
//! its users disappear, with leave events, within about 1.33 TTL of its death. An instance
//! that finds its own heartbeat gone (Redis restarted, or it was presumed dead) resyncs
//! everything it holds.

use std::{collections::HashSet, sync::Arc, time::Duration};

use actix::{fut, prelude::*};
use hub_store::Conn;
use log::{info, warn};

use crate::{
    common::error::HubError,
    common::metrics::Metrics,
    connections::publisher::retry_on_dead_connection,
    features::presence::LocalPresence,
    messages::LocalMembers,
    messages::{PresenceChange, StopRoster},
};

use hub_wire::protocol::{presence_prefix, Member, RoomId, PRESENCE_EVENTS};

/// Set of instance ids that may hold presence entries.
pub const INSTANCES_KEY: &str = "{presence}:instances";
/// Prefix of an instance's heartbeat key and presence set.
pub const INSTANCE_PREFIX: &str = "{presence}:instance:";
/// Prefix of the per-room presence hashes.
pub const PRESENCE_PREFIX: &str = "{presence}:room:";

/// Wait before retrying after Redis refused an update.
const RETRY: Duration = Duration::from_secs(1);
/// Scripts per pipeline when resyncing or reaping.
const CHUNK: usize = 500;

/// KEYS: room hash, instance set. ARGV: user id, pair, name JSON, event prefix, channel,
/// room size limit for events. A room hash holds two fields per user.
const JOIN: &str = r#"
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'n:' .. ARGV[1], ARGV[3])
if redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[1], 1) == 1 then
  if redis.call('HLEN', KEYS[1]) / 2 <= tonumber(ARGV[6]) then
    redis.call('PUBLISH', ARGV[5], ARGV[4] .. ARGV[3] .. '}')
  end
  return 1
end
return 0
"#;

/// KEYS: room hash, instance set, instance heartbeat. ARGV: user id, pair, event prefix,
/// channel, `1` to skip while the instance's heartbeat exists (reaping), room size limit.
const LEAVE: &str = r#"
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[1], -1) > 0 then return 0 end
local name = redis.call('HGET', KEYS[1], 'n:' .. ARGV[1]) or '""'
local size = redis.call('HLEN', KEYS[1]) / 2
redis.call('HDEL', KEYS[1], 'c:' .. ARGV[1], 'n:' .. ARGV[1])
if size <= tonumber(ARGV[6]) then
  redis.call('PUBLISH', ARGV[4], ARGV[3] .. name .. '}')
end
return 1
"#;

/// KEYS: room hash. ARGV: most members to list. Returns the member count and up to that many
/// `n:{userId}`, name pairs (flat).
const MEMBERS: &str = r#"
local total = redis.call('HLEN', KEYS[1]) / 2
local limit = tonumber(ARGV[1])
if total <= limit then
  local all = redis.call('HGETALL', KEYS[1])
  local names = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'n:' then
      names[#names + 1] = all[i]
      names[#names + 1] = all[i + 1]
    end
  end
  return {total, names}
end
local names = {}
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'MATCH', 'n:*', 'COUNT', 200)
  cursor = page[1]
  for i = 1, #page[2], 2 do
    if #names < 2 * limit then
      names[#names + 1] = page[2][i]
      names[#names + 1] = page[2][i + 1]
    end
  end
until cursor == '0' or #names >= 2 * limit
return {total, names}
"#;

/// KEYS: heartbeat, instances set. ARGV: instance id, TTL ms. Returns whether the heartbeat
/// still existed.
const HEARTBEAT: &str = r#"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return existed
"#;

/// KEYS: heartbeat, instance set, instances set. ARGV: instance id. Forgets a dead instance
/// once its pairs are all gone.
const FORGET: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"#;

/// The heartbeat key of an instance.
pub fn heartbeat_key(instance: &str) -> String {
    format!("{INSTANCE_PREFIX}{instance}")
}

/// The set of `"{room} {userId}"` pairs an instance holds.
pub fn instance_key(instance: &str) -> String {
    format!("{INSTANCE_PREFIX}{instance}:pairs")
}

/// The presence hash of a room.
pub fn room_key(room: &str) -> String {
    format!("{PRESENCE_PREFIX}{room}")
}

fn pair(room: &str, user: &str) -> String {
    format!("{room} {user}")
}

fn eval(script: &str, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len()).arg(keys);
    cmd
}

fn join_cmd(instance: &str, room: &str, member: &Member, limit: usize) -> redis::Cmd {
    let user = &*member.user_id;
    let name = serde_json::to_string(&*member.username).expect("strings serialize");
    let mut cmd = eval(JOIN, &[room_key(room), instance_key(instance)]);
    cmd.arg(user)
        .arg(pair(room, user))
        .arg(name)
        .arg(presence_prefix(room, true, user))
        .arg(PRESENCE_EVENTS)
        .arg(limit);
    cmd
}

fn leave_cmd(instance: &str, room: &str, user: &str, reaping: bool, limit: usize) -> redis::Cmd {
    let keys = [
        room_key(room),
        instance_key(instance),
        heartbeat_key(instance),
    ];
    let mut cmd = eval(LEAVE, &keys);
    cmd.arg(user)
        .arg(pair(room, user))
        .arg(presence_prefix(room, false, user))
        .arg(PRESENCE_EVENTS)
        .arg(if reaping { "1" } else { "0" })
        .arg(limit);
    cmd
}

/// Runs commands in pipelines of [`CHUNK`]; returns their integer results.
async fn run(conn: &mut Conn, cmds: Vec<redis::Cmd>) -> Result<Vec<i64>, String> {
    let mut results = Vec::with_capacity(cmds.len());
    let mut cmds = cmds.into_iter().peekable();
    while cmds.peek().is_some() {
        let mut pipe = redis::pipe();
        for cmd in cmds.by_ref().take(CHUNK) {
            pipe.add_command(cmd);
        }
        let batch: Vec<i64> = pipe.query_async(conn).await.map_err(|e| e.to_string())?;
        results.extend(batch);
    }
    Ok(results)
}

/// A room's members as `joined` and `GET /api/rooms/{roomId}` list them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberList {
    /// Members, one entry per user, sorted by user id; at most the configured limit.
    pub members: Vec<Member>,
    /// How many users are in the room (more than `members` in a room over the limit).
    pub count: usize,
}

/// Reads room members from Redis (every instance). Cheap to clone.
#[derive(Clone)]
pub struct RoomMembers {
    conn: Conn,
    limit: usize,
}

impl RoomMembers {
    /// Lists at most `limit` members per room, through `conn`.
    pub fn new(conn: Conn, limit: usize) -> Self {
        RoomMembers { conn, limit }
    }

    /// Everyone in `room` according to Redis, plus the `local` members it does not list yet
    /// (this instance's own changes may still be on their way), at most the limit.
    pub async fn list(&self, room: &str, local: LocalMembers) -> Result<MemberList, HubError> {
        let (total, fields): (usize, Vec<(String, String)>) = retry_on_dead_connection(|| {
            let mut conn = self.conn.clone();
            let mut cmd = eval(MEMBERS, &[room_key(room)]);
            cmd.arg(self.limit);
            async move { cmd.query_async(&mut conn).await }
        })
        .await
        .map_err(|e| HubError::Redis(format!("members of {}: {e}", room_key(room))))?;
        let remote = fields
            .into_iter()
            .filter_map(|(field, name)| {
                let user = field.strip_prefix("n:")?;
                let name: String = serde_json::from_str(&name).unwrap_or_else(|_| user.to_string());
                Some(Member {
                    user_id: user.into(),
                    username: name.into(),
                })
            })
            .collect();
        let mut members = merge_members(remote, local.members);
        let count = total.max(local.count).max(members.len());
        members.truncate(self.limit);
        Ok(MemberList { members, count })
    }
}

/// `remote` plus the `local` members it does not list, sorted by user id.
fn merge_members(mut remote: Vec<Member>, local: Vec<Member>) -> Vec<Member> {
    let known: std::collections::HashSet<hub_wire::protocol::UserId> =
        remote.iter().map(|m| m.user_id.clone()).collect();
    remote.extend(local.into_iter().filter(|m| !known.contains(&m.user_id)));
    remote.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    remote
}

/// What the roster needs to know.
#[derive(Clone, Debug)]
pub struct RosterConfig {
    /// This instance's id.
    pub instance_id: Arc<str>,
    /// Heartbeat TTL: a dead instance's entries are removed within about 1.33 times this.
    pub ttl: Duration,
    /// Rooms with more users than this get no presence events (and list only this many).
    pub room_limit: usize,
}

/// The roster actor of an instance.
pub struct Roster {
    conn: Conn,
    config: RosterConfig,
    metrics: Arc<Metrics>,
    local: Arc<LocalPresence>,
    /// Changes not yet sent to Redis, in order.
    queue: Vec<PresenceChange>,
    /// A batch or resync is in flight (one at a time keeps the order).
    busy: bool,
    /// Redis may disagree with the local presence: compare everything next.
    resync: bool,
    /// A heartbeat round (with reaping) is in flight.
    beating: bool,
    stopping: bool,
    /// The last update or heartbeat failed (logged once per outage, not per retry).
    failing: bool,
    /// A heartbeat succeeded before (the first one never finds its key).
    beaten: bool,
}

impl Roster {
    /// Starts the roster and returns it with the local presence that reports to it.
    pub fn launch(
        conn: Conn,
        config: RosterConfig,
        metrics: Arc<Metrics>,
    ) -> (Addr<Roster>, Arc<LocalPresence>) {
        let mut local_out = None;
        let addr = Roster::create(|ctx| {
            let local = Arc::new(LocalPresence::new(
                ctx.address().recipient(),
                config.room_limit,
            ));
            local_out = Some(local.clone());
            Roster {
                conn,
                config,
                metrics,
                local,
                queue: Vec::new(),
                busy: false,
                // Entries left by an earlier run under the same instance id are removed.
                resync: true,
                beating: false,
                stopping: false,
                failing: false,
                beaten: false,
            }
        });
        (addr, local_out.expect("Roster::create runs its closure"))
    }

    /// Sends what is pending: a full resync if needed, else the queued changes.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.stopping {
            return;
        }
        let work = if self.resync {
            self.resync = false;
            self.queue.clear();
            Work::Resync(self.local.snapshot())
        } else if !self.queue.is_empty() {
            Work::Changes(std::mem::take(&mut self.queue))
        } else {
            return;
        };
        self.busy = true;
        let mut conn = self.conn.clone();
        let instance = self.config.instance_id.clone();
        let limit = self.config.room_limit;
        let task = async move {
            let cmds = match work {
                Work::Changes(changes) => changes
                    .iter()
                    .map(|c| {
                        if c.joined {
                            join_cmd(&instance, &c.room, &c.member, limit)
                        } else {
                            leave_cmd(&instance, &c.room, &c.member.user_id, false, limit)
                        }
                    })
                    .collect(),
                Work::Resync(local) => resync_cmds(&mut conn, &instance, local, limit).await?,
            };
            run(&mut conn, cmds).await.map(|_| ())
        };
        ctx.spawn(fut::wrap_future::<_, Self>(task).map(|res, act, ctx| {
            act.busy = false;
            match res {
                Ok(()) => {
                    act.recovered();
                    act.pump(ctx);
                }
                Err(e) => {
                    act.failed(&e);
                    act.resync = true;
                    act.queue.clear();
                    ctx.run_later(RETRY, |act, ctx| act.pump(ctx));
                }
            }
        }));
    }

    fn failed(&mut self, why: &str) {
        self.metrics.presence_sync_errors.inc();
        if !self.failing {
            self.failing = true;
            warn!(
                "presence sync with redis failed ({why}); retrying every {RETRY:?}, then resyncing"
            );
        }
    }

    fn recovered(&mut self) {
        if self.failing {
            self.failing = false;
            info!("presence sync with redis works again");
        }
    }

    /// Refreshes the heartbeat, then removes the entries of instances whose heartbeat expired.
    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.beating || self.stopping {
            return;
        }
        self.beating = true;
        let mut conn = self.conn.clone();
        let me = self.config.instance_id.clone();
        let ttl_ms = self.config.ttl.as_millis() as u64;
        let limit = self.config.room_limit;
        let task = async move {
            let existed: i64 = eval(HEARTBEAT, &[heartbeat_key(&me), INSTANCES_KEY.into()])
                .arg(&*me)
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("heartbeat: {e}"))?;
            let reaped = reap_dead(&mut conn, &me, limit).await?;
            Ok::<_, String>((existed == 1, reaped))
        };
        ctx.spawn(fut::wrap_future::<_, Self>(task).map(|res, act, ctx| {
            act.beating = false;
            match res {
                Ok((existed, reaped)) => {
                    act.recovered();
                    act.metrics.presence_reaped.inc_by(reaped);
                    if !existed && act.beaten {
                        info!("presence: own heartbeat was missing; resyncing");
                        act.resync = true;
                        act.pump(ctx);
                    }
                    act.beaten = true;
                }
                // When Redis is back the heartbeat will have expired: a resync follows then.
                Err(e) => act.failed(&e),
            }
        }));
    }
}

enum Work {
    Changes(Vec<PresenceChange>),
    Resync(Vec<(RoomId, Member)>),
}

/// The scripts that make Redis hold exactly `local` for this instance.
async fn resync_cmds(
    conn: &mut Conn,
    instance: &str,
    local: Vec<(RoomId, Member)>,
    limit: usize,
) -> Result<Vec<redis::Cmd>, String> {
    let held: Vec<String> = redis::cmd("SMEMBERS")
        .arg(instance_key(instance))
        .query_async(conn)
        .await
        .map_err(|e| format!("SMEMBERS {}: {e}", instance_key(instance)))?;
    let wanted: HashSet<String> = local
        .iter()
        .map(|(room, m)| pair(room, &m.user_id))
        .collect();
    let mut cmds: Vec<redis::Cmd> = held
        .iter()
        .filter(|p| !wanted.contains(*p))
        .filter_map(|p| p.split_once(' '))
        .map(|(room, user)| leave_cmd(instance, room, user, false, limit))
        .collect();
    // Joins of pairs already held change nothing (the scripts are idempotent).
    cmds.extend(
        local
            .iter()
            .map(|(room, m)| join_cmd(instance, room, m, limit)),
    );
    Ok(cmds)
}

/// Removes the pairs of every instance (other than `me`) whose heartbeat expired; returns
/// how many were removed.
async fn reap_dead(conn: &mut Conn, me: &str, limit: usize) -> Result<u64, String> {
    let ids: Vec<String> = redis::cmd("SMEMBERS")
        .arg(INSTANCES_KEY)
        .query_async(conn)
        .await
        .map_err(|e| format!("SMEMBERS {INSTANCES_KEY}: {e}"))?;
    let others: Vec<String> = ids.into_iter().filter(|id| id != me).collect();
    if others.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for id in &others {
        pipe.cmd("EXISTS").arg(heartbeat_key(id));
    }
    let alive: Vec<i64> = pipe
        .query_async(conn)
        .await
        .map_err(|e| format!("EXISTS heartbeats: {e}"))?;
    let mut reaped = 0;
    for (id, alive) in others.iter().zip(alive) {
        if alive == 0 {
            let n = reap(conn, id, true, limit).await?;
            if n > 0 {
                info!("presence: instance {id} is gone; removed {n} of its room entries");
            }
            reaped += n;
        }
    }
    Ok(reaped)
}

/// Runs the leave script on every pair of `instance` (`guarded`: skipped while its heartbeat
/// exists), then forgets the instance if nothing is left. Returns how many pairs were removed.
async fn reap(conn: &mut Conn, instance: &str, guarded: bool, limit: usize) -> Result<u64, String> {
    let held: Vec<String> = redis::cmd("SMEMBERS")
        .arg(instance_key(instance))
        .query_async(conn)
        .await
        .map_err(|e| format!("SMEMBERS {}: {e}", instance_key(instance)))?;
    let cmds = held
        .iter()
        .filter_map(|p| p.split_once(' '))
        .map(|(room, user)| leave_cmd(instance, room, user, guarded, limit))
        .collect();
    let results = run(conn, cmds).await?;
    let keys = [
        heartbeat_key(instance),
        instance_key(instance),
        INSTANCES_KEY.to_string(),
    ];
    let _: i64 = eval(FORGET, &keys)
        .arg(instance)
        .query_async(conn)
        .await
        .map_err(|e| format!("forget instance {instance}: {e}"))?;
    Ok(results.iter().filter(|r| **r >= 0).count() as u64)
}

impl Actor for Roster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.beat(ctx);
        self.pump(ctx);
        let every = self.config.ttl / 3;
        ctx.run_interval(every, |act, ctx| act.beat(ctx));
    }
}

impl Handler<PresenceChange> for Roster {
    type Result = ();

    fn handle(&mut self, msg: PresenceChange, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.queue.push(msg);
        self.pump(ctx);
    }
}

impl Handler<StopRoster> for Roster {
    type Result = ResponseActFuture<Self, ()>;

    /// Deletes the heartbeat and removes every pair of this instance at once (leave events
    /// included), so other instances need not wait for the TTL.
    fn handle(&mut self, _: StopRoster, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let mut conn = self.conn.clone();
        let me = self.config.instance_id.clone();
        let limit = self.config.room_limit;
        let task = async move {
            let _: i64 = redis::cmd("DEL")
                .arg(heartbeat_key(&me))
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("DEL {}: {e}", heartbeat_key(&me)))?;
            reap(&mut conn, &me, false, limit).await
        };
        Box::pin(
            fut::wrap_future::<_, Self>(task).map(|res, act, _| match res {
                Ok(n) => info!("presence: removed this instance's {n} room entries"),
                Err(e) => warn!(
                    "presence: could not remove this instance's entries ({e}); other instances \
                 will after {:?}",
                    act.config.ttl
                ),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str) -> Member {
        Member {
            user_id: id.into(),
            username: name.into(),
        }
    }

    #[test]
    fn local_members_fill_in_what_redis_does_not_list_yet() {
        let remote = vec![member("2", "Bob"), member("1", "Ann")];
        let local = vec![member("1", "Ann (tab 2)"), member("3", "Cy")];
        let merged = merge_members(remote, local);
        assert_eq!(
            merged,
            vec![member("1", "Ann"), member("2", "Bob"), member("3", "Cy")]
        );
    }

    #[test]
    fn keys_and_pairs() {
        assert_eq!(room_key("r"), "{presence}:room:r");
        assert_eq!(instance_key("a"), "{presence}:instance:a:pairs");
        assert_eq!(heartbeat_key("a"), "{presence}:instance:a");
        let slot = hub_store::slot(INSTANCES_KEY.as_bytes());
        for key in [room_key("r"), instance_key("a"), heartbeat_key("a")] {
            assert_eq!(hub_store::slot(key.as_bytes()), slot, "{key}");
        }
        assert_eq!(
            pair("room:1", "u@x").split_once(' '),
            Some(("room:1", "u@x"))
        );
    }
}
