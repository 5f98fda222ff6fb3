//! relay-cache: a local cache that backend instances keep in sync through Redis.
//!
//! Each instance holds hot values in a [`LocalCache`] (a concurrent map with a time to live).
//! When one instance changes data it calls [`publish_invalidation`] with a glob pattern; every
//! instance running an [`InvalidationListener`] evicts the matching keys, and hub sessions
//! subscribed to topic `cache` get a `cache-invalidate` frame.
//!
//! # Layout
//! - [`glob`] (from `hub-wire`, shared with the hub): the pattern syntax (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `\` escapes) and matcher.
//! - [`store`]: the cache itself.
//! - [`sync`]: the `cache:invalidate` listener and publisher.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use relay_cache::{InvalidationListener, LocalCache, publish_invalidation};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let cache: Arc<LocalCache<String>> = Arc::new(LocalCache::new(Duration::from_secs(60)));
//! let listener = InvalidationListener::spawn(client.clone(), vec![cache.clone()]);
//! listener.wait_subscribed().await;
//! cache.insert("user:42", "Alice".to_string());
//! let mut conn = client.get_multiplexed_async_connection().await?;
//! publish_invalidation(&mut conn, "user:*", Some("profile update")).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub use hub_wire::glob;
pub mod store;
pub mod sync;

pub use glob::{GlobError, Pattern};
pub use store::{CacheStats, LocalCache, Source};
pub use sync::{publish_invalidation, Invalidate, InvalidationListener, SyncError};
