//! What the HTTP handlers share (the routes of `routes.rs` and the API of `api/`).

use std::{sync::Arc, time::Duration, time::Instant};

use actix::Addr;
use hub_actors::{
    common::metrics::Metrics, connections::publisher::Publisher, features::analytics::Analytics,
    features::canary::CanaryState, features::history::History, features::inbox::Inbox,
    features::presence::LocalPresence, features::revocation::Revocations,
    features::roster::RoomMembers, features::session_resume::ResumeStore,
};
use hub_jobs::{stats::JobMetrics, JobQueue, QueueSettings};
use hub_store::Conn;

use crate::config::Config;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Instance metrics.
    pub metrics: Arc<Metrics>,
    /// This instance's id.
    pub instance_id: Arc<str>,
    /// When the instance started.
    pub started: Instant,
    /// Instance configuration.
    pub config: Arc<Config>,
    /// Publishes to Redis on the instance's command connection.
    pub publisher: Publisher,
    /// The job queue API and its metrics.
    pub jobs: Arc<JobsApi>,
    /// Chat history of the rooms.
    pub history: History,
    /// Notification inboxes.
    pub inbox: Inbox,
    /// Room membership of this instance (not yet in Redis for a moment after a join).
    pub presence: Arc<LocalPresence>,
    /// Room members across instances.
    pub members: RoomMembers,
    /// The analytics aggregator (`GET /api/analytics`).
    pub analytics: Addr<Analytics>,
    /// Whether the pub/sub subscription still delivers (`/health`).
    pub canary: Arc<CanaryState>,
    /// `hub_api_errors_total{status}`.
    pub api_errors: prometheus::IntCounterVec,
    /// Token revocations (`POST /api/users/{userId}/disconnect`).
    pub revocations: Revocations,
    /// Session resume records (`None`: resume is off).
    pub resume: Option<ResumeStore>,
}

/// What the job routes share: the queue and its metrics.
pub struct JobsApi {
    /// The queue (on the instance's command connection).
    pub queue: JobQueue,
    /// Queue figures for `/metrics`, plus this instance's refused requests.
    pub metrics: Arc<JobMetrics>,
}

impl JobsApi {
    /// The job API on `conn` (to a cluster when `cluster`), keeping job state for
    /// `state_ttl` and taking `known_types` whether advertised or not; registers its metrics
    /// into the instance's registry.
    pub fn new(
        conn: Conn,
        cluster: bool,
        state_ttl: Duration,
        known_types: Vec<String>,
        metrics: &Metrics,
    ) -> Self {
        let settings = QueueSettings {
            state_ttl,
            known_types,
            ..QueueSettings::for_target(cluster)
        };
        JobsApi {
            queue: JobQueue::new(conn, settings),
            metrics: JobMetrics::register(&metrics.registry),
        }
    }

    /// Reads the queue's figures from Redis for a scrape (bounded wait).
    pub async fn refresh_metrics(&self) {
        self.metrics.refresh(&self.queue).await;
    }
}
