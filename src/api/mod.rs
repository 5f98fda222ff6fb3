//! The HTTP API under `/api` (`docs/http-api.md`): a bearer-key guard, one JSON error shape,
//! a body size limit, and one submodule per feature.
//!
//! Every route validates its whole input before publishing anything: bad input gets
//! `400 {"error": {"code", "message"}}` and nothing reaches Redis. Every error has that shape:
//! an unknown `/api/*` route answers `404 not_found`, a known route asked with another method
//! `405 method_not_allowed` with an `Allow` header, a body over [`MAX_BODY_BYTES`]
//! `413 payload_too_large`. Each error answer is counted in `hub_api_errors_total{status}`.

mod analytics;
mod cache;
mod chat;
mod inbox;
pub mod jobs;
mod notify;
mod users;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    error::JsonPayloadError,
    http::{header, StatusCode},
    middleware::{from_fn, Next},
    web, HttpRequest, HttpResponse, Resource, ResponseError,
};
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::json;

use crate::state::AppState;

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

    /// `405 method_not_allowed`; `allow` lists the methods the route answers.
    pub fn method_not_allowed(method: &str, allow: &'static str) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here; use {allow}"),
        )
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

/// A validation message in the caller's terms: without the `invalid payload:` prefix and the
/// `at line 1 column 45` position (which points into a copy the hub re-serialised, not into
/// the body as sent).
pub fn plain_message(message: &str) -> String {
    let message = message.strip_prefix("invalid payload: ").unwrap_or(message);
    match message.rsplit_once(" at line ") {
        Some((what, at))
            if at
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            what.to_string()
        }
        _ => message.to_string(),
    }
}

fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .into();
        }
        JsonPayloadError::ContentType => "content-type must be application/json".into(),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            let what = plain_message(&e.to_string());
            if what.contains("expected a map") {
                "the body must be a JSON object".into()
            } else {
                what
            }
        }
        JsonPayloadError::Deserialize(e) => format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
        _ => "the body could not be read".into(),
    };
    ApiError::bad_request(message).into()
}

/// A route of `/api`: `path` answered by the routes added to the returned resource; any other
/// method gets `405 method_not_allowed` with `Allow: {allow}` (the methods of those routes).
pub fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        let mut response =
            ApiError::method_not_allowed(req.method().as_str(), allow).error_response();
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        response
    }))
}

async fn no_such_route(req: HttpRequest) -> ApiResult {
    Err(ApiError::not_found(format!(
        "no API route {} {}",
        req.method(),
        req.path()
    )))
}

/// Registers `hub_api_errors_total{status}` (error answers of `/api/*`).
pub fn register_error_counter(registry: &Registry) -> IntCounterVec {
    let counter = IntCounterVec::new(
        Opts::new(
            "hub_api_errors_total",
            "Error answers of the HTTP API (/api/*), by status code",
        ),
        &["status"],
    )
    .expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}

/// Counts the error answers of `/api/*` in `hub_api_errors_total{status}`.
async fn count_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let count = |status: StatusCode| {
        if let (true, Some(state)) = (status.as_u16() >= 400, &state) {
            state.api_errors.with_label_values(&[status.as_str()]).inc();
        }
    };
    match next.call(req).await {
        Ok(response) => {
            count(response.status());
            Ok(response)
        }
        Err(e) => {
            count(e.as_response_error().status_code());
            Err(e)
        }
    }
}

/// Registers `/api/*`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY_BYTES)
            .error_handler(json_error),
    )
    // `/api/dev/*` is registered first so it never reaches the key guard (`docs/http-api.md`);
    // each of its routes answers 404 unless HUB_AUTH=dev.
    .service(
        web::scope("/api/dev")
            .wrap(from_fn(count_errors))
            .configure(jobs::configure_dev)
            .default_service(web::to(no_such_route)),
    )
    .service(
        web::scope("/api")
            .wrap(from_fn(require_key))
            .wrap(from_fn(count_errors))
            .configure(notify::configure)
            .configure(jobs::configure)
            .configure(chat::configure)
            .configure(cache::configure)
            .configure(analytics::configure)
            .configure(users::configure)
            .configure(inbox::configure)
            .default_service(web::to(no_such_route)),
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
