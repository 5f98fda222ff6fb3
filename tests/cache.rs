//! Cache synchronization through a real redis-server: two local caches evict on one
//! invalidation, and two `cache-backend` processes stay in sync through the hub's API.

mod common;

use std::{sync::Arc, time::Duration};

use common::{cache::CacheBackend, eventually, hub, Redis};
use relay_cache::{publish_invalidation, InvalidationListener, LocalCache, SyncError};
use serde_json::json;

#[tokio::test]
async fn two_caches_evict_on_one_invalidation() {
    let redis = Redis::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let caches: Vec<Arc<LocalCache<String>>> = (0..2)
        .map(|_| Arc::new(LocalCache::new(Duration::from_secs(600))))
        .collect();
    let listeners: Vec<InvalidationListener> = caches
        .iter()
        .map(|c| InvalidationListener::spawn(client.clone(), vec![c.clone()]))
        .collect();
    for l in &listeners {
        l.wait_subscribed().await;
    }
    for cache in &caches {
        for key in ["user:1", "user:2", "user:3", "user:10", "team:1", "user*"] {
            cache.insert(key, format!("value of {key}"));
        }
    }
    let mut conn = redis.conn().await;
    let receivers = publish_invalidation(&mut conn, "user:[12]", Some("test"))
        .await
        .unwrap();
    assert_eq!(receivers, 2, "both listeners are subscribed");
    for cache in &caches {
        eventually("user:1 and user:2 evicted", || async {
            (cache.len() == 4).then_some(())
        })
        .await;
        assert_eq!(cache.get("user:1"), None);
        assert_eq!(cache.get("user:2"), None);
        assert!(cache.get("user:3").is_some());
        assert!(cache.get("user:10").is_some(), "`[12]` is one character");
        assert!(cache.get("team:1").is_some());
    }
    // An escaped `*` evicts the literal key only.
    publish_invalidation(&mut conn, "user\\*", None)
        .await
        .unwrap();
    for cache in &caches {
        eventually("the literal key evicted", || async {
            (cache.len() == 3).then_some(())
        })
        .await;
        assert!(cache.get("user:3").is_some());
    }
    // A bad pattern is refused before anything is published.
    let err = publish_invalidation(&mut conn, "user:[", None)
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::BadPattern(_)), "{err}");
}

#[tokio::test]
async fn a_listener_that_lost_redis_clears_its_cache() {
    let mut redis = Redis::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let cache = Arc::new(LocalCache::<u32>::new(Duration::from_secs(600)));
    let listener = InvalidationListener::spawn(client, vec![cache.clone()]);
    listener.wait_subscribed().await;
    cache.insert("k", 1);
    redis.kill();
    // Invalidations published meanwhile would be missed: nothing cached may outlive this.
    eventually("the cache cleared after the connection loss", || async {
        (!listener.is_subscribed() && cache.is_empty()).then_some(())
    })
    .await;
    redis.restart().await;
    listener.wait_subscribed().await;
}

#[tokio::test]
async fn two_backends_stay_in_sync() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", "k")]).await;
    let a = CacheBackend::start(&[("REDIS_URL", &redis.url())], "a").await;
    let b = CacheBackend::start(&[("REDIS_URL", &redis.url())], "b").await;
    let mut watcher = hub.user("ops").await;
    watcher
        .send(json!({"type": "subscribe", "topic": "cache"}))
        .await;
    watcher.recv_type("subscribed").await;

    a.put("color", "red").await;
    for backend in [&a, &b] {
        eventually("the write's invalidation applied", || async {
            (backend.invalidations().await == 1).then_some(())
        })
        .await;
    }
    for backend in [&a, &b] {
        let first = backend.get("color").await;
        assert_eq!(
            (first["value"].clone(), first["source"].clone()),
            (json!("red"), json!("store"))
        );
        assert_eq!(backend.get("color").await["source"], "cache");
    }
    assert_eq!(
        watcher.recv_type("cache-invalidate").await["data"]["pattern"],
        "item:color",
        "sessions on topic cache see the backend's invalidation"
    );

    // A change made behind the caches' back is not seen: they serve what they hold.
    redis::cmd("SET")
        .arg("item:color")
        .arg("green")
        .query_async::<()>(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(b.get("color").await["value"], "red");

    // One invalidation through the hub's API reaches both.
    let (status, _) = hub
        .http(
            "POST",
            "/api/cache/invalidate",
            &[
                ("authorization", "Bearer k"),
                ("content-type", "application/json"),
            ],
            &json!({"pattern": "item:*", "reason": "recolor"}).to_string(),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        watcher.recv_type("cache-invalidate").await["data"]["reason"],
        "recolor"
    );
    for backend in [&a, &b] {
        eventually("the new value served", || async {
            (backend.get("color").await["value"] == "green").then_some(())
        })
        .await;
    }

    // A write through one backend invalidates the other's copy.
    b.put("color", "blue").await;
    eventually("a serves b's write", || async {
        (a.get("color").await["value"] == "blue").then_some(())
    })
    .await;
}
