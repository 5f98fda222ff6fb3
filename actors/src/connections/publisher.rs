//! Publishing to Redis on a connection of its own (never the pub/sub one). The
//! `ConnectionManager` connects lazily and reconnects by itself, so a hub that starts while
//! Redis is down still starts, and publishes work again once Redis is back.

use std::{future::Future, sync::Arc, time::Duration};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{error::HubError, metrics::Metrics};

/// A cheap-to-clone handle for `PUBLISH` and other commands.
#[derive(Clone)]
pub struct Publisher {
    conn: ConnectionManager,
    metrics: Arc<Metrics>,
}

impl Publisher {
    /// A publisher for `client`; does not connect until first used.
    pub fn new(client: redis::Client, metrics: Arc<Metrics>) -> Result<Self, HubError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| HubError::Redis(format!("creating the publish connection: {e}")))?;
        Ok(Publisher { conn, metrics })
    }

    /// `PUBLISH channel payload`; returns how many subscribers Redis reached.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<usize, HubError> {
        retry_on_dead_connection(|| {
            let mut conn = self.conn.clone();
            async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(&mut conn)
                    .await
            }
        })
        .await
        .map_err(|e| {
            self.metrics.publish_errors.inc();
            HubError::Redis(format!("publish {channel}: {e}"))
        })
    }

    /// Counts a failed publish made through [`Publisher::connection`] (e.g. a script).
    pub fn count_error(&self) {
        self.metrics.publish_errors.inc();
    }

    /// The underlying connection, for other commands (history, job queue).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// Runs a request, and once more when the first attempt met a dead connection that was never
/// used since Redis went away (the manager only notices on use, then reconnects): without it
/// the first command after every Redis restart would fail. Timeouts are not retried, since the
/// command may have run.
pub async fn retry_on_dead_connection<T, F, Fut>(mut attempt: F) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    match attempt().await {
        Err(e) if e.is_unrecoverable_error() && !e.is_timeout() => attempt().await,
        result => result,
    }
}
