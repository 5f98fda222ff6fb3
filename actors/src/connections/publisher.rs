//! Publishing to Redis on a connection of its own (never the pub/sub one). The connection
//! ([`hub_store::Conn`], to a server or a cluster) connects lazily and reconnects by itself, so
//! a hub that starts while Redis is down still starts, and publishes work again once Redis is
//! back.

use std::{future::Future, sync::Arc, time::Duration};

use hub_store::{Conn, ConnSettings, Store};

use crate::{common::error::HubError, common::metrics::Metrics};

use hub_wire::protocol::{ChannelKind, HubMessage, USER_PREFIX};

/// A cheap-to-clone handle for `PUBLISH` and other commands.
#[derive(Clone)]
pub struct Publisher {
    conn: Conn,
    metrics: Arc<Metrics>,
    /// On a cluster, per-user and per-room channels are published with `SPUBLISH`.
    cluster: bool,
}

impl Publisher {
    /// A publisher for `target`; does not connect until first used. On a cluster its
    /// commands wait up to `failover_wait` for a slot without a reachable master to be
    /// served again (a failover), counted in `hub_redis_failover_waits_total`, and a try
    /// past its deadline replaces the connection (`hub_redis_connections_replaced_total`).
    pub fn new(
        target: &Store,
        metrics: Arc<Metrics>,
        failover_wait: Duration,
    ) -> Result<Self, HubError> {
        let waits = metrics.redis_failover_waits.clone();
        let replaced = metrics.redis_connections_replaced.clone();
        let settings = ConnSettings {
            failover_wait,
            on_failover_wait: Some(Arc::new(move || waits.inc())),
            on_replaced: Some(Arc::new(move || replaced.inc())),
            ..ConnSettings::default()
        };
        let conn = target
            .connect(settings)
            .map_err(|e| HubError::Redis(format!("creating the publish connection: {e}")))?;
        Ok(Publisher {
            conn,
            metrics,
            cluster: target.is_cluster(),
        })
    }

    /// `PUBLISH channel payload` (`SPUBLISH` for a per-user or per-room channel on a
    /// cluster); returns how many subscribers Redis reached.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<usize, HubError> {
        retry_on_dead_connection(|| {
            let mut conn = self.conn.clone();
            async move {
                redis::cmd(self.publish_command(channel))
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

    /// Sends a hub message to every session of `user` on every instance: a plain publish on
    /// the user's channel (`SPUBLISH` on a cluster), never through the inbox (it is no
    /// notification, and a reconnecting client must not get it replayed). Returns how many
    /// instances hold the user.
    pub async fn publish_hub(&self, user: &str, message: &HubMessage) -> Result<usize, HubError> {
        let channel = format!("{USER_PREFIX}{user}");
        self.publish(&channel, &message.payload(user)).await
    }

    /// Counts a failed publish made through [`Publisher::connection`] (e.g. a script).
    pub fn count_error(&self) {
        self.metrics.publish_errors.inc();
    }

    /// The command that publishes to `channel`: `SPUBLISH` for a per-user or per-room
    /// channel on a cluster, `PUBLISH` otherwise.
    pub fn publish_command(&self, channel: &str) -> &'static str {
        if self.cluster && ChannelKind::of(channel).is_sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Whether the hub runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The underlying connection, for other commands (history, job queue).
    pub fn connection(&self) -> Conn {
        self.conn.clone()
    }
}

/// How long a write that carries a request id ([`request_id`]) is remembered in Redis: a
/// retry within it gets the first run's answer instead of running again.
pub const REQUEST_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// A fresh id for one write (random, 64 bits in hex), for the key that makes its retry a
/// no-op (the chat append, `relay_notify`).
pub fn request_id() -> String {
    format!("{:016x}", crate::common::random::random_bits() as u64)
}

/// Runs a request, and once more when the first attempt met a dead connection that was never
/// used since Redis went away (the manager only notices on use, then reconnects): without it
/// the first command after every Redis restart would fail. A connection can also drop after
/// Redis ran the command, so only reads and writes that carry a request id ([`request_id`])
/// may be retried here. Timeouts are not retried either.
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
