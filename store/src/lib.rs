//! The Redis the hub keeps its state in: one server (`REDIS_URL`) or a Redis Cluster
//! (`REDIS_CLUSTER_URLS`). [`Store`] says which; [`Conn`] is a command connection to either,
//! connected lazily and reconnecting by itself; [`slot`] is the cluster's key slot, which
//! the pub/sub connections need to send each sharded channel to its node.

mod cluster_conn;
mod slot;
mod topology;

use std::{sync::Arc, time::Duration};

use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterConfig},
    Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, Value,
};

pub use cluster_conn::ClusterConn;
pub use slot::{hash_tag, slot, SLOTS};
pub use topology::{discover, Topology};

/// Where the hub's Redis is.
#[derive(Clone)]
pub enum Store {
    /// One Redis server.
    Server(redis::Client),
    /// A Redis Cluster, known by some of its nodes (any of them lets the hub find the rest).
    Cluster {
        client: Box<ClusterClient>,
        seeds: Vec<ConnectionInfo>,
    },
}

/// Told of an event of a cluster connection (for a metric): see
/// [`ConnSettings::on_failover_wait`] and [`ConnSettings::on_replaced`].
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Timeouts of a command connection.
#[derive(Clone)]
pub struct ConnSettings {
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for a reply; must exceed the longest blocking command sent.
    pub response_timeout: Duration,
    /// On a cluster, how long a command Redis did not run because its slot has no reachable
    /// master (`CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, a refused connection: a failover in
    /// progress) keeps being retried, with backoff, before its error is returned.
    pub failover_wait: Duration,
    /// Told of each such retry.
    pub on_failover_wait: Option<Notify>,
    /// On a cluster, the longest one try of a command may take, whatever redis-rs does inside
    /// it (`None`: twice the connect and response timeouts together). A try past it fails,
    /// and the connection is replaced by a new one: a redis-rs cluster connection was seen to
    /// wedge after a failover, its commands never answered while every node did.
    pub request_deadline: Option<Duration>,
    /// Told each time the connection is replaced that way.
    pub on_replaced: Option<Notify>,
}

/// The default of [`ConnSettings::failover_wait`] (`HUB_REDIS_FAILOVER_WAIT_MS`).
pub const FAILOVER_WAIT: Duration = Duration::from_secs(5);

impl Default for ConnSettings {
    fn default() -> Self {
        ConnSettings {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(3),
            failover_wait: FAILOVER_WAIT,
            on_failover_wait: None,
            request_deadline: None,
            on_replaced: None,
        }
    }
}

impl Store {
    /// One server at `url` (`redis://host:port/db`, credentials allowed).
    pub fn server(url: &str) -> Result<Store, String> {
        redis::Client::open(url)
            .map(Store::Server)
            .map_err(|e| format!("`{url}` is not a Redis URL ({e})"))
    }

    /// A cluster reached through `urls` (`redis://host:port` each; credentials allowed, the
    /// first URL's are used for every node).
    pub fn cluster(urls: &[String]) -> Result<Store, String> {
        if urls.is_empty() {
            return Err("no cluster node given".into());
        }
        let seeds = urls
            .iter()
            .map(|u| {
                u.as_str()
                    .into_connection_info()
                    .map_err(|e| format!("`{u}` is not a Redis URL ({e})"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = ClusterClient::builder(seeds.clone())
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(500)
            .build()
            .map_err(|e| format!("cluster nodes {urls:?}: {e}"))?;
        Ok(Store::Cluster {
            client: Box::new(client),
            seeds,
        })
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Store::Cluster { .. })
    }

    /// The nodes to ask first: the server, or the cluster's seed nodes.
    pub fn seeds(&self) -> Vec<ConnectionInfo> {
        match self {
            Store::Server(client) => vec![client.get_connection_info().clone()],
            Store::Cluster { seeds, .. } => seeds.clone(),
        }
    }

    /// A command connection; connects on first use (so a hub starting while Redis is down
    /// still starts) and reconnects by itself. Call it inside a Tokio runtime.
    pub fn connect(&self, settings: ConnSettings) -> Result<Conn, String> {
        match self {
            Store::Server(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.response_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(Conn::Server)
                    .map_err(|e| e.to_string())
            }
            Store::Cluster { client, .. } => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(settings.connect_timeout)
                    .set_response_timeout(settings.response_timeout);
                Ok(Conn::Cluster(Arc::new(ClusterConn::new(
                    client, config, &settings,
                ))))
            }
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Server(client) => write!(f, "{}", client.get_connection_info().addr()),
            Store::Cluster { seeds, .. } => {
                let nodes: Vec<String> = seeds.iter().map(|s| s.addr().to_string()).collect();
                write!(f, "cluster via {}", nodes.join(", "))
            }
        }
    }
}

/// A command connection to a server or a cluster (commands go to the node of their key).
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub enum Conn {
    Server(ConnectionManager),
    Cluster(Arc<ClusterConn>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => Box::pin(c.command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => Box::pin(c.pipeline(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.db(),
        }
    }
}
