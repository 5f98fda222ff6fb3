//! cache-backend: plays a backend service instance that keeps hot values in a local
//! `relay_cache::LocalCache` and stays in sync with its peers through `cache:invalidate`.
//!
//! The "database" is Redis itself (key `item:{key}`). Run two instances on one Redis, read a
//! key from both (the second read on each is served from its cache), change it through either
//! one (or publish an invalidation any other way: `POST /api/cache/invalidate` on the hub,
//! `redis-cli PUBLISH cache:invalidate '{"pattern":"item:*"}'`) and both serve the new value.
//!
//! ```text
//! GET  /items/{key}   {"key","value","source":"cache"|"store","instance"}  (404 if unset)
//! PUT  /items/{key}   body = new value: stores it, publishes an invalidation of item:{key}
//! GET  /stats         cache counters and whether the invalidation listener is subscribed
//! ```
//!
//! Environment: `PORT` (default 9000), `REDIS_URL` (default `redis://127.0.0.1:6379`) or
//! `REDIS_CLUSTER_URLS` (a Redis Cluster: the store goes through the cluster client, the
//! listener subscribes on the first node, since classic pub/sub reaches every node),
//! `CACHE_TTL_MS` (default 60000), `INSTANCE_NAME` (default `backend-{PORT}`).

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{web, App, HttpResponse, HttpServer};
use hub_store::{Conn, ConnSettings, Store};
use relay_cache::{publish_invalidation, InvalidationListener, LocalCache, Source};
use serde_json::json;

struct Backend {
    name: String,
    cache: Arc<LocalCache<String>>,
    listener: InvalidationListener,
    store: Conn,
}

type Shared = web::Data<Backend>;

fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-'))
}

fn bad_key() -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": {
        "code": "bad_request", "message": "keys are 1-128 characters of A-Z a-z 0-9 : _ . -"}}))
}

fn store_error(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .json(json!({"error": {"code": "unavailable", "message": e.to_string()}}))
}

async fn get_item(backend: Shared, key: web::Path<String>) -> HttpResponse {
    if !valid_key(&key) {
        return bad_key();
    }
    let cache_key = format!("item:{key}");
    let mut store = backend.store.clone();
    let loaded = backend
        .cache
        .get_or_load(&cache_key, || async {
            let value: Option<String> = redis::cmd("GET")
                .arg(&cache_key)
                .query_async(&mut store)
                .await?;
            Ok::<_, redis::RedisError>(value.unwrap_or_default())
        })
        .await;
    match loaded {
        Ok((value, _)) if value.is_empty() => HttpResponse::NotFound()
            .json(json!({"error": {"code": "not_found", "message": "no such item"}})),
        Ok((value, source)) => HttpResponse::Ok().json(json!({
            "key": key.as_str(),
            "value": value,
            "source": if source == Source::Cache { "cache" } else { "store" },
            "instance": backend.name,
        })),
        Err(e) => store_error(e),
    }
}

async fn put_item(backend: Shared, key: web::Path<String>, body: String) -> HttpResponse {
    if !valid_key(&key) {
        return bad_key();
    }
    if body.is_empty() {
        return HttpResponse::BadRequest().json(json!({"error": {
            "code": "bad_request", "message": "the body (the new value) must not be empty"}}));
    }
    let cache_key = format!("item:{key}");
    let mut store = backend.store.clone();
    if let Err(e) = redis::cmd("SET")
        .arg(&cache_key)
        .arg(&body)
        .query_async::<()>(&mut store)
        .await
    {
        return store_error(e);
    }
    let reason = format!("updated by {}", backend.name);
    match publish_invalidation(&mut store, &cache_key, Some(&reason)).await {
        Ok(receivers) => HttpResponse::Ok().json(json!({
            "key": key.as_str(), "value": body, "receivers": receivers})),
        Err(e) => store_error(e),
    }
}

async fn stats(backend: Shared) -> HttpResponse {
    let s = backend.cache.stats();
    HttpResponse::Ok().json(json!({
        "instance": backend.name,
        "subscribed": backend.listener.is_subscribed(),
        "invalidations": backend.listener.applied(),
        "entries": s.entries,
        "hits": s.hits,
        "misses": s.misses,
        "invalidated": s.invalidated,
        "expired": s.expired,
    }))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn fail(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let port: u16 = env_or("PORT", "9000")
        .parse()
        .map_err(|_| fail("PORT: not a port number".into()))?;
    let ttl_ms: u64 = env_or("CACHE_TTL_MS", "60000")
        .parse()
        .map_err(|_| fail("CACHE_TTL_MS: not a number of milliseconds".into()))?;
    let name = env_or("INSTANCE_NAME", &format!("backend-{port}"));
    let (store, listen_url) = match std::env::var("REDIS_CLUSTER_URLS") {
        Ok(list) => {
            let urls: Vec<String> = list.split(',').map(|u| u.trim().to_string()).collect();
            let store =
                Store::cluster(&urls).map_err(|e| fail(format!("REDIS_CLUSTER_URLS: {e}")))?;
            (store, urls[0].clone())
        }
        Err(_) => {
            let url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
            let store = Store::server(&url).map_err(|e| fail(format!("REDIS_URL: {e}")))?;
            (store, url)
        }
    };
    let store = store
        .connect(ConnSettings::default())
        .map_err(|e| fail(format!("connect to Redis: {e}")))?;
    let client =
        redis::Client::open(listen_url.as_str()).map_err(|e| fail(format!("{listen_url}: {e}")))?;
    let ttl = Duration::from_millis(ttl_ms);
    let cache = Arc::new(LocalCache::new(ttl));
    let listener = InvalidationListener::spawn(client, vec![cache.clone()]);
    listener.wait_subscribed().await;
    let purge = cache.clone();
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(ttl.max(Duration::from_secs(1)));
        loop {
            every.tick().await;
            purge.purge_expired();
        }
    });
    let backend = web::Data::new(Backend {
        name,
        cache,
        listener,
        store,
    });
    let tcp = TcpListener::bind(("127.0.0.1", port))?;
    println!(
        "cache-backend {} listening on {} (subscribed to cache:invalidate)",
        backend.name,
        tcp.local_addr()?
    );
    HttpServer::new(move || {
        App::new()
            .app_data(backend.clone())
            .route("/items/{key}", web::get().to(get_item))
            .route("/items/{key}", web::put().to(put_item))
            .route("/stats", web::get().to(stats))
    })
    .workers(1)
    .listen(tcp)?
    .run()
    .await
}
