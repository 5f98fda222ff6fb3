//! The job queue over HTTP (`docs/jobs.md`, `docs/http-api.md`):
//! - `POST /api/jobs`: enqueue an AIJob -> `202 {"status": "queued", "id"}`.
//! - `GET /api/jobs/{id}`: the job's state, attempts, result or error and timestamps.
//! - `POST /api/dev/jobs`: the same enqueue without the API key, only with `HUB_AUTH=dev`
//!   (the demo page uses it); `404` otherwise.
//!
//! Enqueue is idempotent by id: posting a job whose id exists changes nothing and answers
//! `202 {"status": "queued", "id", "duplicate": true}`.
//!
//! A job of a known `type` (a worker advertised it within the last day, or `HUB_JOB_TYPES`
//! lists it) is queued whatever the workers do now; the reply's `workerLive` says whether a
//! worker advertised the type within the last 30 s. An unknown type is refused with
//! `400 no_worker` (the message lists the known types), unless the body says
//! `"waitForWorker": true`: then it is queued for a worker yet to come. `waitForWorker` is an
//! enqueue option, not part of the stored job.

use actix_web::{http::StatusCode, web, HttpResponse};
use hub_jobs::{is_valid_name, Cancelled, Enqueued, NewJob};
use hub_wire::protocol::now_ms;
use serde_json::{json, Value};

use super::{ApiError, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/jobs", "POST").route(web::post().to(enqueue)))
        .service(
            super::resource("/jobs/{id}", "GET, DELETE")
                .route(web::get().to(status))
                .route(web::delete().to(cancel)),
        );
}

pub(super) fn configure_dev(cfg: &mut web::ServiceConfig) {
    // A plain route: outside dev mode nothing under `/api/dev` may be seen to exist (405).
    cfg.route("/jobs", web::post().to(enqueue_dev));
}

type Body = Result<web::Json<Value>, actix_web::Error>;

/// The body's `waitForWorker` option (removed from the job): `true` queues a job even when no
/// worker handles its type yet.
fn take_wait_for_worker(value: &mut Value) -> Result<bool, ApiError> {
    let Some(job) = value.as_object_mut() else {
        return Ok(false);
    };
    match job.remove("waitForWorker") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(ApiError::bad_request(
            "`waitForWorker` must be true or false",
        )),
    }
}

fn unknown(kind: &str, known: Vec<String>) -> ApiError {
    let known = if known.is_empty() {
        "no type is known: no worker ran in the last day and HUB_JOB_TYPES is empty".to_string()
    } else {
        format!("known types: {}", known.join(", "))
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "no_worker",
        format!(
            "no worker ever handled job type `{kind}` ({known}); start a worker for it, list \
             it in HUB_JOB_TYPES, or send \"waitForWorker\": true to queue the job until one comes"
        ),
    )
}

async fn enqueue(state: State, body: Body) -> Result<HttpResponse, actix_web::Error> {
    let jobs = &state.jobs;
    let refused = |e: ApiError| {
        jobs.metrics.rejected.inc();
        e
    };
    let mut value = match body {
        Ok(v) => v.into_inner(),
        Err(e) => {
            jobs.metrics.rejected.inc();
            return Err(e);
        }
    };
    let wait_for_worker = take_wait_for_worker(&mut value).map_err(refused)?;
    let job = NewJob::from_value(value, now_ms())
        .map_err(|e| refused(ApiError::bad_request(e.to_string())))?;
    let enqueued = if wait_for_worker {
        jobs.queue.enqueue(&job).await
    } else {
        jobs.queue.enqueue_if_known(&job).await
    };
    let reply = match enqueued {
        Ok(Enqueued::Queued { worker_live }) => {
            json!({"status": "queued", "id": job.id, "workerLive": worker_live})
        }
        Ok(Enqueued::Duplicate(_)) => json!({"status": "queued", "id": job.id, "duplicate": true}),
        Ok(Enqueued::Unknown(known)) => return Err(refused(unknown(&job.kind, known)).into()),
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

/// `DELETE /api/jobs/{id}`: cancels a queued or running job (`docs/jobs.md#cancel`).
async fn cancel(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if !is_valid_name(&id) {
        return Err(ApiError::bad_request(
            "job ids are 1-128 characters of A-Z a-z 0-9 : _ . -",
        ));
    }
    match state.jobs.queue.cancel(&id, None).await {
        Ok(Cancelled::Cancelled(was)) => Ok(HttpResponse::Ok()
            .json(json!({"id": &*id, "status": "cancelled", "was": was.as_str()}))),
        Ok(Cancelled::Finished(st)) => Ok(HttpResponse::Ok()
            .json(json!({"id": &*id, "status": "finished", "state": st.as_str()}))),
        Ok(Cancelled::Unknown | Cancelled::Forbidden) => Err(ApiError::not_found(format!(
            "no job `{id}` (unknown, or its state expired)"
        ))),
        Err(e) => {
            log::warn!("{e}");
            Err(ApiError::unavailable(e.to_string()))
        }
    }
}
