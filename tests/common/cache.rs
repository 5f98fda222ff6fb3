//! A `cache-backend` process (the cache invalidation example) for the tests.

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{eventually, free_port, http_request};

/// A `cache-backend` process.
pub struct CacheBackend {
    child: Child,
    port: u16,
}

impl CacheBackend {
    /// Starts one named `name` with `env` (its Redis) and waits for it to listen.
    pub async fn start(env: &[(&str, &str)], name: &str) -> CacheBackend {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_cache-backend"))
            .envs(env.iter().copied())
            .env("PORT", port.to_string())
            .env("INSTANCE_NAME", name)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start cache-backend");
        // It listens only once subscribed to cache:invalidate.
        eventually("cache-backend to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        CacheBackend { child, port }
    }

    pub async fn get(&self, key: &str) -> Value {
        let (status, body) =
            http_request(self.port, "GET", &format!("/items/{key}"), &[], "").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Invalidations this backend has applied.
    pub async fn invalidations(&self) -> u64 {
        let (_, body) = http_request(self.port, "GET", "/stats", &[], "").await;
        let stats: Value = serde_json::from_str(&body).unwrap();
        stats["invalidations"].as_u64().unwrap()
    }

    pub async fn put(&self, key: &str, value: &str) {
        let (status, body) =
            http_request(self.port, "PUT", &format!("/items/{key}"), &[], value).await;
        assert_eq!(status, 200, "{body}");
    }
}

impl Drop for CacheBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
