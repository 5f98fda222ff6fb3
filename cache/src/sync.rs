//! Keeping local caches in sync through Redis: [`InvalidationListener`] subscribes to
//! `cache:invalidate` and evicts matching keys from the caches it serves;
//! [`publish_invalidation`] announces a change to every instance (hub sessions subscribed to
//! topic `cache` included).
//!
//! An instance cannot hear invalidations while its pub/sub connection is down, so the
//! listener clears its caches when the connection is lost and again once it is subscribed
//! anew: after an outage nothing older than the reconnect is served. It checks the connection
//! with a PING every few seconds, so a connection that died silently is noticed too.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::StreamExt;
use log::{info, warn};
use serde::Deserialize;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    glob::{GlobError, Pattern},
    store::LocalCache,
};

/// The Redis channel carrying invalidations (`docs/protocol.md#cache-invalidation`).
pub const CHANNEL: &str = "cache:invalidate";

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const PING_EVERY: Duration = Duration::from_secs(5);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Something that holds keys and can evict them by pattern.
pub trait Invalidate: Send + Sync {
    /// Evicts keys matching `pattern`; returns how many.
    fn invalidate(&self, pattern: &Pattern) -> usize;
    /// Evicts everything; returns how many.
    fn clear(&self) -> usize;
}

impl<V: Clone + Send + Sync> Invalidate for LocalCache<V> {
    fn invalidate(&self, pattern: &Pattern) -> usize {
        LocalCache::invalidate(self, pattern)
    }

    fn clear(&self) -> usize {
        LocalCache::clear(self)
    }
}

/// Why an invalidation could not be read or sent.
#[derive(Debug)]
pub enum SyncError {
    /// The payload is not `{"pattern": "...", ...}`.
    BadPayload(String),
    /// The pattern does not parse.
    BadPattern(GlobError),
    /// Redis refused or could not be reached.
    Redis(redis::RedisError),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::BadPayload(e) => write!(f, "invalid invalidation payload: {e}"),
            SyncError::BadPattern(e) => write!(f, "invalid pattern: {e}"),
            SyncError::Redis(e) => write!(f, "publish {CHANNEL}: {e}"),
        }
    }
}

impl std::error::Error for SyncError {}

/// A decoded `cache:invalidate` payload.
#[derive(Clone, Debug)]
pub struct Invalidation {
    /// What to evict.
    pub pattern: Pattern,
    /// Why, when the publisher said.
    pub reason: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    pattern: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Decodes a `cache:invalidate` payload (`{pattern, reason?, timestamp?}`; other keys ignored).
pub fn parse_invalidation(payload: &[u8]) -> Result<Invalidation, SyncError> {
    let p: Payload =
        serde_json::from_slice(payload).map_err(|e| SyncError::BadPayload(e.to_string()))?;
    Ok(Invalidation {
        pattern: Pattern::new(&p.pattern).map_err(SyncError::BadPattern)?,
        reason: p.reason,
    })
}

/// Publishes `{pattern, reason?, timestamp}` on `cache:invalidate` after checking the pattern;
/// returns how many subscribers (hub instances, listeners) Redis reached.
pub async fn publish_invalidation<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    pattern: &str,
    reason: Option<&str>,
) -> Result<usize, SyncError> {
    Pattern::new(pattern).map_err(SyncError::BadPattern)?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut payload = serde_json::json!({"pattern": pattern, "timestamp": timestamp});
    if let Some(reason) = reason {
        payload["reason"] = reason.into();
    }
    redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(payload.to_string())
        .query_async(conn)
        .await
        .map_err(SyncError::Redis)
}

/// A background task that applies every invalidation to a set of caches.
pub struct InvalidationListener {
    task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
    applied: Arc<AtomicU64>,
}

impl InvalidationListener {
    /// Starts listening on `client` for `caches` (must run inside a tokio runtime).
    pub fn spawn(client: redis::Client, caches: Vec<Arc<dyn Invalidate>>) -> Self {
        let (tx, rx) = watch::channel(false);
        let applied = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(listen(client, caches, tx, applied.clone()));
        InvalidationListener {
            task,
            subscribed: rx,
            applied,
        }
    }

    /// How many valid invalidations have been applied so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// True while subscribed (invalidations are being heard).
    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }

    /// Resolves once subscribed (at once if already).
    pub async fn wait_subscribed(&self) {
        let mut rx = self.subscribed.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Stops listening.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for InvalidationListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn clear_all(caches: &[Arc<dyn Invalidate>]) -> usize {
    caches.iter().map(|c| c.clear()).sum()
}

async fn listen(
    client: redis::Client,
    caches: Vec<Arc<dyn Invalidate>>,
    subscribed: watch::Sender<bool>,
    applied: Arc<AtomicU64>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match session(&client, &caches, &subscribed, &applied).await {
            Ok(()) => warn!("{CHANNEL}: connection closed; reconnecting"),
            Err(e) => warn!("{CHANNEL}: {e}; reconnecting in {backoff:?}"),
        }
        if subscribed.send_replace(false) {
            let n = clear_all(&caches);
            warn!("{CHANNEL}: lost the subscription; cleared {n} cached entries");
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: subscribe, then apply messages until it ends or stops answering.
async fn session(
    client: &redis::Client,
    caches: &[Arc<dyn Invalidate>],
    subscribed: &watch::Sender<bool>,
    applied: &AtomicU64,
) -> Result<(), String> {
    let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sink, mut stream) = pubsub.split();
    tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(CHANNEL))
        .await
        .map_err(|_| "subscribe timed out".to_string())?
        .map_err(|e| format!("subscribe: {e}"))?;
    // Whatever is cached may have missed invalidations while we were not subscribed.
    let n = clear_all(caches);
    subscribed.send_replace(true);
    info!("{CHANNEL}: subscribed (cleared {n} entries cached before)");
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return Ok(()) };
                if apply(caches, msg.get_payload_bytes()).await {
                    applied.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = ping.tick() => {
                tokio::time::timeout(COMMAND_TIMEOUT, sink.ping::<redis::Value>())
                    .await
                    .map_err(|_| "ping timed out".to_string())?
                    .map_err(|e| format!("ping: {e}"))?;
            }
        }
    }
}

/// Applies one payload; false if it was not a valid invalidation. A wildcard pattern is
/// matched against every key, so that runs on tokio's blocking pool, not on the runtime.
async fn apply(caches: &[Arc<dyn Invalidate>], payload: &[u8]) -> bool {
    match parse_invalidation(payload) {
        Ok(inv) if inv.pattern.as_literal().is_some() => {
            for cache in caches {
                cache.invalidate(&inv.pattern);
            }
            true
        }
        Ok(inv) => {
            let caches = caches.to_vec();
            let scan = tokio::task::spawn_blocking(move || {
                for cache in &caches {
                    cache.invalidate(&inv.pattern);
                }
            });
            if let Err(e) = scan.await {
                warn!("{CHANNEL}: invalidation failed: {e}");
            }
            true
        }
        Err(e) => {
            warn!("{CHANNEL}: ignored: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{sync::Mutex, thread::ThreadId};

    /// Records the thread each call ran on.
    #[derive(Default)]
    struct Threads(Mutex<Vec<ThreadId>>);

    impl Invalidate for Threads {
        fn invalidate(&self, _: &Pattern) -> usize {
            self.0.lock().unwrap().push(std::thread::current().id());
            0
        }
        fn clear(&self) -> usize {
            0
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn wildcard_scans_run_off_the_runtime_thread() {
        let threads = Arc::new(Threads::default());
        let caches: Vec<Arc<dyn Invalidate>> = vec![threads.clone()];
        assert!(apply(&caches, br#"{"pattern":"user:*"}"#).await);
        assert!(apply(&caches, br#"{"pattern":"user:1"}"#).await);
        assert!(!apply(&caches, br#"{"pattern":""}"#).await);
        let seen = threads.0.lock().unwrap().clone();
        let here = std::thread::current().id();
        assert_eq!(seen.len(), 2);
        assert_ne!(seen[0], here, "the wildcard scan ran on the runtime thread");
        assert_eq!(seen[1], here, "a literal key is a single remove");
    }
}
