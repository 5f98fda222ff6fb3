//! The local cache: a concurrent map (DashMap) of string keys to values with a time to live.
//!
//! Expired entries are never returned; they are removed when read, or in bulk by
//! [`LocalCache::purge_expired`]. [`LocalCache::invalidate`] evicts every key matching a glob
//! pattern: one removal for a pattern without wildcards, a scan otherwise.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use dashmap::DashMap;

use crate::glob::Pattern;

struct Entry<V> {
    value: V,
    expires: Instant,
}

/// Counters of one cache, for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries held now (expired ones not yet purged included).
    pub entries: usize,
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that found nothing (or an expired entry).
    pub misses: u64,
    /// Entries evicted by invalidations (patterns and clears).
    pub invalidated: u64,
    /// Entries dropped because their time to live ran out.
    pub expired: u64,
}

/// Where [`LocalCache::get_or_load`] found a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// From the cache.
    Cache,
    /// From the loader (and cached, unless an invalidation arrived meanwhile).
    Loaded,
}

/// A concurrent key-value cache with a time to live per entry.
pub struct LocalCache<V> {
    map: DashMap<String, Entry<V>>,
    ttl: Duration,
    /// Bumped by every invalidation; a load that saw it change does not cache its result.
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidated: AtomicU64,
    expired: AtomicU64,
}

impl<V: Clone> LocalCache<V> {
    /// An empty cache whose entries live `ttl` unless inserted with another.
    pub fn new(ttl: Duration) -> Self {
        LocalCache {
            map: DashMap::new(),
            ttl,
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidated: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    /// The value under `key`, unless absent or expired.
    pub fn get(&self, key: &str) -> Option<V> {
        let now = Instant::now();
        if let Some(entry) = self.map.get(key) {
            if entry.expires > now {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Some(entry.value.clone());
            }
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Expired: the read guard is dropped above, so removing cannot deadlock.
        if self.map.remove_if(key, |_, e| e.expires <= now).is_some() {
            self.expired.fetch_add(1, Ordering::Relaxed);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Stores `value` under `key` for the cache's time to live.
    pub fn insert(&self, key: impl Into<String>, value: V) {
        self.insert_with_ttl(key, value, self.ttl);
    }

    /// Stores `value` under `key` for `ttl`.
    pub fn insert_with_ttl(&self, key: impl Into<String>, value: V, ttl: Duration) {
        let expires = Instant::now() + ttl;
        self.map.insert(key.into(), Entry { value, expires });
    }

    /// The cached value, or the loader's (cached for next time). If an invalidation arrives
    /// while the loader runs, the loaded value is returned but not cached: it may predate the
    /// change the invalidation announced.
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> Result<(V, Source), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.get(key) {
            return Ok((v, Source::Cache));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let value = load().await?;
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.insert(key, value.clone());
        }
        Ok((value, Source::Loaded))
    }

    /// Removes one key; true if it was there.
    pub fn remove(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    /// Evicts every key matching `pattern`; returns how many.
    pub fn invalidate(&self, pattern: &Pattern) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let evicted = match pattern.as_literal() {
            Some(key) => usize::from(self.map.remove(key).is_some()),
            None => {
                let mut n = 0;
                self.map.retain(|key, _| {
                    let hit = pattern.matches(key);
                    n += usize::from(hit);
                    !hit
                });
                n
            }
        };
        self.invalidated
            .fetch_add(evicted as u64, Ordering::Relaxed);
        evicted
    }

    /// Evicts everything; returns how many entries there were.
    pub fn clear(&self) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let n = self.map.len();
        self.map.clear();
        self.invalidated.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Drops expired entries; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = Instant::now();
        let mut n = 0;
        self.map.retain(|_, e| {
            let keep = e.expires > now;
            n += usize::from(!keep);
            keep
        });
        self.expired.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Entries held (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.map.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidated: self.invalidated.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        Pattern::new(p).unwrap()
    }

    #[test]
    fn entries_expire() {
        let cache = LocalCache::new(Duration::from_secs(60));
        cache.insert("a", 1);
        cache.insert_with_ttl("b", 2, Duration::ZERO);
        assert_eq!(cache.get("a"), Some(1));
        assert_eq!(cache.get("b"), None, "an expired entry is never returned");
        cache.insert_with_ttl("c", 3, Duration::ZERO);
        assert_eq!(cache.purge_expired(), 1);
        assert_eq!(cache.len(), 1);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.expired), (1, 1, 2));
    }

    #[test]
    fn invalidation_evicts_matching_keys_only() {
        let cache = LocalCache::new(Duration::from_secs(60));
        for key in ["user:1", "user:2", "user:1:posts", "team:1", "user*"] {
            cache.insert(key, key.len());
        }
        assert_eq!(cache.invalidate(&pattern("user:?")), 2);
        assert_eq!(cache.get("user:1"), None);
        assert_eq!(cache.get("user:1:posts"), Some(12));
        assert_eq!(cache.invalidate(&pattern("user\\*")), 1, "literal key");
        assert_eq!(cache.get("user:1:posts"), Some(12));
        assert_eq!(cache.invalidate(&pattern("*")), 2);
        assert!(cache.is_empty());
        assert_eq!(cache.stats().invalidated, 5);
    }

    #[tokio::test]
    async fn a_load_racing_an_invalidation_is_not_cached() {
        let cache = LocalCache::new(Duration::from_secs(60));
        let (v, src) = cache
            .get_or_load("k", || async {
                cache.invalidate(&pattern("k"));
                Ok::<_, ()>(1)
            })
            .await
            .unwrap();
        assert_eq!((v, src), (1, Source::Loaded));
        assert_eq!(cache.get("k"), None);
        cache
            .get_or_load("k", || async { Ok::<_, ()>(2) })
            .await
            .unwrap();
        let got = cache
            .get_or_load("k", || async { Ok::<_, ()>(3) })
            .await
            .unwrap();
        assert_eq!(got, (2, Source::Cache));
    }
}
