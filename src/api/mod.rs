//! The HTTP API under `/api` (PROTOCOL section 3): a bearer-key guard, one JSON error shape,
//! a body size limit, and one submodule per feature.
//!
//! Every route validates its whole input before publishing anything: bad input gets
//! `400 {"error": {"code", "message"}}` and nothing reaches Redis.

mod analytics;
mod cache;
mod chat;
pub mod jobs;
mod notify;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    error::JsonPayloadError,
    http::StatusCode,
    middleware::{from_fn, Next},
    web, HttpRequest, HttpResponse, ResponseError,
};
use serde_json::json;

use crate::routes::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An API error: status, machine-readable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// `400 bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// `503 unavailable` (Redis could not take the request).
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

/// Result of an API handler.
pub type ApiResult = Result<HttpResponse, ApiError>;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Requires `Authorization: Bearer <HUB_API_KEY>`; without a key every request is refused
/// unless the API was opened explicitly (dev mode or `HUB_API_OPEN=1`).
async fn require_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let (expected, open) = req
        .app_data::<web::Data<AppState>>()
        .map_or((None, false), |s| {
            (s.config.api_key.clone(), s.config.api_open)
        });
    if expected.is_none() && !open {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the HTTP API is closed: the hub has no HUB_API_KEY (set one, or HUB_API_OPEN=1 to open it)",
        )
        .into());
    }
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong API key (Authorization: Bearer <HUB_API_KEY>)",
            )
            .into());
        }
    }
    next.call(req).await
}

fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            format!("body larger than {MAX_BODY_BYTES} bytes")
        }
        JsonPayloadError::ContentType => "content-type must be application/json".into(),
        other => format!("invalid JSON body: {other}"),
    };
    ApiError::bad_request(message).into()
}

/// Registers `/api/*`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY_BYTES)
            .error_handler(json_error),
    )
    // `/api/dev/*` is registered first so it never reaches the key guard (PROTOCOL section 3);
    // each of its routes answers 404 unless HUB_AUTH=dev.
    .service(web::scope("/api/dev").configure(jobs::configure_dev))
    .service(
        web::scope("/api")
            .wrap(from_fn(require_key))
            .configure(notify::configure)
            .configure(jobs::configure)
            .configure(chat::configure)
            .configure(cache::configure)
            .configure(analytics::configure),
    );
}

/// The instance's shared state, for handlers.
pub type State = web::Data<AppState>;

/// Publishes a payload, mapping failure to `503 unavailable`.
pub async fn publish(state: &AppState, channel: &str, payload: &[u8]) -> Result<(), ApiError> {
    state
        .publisher
        .publish(channel, payload)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::unavailable(e.to_string()))
}
