//! The application's room hook (`HUB_ROOM_AUTH_URL`): the hub POSTs
//! `{"userId","room","action"}` (`action`: `join` or `publish`) with
//! `Authorization: Bearer <HUB_ROOM_AUTH_KEY>` and expects `200 {"allow": bool, "ttlSecs"?: N}`.
//!
//! Answers are cached per instance ([`AnswerCache`]: bounded, each for its `ttlSecs`, default
//! [`DEFAULT_TTL`]). A timeout, any other status, a redirect or a body that is not that object
//! is an error, and the caller refuses (fail closed). Requests run off the async runtime (at
//! most [`IN_FLIGHT`] at once per instance, each within the timeout, waiting included), so a
//! slow backend delays only the joins and posts that wait for it.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use log::warn;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{common::metrics::Metrics, messages::InboundSink};

use hub_wire::protocol::{user_id_json, RoomId, UserId};

/// How long an answer without `ttlSecs` is cached.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The longest an answer is cached, whatever its `ttlSecs`.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Most answers an instance caches.
pub const CACHE_ENTRIES: usize = 65_536;
/// Most requests to the hook in flight at once per instance.
pub const IN_FLIGHT: usize = 64;
/// Largest answer body read.
const MAX_BODY: u64 = 4096;

/// What the hub asks the hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// May the user join the room?
    Join,
    /// May the user post in the room?
    Publish,
}

impl Action {
    /// The `action` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Join => "join",
            Action::Publish => "publish",
        }
    }
}

/// Why the hook gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookError {
    /// No answer within the timeout.
    Timeout,
    /// An answer that is not `200 {"allow": bool, ...}`, or no connection.
    Bad(String),
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::Timeout => f.write_str("no answer in time"),
            HookError::Bad(why) => f.write_str(why),
        }
    }
}

/// Where the hook is and how long it may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookConfig {
    /// `HUB_ROOM_AUTH_URL`.
    pub url: String,
    /// `HUB_ROOM_AUTH_KEY`, sent as a bearer token.
    pub key: String,
    /// `HUB_ROOM_AUTH_TIMEOUT_MS`.
    pub timeout: Duration,
}

type Key = (UserId, RoomId, Action);

/// Cached answers, bounded: 16 shards of two generations each; a full young
/// generation becomes the old one and the old one is dropped, so the cache never scans and
/// never holds more than [`CACHE_ENTRIES`] answers. An answer read from the old generation
/// moves to the young one.
pub struct AnswerCache {
    shards: Vec<Mutex<Generations>>,
    per_generation: usize,
}

/// Shards of the cache (spread by a hash of the key).
const SHARDS: usize = 16;

#[derive(Default)]
struct Generations {
    young: HashMap<Key, (bool, Instant)>,
    old: HashMap<Key, (bool, Instant)>,
}

impl AnswerCache {
    /// A cache holding at most `entries` answers.
    pub fn new(entries: usize) -> Self {
        AnswerCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_generation: (entries / SHARDS / 2).max(1),
        }
    }

    fn shard(&self, user: &str, room: &str) -> std::sync::MutexGuard<'_, Generations> {
        let mut hasher = std::hash::DefaultHasher::new();
        (user, room).hash(&mut hasher);
        self.shards[hasher.finish() as usize % SHARDS]
            .lock()
            .expect("cache lock poisoned")
    }

    /// The answer cached for the key, if it has not expired.
    pub fn get(&self, key: &Key) -> Option<bool> {
        let now = Instant::now();
        let mut gens = self.shard(&key.0, &key.1);
        if let Some(&(allow, until)) = gens.young.get(key) {
            return (until > now).then_some(allow);
        }
        let (allow, until) = gens.old.remove(key)?;
        if until <= now {
            return None;
        }
        self.insert_in(&mut gens, key.clone(), allow, until);
        Some(allow)
    }

    /// Caches an answer until `until`.
    pub fn insert(&self, key: Key, allow: bool, until: Instant) {
        let mut gens = self.shard(&key.0, &key.1);
        self.insert_in(&mut gens, key, allow, until);
    }

    fn insert_in(&self, gens: &mut Generations, key: Key, allow: bool, until: Instant) {
        if gens.young.len() >= self.per_generation && !gens.young.contains_key(&key) {
            gens.old = std::mem::take(&mut gens.young);
        }
        gens.young.insert(key, (allow, until));
    }

    /// Forgets every answer about `user` in `room`.
    pub fn forget(&self, user: &UserId, room: &RoomId) {
        let mut gens = self.shard(user, room);
        for action in [Action::Join, Action::Publish] {
            let key = (user.clone(), room.clone(), action);
            gens.young.remove(&key);
            gens.old.remove(&key);
        }
    }
}

/// The hook, its cache and its metrics. Cheap to clone.
#[derive(Clone)]
pub struct RoomHook {
    config: Arc<HookConfig>,
    agent: ureq::Agent,
    cache: Arc<AnswerCache>,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl RoomHook {
    /// The hook at `config.url`.
    pub fn new(config: HookConfig, metrics: Arc<Metrics>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .new_agent();
        RoomHook {
            config: Arc::new(config),
            agent,
            cache: Arc::new(AnswerCache::new(CACHE_ENTRIES)),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            metrics,
        }
    }

    /// Forgets the cached answers about `user` in `room` (the user was removed from it).
    pub fn forget(&self, user: &UserId, room: &RoomId) {
        self.cache.forget(user, room);
    }

    /// Whether `user` may do `action` in `room`: the cached answer, or the hook's.
    pub async fn allows(
        &self,
        user: &UserId,
        room: &RoomId,
        action: Action,
    ) -> Result<bool, HookError> {
        let key = (user.clone(), room.clone(), action);
        if let Some(allow) = self.cache.get(&key) {
            self.metrics.room_hook("cached");
            return Ok(allow);
        }
        let answer = tokio::time::timeout(self.config.timeout, self.ask(user, room, action))
            .await
            .unwrap_or(Err(HookError::Timeout));
        match &answer {
            Ok((allow, ttl)) => {
                self.metrics
                    .room_hook(if *allow { "allow" } else { "deny" });
                if !ttl.is_zero() {
                    self.cache.insert(key, *allow, Instant::now() + *ttl);
                }
            }
            Err(e) => {
                self.metrics.room_hook(match e {
                    HookError::Timeout => "timeout",
                    HookError::Bad(_) => "error",
                });
                warn!(
                    "room hook {}: {} {} in {room}: {e}",
                    self.config.url,
                    action.as_str(),
                    user
                );
            }
        }
        answer.map(|(allow, _)| allow)
    }

    /// One request, on a blocking thread once a slot is free.
    async fn ask(
        &self,
        user: &UserId,
        room: &RoomId,
        action: Action,
    ) -> Result<(bool, Duration), HookError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| HookError::Bad("shutting down".into()))?;
        let body = json!({
            "userId": user_id_json(user),
            "room": &**room,
            "action": action.as_str(),
        })
        .to_string();
        let (agent, config) = (self.agent.clone(), self.config.clone());
        tokio::task::spawn_blocking(move || call(&agent, &config, &body))
            .await
            .map_err(|e| HookError::Bad(format!("request task: {e}")))?
    }
}

/// The subscriber tells the hook of removals announced on `hub:room-access`, on every instance.
impl InboundSink for RoomHook {
    fn room_removed(&self, user: &UserId, room: &RoomId) {
        self.forget(user, room);
    }
}

fn call(
    agent: &ureq::Agent,
    config: &HookConfig,
    body: &str,
) -> Result<(bool, Duration), HookError> {
    let mut response = agent
        .post(&config.url)
        .header("authorization", &format!("Bearer {}", config.key))
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => HookError::Timeout,
            other => HookError::Bad(other.to_string()),
        })?;
    let status = response.status().as_u16();
    let raw = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| HookError::Bad(format!("reading the answer: {e}")))?;
    if status != 200 {
        return Err(HookError::Bad(format!("answered {status}, not 200")));
    }
    parse_answer(&raw).map_err(HookError::Bad)
}

/// `{"allow": bool, "ttlSecs"?: integer >= 0}`, with the time to cache it.
pub fn parse_answer(raw: &[u8]) -> Result<(bool, Duration), String> {
    let garbage = || "the answer is not {\"allow\": true|false, \"ttlSecs\"?: N}".to_string();
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(raw) else {
        return Err(garbage());
    };
    let allow = answer
        .get("allow")
        .and_then(Value::as_bool)
        .ok_or_else(garbage)?;
    let ttl = match answer.get("ttlSecs") {
        None | Some(Value::Null) => DEFAULT_TTL,
        Some(v) => Duration::from_secs(v.as_u64().ok_or_else(garbage)?).min(MAX_TTL),
    };
    Ok((allow, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        assert_eq!(parse_answer(br#"{"allow":true}"#), Ok((true, DEFAULT_TTL)));
        assert_eq!(
            parse_answer(br#"{"allow":false,"ttlSecs":5}"#),
            Ok((false, Duration::from_secs(5)))
        );
        assert_eq!(
            parse_answer(br#"{"allow":true,"ttlSecs":99999999}"#),
            Ok((true, MAX_TTL))
        );
        for bad in [
            &br#"{"allow":"yes"}"#[..],
            br#"{"ttlSecs":5}"#,
            br#"[true]"#,
            b"<html>",
            br#"{"allow":true,"ttlSecs":-1}"#,
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_cache_is_bounded_expires_and_forgets() {
        let cache = AnswerCache::new(SHARDS * 2 * 4);
        let later = Instant::now() + Duration::from_secs(60);
        let key = |u: &str, r: &str| (UserId::from(u), RoomId::from(r), Action::Join);
        cache.insert(key("1", "r"), true, later);
        assert_eq!(cache.get(&key("1", "r")), Some(true));
        cache.insert(key("2", "r"), false, Instant::now());
        assert_eq!(cache.get(&key("2", "r")), None, "expired");
        for i in 0..10_000 {
            cache.insert(key(&i.to_string(), "x"), true, later);
        }
        let held: usize = cache
            .shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap();
                g.young.len() + g.old.len()
            })
            .sum();
        assert!(held <= SHARDS * 2 * 4, "bounded: {held}");
        cache.insert(key("1", "r"), true, later);
        cache.forget(&"1".into(), &"r".into());
        assert_eq!(cache.get(&key("1", "r")), None);
    }
}
