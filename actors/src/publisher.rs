//! Publishing to Redis on a connection of its own (never the pub/sub one). The
//! `ConnectionManager` connects lazily and reconnects by itself, so a hub that starts while
//! Redis is down still starts, and publishes work again once Redis is back.

use std::{sync::Arc, time::Duration};

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
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .map_err(|e| {
                self.metrics.publish_errors.inc();
                HubError::Redis(format!("publish {channel}: {e}"))
            })
    }

    /// The underlying connection, for other commands (history, job queue).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}
