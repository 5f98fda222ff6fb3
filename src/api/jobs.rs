//! The job queue over HTTP (`docs/jobs.md`, `docs/http-api.md`):
//! - `POST /api/jobs`: enqueue an AIJob -> `202 {"status": "queued", "id"}`.
//! - `GET /api/jobs/{id}`: the job's state, attempts, result or error and timestamps.
//! - `POST /api/dev/jobs`: the same enqueue without the API key, only with `HUB_AUTH=dev`
//!   (the demo page uses it); `404` otherwise.
//!
//! Enqueue is idempotent by id: posting a job whose id exists changes nothing and answers
//! `202 {"status": "queued", "id", "duplicate": true}`.

use std::{sync::Arc, time::Duration};

use actix_web::{web, HttpResponse};
use hub_actors::{
    jobs::{is_valid_name, stats::JobMetrics, Enqueued, JobQueue, NewJob, QueueSettings},
    metrics::Metrics,
    protocol::now_ms,
};
use redis::aio::ConnectionManager;
use serde_json::{json, Value};

use super::{ApiError, State};

/// What the job routes share: the queue and its metrics.
pub struct JobsApi {
    /// The queue (on the instance's command connection).
    pub queue: JobQueue,
    /// Queue figures for `/metrics`, plus this instance's refused requests.
    pub metrics: Arc<JobMetrics>,
}

impl JobsApi {
    /// The job API on `conn`, keeping job state for `state_ttl`; registers its metrics into the
    /// instance's registry.
    pub fn new(conn: ConnectionManager, state_ttl: Duration, metrics: &Metrics) -> Self {
        let settings = QueueSettings {
            state_ttl,
            ..QueueSettings::default()
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

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs", web::post().to(enqueue))
        .route("/jobs/{id}", web::get().to(status));
}

pub(super) fn configure_dev(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs", web::post().to(enqueue_dev));
}

type Body = Result<web::Json<Value>, actix_web::Error>;

async fn enqueue(state: State, body: Body) -> Result<HttpResponse, actix_web::Error> {
    let jobs = &state.jobs;
    let value = match body {
        Ok(v) => v.into_inner(),
        Err(e) => {
            jobs.metrics.rejected.inc();
            return Err(e);
        }
    };
    let job = NewJob::from_value(value, now_ms()).map_err(|e| {
        jobs.metrics.rejected.inc();
        ApiError::bad_request(e.to_string())
    })?;
    let reply = match jobs.queue.enqueue(&job).await {
        Ok(Enqueued::Queued) => json!({"status": "queued", "id": job.id}),
        Ok(Enqueued::Duplicate(_)) => json!({"status": "queued", "id": job.id, "duplicate": true}),
        Err(e) => {
            log::warn!("{e}");
            return Err(ApiError::unavailable(e.to_string()).into());
        }
    };
    Ok(HttpResponse::Accepted().json(reply))
}

async fn enqueue_dev(state: State, body: Body) -> Result<HttpResponse, actix_web::Error> {
    if !state.config.dev_auth {
        return Err(ApiError::not_found("dev routes need HUB_AUTH=dev").into());
    }
    enqueue(state, body).await
}

async fn status(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if !is_valid_name(&id) {
        return Err(ApiError::bad_request(
            "job ids are 1-128 characters of A-Z a-z 0-9 : _ . -",
        ));
    }
    match state.jobs.queue.status(&id).await {
        Ok(Some(s)) => Ok(HttpResponse::Ok().json(s.to_json())),
        Ok(None) => Err(ApiError::not_found(format!(
            "no job `{id}` (unknown, or its state expired)"
        ))),
        Err(e) => {
            log::warn!("{e}");
            Err(ApiError::unavailable(e.to_string()))
        }
    }
}
