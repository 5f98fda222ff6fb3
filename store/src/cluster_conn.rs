//! A command connection to a Redis Cluster that rides out what redis-rs's own connection does
//! not: a failover longer than its few retries (a command Redis did not run because its slot
//! has no reachable master is retried, with backoff, for [`ConnSettings::failover_wait`]), and
//! a connection that wedges (one try of a command gets a deadline; past it the try fails and
//! the connection is replaced by a new one).

use std::{
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use redis::{
    aio::ConnectionLike,
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    Cmd, ErrorKind, Pipeline, RedisError, RedisResult, ServerErrorKind, Value,
};

use crate::{ConnSettings, Notify};

/// First and longest pause between two tries of a command waiting out a failover.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_millis(500);

/// A cluster command connection shared by its clones ([`crate::Conn::Cluster`]).
pub struct ClusterConn {
    client: ClusterClient,
    config: ClusterConfig,
    /// The connection in use, with how many were made before it.
    current: Mutex<(u64, ClusterConnection)>,
    failover_wait: Duration,
    on_failover_wait: Option<Notify>,
    deadline: Duration,
    on_replaced: Option<Notify>,
}

impl ClusterConn {
    /// A connection of `client` (connected on first use).
    pub(crate) fn new(client: &ClusterClient, config: ClusterConfig, s: &ConnSettings) -> Self {
        let conn = client.get_pending_async_connection_with_config(config.clone());
        ClusterConn {
            client: client.clone(),
            config,
            current: Mutex::new((0, conn)),
            failover_wait: s.failover_wait,
            on_failover_wait: s.on_failover_wait.clone(),
            deadline: s
                .request_deadline
                .unwrap_or(2 * (s.connect_timeout + s.response_timeout)),
            on_replaced: s.on_replaced.clone(),
        }
    }

    pub(crate) async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        self.retry(|mut c| async move { c.req_packed_command(cmd).await })
            .await
    }

    pub(crate) async fn pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.retry(|mut c| async move { c.req_packed_commands(pipeline, offset, count).await })
            .await
    }

    pub(crate) fn db(&self) -> i64 {
        self.current.lock().expect("not poisoned").1.get_db()
    }

    /// Runs `attempt` on the current connection until it succeeds, fails for another reason
    /// than a slot without a reachable master, or the failover wait has passed.
    async fn retry<T, F, Fut>(&self, mut attempt: F) -> RedisResult<T>
    where
        F: FnMut(ClusterConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let until = Instant::now() + self.failover_wait;
        let mut pause = FIRST_PAUSE;
        loop {
            let (generation, conn) = self.current.lock().expect("not poisoned").clone();
            let result = match tokio::time::timeout(self.deadline, attempt(conn)).await {
                Ok(result) => result,
                Err(_) => {
                    self.replace(generation);
                    return Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no answer from the cluster in {} ms; its connection was replaced",
                            self.deadline.as_millis()
                        ),
                    )));
                }
            };
            match result {
                Err(e) if not_run_for_failover(&e) && Instant::now() + pause < until => {
                    if let Some(on_wait) = &self.on_failover_wait {
                        on_wait();
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
                result => return result,
            }
        }
    }

    /// Puts a new connection in place of connection `generation` (once, however many of its
    /// commands ran past their deadline).
    fn replace(&self, generation: u64) {
        let mut current = self.current.lock().expect("not poisoned");
        if current.0 == generation {
            let conn = self
                .client
                .get_pending_async_connection_with_config(self.config.clone());
            *current = (generation + 1, conn);
            log::warn!("redis cluster: a command ran past its deadline; connection replaced");
            if let Some(on_replaced) = &self.on_replaced {
                on_replaced();
            }
        }
    }
}

/// True for an error that says Redis did not run the command because its slot has no
/// reachable master: safe to retry, never a duplicate. (A `MOVED` or `ASK` reaches the caller
/// only when redis-rs could not follow it: the node it points to refuses connections.)
fn not_run_for_failover(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::ClusterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => true,
        ErrorKind::ClusterConnectionNotFound => true,
        _ => e.is_connection_refusal(),
    }
}
